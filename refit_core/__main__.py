"""Entry point of `python -m refit_core`."""
from __future__ import annotations

import sys

from .cli import MODULE_PROG, main

if __name__ == "__main__":
    sys.exit(main(prog=MODULE_PROG))

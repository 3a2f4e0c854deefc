"""Hostile versions of a cache's files, shared by the cache tests: a FIFO where a file should be
(a blocking reader would hang), JSON with a key given twice (json keeps the last), JSON nested
deeper than the parser's recursion limit."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: deeper than CPython's recursion limit allows json to parse
TOO_DEEP_JSON = "[" * 200000 + "]" * 200000


def replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def write_with_duplicate_key(path: Path, data: dict, key: str, first_value: Any) -> None:
    """`data` as JSON with `key` written once more, first, holding `first_value`."""
    path.write_text("{" + json.dumps(key) + ": " + json.dumps(first_value) + ", " + json.dumps(data)[1:])


def write_too_deep(path: Path) -> None:
    path.write_text(TOO_DEEP_JSON)

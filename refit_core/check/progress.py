"""Progress on long steps of `check` (a build, the timed refits): a spinner on a terminal, a
line every few seconds in a log, then the step's duration."""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Optional


class Step:
    """`with Step("building the REFIT engine"):` prints the step, then while it runs a spinner
    (on a terminal) or a "... N s" line every `every` seconds (in a log), then its duration."""

    def __init__(self, label: str, every: float = 15.0, out: Any = None) -> None:
        self.label, self.every = label, every
        self.out = out or sys.stdout
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.seconds = 0.0

    def _tick(self) -> None:
        tty = bool(getattr(self.out, "isatty", lambda: False)())
        frames, i = "|/-\\", 0
        while not self._stop.wait(0.25 if tty else self.every):
            elapsed = time.perf_counter() - self._start
            if tty:
                self.out.write(f"\r{self.label} ... {frames[i % 4]} {elapsed:.0f} s")
                i += 1
            else:
                self.out.write(f"{self.label} ... {elapsed:.0f} s\n")
            self.out.flush()

    def __enter__(self) -> "Step":
        self._start = time.perf_counter()
        self.out.write(f"{self.label} ...\n")
        self.out.flush()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.seconds = time.perf_counter() - self._start
        tty = bool(getattr(self.out, "isatty", lambda: False)())
        end = "failed" if kind is not None else "done"
        self.out.write(("\r\033[K" if tty else "") + f"{self.label}: {end} ({self.seconds:.1f} s)\n")
        self.out.flush()

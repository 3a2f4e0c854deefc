"""TensorRT's logger and error recorder, kept so that errors can quote what TensorRT said.

TensorRT's own trt.Logger prints through C++ std::cout, which Python cannot capture; the
logger here records every message (and echoes those at or above a severity), and the error
recorder keeps the descriptions TensorRT reports through a Refitter's `error_recorder`.
"""
from __future__ import annotations

import threading
from typing import Any, List, Tuple

from .compat import import_tensorrt

_SEVERITIES = ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"]
_MAX_KEPT = 2000


class _Classes:
    logger: Any = None
    recorder: Any = None


def make_logger(echo_min_severity: str = "WARNING") -> Any:
    """A trt.ILogger that keeps messages in `.messages` [(severity_name, text)]."""
    trt = import_tensorrt()
    if _Classes.logger is None:
        class RecordingLogger(trt.ILogger):  # type: ignore[misc, valid-type]
            def __init__(self, echo: str) -> None:
                trt.ILogger.__init__(self)
                self.messages: List[Tuple[str, str]] = []
                self._offset = 0  # messages dropped from the front, so marks stay valid
                self._echo_rank = _SEVERITIES.index(echo)
                self._lock = threading.Lock()

            def log(self, severity: Any, msg: str) -> None:
                name = str(severity).split(".")[-1]
                with self._lock:
                    self.messages.append((name, msg))
                    if len(self.messages) > _MAX_KEPT:
                        drop = _MAX_KEPT // 2
                        del self.messages[:drop]
                        self._offset += drop
                rank = _SEVERITIES.index(name) if name in _SEVERITIES else len(_SEVERITIES)
                if rank <= self._echo_rank:
                    print(f"[TRT] [{name[0]}] {msg}", flush=True)

            def mark(self) -> int:
                with self._lock:
                    return self._offset + len(self.messages)

            def errors_since(self, mark: int) -> List[str]:
                with self._lock:
                    start = max(0, mark - self._offset)
                    return [m for s, m in self.messages[start:] if s in ("ERROR", "INTERNAL_ERROR")]

        _Classes.logger = RecordingLogger
    return _Classes.logger(echo_min_severity)


def make_error_recorder() -> Any:
    """A trt.IErrorRecorder that keeps TensorRT's error descriptions.

    The pybind trampoline calls `get_num_errors`; the Python-side name is `num_errors`:
    define both.
    """
    trt = import_tensorrt()
    if _Classes.recorder is None:
        class KeepingErrorRecorder(trt.IErrorRecorder):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:
                trt.IErrorRecorder.__init__(self)
                self.errors: List[Tuple[Any, str]] = []
                self._lock = threading.Lock()

            def clear(self) -> None:
                with self._lock:
                    self.errors = []

            def get_error_code(self, index: int) -> Any:
                return self.errors[index][0]

            def get_error_desc(self, index: int) -> str:
                return self.errors[index][1]

            def has_overflowed(self) -> bool:
                return False

            def num_errors(self) -> int:
                return len(self.errors)

            def get_num_errors(self) -> int:
                return len(self.errors)

            def report_error(self, code: Any, desc: str) -> bool:
                with self._lock:
                    self.errors.append((code, str(desc)))
                return True  # keep going: the caller inspects the API's return value

            def descriptions(self) -> List[str]:
                with self._lock:
                    return [d for _, d in self.errors]

        _Classes.recorder = KeepingErrorRecorder
    return _Classes.recorder()

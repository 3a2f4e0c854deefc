"""Typed field checks of the results schema: each raises SchemaError(path, problem)."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional


class SchemaError(ValueError):
    """One field of a record is wrong: `path` is its JSON path, `problem` says what is wrong."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


# --------------------------------------------------------------------------------------
# Field checks
# --------------------------------------------------------------------------------------

def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, (str, int, float, bool)) else _type(value)
    return text if len(text) <= 40 else text[:37] + "..."


def join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def obj(value: Any, path: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise SchemaError(path, f"must be a JSON object (got {_type(value)})")
    return value


def string(value: Any, path: str, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise SchemaError(path, f"must be a string (got {_show(value)})")
    if nonempty and not value.strip():
        raise SchemaError(path, "must not be empty")
    return value


def number(value: Any, path: str, low: Optional[float] = None, low_open: bool = False,
           high: Optional[float] = None, what: str = "a number") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(path, f"must be {what} (got {_show(value)})")
    if not math.isfinite(value):
        raise SchemaError(path, f"must be a finite number (got {value!r})")
    if low is not None and (value <= low if low_open else value < low):
        raise SchemaError(path, f"must be {what} (got {value!r})")
    if high is not None and value > high:
        raise SchemaError(path, f"must be {what} (got {value!r})")
    return float(value)


def whole(value: Any, path: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(path, f"must be a whole number >= {low} (got {_show(value)})")
    if value < low:
        raise SchemaError(path, f"must be a whole number >= {low} (got {value!r})")
    return value


def fraction(value: Any, path: str) -> float:
    number(value, path, what="a number")
    if not 0.0 <= value <= 1.0:
        raise SchemaError(path, f"must be a fraction in [0, 1] (got {value!r}; "
                                "percentages are not stored)")
    return float(value)


def duration(value: Any, path: str) -> float:
    return number(value, path, low=0.0, low_open=True, what="a duration in seconds > 0")


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise SchemaError(path, f"must be true or false (got {_show(value)})")
    return value


def as_list(value: Any, path: str) -> List[Any]:
    if not isinstance(value, list):
        raise SchemaError(path, f"must be a list (got {_type(value)})")
    return value


def mapping(value: Any, path: str, check: Callable[[Any, str], Any]) -> None:
    for key, item in obj(value, path).items():
        check(item, join(path, key))


def fields(value: Any, path: str, spec: Dict[str, Callable[[Any, str], Any]],
            allow_other: bool = False) -> Dict[str, Any]:
    data = obj(value, path)
    for key, item in data.items():
        check = spec.get(key)
        if check is None:
            if allow_other:
                continue
            raise SchemaError(join(path, key), "unknown field (see docs/results-schema.md)")
        check(item, join(path, key))
    return data


def scalar(value: Any, path: str) -> None:
    """A finite number, a string or a boolean."""
    if isinstance(value, (bool, str)):
        return
    number(value, path, what="a finite number, string or boolean")


def scalar_or_list(value: Any, path: str) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            scalar(item, join(path, i))
    else:
        scalar(value, path)


def weight_names(value: Any, path: str) -> None:
    for i, item in enumerate(as_list(value, path)):
        if item is not None:
            string(item, join(path, i))


def iso_time(value: Any, path: str) -> None:
    import datetime
    text = string(value, path, nonempty=True)
    try:
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SchemaError(path, f"must be an ISO-8601 timestamp (got {_show(text)})") from None



"""Run values made JSON for a results record, and the record file's text layout.

The recorder (results.py) passes what the suite measured through these: numpy scalars and arrays
(duck-typed: ``.tolist()`` / ``.item()``, so numpy is never imported), tuples and paths become
plain JSON values, NaN and infinities are refused; MNIST predictions become one digit per image;
logits are rounded. `dumps_results` writes a record as indented JSON with lists of scalars on one
line.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Iterable, List, Union


def to_jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays, tuples and paths into plain JSON values.

    Duck-typed so this module does not import numpy; NaN and infinities are refused because
    JSON has no spelling for them and a record holding them could not be read back strictly.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite number {value!r} cannot be stored in a results record")
        return float(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy arrays and numpy scalars
        return to_jsonable(value.tolist())
    if hasattr(value, "item"):
        return to_jsonable(value.item())
    raise TypeError(f"cannot store a {type(value).__name__} in a results record: {value!r}")


def encode_digits(predictions: Union[str, Iterable[Any]]) -> str:
    """The compact fingerprint of MNIST predictions: "7210..." (one character per image).

    Accepts an already-encoded string (checked) or any iterable of ints in 0..9, including
    a numpy array.
    """
    if isinstance(predictions, str):
        text = predictions
    else:
        if hasattr(predictions, "tolist"):
            predictions = predictions.tolist()
        parts = []
        for value in predictions:
            digit = int(value)
            if not 0 <= digit <= 9:
                raise ValueError(f"MNIST prediction {value!r} is not a digit 0-9")
            parts.append(str(digit))
        text = "".join(parts)
    if text and not text.isdigit():
        raise ValueError("argmax_all must be a string of digits 0-9")
    return text


def decode_digits(text: str) -> List[int]:
    """Inverse of encode_digits, for tests and analyses."""
    return [int(ch) for ch in text]


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _dump(value: Any, level: int, out: List[str]) -> None:
    pad = "  " * (level + 1)
    if isinstance(value, dict) and value:
        out.append("{\n")
        items = list(value.items())
        for i, (key, item) in enumerate(items):
            out.append(pad + json.dumps(str(key)) + ": ")
            _dump(item, level + 1, out)
            out.append(",\n" if i < len(items) - 1 else "\n")
        out.append("  " * level + "}")
    elif isinstance(value, list) and value and not all(_is_scalar(v) for v in value):
        out.append("[\n")
        for i, item in enumerate(value):
            out.append(pad)
            _dump(item, level + 1, out)
            out.append(",\n" if i < len(value) - 1 else "\n")
        out.append("  " * level + "]")
    else:
        out.append(json.dumps(value, allow_nan=False))


def dumps_results(data: Dict[str, Any]) -> str:
    """JSON text with nested objects indented but lists of scalars on one line.

    Plain indent=2 would put each of the fixed-batch logits on its own line; one line per
    list keeps the file readable and its diffs between TensorRT versions meaningful.
    """
    out: List[str] = []
    _dump(data, 0, out)
    return "".join(out) + "\n"


def round_logits(logits: Any, decimals: int) -> List[List[float]]:
    """Round a batch of logits (2-D: images x classes) to a fixed number of decimals."""
    rows = to_jsonable(logits)
    if not isinstance(rows, list) or any(not isinstance(row, list) for row in rows):
        raise ValueError("logits_fixed_batch must be 2-D (images x classes)")
    return [[round(float(v), int(decimals)) for v in row] for row in rows]

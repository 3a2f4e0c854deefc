"""The value types of the results record: what a single field may hold, and the strict base.

Every field of the record model (record.py) is one of these constrained types (bounded counts,
finite numbers, text without lone surrogates, ISO times, ...) or a model built from them, and
every model derives from `Strict`; the recorder (results.py) checks single values with
`validate_value`.

Runs on CPython 3.9 with pydantic 2.11 (the GPU kit): Optional/Union/Dict/List, no `X | Y`.
"""
from __future__ import annotations

import datetime
import math
from typing import Annotated, Any, List, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

#: Largest count a record may hold (integers beyond it are not counts of anything real).
MAX_COUNT = 2 ** 53
#: Largest magnitude of a measured number (float32's largest finite value: outputs are float32).
MAX_MAGNITUDE = 3.4028234663852886e38
#: Longest duration a record may hold, in seconds (a week).
MAX_SECONDS = 7 * 24 * 3600.0


def _no_surrogates(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("holds a lone surrogate (not valid Unicode text)") from None
    return text


def _iso_time(text: str) -> str:
    try:
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO-8601 date or timestamp") from None
    return text


def _digits(text: str) -> str:
    if text and not text.isdigit():
        raise ValueError("must be a string of digits 0-9")
    return text


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Text = Annotated[str, AfterValidator(_no_surrogates), Field(max_length=100_000)]
Name = Annotated[str, AfterValidator(_no_surrogates), Field(min_length=1, max_length=1000, pattern=r"\S")]
IsoTime = Annotated[Name, AfterValidator(_iso_time)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
PositiveCount = Annotated[int, Field(ge=1, le=MAX_COUNT)]
Seconds = Annotated[float, AfterValidator(_finite), Field(gt=0, le=MAX_SECONDS)]
WallSeconds = Annotated[float, AfterValidator(_finite), Field(ge=0, le=MAX_SECONDS)]
Ratio = Annotated[float, AfterValidator(_finite), Field(gt=0, le=MAX_MAGNITUDE)]
Magnitude = Annotated[float, AfterValidator(_finite), Field(ge=0, le=MAX_MAGNITUDE)]
Number = Annotated[float, AfterValidator(_finite), Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]
Fraction = Annotated[float, AfterValidator(_finite), Field(ge=0, le=1)]
#: A difference that may be NaN or infinite: written as the text "nan" / "inf".
Difference = Union[Magnitude, Literal["nan", "inf"]]
Scalar = Union[bool, Count, Number, Text]
WeightNames = List[Optional[Text]]
#: Digits 0-9, one character each (an MNIST fingerprint's predictions).
DigitString = Annotated[str, AfterValidator(_digits)]


class Strict(BaseModel):
    """Strict types (no "1" for 1, no true for 1), no unknown fields, no NaN/Infinity."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def validate_value(kind: Any, value: Any) -> Any:
    """`value` validated as the type `kind` (one of the types above or a record model), strictly."""
    return TypeAdapter(kind, config=Strict.model_config).validate_python(value)

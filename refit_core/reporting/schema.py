"""Loading a results record: a regular file, strict JSON, validated by the model (record.py).

Every problem is ONE line naming the file, the field as a JSON path
(``cases.mnist.refit_tax.ratio``) and the problem; never a traceback.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Union

from pydantic import ValidationError

from ..errors import DataError
from ..fileio import read_json_strict
from .record import SCHEMA_VERSION, TEST_OUTCOMES, Record  # noqa: F401

#: Largest results file read (a real record is well under 1 MB).
MAX_RECORD_BYTES = 32 << 20

PathLike = Union[str, "os.PathLike[str]"]


class ResultsFileError(DataError):
    """A results file cannot be used: unreadable, malformed, or not this schema."""


class NotARecord(ResultsFileError):
    """The file is no record this refit_core reads: not JSON, not an object, or no schema_version 3
    (a log, a pytest-benchmark file, a record of an older suite). `report` skips such files;
    a schema-3 record that fails validation is a damaged record, not this."""


def canonical_test_id(nodeid: str) -> str:
    """The id of a test that does not depend on where pytest was started.

    Takes the file part (before the first "::"), turns "\\" into "/", and keeps it from the
    LAST path segment equal to "tests" on: "proj/tests/x.py::t" -> "tests/x.py::t". Ids whose
    file part has no "tests" segment are returned unchanged.
    """
    text = str(nodeid)
    file_part, sep, rest = text.partition("::")
    segments = file_part.replace("\\", "/").split("/")
    last = max((i for i, seg in enumerate(segments) if seg == "tests"), default=-1)
    if last < 0:
        return text
    return "/".join(segments[last:]) + sep + rest


def _shown(text: Any, width: int = 60) -> str:
    line = " ".join(str(text).encode("utf-8", "backslashreplace").decode("utf-8").split())
    return line if len(line) <= width else line[:width - 3] + "..."


def describe_error(exc: ValidationError) -> str:
    """The first problem of a validation error, on one line: `path: problem (got value)`."""
    first = exc.errors(include_url=False)[0]
    path = ".".join(str(p) for p in first["loc"]) or "(top level)"
    message = first["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    got = first.get("input")
    shown = ""
    if first["type"] not in ("missing", "extra_forbidden") and not isinstance(got, (dict, list)):
        shown = f" (got {_shown(repr(got))})"
    more = exc.error_count() - 1
    return _shown(f"{path}: {message}{shown}", 400) + (f" (+{more} more problems)" if more > 0 else "")


def validate_results(data: Any, source: str = "<results>") -> Record:
    """The record as the model, else ResultsFileError naming `source` and the field."""
    if not isinstance(data, dict):
        raise NotARecord(f"{source}: not a results record (a JSON object)")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        if "schema_version" not in data:
            hint = "is missing; is this a refit_core results file?"
        elif isinstance(version, int) and not isinstance(version, bool) and version < SCHEMA_VERSION:
            hint = f"{version} is of an older refit_core; run the suite again to make a record of this one"
        else:
            hint = f"{_shown(repr(version))} is not one this refit_core reads"
        raise NotARecord(f"{source}: schema_version {hint} (this refit_core reads {SCHEMA_VERSION})")
    try:
        return Record.model_validate(data)
    except ValidationError as exc:
        raise ResultsFileError(f"{source}: {describe_error(exc)}") from None
    except RecursionError:
        raise ResultsFileError(f"{source}: nested too deeply; not a results record") from None


def load_results(path: PathLike) -> Record:
    """Read and validate a results file; every failure is ONE-line ResultsFileError naming the file."""
    source = _shown(os.fspath(path), 200)
    try:
        data = read_json_strict(path, MAX_RECORD_BYTES)
    except OSError as exc:
        raise ResultsFileError(f"{source}: cannot read results file: {_shown(exc.strerror or exc, 200)}") from None
    except ValueError as exc:
        raise NotARecord(f"{source}: malformed JSON: {_shown(exc, 200)}") from None
    return validate_results(data, source)


def record_dict(record: Record) -> Dict[str, Any]:
    """The record as JSON data (unset optional fields left out)."""
    return record.model_dump(exclude_none=True, exclude_defaults=True, mode="json")

"""The results schema: loading, validation and test identity (standard library only).

docs/results-schema.md documents every field checked here. Version 2 is written; version 1
(the first committed GPU records) is still read. Every problem is reported as ONE line naming
the file, the field as a JSON path (``timings.mnist.refit.conv1.median_s``) and the problem.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from ..errors import DataError
from .fields import (SchemaError, _show, _type, as_list, boolean, duration, fields, fraction,  # noqa: F401
                     iso_time, join, mapping, number, obj, scalar, scalar_or_list, string,
                     weight_names, whole)

#: Version this code writes; SUPPORTED_VERSIONS are read.
SCHEMA_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)

#: Outcomes a record holds; pytest's "error" (setup/teardown) is stored as "failed".
TEST_OUTCOMES = ("passed", "failed", "skipped")

#: Environment keys the suite fills; other keys are accepted (strings, numbers, lists of str).
ENVIRONMENT_KEYS = ("tensorrt_version", "cuda_driver_version", "cuda_runtime_version", "gpu_name",
                    "python_version", "numpy_version", "tactic_sources")
FORBIDDEN_ENVIRONMENT_KEYS = ("hostname", "host", "node", "nodename", "fqdn", "machine_name")

#: Deepest nesting a record may have (the real schema needs 5); deeper files are refused.
MAX_DEPTH = 32

PathLike = Union[str, "os.PathLike[str]"]


class ResultsFileError(DataError):
    """A results file cannot be used: unreadable, malformed, or not this schema."""


# --------------------------------------------------------------------------------------
# Test identity
# --------------------------------------------------------------------------------------

def canonical_test_id(nodeid: str) -> str:
    """The id of a test that does not depend on where pytest was started.

    Takes the file part (before the first "::"), turns "\\" into "/", and keeps it from the
    LAST path segment equal to "tests" on: "proj/tests/x.py::t" -> "tests/x.py::t". Ids whose
    file part has no "tests" segment are returned unchanged. The part after "::" (test name,
    parameters) is never changed.
    """
    text = str(nodeid)
    file_part, sep, rest = text.partition("::")
    segments = file_part.replace("\\", "/").split("/")
    last = max((i for i, seg in enumerate(segments) if seg == "tests"), default=-1)
    if last < 0:
        return text
    return "/".join(segments[last:]) + sep + rest


# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------

def _environment(value: Any, path: str, version: int) -> None:
    for key, item in obj(value, path).items():
        where = join(path, key)
        if key.lower() in FORBIDDEN_ENVIRONMENT_KEYS:
            raise SchemaError(where, "records must not name the machine")
        if key == "tactic_sources" and isinstance(item, list):
            for i, name in enumerate(item):
                string(name, join(where, i))
        elif key in ENVIRONMENT_KEYS:
            string(item, where)
        else:
            scalar_or_list(item, where)


def _provenance(value: Any, path: str, version: int) -> None:
    def nullable(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
        return lambda v, p: None if v is None else check(v, p)

    def sha256(v: Any, p: str) -> None:
        text = string(v, p)
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise SchemaError(p, f"must be 64 lowercase hex digits (got {_show(text)})")

    def str_list(v: Any, p: str) -> None:
        for i, item in enumerate(as_list(v, p)):
            string(item, join(p, i))

    fields(value, path, {
        "suite_version": lambda v, p: string(v, p, nonempty=True),
        "git_commit": nullable(lambda v, p: string(v, p, nonempty=True)),
        "git_dirty": nullable(boolean),
        "source_sha256": sha256,
        "command_line": str_list,
        "hypothesis_profile": string,
        "hypothesis_examples": lambda v, p: mapping(v, p, whole),
        "tensorrt_build": lambda v, p: mapping(v, p, string),
        "tactic_setting": string,
        "started": iso_time,
        "finished": nullable(iso_time),
    })


def _mnist(value: Any, path: str, version: int) -> None:
    def digit(v: Any, p: str) -> None:
        if whole(v, p) > 9:
            raise SchemaError(p, f"must be a digit 0-9 (got {v!r})")

    def logits(v: Any, p: str) -> None:
        rows = as_list(v, p)
        for i, row in enumerate(rows):
            for j, item in enumerate(as_list(row, join(p, i))):
                number(item, join(join(p, i), j), what="a finite number")
            if len(row) != len(rows[0]):
                raise SchemaError(join(p, i), "rows must all have the same length")

    def argmax(v: Any, p: str) -> None:
        if not string(v, p).isdigit() and v:
            raise SchemaError(p, "must be a string of digits 0-9")

    fields(value, path, {
        "accuracy_before": fraction, "accuracy_after": fraction, "accuracy_reference": fraction,
        "predicted_class_before": digit,
        "fingerprint": lambda v, p: fields(v, p, {
            "logits_fixed_batch": logits, "logits_decimals": whole, "argmax_all": argmax}),
        "refittable_weights": weight_names,
        "max_abs_logit_diff_vs_reference": lambda v, p: number(v, p, low=0.0, what="a number >= 0"),
    })


def _bidaf(value: Any, path: str, version: int) -> None:
    for key, model in obj(value, path).items():
        fields(model, join(path, key), {
            "answer_before_refit": string, "answer_fake": string, "answer_after_refit": string,
            "heldout_exact_match_trt": fraction, "heldout_exact_match_ort": fraction,
            "answers": lambda v, p: mapping(v, p, string),
            "refittable_weights": weight_names,
            "heldout_answers_differing": whole,
            "heldout_splits": lambda v, p: mapping(v, p, lambda e, q: fields(e, q, {
                "questions": lambda x, r: whole(x, r, 1), "exact_match_trt": fraction, "exact_match_ort": fraction,
                "scores_max_abs": lambda x, r: number(x, r, low=0.0, what="a number >= 0"),
                "scores_max_rel": lambda x, r: number(x, r, low=0.0, what="a number >= 0")})),
        })


def _cases(value: Any, path: str, version: int) -> None:
    for case, checks in obj(value, path).items():
        for check, values in obj(checks, join(path, case)).items():
            where = join(join(path, case), check)
            if check == "refittable_weights":
                weight_names(values, where)
            else:
                mapping(values, where, scalar_or_list)


def _samples(v: Any, p: str) -> None:
    """A non-empty list of durations."""
    if not as_list(v, p):
        raise SchemaError(p, "must not be empty")
    for i, item in enumerate(v):
        duration(item, join(p, i))


def _timings(value: Any, path: str, version: int) -> None:
    samples = _samples
    for name, entry in obj(value, path).items():
        where = join(path, name)
        data = fields(entry, where, {"median_s": duration, "min_s": duration, "max_s": duration,
                                      "first_s": duration, "rounds": lambda v, p: whole(v, p, 1),
                                      "samples_s": samples})
        if "median_s" not in data:
            raise SchemaError(join(where, "median_s"), "is required")
        if data.get("min_s", data["median_s"]) > data["median_s"] or \
                data["median_s"] > data.get("max_s", data["median_s"]):
            raise SchemaError(where, "must have min_s <= median_s <= max_s")


def _wrapper_overhead(value: Any, path: str, version: int) -> None:
    """What the refit wrapper costs beyond TensorRT's refit_cuda_engine, per benchmark."""
    samples = _samples
    for name, entry in obj(value, path).items():
        where = join(path, name)
        data = fields(entry, where, {
            "trt_median_s": duration, "total_median_s": duration,
            "overhead_ratio": lambda v, p: number(v, p, low=0.0, what="a ratio >= 0"),
            "rounds": lambda v, p: whole(v, p, 1), "trt_samples_s": samples, "total_samples_s": samples})
        for key in ("trt_median_s", "total_median_s", "overhead_ratio", "rounds"):
            if key not in data:
                raise SchemaError(join(where, key), "is required")
        trt, total = data["trt_median_s"], data["total_median_s"]
        if total < trt:
            raise SchemaError(join(where, "total_median_s"), "must be >= trt_median_s (the TensorRT call is part "
                                                             f"of the total; got {total!r} < {trt!r})")
        expected = (total - trt) / trt
        if abs(data["overhead_ratio"] - expected) > 1e-9 * max(1.0, expected):
            raise SchemaError(join(where, "overhead_ratio"),
                              f"must be (total_median_s - trt_median_s) / trt_median_s = {expected!r}")
        for key in ("trt_samples_s", "total_samples_s"):
            if key in data and len(data[key]) != data["rounds"]:
                raise SchemaError(join(where, key), f"must hold `rounds` ({data['rounds']}) samples")


def _ratio_basis(value: Any, path: str, version: int) -> None:
    for model, pair in obj(value, path).items():
        where = join(path, model)
        if len(as_list(pair, where)) != 2:
            raise SchemaError(where, "must be [rebuild timing name, refit timing name]")
        for i, name in enumerate(pair):
            string(name, join(where, i), nonempty=True)


def _tests(value: Any, path: str, version: int) -> None:
    for test_id, entry in obj(value, path).items():
        where = join(path, test_id)
        if version == 1:
            outcome = string(entry, where)
        else:
            data = fields(entry, where, {"outcome": string, "reason": string})
            outcome = data.get("outcome")
        if outcome not in TEST_OUTCOMES:
            raise SchemaError(where, f"outcome must be one of {', '.join(TEST_OUTCOMES)} "
                                     f"(got {_show(outcome)})")


def _test_counts(value: Any, path: str, version: int) -> None:
    fields(value, path, {k: whole for k in TEST_OUTCOMES})


def _extra(value: Any, path: str, version: int) -> None:
    obj(value, path)


def _simple(check: Callable[[Any, str], Any]) -> Callable[[Any, str, int], None]:
    return lambda value, path, version: mapping(value, path, check)


SECTIONS: Dict[str, Callable[[Any, str, int], None]] = {
    "environment": _environment,
    "provenance": _provenance,
    "mnist": _mnist,
    "bidaf": _bidaf,
    "cases": _cases,
    "timings": _timings,
    "ratios": _simple(lambda v, p: number(v, p, low=0.0, low_open=True, what="a ratio > 0")),
    "ratio_basis": _ratio_basis,
    "wrapper_overhead": _wrapper_overhead,
    "notes": _simple(string),
    "bad_inputs": _simple(string),
    "property_tests": _simple(lambda v, p: mapping(v, p, scalar)),
    "tests": _tests,
    "test_counts": _test_counts,
    "extra": _extra,
}


def _too_deep(data: Any, limit: int = MAX_DEPTH) -> bool:
    stack: List[Tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


def check_section(name: str, value: Any, version: int = SCHEMA_VERSION) -> None:
    """Validate one top-level section; raises SchemaError."""
    check = SECTIONS.get(name)
    if check is None:
        raise SchemaError(name, "unknown top-level section (put free-form data under 'extra')")
    check(value, name, version)


def check_record(data: Any) -> None:
    """Validate a whole record; raises SchemaError naming the first bad field."""
    if _too_deep(data):
        raise SchemaError("", f"nested deeper than {MAX_DEPTH} levels; not a results record")
    record = obj(data, "(top level)")
    if "schema_version" not in record:
        raise SchemaError("schema_version", "is missing; is this a refit_core results file? "
                                            f"(this refit_core writes schema {SCHEMA_VERSION})")
    version = record["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise SchemaError("schema_version", f"must be an integer (got {_show(version)})")
    if version not in SUPPORTED_VERSIONS:
        hint = ("written by a newer refit_core; upgrade it" if version > SCHEMA_VERSION
                else "not a version any refit_core wrote")
        raise SchemaError("schema_version", f"schema_version {version} is not supported "
                          f"(this refit_core reads {', '.join(map(str, SUPPORTED_VERSIONS))}): {hint}")
    for key, value in record.items():
        if key == "schema_version":
            continue
        if key in ("created", "note"):
            string(value, key)
            continue
        check_section(key, value, version)
    if "tests" in record and "test_counts" in record:
        outcomes = test_outcomes(record)
        counts = {o: sum(1 for v in outcomes.values() if v[0] == o) for o in TEST_OUTCOMES}
        if len(outcomes) == len(record["tests"]) and counts != {k: record["test_counts"].get(k, 0)
                                                                 for k in TEST_OUTCOMES}:
            raise SchemaError("test_counts", f"does not match tests (tests give {counts})")


def validate_results(data: Any, source: str = "<results>") -> Dict[str, Any]:
    """Check a record against the schema; return it unchanged, else raise ResultsFileError."""
    try:
        check_record(data)
    except SchemaError as exc:
        raise ResultsFileError(f"{source}: {exc}") from None
    except RecursionError:
        raise ResultsFileError(f"{source}: nested too deeply; not a results record") from None
    return data


class _NonFinite:
    """What a NaN/Infinity literal parses to, so that the check can name the field it is in."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def _non_finite_path(node: Any, path: str = "") -> Optional[Tuple[str, str]]:
    """(JSON path, literal) of the first NaN/Infinity literal in a parsed record, or None."""
    stack = [(node, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, _NonFinite):
            return where or "(top level)", value.literal
        if isinstance(value, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(value))))
    return None


def load_results(path: PathLike) -> Dict[str, Any]:
    """Read and validate a results file; every failure is ONE-line ResultsFileError naming the file."""
    source = os.fspath(path)
    try:
        with open(source, "r", encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ResultsFileError(f"{source}: cannot read results file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ResultsFileError(f"{source}: not a text (UTF-8) file: {exc.reason}") from None
    try:
        data = json.loads(text, parse_constant=_NonFinite)
        found = _non_finite_path(data)
    except RecursionError:
        raise ResultsFileError(f"{source}: JSON nested too deeply; not a results record") from None
    except ValueError as exc:
        raise ResultsFileError(f"{source}: malformed JSON: {exc}") from None
    if found is not None:
        raise ResultsFileError(f"{source}: {found[0]}: {found[1]} is not a number a results record may hold")
    return validate_results(data, source)


# --------------------------------------------------------------------------------------
# Reading records of either version
# --------------------------------------------------------------------------------------

_RANK = {"passed": 0, "skipped": 1, "failed": 2}


def merge_outcome(old: Optional[Tuple[str, Optional[str]]],
                  new: Tuple[str, Optional[str]]) -> Tuple[str, Optional[str]]:
    """failed beats skipped beats passed; the reason goes with the outcome kept."""
    if old is None or _RANK[new[0]] > _RANK[old[0]]:
        return new
    return old


def test_outcomes(data: Dict[str, Any]) -> Dict[str, Tuple[str, Optional[str]]]:
    """canonical test id -> (outcome, reason or None), for records of schema 1 and 2."""
    out: Dict[str, Tuple[str, Optional[str]]] = {}
    tests = data.get("tests")
    for test_id, entry in (tests.items() if isinstance(tests, dict) else ()):
        if isinstance(entry, dict):
            outcome, reason = entry.get("outcome"), entry.get("reason")
        else:
            outcome, reason = entry, None
        if outcome in _RANK:
            key = canonical_test_id(test_id)
            out[key] = merge_outcome(out.get(key), (outcome, reason))
    return out


def count_tests(tests: Dict[str, Any]) -> Dict[str, int]:
    """{"passed": n, "failed": n, "skipped": n} from a test-id -> outcome (or entry) map."""
    counts = {outcome: 0 for outcome in TEST_OUTCOMES}
    for entry in tests.values():
        outcome = entry.get("outcome") if isinstance(entry, dict) else entry
        if outcome in counts:
            counts[outcome] += 1
    return counts

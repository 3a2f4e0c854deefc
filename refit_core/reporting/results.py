"""The results record: one JSON file per GPU run, so TensorRT upgrades can be compared later.

Users run the suite again whenever they upgrade TensorRT; this file is the memory of what
each version did (accuracies, answers, fingerprints, timings, test outcomes). The schema is
versioned and documented in docs/results-schema.md. This module uses the standard library
only: it must run on the GPU kit (CPython 3.9, numpy 1.26, no matplotlib), and numpy values
are converted by duck typing (``.tolist()`` / ``.item()``) rather than by importing numpy.
"""
from __future__ import annotations

import copy
import datetime
import json
import math
import os
import platform
import re
import statistics
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..errors import DataError

SCHEMA_VERSION = 1

#: Placeholder that every unnamed refittable weight becomes, whatever TensorRT called it.
UNNAMED_WEIGHT = "<unnamed>"

#: Test outcomes a record holds; pytest's "error" (setup/teardown) is stored as "failed".
TEST_OUTCOMES = ("passed", "failed", "skipped")

#: Environment keys the suite fills; others are accepted so later versions can add some.
ENVIRONMENT_KEYS = (
    "tensorrt_version", "cuda_driver_version", "cuda_runtime_version", "gpu_name",
    "python_version", "numpy_version", "tactic_sources",
)

#: Records are shared between machines and users, so they never name a machine.
_FORBIDDEN_ENVIRONMENT_KEYS = ("hostname", "host", "node", "nodename", "fqdn", "machine_name")

#: Sections a record may hold; every one is optional.
SECTIONS = ("environment", "mnist", "bidaf", "timings", "ratios", "tests", "test_counts")

#: "(Unnamed Layer* 42) [Constant] CONSTANT": how TensorRT 8.6 names weights of unnamed layers.
_UNNAMED_LAYER_RE = re.compile(r"^\s*\(Unnamed Layer\*\s*\d+\)")

#: Timing kinds that pair up into the rebuild/refit ratio.
REFIT_KIND = "refit"
REBUILD_KIND = "rebuild"

PathLike = Union[str, "os.PathLike[str]"]


class ResultsFileError(DataError):
    """A results file cannot be used: unreadable, malformed JSON, or a schema this code does not read."""


# --------------------------------------------------------------------------------------
# Weight names
# --------------------------------------------------------------------------------------

def is_unnamed_weight(name: Optional[str]) -> bool:
    """True for TensorRT's ways of saying "no name": None (8.5), "" and "(Unnamed Layer* N) ..." (8.6)."""
    if name is None:
        return True
    text = str(name)
    return text.strip() == "" or text == UNNAMED_WEIGHT or bool(_UNNAMED_LAYER_RE.match(text))


def normalize_weight_names(names: Optional[Iterable[Optional[str]]]) -> List[str]:
    """Make refittable-weight lists comparable across TensorRT versions.

    TensorRT 8.5 reports unnamed refittable weights as None and 8.6 as strings such as
    "(Unnamed Layer* 42) [Constant] CONSTANT", whose layer number also shifts between
    versions. Each becomes UNNAMED_WEIGHT; one placeholder per unnamed weight is kept so the
    count still compares. Named weights are kept as they are. The result is sorted (named
    first, then the placeholders) and has as many entries as the input.
    """
    if names is None:
        return []
    named: List[str] = []
    unnamed = 0
    for name in names:
        if is_unnamed_weight(name):
            unnamed += 1
        else:
            named.append(str(name))
    return sorted(named) + [UNNAMED_WEIGHT] * unnamed


def unnamed_weight_count(names: Optional[Iterable[Optional[str]]]) -> int:
    """How many of the names are unnamed weights (in any TensorRT version's spelling)."""
    return sum(1 for name in (names or []) if is_unnamed_weight(name))


# --------------------------------------------------------------------------------------
# Conversions to JSON-friendly values
# --------------------------------------------------------------------------------------

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


def round_logits(logits: Any, decimals: int) -> List[List[float]]:
    """Round a batch of logits (2-D: images x classes) to a fixed number of decimals.

    Rounding keeps the file small and the fingerprint stable against the last-bit noise of
    float printing; the gate's drift tolerance is far above 10**-decimals.
    """
    rows = to_jsonable(logits)
    if not isinstance(rows, list) or any(not isinstance(row, list) for row in rows):
        raise ValueError("logits_fixed_batch must be 2-D (images x classes)")
    return [[round(float(v), int(decimals)) for v in row] for row in rows]


def _check_fraction(name: str, value: Any) -> Optional[float]:
    """Accuracies and exact-match scores are fractions in [0, 1]; catch percentages early."""
    if value is None:
        return None
    number = float(to_jsonable(value))
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1] (got {number!r}; "
                         "percentages are not stored)")
    return number


# --------------------------------------------------------------------------------------
# Timing names
# --------------------------------------------------------------------------------------

def split_timing_name(name: str) -> Optional[Tuple[str, str, str]]:
    """Split "<model>.<kind>[.<detail>]" into (model, kind, detail) for kind refit/rebuild.

    "mnist.refit.conv1" -> ("mnist", "refit", "conv1"); "bidaf.standin.rebuild.cold_cache"
    -> ("bidaf.standin", "rebuild", "cold_cache"). None when the name has no refit/rebuild part.
    """
    parts = name.split(".")
    for index, part in enumerate(parts):
        if part in (REFIT_KIND, REBUILD_KIND) and index > 0:
            return ".".join(parts[:index]), part, ".".join(parts[index + 1:])
    return None


def primary_timing(timings: Dict[str, Any], model: str, kind: str) -> Optional[str]:
    """The timing that stands for a model's refit (or rebuild) in ratios and reports.

    The exact name "<model>.<kind>" when recorded, else the alphabetically first
    "<model>.<kind>.<detail>"; None when the model has no such timing.
    """
    exact = f"{model}.{kind}"
    if exact in timings:
        return exact
    candidates = sorted(n for n in timings
                        if (split_timing_name(n) or ("", "", ""))[:2] == (model, kind))
    return candidates[0] if candidates else None


def timing_models(timings: Dict[str, Any]) -> List[str]:
    """Models named by refit/rebuild timings, "mnist" first then alphabetical."""
    models = {parts[0] for parts in (split_timing_name(n) for n in timings) if parts}
    return sorted(models, key=lambda m: (m != "mnist", m))


def derive_ratios(timings: Dict[str, Any]) -> Dict[str, float]:
    """rebuild median / refit median per model, from the primary timings of each kind."""
    ratios: Dict[str, float] = {}
    for model in timing_models(timings):
        refit = primary_timing(timings, model, REFIT_KIND)
        rebuild = primary_timing(timings, model, REBUILD_KIND)
        if refit is None or rebuild is None:
            continue
        refit_s = timings[refit].get("median_s")
        rebuild_s = timings[rebuild].get("median_s")
        if refit_s and rebuild_s is not None:
            ratios[model] = float(rebuild_s) / float(refit_s)
    return ratios


# --------------------------------------------------------------------------------------
# The recorder
# --------------------------------------------------------------------------------------

def _merge_outcome(old: Optional[str], new: str) -> str:
    """Combine setup/call/teardown reports: failed beats skipped beats passed."""
    rank = {"passed": 0, "skipped": 1, "failed": 2}
    if old is None:
        return new
    return new if rank[new] > rank[old] else old


def _today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


class ResultsRecorder:
    """Collects one run's results while the pytest session goes, then writes one JSON file.

    Every section is optional: a run that skips BiDAF simply has no "bidaf" section. Values
    are converted to plain JSON as they are recorded, so a bad value fails where it is made,
    not at the end of a long GPU run.
    """

    def __init__(self, created: Optional[str] = None, note: Optional[str] = None) -> None:
        self._data: Dict[str, Any] = {}
        self.created = created or _today()
        self.note = note
        self._tests: Dict[str, str] = {}

    # -- generic -----------------------------------------------------------------------
    def set(self, path: Sequence[str], value: Any) -> None:
        """Store a value at a nested key path, e.g. ("mnist", "accuracy_after"); dicts are created."""
        keys = tuple(path)
        if not keys:
            raise ValueError("empty key path")
        if keys[0] in ("schema_version", "tests", "test_counts"):
            raise ValueError(f"{keys[0]!r} is maintained by the recorder; use record_test()")
        node = self._data
        for key in keys[:-1]:
            child = node.setdefault(str(key), {})
            if not isinstance(child, dict):
                raise ValueError(f"cannot set {keys!r}: {key!r} holds a value, not a section")
            node = child
        node[str(keys[-1])] = to_jsonable(value)

    def get(self, path: Sequence[str], default: Any = None) -> Any:
        """Read back a recorded value (a copy), or default when absent."""
        node: Any = self._data
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return copy.deepcopy(node)

    # -- sections ----------------------------------------------------------------------
    def record_environment(self, **values: Any) -> None:
        """Versions and settings of the run (TensorRT, CUDA, GPU, Python, numpy, tactics).

        Hostnames are refused: records get attached to issues and shared between users.
        """
        for key, value in values.items():
            if key.lower() in _FORBIDDEN_ENVIRONMENT_KEYS:
                raise ValueError(f"environment key {key!r} is not recorded: results files are "
                                 "shared and must not name the machine")
            if value is None:
                continue
            self.set(("environment", key), value)

    def record_mnist(self, *, accuracy_before: Optional[float] = None,
                     accuracy_after: Optional[float] = None,
                     accuracy_reference: Optional[float] = None,
                     predicted_class_before: Optional[int] = None,
                     logits_fixed_batch: Any = None, logits_decimals: int = 4,
                     argmax_all: Any = None,
                     refittable_weights: Optional[Sequence[Optional[str]]] = None) -> None:
        """MNIST refit results; only the arguments given are stored (call it as often as needed).

        Accuracies are fractions in [0, 1]. argmax_all is the prediction of every test image
        (array or digit string); logits_fixed_batch is rounded to logits_decimals decimals.
        refittable_weights is stored as TensorRT reported it (None stays null); comparisons
        normalise it with normalize_weight_names.
        """
        for key, value in (("accuracy_before", accuracy_before),
                           ("accuracy_after", accuracy_after),
                           ("accuracy_reference", accuracy_reference)):
            if value is not None:
                self.set(("mnist", key), _check_fraction(key, value))
        if predicted_class_before is not None:
            self.set(("mnist", "predicted_class_before"), int(to_jsonable(predicted_class_before)))
        if logits_fixed_batch is not None:
            self.set(("mnist", "fingerprint", "logits_fixed_batch"),
                     round_logits(logits_fixed_batch, logits_decimals))
            self.set(("mnist", "fingerprint", "logits_decimals"), int(logits_decimals))
        if argmax_all is not None:
            self.set(("mnist", "fingerprint", "argmax_all"), encode_digits(argmax_all))
        if refittable_weights is not None:
            self.set(("mnist", "refittable_weights"), list(refittable_weights))

    def record_bidaf(self, model_key: str, *, answer_before_refit: Optional[str] = None,
                     answer_fake: Optional[str] = None,
                     answer_after_refit: Optional[str] = None,
                     heldout_exact_match_trt: Optional[float] = None,
                     heldout_exact_match_ort: Optional[float] = None,
                     answers: Optional[Dict[str, str]] = None,
                     refittable_weights: Optional[Sequence[Optional[str]]] = None) -> None:
        """BiDAF results for one model ("standin", "original"); only given arguments are stored.

        Exact-match scores are fractions in [0, 1]; answers maps held-out example ids to the
        TensorRT answer after refit.
        """
        if not model_key or "." in model_key:
            raise ValueError(f"BiDAF model key {model_key!r} must be a non-empty name without dots")
        for key, value in (("answer_before_refit", answer_before_refit),
                           ("answer_fake", answer_fake),
                           ("answer_after_refit", answer_after_refit)):
            if value is not None:
                self.set(("bidaf", model_key, key), str(value))
        for key, value in (("heldout_exact_match_trt", heldout_exact_match_trt),
                           ("heldout_exact_match_ort", heldout_exact_match_ort)):
            if value is not None:
                self.set(("bidaf", model_key, key), _check_fraction(key, value))
        if answers is not None:
            self.set(("bidaf", model_key, "answers"),
                     {str(k): str(v) for k, v in answers.items()})
        if refittable_weights is not None:
            self.set(("bidaf", model_key, "refittable_weights"), list(refittable_weights))

    def record_timing(self, name: str, samples_s: Sequence[float],
                      first_s: Optional[float] = None) -> None:
        """Summarise repeated timings (seconds) as median/min/max; first_s is the cold first call.

        The first refit is kept apart because it includes one-time costs (refitter creation,
        lazy loading) that the median of the warm rounds should not hide or absorb.
        """
        samples = [float(to_jsonable(s)) for s in samples_s]
        if not samples:
            raise ValueError(f"timing {name!r}: no samples")
        if any(not math.isfinite(s) or s < 0 for s in samples):
            raise ValueError(f"timing {name!r}: samples must be finite and >= 0")
        entry: Dict[str, Any] = {
            "median_s": statistics.median(samples),
            "min_s": min(samples),
            "max_s": max(samples),
            "rounds": len(samples),
        }
        if first_s is not None:
            entry["first_s"] = float(to_jsonable(first_s))
        self.set(("timings", name), entry)

    def record_ratio(self, model: str, rebuild_name: Optional[str] = None,
                     refit_name: Optional[str] = None) -> float:
        """Store rebuild median / refit median for a model, from two recorded timings.

        Without names the primary timings are used (see primary_timing). Ratios not recorded
        explicitly are derived the same way when the record is written.
        """
        timings = self._data.get("timings", {})
        rebuild_name = rebuild_name or primary_timing(timings, model, REBUILD_KIND)
        refit_name = refit_name or primary_timing(timings, model, REFIT_KIND)
        for name in (rebuild_name, refit_name):
            if name is None or name not in timings:
                raise ValueError(f"ratio for {model!r}: timing {name!r} has not been recorded")
        refit_s = float(timings[refit_name]["median_s"])
        if refit_s <= 0:
            raise ValueError(f"ratio for {model!r}: refit median of {refit_name!r} is zero")
        ratio = float(timings[rebuild_name]["median_s"]) / refit_s
        self.set(("ratios", model), ratio)
        return ratio

    def record_test(self, nodeid: str, outcome: str) -> None:
        """Record a pytest outcome; several reports for one test (setup/call/teardown) merge."""
        value = "failed" if outcome == "error" else outcome
        if value not in TEST_OUTCOMES:
            raise ValueError(f"test outcome {outcome!r} is not one of {TEST_OUTCOMES + ('error',)}")
        self._tests[nodeid] = _merge_outcome(self._tests.get(nodeid), value)

    # -- output ------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """The record as it will be written (a deep copy; sections present only when filled)."""
        out: Dict[str, Any] = {"schema_version": SCHEMA_VERSION, "created": self.created}
        if self.note:
            out["note"] = self.note
        for section in ("environment", "mnist", "bidaf", "timings"):
            if self._data.get(section):
                out[section] = copy.deepcopy(self._data[section])
        ratios = derive_ratios(self._data.get("timings", {}))
        ratios.update(self._data.get("ratios", {}))
        if ratios:
            out["ratios"] = ratios
        for key, value in self._data.items():  # anything set() added under a new top-level key
            if key not in out and key not in SECTIONS:
                out[key] = copy.deepcopy(value)
        if self._tests:
            out["tests"] = dict(sorted(self._tests.items()))
            out["test_counts"] = count_tests(self._tests)
        return out

    def write(self, path: PathLike) -> Path:
        """Write the record atomically (temp file + rename) so a killed run leaves no half file."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = dumps_results(self.to_dict())
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, target)
        except BaseException:
            if tmp.exists():
                tmp.unlink()
            raise
        return target


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


def count_tests(tests: Dict[str, str]) -> Dict[str, int]:
    """{"passed": n, "failed": n, "skipped": n} from a nodeid -> outcome map."""
    counts = {outcome: 0 for outcome in TEST_OUTCOMES}
    for outcome in tests.values():
        if outcome in counts:
            counts[outcome] += 1
    return counts


def basic_environment() -> Dict[str, str]:
    """The environment fields that need no GPU: Python and (if importable) numpy versions."""
    env = {"python_version": platform.python_version()}
    try:
        import numpy  # noqa: F401  (optional; the record itself does not need it)
        env["numpy_version"] = str(numpy.__version__)
    except ImportError:
        pass
    return env


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

def validate_results(data: Any, source: str = "<results>") -> Dict[str, Any]:
    """Check the schema version and the section types; return data unchanged.

    Raises ResultsFileError naming `source` so the user knows which file to regenerate.
    """
    if not isinstance(data, dict):
        raise ResultsFileError(f"{source}: a results file holds a JSON object, "
                               f"found {type(data).__name__}")
    if "schema_version" not in data:
        raise ResultsFileError(f"{source}: no 'schema_version' field; is it a refit_core "
                               f"results file? (this refit_core writes schema {SCHEMA_VERSION})")
    version = data["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ResultsFileError(f"{source}: schema_version must be an integer, got {version!r}")
    if version != SCHEMA_VERSION:
        hint = ("written by a newer refit_core; upgrade it" if version > SCHEMA_VERSION
                else "written by an older refit_core; re-run the suite to regenerate it")
        raise ResultsFileError(f"{source}: schema_version {version} is not supported "
                               f"(this refit_core reads {SCHEMA_VERSION}): {hint}")
    for section in ("environment", "mnist", "bidaf", "timings", "ratios", "tests", "test_counts"):
        if section in data and not isinstance(data[section], dict):
            raise ResultsFileError(f"{source}: section {section!r} must be a JSON object, "
                                   f"found {type(data[section]).__name__}")
    for name, entry in data.get("timings", {}).items():
        if not isinstance(entry, dict) or "median_s" not in entry:
            raise ResultsFileError(f"{source}: timing {name!r} has no median_s")
    for model, entry in data.get("bidaf", {}).items():
        if not isinstance(entry, dict):
            raise ResultsFileError(f"{source}: bidaf model {model!r} must be a JSON object")
    return data


def load_results(path: PathLike) -> Dict[str, Any]:
    """Read and validate a results file; every failure is a ResultsFileError naming the file."""
    source = os.fspath(path)
    try:
        with open(source, "r", encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ResultsFileError(f"{source}: cannot read results file: "
                               f"{exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ResultsFileError(f"{source}: not a text (UTF-8) file: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ResultsFileError(f"{source}: malformed JSON: {exc}") from exc
    return validate_results(data, source)

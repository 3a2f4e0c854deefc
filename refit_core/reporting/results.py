"""The results recorder: one JSON record per GPU run, so TensorRT upgrades can be compared later.

Users run the suite again whenever they upgrade TensorRT; the record is the memory of what each
version did. The pytest plugin calls the typed ``record_*`` methods below; each value is converted and
validated by building its part of the model (record.py) when it is recorded, so a bad value
fails where it is made, not at the end of a long GPU run; ``to_dict()`` builds the whole
Record and ``write()`` writes it. Values become JSON (numpy duck-typed) in jsonable.py, which
also lays out the file's text.
"""
from __future__ import annotations

import copy
import datetime
import math
import os
import platform
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from pydantic import BaseModel, ValidationError

from ..config import PROFILES
from ..fileio import atomic_write_text
from . import record as model
from .jsonable import dumps_results, encode_digits, round_logits, to_jsonable
from .record import SCHEMA_VERSION, TEST_OUTCOMES
from .record_types import Count, Name, Ratio, Scalar, Sha256, Text, WallSeconds, WeightNames, validate_value
from .schema import canonical_test_id, describe_error, record_dict
from .timings import REBUILD_KIND, REFIT_KIND, derive_ratios, primary_timing

PathLike = Union[str, "os.PathLike[str]"]


def basic_environment() -> Dict[str, str]:
    """The environment fields that need no GPU: Python and (if importable) numpy versions."""
    env = {"python_version": platform.python_version()}
    try:
        import numpy  # noqa: F401  (optional; the record itself does not need it)
        env["numpy_version"] = str(numpy.__version__)
    except ImportError:
        pass
    return env


def _today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def _positive_samples(samples: Sequence[float], what: str) -> List[float]:
    out = [float(x) for x in samples]
    if not out or not all(math.isfinite(x) and x > 0 for x in out):
        raise ValueError(f"{what}: need at least one sample, each finite and > 0 seconds (got {out[:5]!r})")
    return out


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string (got {value!r})")
    return value


_RANK = {"passed": 0, "skipped": 1, "failed": 2}


def merge_outcome(old: Optional[Tuple[str, Optional[str]]],
                  new: Tuple[str, Optional[str]]) -> Tuple[str, Optional[str]]:
    """failed beats skipped beats passed; the reason goes with the outcome kept."""
    if old is None or _RANK[new[0]] > _RANK[old[0]]:
        return new
    return old


def _checked(kind: Any, value: Any, what: str) -> Dict[str, Any]:
    """`value` built into the model class `kind` (ValueError naming `what` and the field), as data."""
    try:
        built = kind.model_validate(value) if isinstance(kind, type) and issubclass(kind, BaseModel) \
            else validate_value(kind, value)
    except ValidationError as exc:
        raise ValueError(f"cannot record {what}: {describe_error(exc)}") from None
    return built.model_dump(exclude_none=True, exclude_defaults=True, mode="json") if isinstance(built, BaseModel) else built


class ResultsRecorder:
    """Collects one run's results while the pytest session goes, then writes one JSON file.

    Every section is optional (a run that skips BiDAF has no "bidaf" section) except what the
    model requires: the profile (default "default"), the environment, and for every case the
    hash of its inputs (`record_case_inputs`).
    """

    def __init__(self, created: Optional[str] = None, note: Optional[str] = None) -> None:
        self._data: Dict[str, Any] = {"profile": "default", "environment": {}}
        self.created = created or _today()
        self.note = note
        self._tests: Dict[str, Tuple[str, Optional[str]]] = {}
        self._test_cases: Dict[str, List[str]] = {}

    def get(self, path: Sequence[str], default: Any = None) -> Any:
        """Read back a recorded value (a copy), or default when absent."""
        node: Any = self._snapshot()
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return copy.deepcopy(node)

    def _section(self, name: str) -> Dict[str, Any]:
        return self._data.setdefault(name, {})

    def _case(self, case: str) -> Dict[str, Any]:
        return self._section("cases").setdefault(_name(case, "case name"), {})

    # -- run identity --------------------------------------------------------------------
    def record_profile(self, name: str) -> None:
        """The run profile (--refit-profile): "default" or "full"; the gate compares like with like."""
        if name not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)} (got {name!r})")
        self._data["profile"] = name

    def record_phase(self, name: str, wall_seconds: float) -> None:
        """phases.<name> += wall seconds (builds ahead, each case's checks, benchmarks)."""
        phases = self._section("phases")
        total = phases.get(_name(name, "phase name"), 0.0) + float(to_jsonable(wall_seconds))
        phases[name] = _checked(WallSeconds, total, f"phases.{name}")

    def record_environment(self, **values: Any) -> None:
        """Versions and the GPU of the run (TensorRT, CUDA, GPU, compute capability, ...).
        Fields the model does not declare (a hostname, say) are refused."""
        env = dict(self._data["environment"])
        for key, value in values.items():
            if value is None:
                continue
            if key == "compute_capability" and isinstance(value, (tuple, list)):
                value = ".".join(str(int(v)) for v in value)
            env[key] = list(value) if isinstance(value, (list, tuple)) else str(value)
        self._data["environment"] = _checked(model.Environment, env, "environment")

    def record_provenance(self, suite_version: str, git_commit: Optional[str],
                          git_dirty: Optional[bool], source_sha256: str,
                          command_line: Sequence[str], hypothesis_profile: str,
                          tensorrt_build: Dict[str, Any], tactic_setting: str, started: str,
                          finished: Optional[str] = None) -> None:
        """Where the run came from; call again (e.g. with finished) to update it."""
        values = {"suite_version": suite_version, "git_commit": git_commit,
                  "git_dirty": git_dirty, "source_sha256": source_sha256,
                  "command_line": [str(a) for a in command_line],
                  "hypothesis_profile": hypothesis_profile,
                  "tensorrt_build": {str(k): str(v) for k, v in dict(tensorrt_build).items()},
                  "tactic_setting": tactic_setting, "started": started, "finished": finished,
                  "hypothesis_examples": self._data.get("provenance", {}).get("hypothesis_examples", {})}
        self._data["provenance"] = _checked(model.Provenance, values, "provenance")

    def record_hypothesis_examples(self, test_id: str, examples: int) -> None:
        """How many Hypothesis examples a property test ran (provenance.hypothesis_examples)."""
        key = canonical_test_id(_name(test_id, "test id"))
        self._hypothesis[key] = _checked(Count, to_jsonable(examples), f"hypothesis_examples.{key}")

    @property
    def _hypothesis(self) -> Dict[str, Any]:
        return self._data.setdefault("provenance", {}).setdefault("hypothesis_examples", {})

    # -- cases ---------------------------------------------------------------------------
    def record_case_inputs(self, case: str, inputs_sha256: str) -> None:
        """cases.<case>.inputs_sha256: what the case ran on (RefitCase.inputs_sha256())."""
        self._case(case)["inputs_sha256"] = _checked(Sha256, inputs_sha256, f"cases.{case}.inputs_sha256")

    def record_case_check(self, case: str, check: str, **values: Any) -> None:
        """cases.<case>.checks.<check> = what the check found (record.CaseCheck's fields)."""
        where = f"cases.{case}.checks.{_name(check, 'check name')}"
        self._case(case).setdefault("checks", {})[check] = _checked(model.CaseCheck, to_jsonable(values), where)

    def record_case_weights(self, case: str, names: Sequence[Optional[str]]) -> None:
        """TensorRT's refittable weight list of a case (None entries allowed), as reported."""
        self._case(case)["refittable_weights"] = _checked(
            WeightNames, to_jsonable(list(names)), f"cases.{case}.refittable_weights")

    def record_case_coverage(self, case: str, coverage: Dict[str, Any]) -> None:
        """cases.<case>.coverage = the weight-coverage map (refit.coverage.Coverage.to_record()); the
        gate fails a weight that was refittable by name in the baseline and is not now."""
        self._case(case)["coverage"] = _checked(model.Coverage, to_jsonable(dict(coverage)), f"cases.{case}.coverage")

    def record_refit_tax(self, case: str, refit_engine_s: Sequence[float], plain_engine_s: Sequence[float],
                         precision: str) -> float:
        """cases.<case>.refit_tax: inference latency of the REFIT engine over the same model built
        without REFIT (medians of the samples, seconds, each > 0). Returns the ratio."""
        a = _positive_samples(refit_engine_s, f"refit tax {case!r}: REFIT engine")
        b = _positive_samples(plain_engine_s, f"refit tax {case!r}: engine without REFIT")
        ratio = statistics.median(a) / statistics.median(b)
        self._case(case)["refit_tax"] = _checked(model.RefitTax, {
            "ratio": ratio, "refit_engine_median_s": statistics.median(a),
            "plain_engine_median_s": statistics.median(b), "rounds": min(len(a), len(b)),
            "precision": precision}, f"cases.{case}.refit_tax")
        return ratio

    def record_refit_floor(self, case: str, refit_s: Sequence[float], weight_bytes: int, h2d_bytes_per_s: float,
                           weights: int, precision: str) -> float:
        """cases.<case>.refit_floor: the warm refit's median over the host-to-device floor
        (weight_bytes / measured copy bandwidth). Returns the ratio (shown, never gated)."""
        samples = _positive_samples(refit_s, f"refit floor {case!r}: refit")
        if not (isinstance(weight_bytes, int) and weight_bytes > 0):
            raise ValueError(f"refit floor {case!r}: weight_bytes must be a positive int (got {weight_bytes!r})")
        if not (math.isfinite(float(h2d_bytes_per_s)) and h2d_bytes_per_s > 0):
            raise ValueError(f"refit floor {case!r}: bandwidth must be finite and > 0 (got {h2d_bytes_per_s!r})")
        median = statistics.median(samples)
        floor = weight_bytes / float(h2d_bytes_per_s)
        self._case(case)["refit_floor"] = _checked(model.RefitFloor, {
            "refit_median_s": median, "weight_bytes": int(weight_bytes), "weights": int(weights),
            "h2d_gb_per_s": float(h2d_bytes_per_s) / 1e9, "floor_s": floor, "ratio": median / floor,
            "rounds": len(samples), "precision": precision}, f"cases.{case}.refit_floor")
        return median / floor

    # -- the samples' metrics ---------------------------------------------------------------
    def record_mnist(self, *, accuracy_before: Optional[float] = None,
                     accuracy_after: Optional[float] = None,
                     accuracy_reference: Optional[float] = None,
                     predicted_class_before: Optional[int] = None,
                     logits_fixed_batch: Any = None, logits_decimals: int = 4,
                     argmax_all: Any = None,
                     refittable_weights: Optional[Sequence[Optional[str]]] = None,
                     max_abs_logit_diff_vs_reference: Optional[float] = None) -> None:
        """MNIST results (case mnist); only the arguments given are stored. Accuracies are fractions
        in [0, 1]; argmax_all is every test image's prediction (array or digit string)."""
        data = dict(self._data.get("mnist", {}))
        fingerprint = dict(data.get("fingerprint", {}))
        for key, value in (("accuracy_before", accuracy_before), ("accuracy_after", accuracy_after),
                           ("accuracy_reference", accuracy_reference),
                           ("max_abs_logit_diff_vs_reference", max_abs_logit_diff_vs_reference)):
            if value is not None:
                data[key] = float(to_jsonable(value))
        if predicted_class_before is not None:
            data["predicted_class_before"] = int(to_jsonable(predicted_class_before))
        if logits_fixed_batch is not None:
            fingerprint["logits_fixed_batch"] = round_logits(logits_fixed_batch, logits_decimals)
            fingerprint["logits_decimals"] = int(logits_decimals)
        if argmax_all is not None:
            fingerprint["argmax_all"] = encode_digits(argmax_all)
        if fingerprint:
            data["fingerprint"] = fingerprint
        if refittable_weights is not None:
            data["refittable_weights"] = to_jsonable(list(refittable_weights))
        self._data["mnist"] = _checked(model.Mnist, data, "mnist")

    def record_bidaf(self, model_key: str, **values: Any) -> None:
        """BiDAF results for one model ("standin", "original"; case bidaf-<key>): record.Bidaf's
        fields, only the ones given are stored."""
        if not model_key or "." in model_key:
            raise ValueError(f"BiDAF model key {model_key!r} must be a non-empty name without dots")
        data = dict(self._section("bidaf").get(model_key, {}))
        data.update({k: to_jsonable(v) for k, v in values.items() if v is not None})
        self._section("bidaf")[model_key] = _checked(model.Bidaf, data, f"bidaf.{model_key}")

    def record_property_test(self, name: str, stats: Dict[str, Any]) -> None:
        """property_tests.<name> = {stat: finite number | int | bool | str}."""
        self._section("property_tests")[_name(name, "property test name")] = _checked(
            Dict[Name, Scalar], to_jsonable(dict(stats)), f"property_tests.{name}")

    def record_bad_input(self, case: str, message: str) -> None:
        """bad_inputs.<case> = the error text the bad input produced in this run."""
        self._section("bad_inputs")[_name(case, "bad-input case")] = _checked(Text, str(message), case)

    def record_note(self, key: str, text: str) -> None:
        """notes.<key> = a sentence (e.g. why a timing is what it is)."""
        self._section("notes")[_name(key, "note key")] = _checked(Text, str(text), key)

    # -- timings -----------------------------------------------------------------------
    def record_timing(self, name: str, samples_s: Sequence[float],
                      first_s: Optional[float] = None) -> None:
        """Keep the raw samples (seconds, each > 0) and their median/min/max/rounds; first_s is the
        cold first call, kept apart because it includes one-time costs."""
        samples = _positive_samples([float(to_jsonable(s)) for s in samples_s], f"timing {name!r}")
        entry: Dict[str, Any] = {"median_s": statistics.median(samples), "min_s": min(samples),
                                 "max_s": max(samples), "rounds": len(samples), "samples_s": samples}
        if first_s is not None:
            entry["first_s"] = float(to_jsonable(first_s))
        self._section("timings")[_name(name, "timing name")] = _checked(model.Timing, entry, f"timings.{name}")

    def record_wrapper_overhead(self, name: str, trt_samples_s: Sequence[float],
                                total_samples_s: Sequence[float]) -> float:
        """wrapper_overhead.<name>: medians of the raw refit_cuda_engine seconds and of refit_with's
        total over the same rounds, and (total - raw) / raw. Returns the ratio."""
        trt = [float(s) for s in trt_samples_s]
        total = [float(s) for s in total_samples_s]
        if not trt or len(trt) != len(total):
            raise ValueError(f"wrapper overhead {name!r}: need as many raw as total samples, at least one "
                             f"(got {len(trt)} and {len(total)})")
        for raw_s, total_s in zip(trt, total):
            if not (math.isfinite(raw_s) and math.isfinite(total_s) and 0 < raw_s <= total_s):
                raise ValueError(f"wrapper overhead {name!r}: every round needs 0 < raw <= total seconds "
                                 f"(got raw {raw_s!r}, total {total_s!r})")
        trt_median, total_median = statistics.median(trt), statistics.median(total)
        ratio = (total_median - trt_median) / trt_median
        self._section("wrapper_overhead")[_name(name, "benchmark name")] = _checked(model.WrapperOverhead, {
            "trt_median_s": trt_median, "total_median_s": total_median, "overhead_ratio": ratio,
            "rounds": len(trt), "trt_samples_s": trt, "total_samples_s": total}, f"wrapper_overhead.{name}")
        return ratio

    def record_ratio(self, model_name: str, rebuild_name: Optional[str] = None,
                     refit_name: Optional[str] = None) -> float:
        """Store rebuild median / refit median for a model, from two recorded timings."""
        timings = self._data.get("timings", {})
        rebuild_name = rebuild_name or primary_timing(timings, model_name, REBUILD_KIND)
        refit_name = refit_name or primary_timing(timings, model_name, REFIT_KIND)
        for name in (rebuild_name, refit_name):
            if name is None or name not in timings:
                raise ValueError(f"ratio for {model_name!r}: timing {name!r} has not been recorded")
        ratio = float(timings[rebuild_name]["median_s"]) / float(timings[refit_name]["median_s"])
        self._section("ratios")[model_name] = _checked(Ratio, ratio, f"ratios.{model_name}")
        return ratio

    def record_ratio_basis(self, model_name: str, rebuild_name: str, refit_name: str) -> None:
        """Name the timings a model's ratio is taken from (the report shows them beside it)."""
        self._section("ratio_basis")[_name(model_name, "model")] = [_name(rebuild_name, "rebuild timing name"),
                                                                     _name(refit_name, "refit timing name")]

    # -- tests -------------------------------------------------------------------------
    def record_test(self, test_id: str, outcome: str, reason: Optional[str] = None,
                    cases: Sequence[str] = ()) -> None:
        """Record a pytest outcome under canonical_test_id(test_id); setup/call/teardown merge.

        "error" is stored as "failed"; failed beats skipped beats passed, and the reason of the
        outcome kept is kept with it. `cases`: the registered cases the test used.
        """
        value = "failed" if outcome == "error" else outcome
        if value not in TEST_OUTCOMES:
            raise ValueError(f"test outcome {outcome!r} is not one of {TEST_OUTCOMES + ('error',)}")
        if reason is not None and not isinstance(reason, str):
            reason = str(reason)
        key = canonical_test_id(_name(test_id, "test id"))
        self._tests[key] = merge_outcome(self._tests.get(key), (value, reason))
        known = self._test_cases.setdefault(key, [])
        known += [str(c) for c in cases if c not in known]

    def test_cases(self) -> List[str]:
        """The cases named by tests that did not skip (each needs its inputs_sha256)."""
        out: Dict[str, None] = {}
        for key, (outcome, _) in self._tests.items():
            if outcome != "skipped":
                out.update((c, None) for c in self._test_cases.get(key, []))
        return list(out)

    # -- output ------------------------------------------------------------------------
    def _snapshot(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"schema_version": SCHEMA_VERSION, "created": self.created}
        if self.note:
            out["note"] = str(self.note)
        for section, value in self._data.items():
            if section != "ratios" and value not in (None, {}, []):
                out[section] = copy.deepcopy(value)
        out.setdefault("environment", {})
        ratios = derive_ratios(self._data.get("timings", {}))
        ratios.update(self._data.get("ratios", {}))
        if ratios:
            out["ratios"] = ratios
        tests: Dict[str, Any] = {}
        for key, (outcome, reason) in sorted(self._tests.items()):
            tests[key] = {"outcome": outcome}
            if reason:
                tests[key]["reason"] = reason
            if self._test_cases.get(key):
                tests[key]["cases"] = list(self._test_cases[key])
        if tests:
            out["tests"] = tests
        out["test_counts"] = {o: sum(1 for t in tests.values() if t["outcome"] == o) for o in TEST_OUTCOMES}
        return out

    def to_model(self) -> model.Record:
        """The whole record, built and validated (ValueError naming the field when it is not valid)."""
        try:
            return model.Record.model_validate(self._snapshot())
        except ValidationError as exc:
            raise ValueError(f"the results record is not valid: {describe_error(exc)}") from None

    def to_dict(self) -> Dict[str, Any]:
        """The record as it will be written (validated)."""
        return record_dict(self.to_model())

    def write(self, path: PathLike) -> Path:
        """Write the record atomically (refit_core.fileio): a killed run leaves no half file."""
        target = Path(path)
        atomic_write_text(target, dumps_results(self.to_dict()))
        return target

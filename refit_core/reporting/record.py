"""The results record, declared once (pydantic v2, strict): what a GPU run writes and the gate reads.

Everything else derives from these classes: the recorder builds them (so a bad value fails
where it is made), `load_results` validates a file with them, the gate and the report read
their typed values, and docs/results-schema.md is generated from them (`python -m
refit_core.reporting.record` rewrites it; a CPU test keeps the committed file equal).
The value types their fields use (bounded counts, finite numbers, checked text) and the strict
base class are in record_types.py; loading a file is schema.py.

Runs on CPython 3.9 with pydantic 2.11 (the GPU kit): Optional/Union/Dict/List, no `X | Y`.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Dict, List, Literal, Optional, Union

from pydantic import Field, model_validator

from ..config import PROFILES
from .record_types import (Count, Difference, DigitString, Fraction, IsoTime, Magnitude, Name, Number,
                           PositiveCount, Ratio, Scalar, Seconds, Sha256, Strict, Text, WallSeconds,
                           WeightNames)

#: The version this code writes and reads; records of other versions are refused (re-run the suite).
SCHEMA_VERSION = 3

#: How `python -m refit_core check` names its tests ("check::<case>::<check>"): the report tells
#: its records from the suite's by it.
CHECK_TEST_PREFIX = "check::"

#: Outcomes a record holds; pytest's "error" (setup/teardown) is stored as "failed".
TEST_OUTCOMES = ("passed", "failed", "skipped")


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1e-300)


# --------------------------------------------------------------------------------------
# Run identity
# --------------------------------------------------------------------------------------

class Environment(Strict):
    """What the run ran on. The gate requires gpu_name, compute_capability and cuda_driver_version
    on both records (normalised: name stripped and case-folded, driver major version)."""

    tensorrt_version: Optional[Name] = Field(None, description="TensorRT version, e.g. 8.6.0")
    gpu_name: Optional[Text] = Field(None, description="GPU model as CUDA names it")
    compute_capability: Optional[Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]+$")]] = Field(
        None, description="compute capability, e.g. 9.0")
    cuda_driver_version: Optional[Text] = Field(None, description="CUDA driver version, e.g. 12.2")
    cuda_runtime_version: Optional[Text] = Field(None, description="CUDA runtime version")
    python_version: Optional[Text] = Field(None, description="Python version")
    numpy_version: Optional[Text] = Field(None, description="numpy version")
    tactic_sources: Optional[Union[Text, List[Text]]] = Field(None, description="tactic setting of the builds")


class Provenance(Strict):
    """Where the run came from (shown by the gate, never judged)."""

    suite_version: Name = Field(description="refit_core version")
    git_commit: Optional[Name] = Field(None, description="suite commit, null outside a git checkout")
    git_dirty: Optional[bool] = Field(None, description="uncommitted changes in the checkout")
    source_sha256: Sha256 = Field(description="sha256 over the suite's source files")
    command_line: List[Text] = Field(default_factory=list, description="the command that made the record")
    hypothesis_profile: Optional[Text] = Field(None, description="Hypothesis profile")
    hypothesis_examples: Dict[Name, Count] = Field(default_factory=dict,
                                                   description="test id -> Hypothesis examples run")
    tensorrt_build: Dict[Name, Text] = Field(default_factory=dict, description="TensorRT module and library")
    tactic_setting: Optional[Text] = Field(None, description="tactic sources setting")
    started: IsoTime = Field(description="start time")
    finished: Optional[IsoTime] = Field(None, description="end time")


# --------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------

class CaseCheck(Strict):
    """One check of a case (`record_case_check`): comparison summaries and what was seen."""

    tolerance: Optional[Union[Text, Magnitude]] = Field(None, description="the tolerance, described")
    rows: Optional[Count] = Field(None, description="output rows compared")
    rows_agreeing: Optional[Count] = Field(None, description="rows within the tolerance (<= rows)")
    max_abs: Optional[Difference] = Field(None, description="largest |difference|")
    max_rel: Optional[Difference] = Field(None, description="largest relative difference")
    images: Optional[Count] = Field(None, description="images compared")
    values: Optional[Count] = Field(None, description="output values compared")
    values_differing: Optional[Count] = Field(None, description="values that differ (<= values)")
    bit_exact: Optional[bool] = Field(None, description="every value identical")
    bit_identical_to_built: Optional[bool] = Field(None, description="identical to the built engine's outputs")
    values_differing_from_built: Optional[Count] = Field(None, description="values differing from the built engine's")
    fresh_build: Optional[Text] = Field(None, description="what the fresh build was")
    weight: Optional[Text] = Field(None, description="the weight the check used")
    message: Optional[Text] = Field(None, description="what TensorRT said")
    weights_with_partners: Optional[Count] = Field(None, description="weights that need partners to refit")
    partners: Dict[Name, List[Text]] = Field(default_factory=dict,
                                             description="weight -> the weights TensorRT asks for with it")
    values_set_to_1e6: Optional[Count] = Field(None, description="weight values set out of FP16 range")
    outputs: Optional[Count] = Field(None, description="output values")
    outputs_nonfinite: Optional[Count] = Field(None, description="non-finite outputs (<= outputs)")
    max_abs_finite_output: Optional[Union[Magnitude, Text]] = Field(None, description="largest finite |output|")
    changed: Optional[bool] = Field(None, description="outputs changed")
    margin: Optional[Magnitude] = Field(None, description="how far outside the tolerance a no-op refit must land")
    refitted: Optional[Count] = Field(None, description="weights the checks refit")
    blocked_by_trt_only_partner: List[Text] = Field(
        default_factory=list, description="weights left out: TensorRT refits them only with weights of its own")

    @model_validator(mode="after")
    def _consistent(self) -> "CaseCheck":
        for part, whole in (("rows_agreeing", "rows"), ("values_differing", "values"),
                            ("outputs_nonfinite", "outputs")):
            a, b = getattr(self, part), getattr(self, whole)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{part} ({a}) exceeds {whole} ({b})")
        return self


class Coverage(Strict):
    """Which ONNX initializers TensorRT can refit, and how (refit.coverage.Coverage.to_record)."""

    by_name: List[Text] = Field(description="refittable under their ONNX name")
    other_name: List[Text] = Field(description="refittable under another name")
    unmatched: List[Text] = Field(description="not matched to a TensorRT weight")
    not_refittable: List[Text] = Field(description="folded into the engine")
    trt_only: List[Text] = Field(default_factory=list, description="TensorRT weights without an initializer")
    other_name_candidates: List[Text] = Field(default_factory=list, description="name -> candidates")
    initializers: Count = Field(description="float initializers of the model")
    trt_weights: Count = Field(description="refittable weights TensorRT reports")
    prototypes_known: bool = Field(False, description="TensorRT reported weight prototypes")
    blocked_by_trt_only_partner: List[Text] = Field(
        default_factory=list, description="name -> the TensorRT-only weights it is refitted with (left out)")


class RefitTax(Strict):
    """Inference latency of the REFIT engine over the same model built without REFIT (same run)."""

    ratio: Ratio = Field(description="refit_engine_median_s / plain_engine_median_s")
    refit_engine_median_s: Seconds = Field(description="median latency with REFIT")
    plain_engine_median_s: Seconds = Field(description="median latency without REFIT")
    rounds: PositiveCount = Field(description="rounds of each")
    precision: Name = Field(description="fp32, tf32 or fp16")

    @model_validator(mode="after")
    def _ratio(self) -> "RefitTax":
        if not _close(self.ratio, self.refit_engine_median_s / self.plain_engine_median_s):
            raise ValueError("ratio must be refit_engine_median_s / plain_engine_median_s")
        return self


class RefitFloor(Strict):
    """The warm refit's median over the host-to-device floor (bytes / measured bandwidth)."""

    refit_median_s: Seconds = Field(description="median warm refit")
    weight_bytes: PositiveCount = Field(description="bytes of the weights refitted")
    weights: Count = Field(description="weights refitted")
    h2d_gb_per_s: Ratio = Field(description="measured host-to-device bandwidth, GB/s")
    floor_s: Seconds = Field(description="weight_bytes over the bandwidth")
    ratio: Ratio = Field(description="refit_median_s / floor_s")
    rounds: PositiveCount = Field(description="refits timed")
    precision: Name = Field(description="fp32, tf32 or fp16")

    @model_validator(mode="after")
    def _ratio(self) -> "RefitFloor":
        if not _close(self.ratio, self.refit_median_s / self.floor_s):
            raise ValueError("ratio must be refit_median_s / floor_s")
        return self


class Case(Strict):
    """One registered case: what it ran on and what its checks found."""

    inputs_sha256: Sha256 = Field(description="the case's inputs (weights and model file): RefitCase.inputs_sha256()")
    refittable_weights: Optional[WeightNames] = Field(None, description="TensorRT's refittable weights (null: unnamed)")
    coverage: Optional[Coverage] = Field(None, description="weight coverage map")
    refit_tax: Optional[RefitTax] = Field(None, description="refit tax")
    refit_floor: Optional[RefitFloor] = Field(None, description="refit floor")
    checks: Dict[Name, CaseCheck] = Field(default_factory=dict, description="check name -> what it found")


# --------------------------------------------------------------------------------------
# The samples' metrics
# --------------------------------------------------------------------------------------

class Fingerprint(Strict):
    logits_fixed_batch: Optional[List[List[Number]]] = Field(None, description="logits of a fixed batch, rounded")
    logits_decimals: Optional[Count] = Field(None, description="decimals kept")
    argmax_all: Optional[DigitString] = Field(
        None, description="every test image's prediction, one digit each")

    @model_validator(mode="after")
    def _rectangular(self) -> "Fingerprint":
        rows = self.logits_fixed_batch or []
        if any(len(r) != len(rows[0]) for r in rows):
            raise ValueError("logits_fixed_batch rows must all have the same length")
        return self


class Mnist(Strict):
    """The MNIST sample (case `mnist`)."""

    accuracy_before: Optional[Fraction] = Field(None, description="accuracy before the refit")
    accuracy_after: Optional[Fraction] = Field(None, description="accuracy after the refit")
    accuracy_reference: Optional[Fraction] = Field(None, description="accuracy of the reference")
    predicted_class_before: Optional[Annotated[int, Field(ge=0, le=9)]] = Field(None, description="first image's class")
    fingerprint: Optional[Fingerprint] = Field(None, description="outputs fingerprint")
    refittable_weights: Optional[WeightNames] = Field(None, description="TensorRT's refittable weights")
    max_abs_logit_diff_vs_reference: Optional[Magnitude] = Field(None, description="max |logit diff|")


class HeldoutSplit(Strict):
    questions: PositiveCount
    exact_match_trt: Fraction
    exact_match_ort: Fraction
    scores_max_abs: Magnitude
    scores_max_rel: Magnitude


class Bidaf(Strict):
    """One BiDAF model of the sample (case `bidaf-<key>`)."""

    answer_before_refit: Optional[Text] = None
    answer_fake: Optional[Text] = None
    answer_after_refit: Optional[Text] = None
    heldout_exact_match_trt: Optional[Fraction] = None
    heldout_exact_match_ort: Optional[Fraction] = None
    answers: Optional[Dict[Name, Text]] = None
    refittable_weights: Optional[WeightNames] = None
    heldout_answers_differing: Optional[Count] = None
    heldout_splits: Optional[Dict[Name, HeldoutSplit]] = None


# --------------------------------------------------------------------------------------
# Timings and tests
# --------------------------------------------------------------------------------------

class Timing(Strict):
    """`<model>.<kind>[.<detail>]`: raw samples and their statistics."""

    median_s: Seconds
    min_s: Optional[Seconds] = None
    max_s: Optional[Seconds] = None
    first_s: Optional[Seconds] = Field(None, description="the cold first call, apart")
    rounds: Optional[PositiveCount] = None
    samples_s: Optional[Annotated[List[Seconds], Field(min_length=1)]] = None

    @model_validator(mode="after")
    def _order(self) -> "Timing":
        low = self.min_s if self.min_s is not None else self.median_s
        high = self.max_s if self.max_s is not None else self.median_s
        if not low <= self.median_s <= high:
            raise ValueError("must have min_s <= median_s <= max_s")
        if self.samples_s is not None and self.rounds is not None and len(self.samples_s) != self.rounds:
            raise ValueError(f"samples_s must hold `rounds` ({self.rounds}) samples")
        return self


class WrapperOverhead(Strict):
    """What the refit wrapper costs beyond TensorRT's refit_cuda_engine."""

    trt_median_s: Seconds
    total_median_s: Seconds
    overhead_ratio: Magnitude = Field(description="(total_median_s - trt_median_s) / trt_median_s")
    rounds: PositiveCount
    trt_samples_s: Optional[List[Seconds]] = None
    total_samples_s: Optional[List[Seconds]] = None

    @model_validator(mode="after")
    def _consistent(self) -> "WrapperOverhead":
        if self.total_median_s < self.trt_median_s:
            raise ValueError("total_median_s must be >= trt_median_s")
        if not _close(self.overhead_ratio, (self.total_median_s - self.trt_median_s) / self.trt_median_s) \
                and self.overhead_ratio > 1e-9:
            raise ValueError("overhead_ratio must be (total_median_s - trt_median_s) / trt_median_s")
        for samples in (self.trt_samples_s, self.total_samples_s):
            if samples is not None and len(samples) != self.rounds:
                raise ValueError(f"samples must number `rounds` ({self.rounds})")
        return self


class TestEntry(Strict):
    """One test's outcome and the cases it used (the gate attributes it to them)."""

    outcome: Literal["passed", "failed", "skipped"]
    reason: Optional[Text] = Field(None, description="skip reason or failure summary")
    cases: List[Name] = Field(default_factory=list, description="the cases the test used")


class TestCounts(Strict):
    passed: Count
    failed: Count
    skipped: Count


def metric_case(model: str) -> str:
    """The case a sample metric or timing model belongs to: "mnist" -> "mnist",
    "bidaf.standin" -> "bidaf-standin", a case key -> itself."""
    return model.replace(".", "-")


class Record(Strict):
    """One GPU run of the suite (or of `check`)."""

    schema_version: Literal[3] = Field(description=f"always {SCHEMA_VERSION}")
    created: IsoTime = Field(description="date the record was made")
    note: Optional[Text] = None
    profile: Literal[PROFILES] = Field(description="run profile (--refit-profile)")
    environment: Environment
    provenance: Optional[Provenance] = None
    phases: Dict[Name, WallSeconds] = Field(default_factory=dict,
                                            description="wall seconds per phase (builds ahead, each case's checks, ...)")
    cases: Dict[Name, Case] = Field(default_factory=dict, description="case name -> case")
    mnist: Optional[Mnist] = Field(None, description="the MNIST sample's metrics (case mnist)")
    bidaf: Dict[Name, Bidaf] = Field(default_factory=dict, description="BiDAF model key -> metrics (case bidaf-<key>)")
    timings: Dict[Name, Timing] = Field(default_factory=dict, description="timing name -> timing")
    ratios: Dict[Name, Ratio] = Field(default_factory=dict, description="model -> rebuild median / refit median")
    ratio_basis: Dict[Name, Annotated[List[Name], Field(min_length=2, max_length=2)]] = Field(
        default_factory=dict, description="model -> [rebuild timing, refit timing]")
    wrapper_overhead: Dict[Name, WrapperOverhead] = Field(default_factory=dict)
    notes: Dict[Name, Text] = Field(default_factory=dict)
    bad_inputs: Dict[Name, Text] = Field(default_factory=dict, description="bad-input case -> error text")
    property_tests: Dict[Name, Dict[Name, Scalar]] = Field(default_factory=dict)
    tests: Dict[Name, TestEntry] = Field(default_factory=dict, description="canonical test id -> outcome")
    test_counts: TestCounts = Field(description="the outcomes of `tests`, tallied")

    @model_validator(mode="after")
    def _consistent(self) -> "Record":
        tally = {o: sum(1 for t in self.tests.values() if t.outcome == o) for o in TEST_OUTCOMES}
        if self.test_counts.model_dump() != tally:
            raise ValueError(f"test_counts does not match tests (tests give {tally})")
        where: List[str] = []
        for test_id, entry in self.tests.items():
            if entry.outcome != "skipped":
                where += [f"tests.{test_id} uses case {c}" for c in entry.cases if c not in self.cases]
        if self.mnist is not None and "mnist" not in self.cases:
            where.append("mnist")
        where += [f"bidaf.{k}" for k in self.bidaf if metric_case(f"bidaf.{k}") not in self.cases]
        from .timings import split_timing_name
        for name in list(self.timings) + list(self.ratios):
            parts = split_timing_name(name) if name in self.timings else (name,)
            if parts and metric_case(parts[0]) not in self.cases:
                where.append(name)
        if where:
            raise ValueError(f"{where[0]}: its case is not in `cases` (every case says what it ran on: "
                             "cases.<case>.inputs_sha256)")
        return self



# --------------------------------------------------------------------------------------
# The documentation, generated
# --------------------------------------------------------------------------------------

def _type_of(spec: Dict[str, Any]) -> str:
    if "$ref" in spec:
        return spec["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in spec:
        kinds = [_type_of(s) for s in spec["anyOf"]]
        return " or ".join(k for k in kinds if k != "null") + (" or null" if "null" in kinds else "")
    if "const" in spec:
        return repr(spec["const"]).replace("'", '"')
    if "enum" in spec:
        return " or ".join(repr(v).replace("'", '"') for v in spec["enum"])
    kind = spec.get("type", "any")
    if kind == "array":
        return f"list of {_type_of(spec.get('items', {}))}"
    if kind == "object":
        return f"map of name -> {_type_of(spec.get('additionalProperties', {}))}"
    bounds = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                      ("exclusiveMaximum", "<"), ("minLength", "length >="), ("maxLength", "length <="),
                      ("pattern", "matching")):
        if key in spec:
            value = spec[key]
            bounds.append(f"{sign} `{value}`" if key == "pattern" else f"{sign} {value:g}")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def schema_markdown() -> str:
    """docs/results-schema.md, from the model (one table per object type)."""
    schema = Record.model_json_schema()
    defs = dict(schema.pop("$defs", {}))
    lines = ["# Results record schema", "",
             f"Generated from `refit_core/reporting/record.py` (schema_version {SCHEMA_VERSION}) by",
             "`python -m refit_core.reporting.record`; do not edit by hand (a CPU test compares).", "",
             "Every object refuses unknown fields; numbers are finite, never strings or booleans;",
             "JSON with duplicate keys, NaN or Infinity is refused. Records of other schema versions are",
             "refused: run the suite again.", ""]
    for name, spec in [("Record", schema)] + sorted(defs.items()):
        lines += [f"## {name}", ""]
        if spec.get("description"):
            lines += [" ".join(spec["description"].split()), ""]
        required = set(spec.get("required", []))
        lines += ["| field | type | required | meaning |", "|---|---|---|---|"]
        for field, sub in spec.get("properties", {}).items():
            meaning = " ".join(str(sub.get("description", "")).split()).replace("|", "\\|")
            kind = _type_of(sub).replace("|", "\\|")
            lines.append(f"| `{field}` | {kind} | {'yes' if field in required else 'no'} | {meaning} |")
        lines.append("")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip("\n") + "\n"


if __name__ == "__main__":  # pragma: no cover - the doc writer
    from pathlib import Path

    from ..fileio import atomic_write_text
    target = Path(__file__).resolve().parents[2] / "docs" / "results-schema.md"
    atomic_write_text(target, schema_markdown())
    print(f"wrote {target}")

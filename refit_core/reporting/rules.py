"""The gate's comparison: two results records -> rows with verdicts, or GateRefused.

Missing evidence fails: a metric, section or test the baseline has and the candidate lacks
is MISSING (fails) unless allowed by name (`allow_missing`, fnmatch on the metric). Timings
and ratios are compared only between the same GPU model and CUDA driver major version.
Here: when two records cannot be compared, the environment, provenance, timing, ratio and
test rows, and `compare`, which puts every rule's rows together. The samples' rules are
sample_rules.py, the cases' evidence evidence_rules.py, the row builders they share rule_rows.py.
Standard library only (runs on the GPU kit).
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ..errors import DataError
from .evidence_rules import evidence_rows
from .formatting import ABSENT, plain, ratio, seconds
from .record import Environment, Record, metric_case
from .rule_rows import EPS, absent_row, equal_row, info_row, section
from .sample_rules import bidaf_rows, mnist_rows
from .schema import record_dict
from .timings import REFIT_KIND, split_timing_name
from .tolerances import Tolerances
from .verdicts import CHANGED, INFO, MISSING, NOT_COMPARED, OK, REGRESSION, GateResult, GateRow, apply_allow_missing

ENVIRONMENT_KEYS = tuple(Environment.model_fields)


class GateRefused(DataError):
    """The two records cannot be compared (exit 2): `side` is "baseline", "candidate" or "both"."""

    def __init__(self, side: str, message: str) -> None:
        self.side = side
        super().__init__(message)


# --------------------------------------------------------------------------------------
# Environment and provenance
# --------------------------------------------------------------------------------------

def _environment_rows(b: Dict[str, Any], c: Dict[str, Any]) -> List[GateRow]:
    keys = [k for k in ENVIRONMENT_KEYS if k in b or k in c]
    keys += sorted(k for k in set(b) | set(c) if k not in ENVIRONMENT_KEYS)
    rows = [equal_row(f"environment.{k}", b.get(k), c.get(k), plain, CHANGED) for k in keys]
    return [r for r in rows if r is not None]


def _provenance_summary(key: str, value: Any) -> str:
    if key == "hypothesis_examples" and isinstance(value, dict):
        return f"{len(value)} tests, {sum(value.values())} examples"
    if key == "command_line" and isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, bool) or value is None:
        return "null" if value is None else str(value).lower()
    return plain(value)


def _provenance_rows(b: Dict[str, Any], c: Dict[str, Any]) -> List[GateRow]:
    rows = []
    for key in sorted(set(b) | set(c)):
        show = (lambda v, k=key: _provenance_summary(k, v))
        rows.append(GateRow(f"provenance.{key}", show(b[key]) if key in b else ABSENT,
                            show(c[key]) if key in c else ABSENT, "info", INFO))
    return rows


# --------------------------------------------------------------------------------------
# Timings (comparable only on the same GPU model and CUDA driver major version)
# --------------------------------------------------------------------------------------

def gpu_identity(env: Dict[str, Any], side: str) -> Tuple[str, str, str]:
    """(GPU name stripped and case-folded, compute capability, CUDA driver major); a missing or
    empty field is GateRefused naming it."""
    name = str(env.get("gpu_name") or "").strip().casefold()
    capability = str(env.get("compute_capability") or "").strip()
    driver = str(env.get("cuda_driver_version") or "").strip().split(".")[0]
    for field, value in (("gpu_name", name), ("compute_capability", capability), ("cuda_driver_version", driver)):
        if not value:
            raise GateRefused(side, f"environment.{field} is missing or empty: the gate needs the GPU's "
                                    "identity (name, compute capability, CUDA driver) in both records")
    return name, capability, driver


def timings_incomparable(b_env: Dict[str, Any], c_env: Dict[str, Any]) -> Optional[str]:
    """Why timings of the two records cannot be compared (another normalised GPU), or None."""
    gb, gc = gpu_identity(b_env, "baseline"), gpu_identity(c_env, "candidate")
    if gb[:2] != gc[:2]:
        return f"other GPU ({gb[0]} {gb[1]} vs {gc[0]} {gc[1]})"
    if gb[2] != gc[2]:
        return f"other CUDA driver major ({gb[2]} vs {gc[2]})"
    return None


def _timing_order(name: str) -> Any:
    parts = split_timing_name(name)
    model = parts[0] if parts else name
    return (model != "mnist", model, name)


def _timing_rows(b: Dict[str, Any], c: Dict[str, Any], tol: Tolerances,
                 incomparable: Optional[str]) -> List[GateRow]:
    rows: List[GateRow] = []
    for name in sorted(set(b) | set(c), key=_timing_order):
        metric = f"timing.{name}"
        tb, tc = b.get(name), c.get(name)
        row = absent_row(metric, tb and tb["median_s"], tc and tc["median_s"],
                         lambda v: f"median {seconds(v)}")
        if row:
            rows.append(row)
            continue
        mb, mc = float(tb["median_s"]), float(tc["median_s"])
        factor = mc / mb
        parts = split_timing_name(name)
        if incomparable:
            allowed, verdict = f"not compared: {incomparable}", INFO
        elif parts is not None and parts[1] == REFIT_KIND:
            allowed = f"median <= x{tol.max_refit_slowdown:g} baseline"
            verdict = REGRESSION if factor > tol.max_refit_slowdown + EPS else OK
        else:
            allowed, verdict = "info (not gated)", OK
        rows.append(GateRow(metric, f"median {seconds(mb)}", f"median {seconds(mc)} (x{factor:.2f})",
                            allowed, verdict))
        if tb.get("first_s") is not None and tc.get("first_s") is not None:
            rows.append(GateRow(f"{metric}.first", seconds(tb["first_s"]), seconds(tc["first_s"]),
                                "info (not gated)", INFO if incomparable else OK))
    return rows


def _ratio_rows(b: Dict[str, Any], c: Dict[str, Any], b_basis: Dict[str, Any],
                c_basis: Dict[str, Any], incomparable: Optional[str]) -> List[GateRow]:
    rows: List[Optional[GateRow]] = []
    for model in sorted(set(b) | set(c), key=lambda m: (m != "mnist", m)):
        metric = f"ratio.{model}.rebuild/refit"
        row = absent_row(metric, b.get(model), c.get(model), ratio)
        if row is None:
            row = GateRow(metric, ratio(b[model]), ratio(c[model]),
                          f"not compared: {incomparable}" if incomparable else "info (not gated)",
                          INFO if incomparable else OK)
        rows.append(row)
    for model in sorted(set(b_basis) | set(c_basis)):
        rows.append(info_row(f"ratio_basis.{model}", b_basis.get(model), c_basis.get(model),
                             missing_fails=False, if_different=CHANGED))
    return [row for row in rows if row is not None]


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------

def _outcome_text(entry: Any) -> str:
    if entry is None:
        return ABSENT
    outcome, reason = entry
    return f"{outcome}: {reason}" if reason and outcome != "passed" else outcome


def test_outcomes(data: Dict[str, Any]) -> Dict[str, Tuple[str, Optional[str]]]:
    """test id -> (outcome, reason or None) of a record's data."""
    return {k: (v["outcome"], v.get("reason")) for k, v in section(data, "tests").items()}


def _test_rows(b_data: Dict[str, Any], c_data: Dict[str, Any]) -> List[GateRow]:
    b, c = test_outcomes(b_data), test_outcomes(c_data)

    def counts(tests: Dict[str, Any]) -> str:
        n = Counter(outcome for outcome, _ in tests.values())
        return f"{n['passed']}/{n['failed']}/{n['skipped']}"

    rows = [GateRow("tests passed/failed/skipped", counts(b), counts(c), "info",
                    OK if counts(b) == counts(c) else CHANGED)]
    passed = sum(1 for outcome, _ in c.values() if outcome == "passed")
    if not passed:
        rows.append(GateRow("tests.passed", str(sum(1 for o, _ in b.values() if o == "passed")),
                            "no tests recorded" if not c else "no test passed",
                            ">= 1 passed", REGRESSION))
    for test_id in sorted(set(b) | set(c)):
        ob, oc = b.get(test_id), c.get(test_id)
        was, now = ob and ob[0], oc and oc[0]
        if was == now:
            continue
        metric = f"test {test_id}"
        if now == "failed":
            rows.append(GateRow(metric, _outcome_text(ob), _outcome_text(oc),
                                "still passes" if was == "passed" else "does not fail", REGRESSION))
        elif was == "passed":  # skipped or absent now
            rows.append(GateRow(metric, _outcome_text(ob), _outcome_text(oc), "passes", MISSING))
        elif was is not None and now is not None:
            rows.append(GateRow(metric, _outcome_text(ob), _outcome_text(oc), "info", CHANGED))
        elif was is not None:  # skipped or failed in the baseline, absent now
            rows.append(GateRow(metric, _outcome_text(ob), ABSENT, "info", INFO))
    return rows


# --------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------

def _no_evidence(data: Dict[str, Any]) -> Optional[str]:
    outcomes = [t["outcome"] for t in section(data, "tests").values()]
    if not outcomes:
        return "no tests recorded"
    if "passed" not in outcomes:
        return f"no test passed ({len(outcomes)} recorded, every one {'/'.join(sorted(set(outcomes)))})"
    return None


def differing_inputs(b: Dict[str, Any], c: Dict[str, Any]) -> Dict[str, Tuple[str, str]]:
    """case -> (baseline hash, candidate hash) for the cases both records ran on different inputs."""
    cb, cc = section(b, "cases"), section(c, "cases")
    return {case: (cb[case]["inputs_sha256"], cc[case]["inputs_sha256"]) for case in sorted(set(cb) & set(cc))
            if cb[case]["inputs_sha256"] != cc[case]["inputs_sha256"]}


def not_comparable_text(hashes: Tuple[str, str]) -> str:
    return f"not comparable: different inputs ({hashes[0][:12]} vs {hashes[1][:12]})"


def _row_cases(metric: str, tests: Dict[str, Set[str]]) -> Set[str]:
    """The cases a row's metric belongs to (record.metric_case; tests: the cases they used)."""
    head, _, rest = metric.partition(".")
    if metric.startswith("test "):
        return tests.get(metric[len("test "):], set())
    if head == "cases":
        return {rest.split(".", 1)[0]}
    if head == "mnist":
        return {"mnist"}
    if head == "bidaf":
        return {metric_case("bidaf." + rest.split(".", 1)[0])}
    if head in ("timing", "wrapper_overhead"):
        parts = split_timing_name(rest)
        return {metric_case(parts[0])} if parts else set()
    if head in ("ratio", "ratio_basis"):
        model = rest[:-len(".rebuild/refit")] if rest.endswith(".rebuild/refit") else rest
        return {metric_case(model)}
    return set()


def as_record(data: Any, source: str) -> Record:
    """A Record as is; record data (a dict) validated into one (ResultsFileError naming `source`)."""
    from .schema import validate_results
    return data if isinstance(data, Record) else validate_results(data, source)


def refuse_incomparable(baseline: Record, candidate: Record, allow_different_inputs: bool = False) -> None:
    """GateRefused when the two records cannot be compared: either without GPU evidence, other
    profiles, a GPU identity missing, or (unless allowed) a case run on different inputs."""
    b, c = record_dict(baseline), record_dict(candidate)
    for side, data in (("baseline", b), ("candidate", c)):
        why = _no_evidence(data)
        if why:
            raise GateRefused(side, f"no GPU evidence: {why}")
    if baseline.profile != candidate.profile:
        raise GateRefused("both", f"profiles differ: baseline ran profile {baseline.profile!r}, candidate "
                                  f"{candidate.profile!r}; compare records of the same --refit-profile")
    gpu_identity(b.get("environment", {}), "baseline")
    gpu_identity(c.get("environment", {}), "candidate")
    differing = differing_inputs(b, c)
    if differing and not allow_different_inputs:
        shown = "; ".join(f"{case}: {not_comparable_text(h)[len('not comparable: '):]}" for case, h in differing.items())
        raise GateRefused("both", f"not comparable: {len(differing)} case(s) ran on different inputs ({shown}); "
                                  "gate the other cases with --allow-different-inputs")


def compare(baseline: Record, candidate: Record, tolerances: Optional[Tolerances] = None,
            allow_missing: Sequence[str] = (), compare_timings_across_gpus: bool = False,
            allow_different_inputs: bool = False) -> GateResult:
    """Compare two validated records under the tolerances (GateRefused when they cannot be).

    Anything the baseline has and the candidate lacks is MISSING (fails) unless a pattern of
    allow_missing matches its metric name. With allow_different_inputs, every row of a case
    whose inputs differ is NOT_COMPARED (shown, never judged).
    """
    baseline, candidate = as_record(baseline, "baseline"), as_record(candidate, "candidate")
    refuse_incomparable(baseline, candidate, allow_different_inputs)
    tol = tolerances or Tolerances()
    b, c = record_dict(baseline), record_dict(candidate)
    b_env, c_env = section(b, "environment"), section(c, "environment")
    incomparable = timings_incomparable(b_env, c_env)
    if compare_timings_across_gpus:
        incomparable = None
    rows: List[GateRow] = []
    rows.append(GateRow("profile", baseline.profile, candidate.profile, "same profile", OK))
    rows += _environment_rows(b_env, c_env)
    rows += _provenance_rows(section(b, "provenance"), section(c, "provenance"))
    rows += mnist_rows(section(b, "mnist"), section(c, "mnist"), tol)
    rows += bidaf_rows(section(b, "bidaf"), section(c, "bidaf"), tol)
    rows += evidence_rows(b, c, tol, incomparable)
    rows += _timing_rows(section(b, "timings"), section(c, "timings"), tol, incomparable)
    rows += _ratio_rows(section(b, "ratios"), section(c, "ratios"),
                        section(b, "ratio_basis"), section(c, "ratio_basis"), incomparable)
    rows += _test_rows(b, c)
    differing = differing_inputs(b, c)
    if differing:
        tests: Dict[str, Set[str]] = {}
        for data in (b, c):
            for test_id, entry in section(data, "tests").items():
                tests.setdefault(test_id, set()).update(entry.get("cases", []))
        for row in rows:
            hit = sorted(_row_cases(row.metric, tests) & set(differing))
            if hit:
                row.verdict, row.allowed = NOT_COMPARED, f"{hit[0]}: {not_comparable_text(differing[hit[0]])}"
        for case, hashes in differing.items():
            rows.append(GateRow(f"cases.{case}.inputs_sha256", hashes[0], hashes[1], not_comparable_text(hashes),
                                NOT_COMPARED))
    apply_allow_missing(rows, list(allow_missing))
    return GateResult(rows=rows)

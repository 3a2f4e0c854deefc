"""The human-readable report across TensorRT versions and runs (markdown), and writing it.

The gate answers "did this upgrade regress?"; the report answers "what did each run do?", for
release notes and upgrade decisions. It opens with the gate between consecutive runs of one GPU
type and profile. Each run keeps its own label (TensorRT version, GPU, start time) and file
names, so two runs of one version stay apart. `write_report` writes OUT/report.md and the charts
(charts.py); without matplotlib (the GPU kit has none) the markdown is still written. The runs
and what is read from them are runs.py.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..fileio import atomic_write_text
from .charts import matplotlib_available, plot_phases, plot_refit_tax, plot_refit_vs_rebuild
from .formatting import md, md_cell, one_line, pct as _pct, ratio as _ratio, seconds as _seconds
from .rules import GateRefused, compare, test_outcomes
from .runs import (Record, Run, bidaf_keys_of, case_refits, cases_of, load_runs, make_runs, model_timings,
                   models_of, phases_of, run_subject, run_time, tax_and_floor)
from .schema import ResultsFileError
from .verdicts import GateResult

REPORT_NAME = "report.md"
PLOT_NAME = "refit_vs_rebuild.png"
PHASES_PLOT_NAME = "phases.png"
DEFAULT_OUT = "refit_report"

#: Exit codes of run_report.
EXIT_OK = 0
EXIT_NO_PLOT = 1
#: what the report says (and exits EXIT_NO_PLOT) where matplotlib is missing
NO_CHARTS = "matplotlib is not installed, no charts written"
EXIT_UNUSABLE = EXIT_UNREADABLE = 2


# --------------------------------------------------------------------------------------
# Chart file names and markdown tables
# --------------------------------------------------------------------------------------

def tax_plot_name(run: Run) -> str:
    """The file name of one run's refit tax chart: refit_tax_<version-GPU-time>.png (unique per run)."""
    return f"refit_tax_{run.slug}.png"


class Markdown(str):
    """Cell text already markdown (escaped where it came from data): _table keeps it as it is."""


def _cell(value: Any) -> str:
    return value if isinstance(value, Markdown) else md_cell(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> List[str]:
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


# --------------------------------------------------------------------------------------
# The gate between consecutive runs
# --------------------------------------------------------------------------------------

@dataclass
class Comparison:
    """A run against the run before it of the same GPU type and profile: the result, or why not."""

    baseline: Run
    candidate: Run
    result: Optional[GateResult] = None
    why_not: str = ""


def _gpu_type(run: Run) -> str:
    return " ".join(str(run.record.environment.gpu_name or "").split()).casefold()


def consecutive_comparisons(runs: Sequence[Run]) -> Tuple[List[Comparison], List[Run]]:
    """The gate (default tolerances) of each run against the one before it of the same GPU type,
    profile and subject (run_subject); and the runs that have no such partner."""
    groups: Dict[Tuple[str, str, str], List[Run]] = {}
    for run in runs:
        groups.setdefault((_gpu_type(run), run.record.profile, run_subject(run)), []).append(run)
    comparisons: List[Comparison] = []
    alone: List[Run] = []
    for members in groups.values():
        if len(members) == 1:
            alone.append(members[0])
        for base, cand in zip(members, members[1:]):
            try:
                comparisons.append(Comparison(base, cand, compare(base.record, cand.record)))
            except GateRefused as exc:
                comparisons.append(Comparison(base, cand, why_not=f"not comparable: {one_line(exc)}"))
    return comparisons, alone


def _gate_lines(runs: Sequence[Run]) -> List[str]:
    comparisons, alone = consecutive_comparisons(runs)
    lines = ["## Gate between consecutive runs", ""]
    if not comparisons:
        lines.append("No two runs of one GPU type and profile: nothing to gate.")
    else:
        failed = [c for c in comparisons if c.result is not None and not c.result.passed]
        refused = [c for c in comparisons if c.result is None]
        regressions = sum(len(c.result.regressions) for c in failed)
        head = (f"**{len(failed)} of {len(comparisons)} comparison(s) FAILED** ({regressions} regression(s))"
                if failed else f"**All {len(comparisons) - len(refused)} comparable pair(s) passed**")
        if refused:
            head += f"; {len(refused)} pair(s) not comparable"
        lines += [head + ". Each run is gated against the run before it of the same GPU type and profile "
                  "(suite runs with suite runs, `check` runs of one model with each other; "
                  "`python -m refit_core gate BASELINE CANDIDATE`, default tolerances).", ""]
        rows = []
        for c in comparisons:
            if c.result is None:
                verdict = Markdown(md(c.why_not))
            elif c.result.passed:
                verdict = Markdown(f"passed: {md(c.result.verdict_line().split(': ', 1)[1])}")
            else:
                verdict = Markdown(f"**FAILED**: {md(c.result.verdict_line().split(': ', 1)[1])}")
            rows.append([c.baseline.label, c.candidate.label, verdict])
        lines += _table(["baseline", "candidate", "gate"], rows)
        for c in failed:
            lines += ["", f"### Regressions and missing evidence: {md(c.baseline.label)} to {md(c.candidate.label)}",
                      ""]
            lines += _table(["status", "key", "baseline", "candidate", "allowed"],
                            [[Markdown(f"**{md(r.verdict)}**"), r.metric, r.baseline, r.candidate, r.allowed]
                             for r in c.result.failing])
    if alone:
        lines.append("")
    for run in alone:
        lines.append(f"- {md(run.label)} ({md(run_subject(run))}, {md(run.record.profile)} profile): no other run "
                     "of this GPU type, profile and subject to gate against.")
    return lines


# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------

def _tax_lines(runs: Sequence[Run], with_plots: bool) -> List[str]:
    lines = ["", "## Refit tax and refit floor", "",
             "Refit tax: inference latency of the REFIT engine / the same model built without REFIT "
             "(medians, GPU side, one run). Refit floor: the bytes of the weights a refit is given / the "
             "measured host-to-device bandwidth; refit/floor says how far a refit is from moving its bytes.", ""]
    rows = [(run, case, tax, floor) for run in runs for case, tax, floor in tax_and_floor(run)]
    if not rows:
        return lines + ["No record here has refit tax or floor measurements (suites before they existed)."]
    order = {id(run): i for i, run in enumerate(runs)}
    body = []
    for run, case, tax, floor in sorted(rows, key=lambda r: (r[1], order[id(r[0])])):
        mb, r = floor.get("weight_bytes"), tax.get("ratio")
        body.append([case, run.label, tax.get("precision") or floor.get("precision") or "-",
                     f"x{float(r):.3f}" if r is not None else "-", _seconds(floor.get("refit_median_s")),
                     f"{mb / 1e6:.3f}" if mb is not None else "-", _seconds(floor.get("floor_s")),
                     _ratio(floor.get("ratio"))])
    lines += _table(["case", "run", "precision", "refit tax", "refit median", "weights (MB)", "H2D floor",
                     "refit/floor"], body)
    if with_plots:
        lines.append("")
        lines += [f"![refit tax and refit/floor, {md(run.label)}]({tax_plot_name(run)})"
                  for run in runs if tax_and_floor(run)]
    return lines


def _phase_lines(runs: Sequence[Run], plot_name: Optional[str]) -> List[str]:
    """Where each run's wall time went (phases: builds ahead, each case's checks, benchmarks)."""
    lines = ["", "## Where the time went", ""]
    if not any(run.record.phases for run in runs):
        return lines + ["No record here has phase timings."]
    for run in runs:
        total, phases = phases_of(run)
        if total is None and not phases:
            lines.append(f"- {md(run.label)}: no phase timings")
            continue
        parts = ", ".join(f"{md(name)} {_seconds(s) if s else '0 s'}"
                          for name, s in sorted(phases.items(), key=lambda kv: -kv[1]))
        whole = total if total is not None else sum(phases.values())
        lines.append(f"- {md(run.label)} ({md(run.record.profile)} profile): "
                     f"{_seconds(whole) if whole else '0 s'} in all; {parts or '-'}")
    if plot_name:
        lines += ["", f"![wall time per phase and run]({plot_name})"]
    return lines


def _tests_line(data: Dict[str, Any]) -> str:
    outcomes = [outcome for outcome, _ in test_outcomes(data).values()]
    return f"{outcomes.count('passed')} passed, {outcomes.count('failed')} failed, {outcomes.count('skipped')} skipped"


# --------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------

def build_markdown(records: Sequence[Record], plot_name: Optional[str] = PLOT_NAME,
                   phases_plot_name: Optional[str] = None) -> str:
    """The report: the gate between consecutive runs, one table row per run, refit per case, tests,
    timings used, refit tax, phases, sources. plot_name=None: no chart is linked."""
    runs = make_runs(records)
    models = models_of([run for run in runs if run_subject(run) == "suite"])  # check runs: under "Refit per case"
    bidaf_keys = bidaf_keys_of(runs)

    lines = ["# TensorRT refit results across versions", "",
             f"{len(runs)} run(s). Accuracies and exact match are percentages; timings are medians unless stated.",
             ""]
    lines += _gate_lines(runs)

    header = ["TensorRT", "GPU", "started", "MNIST before", "MNIST after"]
    for key in bidaf_keys:
        header += [f"BiDAF {key} answer", f"BiDAF {key} EM TRT / ORT"]
    for model in models:
        header += [f"{model} refit median", f"{model} first refit",
                   f"{model} rebuild median", f"{model} rebuild/refit"]
    body = []
    for run in runs:
        env, mnist = run.record.environment, run.record.mnist
        row = [env.tensorrt_version or "unknown", env.gpu_name or "-", run_time(run.record),
               _pct(mnist.accuracy_before if mnist else None), _pct(mnist.accuracy_after if mnist else None)]
        for key in bidaf_keys:
            entry = run.record.bidaf.get(key)
            answer = entry.answer_after_refit if entry else None
            row.append(f'"{one_line(answer)}"' if answer is not None else "-")
            row.append(f"{_pct(entry.heldout_exact_match_trt)} / {_pct(entry.heldout_exact_match_ort)}"
                       if entry else "-")
        for model in models:
            t = model_timings(run.data, model)
            row += [_seconds(t["refit_median_s"]), _seconds(t["first_refit_s"]),
                    _seconds(t["rebuild_median_s"]), _ratio(t["ratio"])]
        body.append(row)
    lines += ["", "## Runs", ""] + _table(header, body)

    cases = cases_of(runs)
    lines += ["", "## Refit per case", ""]
    if cases:
        rows = []
        for case in cases:
            for run in runs:
                entry = case_refits(run).get(case)
                if entry:
                    rows.append([case, run.label, _seconds(entry["refit_s"]), entry["source"],
                                 _seconds(entry["rebuild_s"]), _ratio(entry["ratio"])])
        lines += _table(["case", "run", "refit median", "from", "rebuild median", "rebuild/refit"], rows)
        if plot_name:
            lines += ["", f"![refit time and rebuild/refit per case and run]({plot_name})"]
    else:
        lines.append("No record here has refit timings.")

    lines += ["", "## Tests", ""]
    lines += [f"- {md(run.label)}: {_tests_line(run.data)}" for run in runs]

    if models:
        lines += ["", "## Timings used", ""]
        for model in models:
            used = set()
            for run in runs:
                t = model_timings(run.data, model)
                used.add((t["refit_name"] or "-", t["rebuild_name"] or "-"))
            for refit_name, rebuild_name in sorted(used):
                lines.append(f"- {md(model)}: refit {md(refit_name)}, rebuild {md(rebuild_name)}")

    lines += _tax_lines(runs, with_plots=bool(plot_name))
    lines += _phase_lines(runs, phases_plot_name if plot_name else None)

    lines += ["", "## Sources", ""]
    for run in runs:
        text = f"- {md(run.label)}: {md(run.path)}, created {md(run.record.created)}"
        if run.record.note:
            text += f" - note: {md(run.record.note)}"
        lines.append(text)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Writing (the CLI glue is reporting/cli.py)
# --------------------------------------------------------------------------------------

def write_report(paths: Sequence[str], out_dir: Optional[str] = None) -> int:
    """Write OUT/report.md (atomically) and the charts; print their paths.

    Exit code 0 when all are written, 1 when the charts could not be made (no matplotlib; the
    markdown is still written), 2 for no record, a damaged record or an unwritable OUT (one line).
    """
    try:
        loaded, notes = load_runs(paths)
    except ResultsFileError as exc:
        print(f"report: {one_line(exc)}", file=sys.stderr)
        return EXIT_UNREADABLE
    for note in notes:
        print(note, file=sys.stderr)
    runs = make_runs(loaded)
    out = Path(out_dir or DEFAULT_OUT)
    charts = matplotlib_available()
    with_phases = charts and any(run.record.phases for run in runs)
    report_path = out / REPORT_NAME
    try:
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"{out} exists and is not a directory")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(report_path, build_markdown(runs, PLOT_NAME if charts else None,
                                                      PHASES_PLOT_NAME if with_phases else None))
        print(report_path)
        if not charts:
            print(f"report: {NO_CHARTS} ({PLOT_NAME}, ...); "
                  "pip install matplotlib", file=sys.stderr)
            return EXIT_NO_PLOT
        print(plot_refit_vs_rebuild(runs, out / PLOT_NAME))
        if with_phases:
            print(plot_phases(runs, out / PHASES_PLOT_NAME))
        for run in runs:
            if tax_and_floor(run):
                print(plot_refit_tax(run, out / tax_plot_name(run)))
    except OSError as exc:
        print(f"report: cannot write to {out}: {one_line(exc.strerror or exc)}", file=sys.stderr)
        return EXIT_UNREADABLE
    return EXIT_OK

"""Human-readable report across TensorRT versions and runs: markdown and charts.

The gate answers "did this upgrade regress?"; the report answers "what did each run do?", for
release notes and upgrade decisions. It opens with the gate between consecutive runs of one GPU
type and profile. Each run keeps its own label (TensorRT version, GPU, start time) and file
names, so two runs of one version stay apart. matplotlib is imported only inside the plotting
functions, because the GPU kit has none; without it the markdown is still written.
"""
from __future__ import annotations

import glob
import io
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..fileio import atomic_write_bytes, atomic_write_text
from .formatting import md, md_cell, one_line, pct as _pct, ratio as _ratio, seconds as _seconds
from .record import CHECK_TEST_PREFIX, Record as RecordModel, metric_case
from .rules import GateRefused, as_record, compare, test_outcomes
from .schema import NotARecord, ResultsFileError, load_results, record_dict
from .timings import REBUILD_KIND, REFIT_KIND, derive_ratios, primary_timing, timing_models
from .verdicts import GateResult

REPORT_NAME = "report.md"
PLOT_NAME = "refit_vs_rebuild.png"
PHASES_PLOT_NAME = "phases.png"
DEFAULT_OUT = "refit_report"
#: The phase a run records as its whole wall time (the others are its parts).
TOTAL_PHASE = "total"

#: Exit codes of run_report.
EXIT_OK = 0
EXIT_NO_PLOT = 1
EXIT_UNUSABLE = EXIT_UNREADABLE = 2


@dataclass
class Run:
    """One record in the report: where it came from, its label and a file-name part of its own."""

    path: str
    record: RecordModel
    data: Dict[str, Any] = field(repr=False)
    label: str = ""
    slug: str = ""


Record = Union[Tuple[str, Any], Run]  # (source path, a Record or record data) or a Run


class ReportInputError(ResultsFileError):
    """An argument names nothing usable: no such file or folder, a glob that matches nothing,
    no record among the files."""


# --------------------------------------------------------------------------------------
# Helpers shared by the table and the plot
# --------------------------------------------------------------------------------------

def version_key(version: Optional[str]) -> Tuple[Any, ...]:
    """Sort "8.5.3.1" before "8.6.0" before "10.0.1" (numerically); unknown versions last."""
    if not version:
        return (1, ())
    return (0, tuple(int(n) for n in re.findall(r"\d+", str(version))), str(version))


def run_time(record: RecordModel) -> str:
    """When the run started, to the minute (provenance.started), else the record's date."""
    started = record.provenance.started if record.provenance else None
    if started:
        match = re.match(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})", started)
        if match:
            return f"{match.group(1)} {match.group(2)}"
    return str(record.created)


def run_label(record: RecordModel) -> str:
    """TensorRT version, GPU and start time: what tells two runs apart."""
    env = record.environment
    return f"{env.tensorrt_version or 'unknown'}, {env.gpu_name or 'unknown GPU'}, {run_time(record)}"


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", "".join(ch if ch.isalnum() or ch in ".-" else "-" for ch in text)).strip("-")


def make_runs(records: Sequence[Record]) -> List[Run]:
    """Runs sorted by TensorRT version, GPU, start time and file; each with a unique slug."""
    runs = []
    for item in records:
        if isinstance(item, Run):
            runs.append(item)
            continue
        path, data = item
        record = as_record(data, str(path))
        runs.append(Run(str(path), record, record_dict(record), run_label(record)))
    runs.sort(key=lambda r: (version_key(r.record.environment.tensorrt_version),
                             str(r.record.environment.gpu_name or ""), run_time(r.record), r.path))
    seen: Dict[str, int] = {}
    for run in runs:
        env = run.record.environment
        base = _slug(f"{env.tensorrt_version or 'unknown'}-{env.gpu_name or 'gpu'}-{run_time(run.record)}")
        seen[base] = seen.get(base, 0) + 1
        run.slug = base if seen[base] == 1 else f"{base}-{seen[base]}"
    return runs


def _models(runs: Sequence[Run]) -> List[str]:
    """Every model with refit/rebuild timings in any run, "mnist" first."""
    names = set()
    for run in runs:
        names.update(timing_models(run.data.get("timings") or {}))
    return sorted(names, key=lambda m: (m != "mnist", m))


def _bidaf_keys(runs: Sequence[Run]) -> List[str]:
    keys = {key for run in runs for key in run.record.bidaf}
    return sorted(keys, key=lambda k: (k != "standin", k))


def model_timings(data: Dict[str, Any], model: str) -> Dict[str, Any]:
    """The refit and rebuild figures that stand for one model in one run.

    Returns refit/rebuild medians, min/max, the first refit, the ratio (recorded, else derived)
    and the timing names used, each None when absent.
    """
    timings = data.get("timings") or {}
    # a run names the pair its ratio was taken from ("ratio_basis": {model: [rebuild, refit]});
    # show those timings so the ratio and the medians beside it agree
    basis = (data.get("ratio_basis") or {}).get(model) or [None, None]
    chosen = {REBUILD_KIND: basis[0], REFIT_KIND: basis[1]}
    out: Dict[str, Any] = {}
    for kind in (REFIT_KIND, REBUILD_KIND):
        name = chosen[kind] if chosen[kind] in timings else primary_timing(timings, model, kind)
        entry = (timings.get(name) or {}) if name else {}
        out[f"{kind}_name"] = name
        out[f"{kind}_median_s"] = entry.get("median_s")
        out[f"{kind}_min_s"] = entry.get("min_s")
        out[f"{kind}_max_s"] = entry.get("max_s")
    out["first_refit_s"] = (timings.get(out["refit_name"]) or {}).get("first_s") \
        if out["refit_name"] else None
    ratios = data.get("ratios") or {}
    out["ratio"] = ratios.get(model, derive_ratios(timings).get(model))
    return out


def case_refits(run: Run) -> Dict[str, Dict[str, Any]]:
    """case -> its refit median, where it comes from, its rebuild median and rebuild/refit, for
    every case of a run with a refit time: a model's timings (the pair its ratio is taken from),
    else the case's refit floor measurement (the zoo cases: refit only, no rebuild timed)."""
    out: Dict[str, Dict[str, Any]] = {}
    for model in timing_models(run.data.get("timings") or {}):
        t = model_timings(run.data, model)
        if t["refit_median_s"] is None and t["rebuild_median_s"] is None:
            continue
        out[metric_case(model)] = {"refit_s": t["refit_median_s"], "source": t["refit_name"] or "-",
                                   "rebuild_s": t["rebuild_median_s"], "ratio": t["ratio"]}
    for case, entry in run.record.cases.items():
        if case not in out and entry.refit_floor is not None:
            out[case] = {"refit_s": entry.refit_floor.refit_median_s,
                         "source": f"cases.{case}.refit_floor", "rebuild_s": None, "ratio": None}
    return out


def _cases(runs: Sequence[Run]) -> List[str]:
    names = {case for run in runs for case in case_refits(run)}
    return sorted(names, key=lambda c: (c != "mnist", c))


def tax_and_floor(run: Run) -> List[Tuple[str, Dict[str, Any], Dict[str, Any]]]:
    """(case, refit_tax entry, refit_floor entry) for every case of a run that has either."""
    out = []
    for case, entry in sorted(run.record.cases.items()):
        if entry.refit_tax is not None or entry.refit_floor is not None:
            out.append((case, entry.refit_tax.model_dump() if entry.refit_tax else {},
                        entry.refit_floor.model_dump() if entry.refit_floor else {}))
    return out


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


def run_subject(run: Run) -> str:
    """"suite" for a run of the suite; "check <cases>" for a `check` run (its tests are all
    CHECK_TEST_PREFIX ones): only check runs of the same model are gated against each other."""
    tests = list(run.record.tests)
    if tests and all(t.startswith(CHECK_TEST_PREFIX) for t in tests):
        return "check " + ", ".join(sorted(run.record.cases))
    return "suite"


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


def phases_of(run: Run) -> Tuple[Optional[float], Dict[str, float]]:
    """(the run's total wall time or None, its other phases) from record.phases."""
    phases = dict(run.record.phases)
    return phases.pop(TOTAL_PHASE, None), phases


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
    models = _models([run for run in runs if run_subject(run) == "suite"])  # check runs: under "Refit per case"
    bidaf_keys = _bidaf_keys(runs)

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

    cases = _cases(runs)
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
# Charts
# --------------------------------------------------------------------------------------

def _matplotlib_available() -> bool:
    """The GPU kit has no matplotlib; the markdown is still worth writing there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return False
    return True


def _save(fig: Any, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _seconds_axis(ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter
    # plain labels ("10 ms", "1 s"): readable, and no mathtext (10^x) rendering needed
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: _seconds(value)))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _spans_decades(values: Sequence[float]) -> bool:
    positive = [v for v in values if v and v > 0]
    return bool(positive) and max(positive) / min(positive) >= 10.0


PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def plot_refit_vs_rebuild(records: Sequence[Record], path: Path) -> Path:
    """refit_figure(records) written to `path` as PNG."""
    return _save(refit_figure(records), Path(path))


def refit_figure(records: Sequence[Record]) -> Any:
    """Two panels, one bar per run within each case: the refit median (top) and rebuild/refit
    (bottom), log scale where the values span decades; zoo cases included (their refit time
    comes from the refit floor measurement; they have no rebuild timed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        runs = make_runs(records)
        cases = _cases(runs)
        per_run = [case_refits(run) for run in runs]
        fig = Figure(figsize=(min(16.0, max(8.0, 3.5 + 0.3 * len(cases) * max(1, len(runs)))), 9.0), dpi=100)
        FigureCanvasAgg(fig)
        top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
        width = 0.8 / max(1, len(runs))
        for panel, key, text in ((top, "refit_s", _seconds), (bottom, "ratio", _ratio)):
            shown = [c for c in cases if any(refits.get(c, {}).get(key) for refits in per_run)]
            xs = list(range(len(shown)))
            values = []
            for i, (run, refits) in enumerate(zip(runs, per_run)):
                got = [(x, float(refits[c][key])) for x, c in zip(xs, shown) if c in refits and refits[c][key]]
                if not got:
                    continue
                values += [v for _, v in got]
                bars = panel.bar([x - 0.4 + width * (i + 0.5) for x, _ in got], [v for _, v in got],
                                 width=width * 0.95, color=PALETTE[i % len(PALETTE)], label=_plain_label(run.label))
                panel.bar_label(bars, labels=[text(v) for _, v in got], fontsize=6, rotation=90, padding=2)
            if _spans_decades(values):
                panel.set_yscale("log")
            if values:
                low, high = panel.get_ylim()
                panel.set_ylim(low, high * (3.0 if panel.get_yscale() == "log" else 1.15))  # room for the labels
            else:
                panel.text(0.5, 0.5, "nothing recorded", ha="center", va="center", transform=panel.transAxes)
            panel.set_xticks(xs)
            panel.set_xticklabels([_plain_label(c) for c in shown], rotation=30, ha="right", fontsize=8)
            panel.set_xlabel("case")
            panel.grid(axis="y", which="both", alpha=0.3)
        scale = " (log scale)" if top.get_yscale() == "log" else ""
        top.set_ylabel(f"refit median{scale}")
        _seconds_axis(top)
        top.set_title("Refit median per case and run")
        bottom.set_ylabel("rebuild median / refit median" + (" (log scale)" if bottom.get_yscale() == "log" else ""))
        bottom.set_title("How much cheaper refit is than a rebuild (cases with a rebuild timed)")
        if runs:
            top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, title="run")
        return fig


def plot_phases(records: Sequence[Record], path: Path) -> Path:
    """phases_figure(records) written to `path` as PNG."""
    return _save(phases_figure(records), Path(path))


def phases_figure(records: Sequence[Record]) -> Any:
    """Wall time per phase (stacked horizontal bars, one per run; the recorded total beside it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        runs = [run for run in make_runs(records) if run.record.phases]
        names = sorted({name for run in runs for name in phases_of(run)[1]},
                       key=lambda n: -max(phases_of(r)[1].get(n, 0.0) for r in runs))
        fig = Figure(figsize=(10.0, 2.0 + 0.6 * len(runs)), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ys = list(range(len(runs)))
        left = [0.0] * len(runs)
        for k, name in enumerate(names):
            widths = [phases_of(run)[1].get(name, 0.0) for run in runs]
            ax.barh(ys, widths, left=left, color=PALETTE[k % len(PALETTE)], label=_plain_label(name),
                    hatch="//" if k >= len(PALETTE) else None)
            left = [a + b for a, b in zip(left, widths)]
        for y, run in zip(ys, runs):
            total = phases_of(run)[0]
            if total is not None:
                ax.plot([total], [y], marker="|", markersize=18, color="black")
        ax.set_yticks(ys)
        ax.set_yticklabels([_plain_label(run.label) for run in runs], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("wall time (s); black mark: the run's recorded total")
        ax.set_ylabel("run")
        ax.set_title("Where each run's wall time went (phases)")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, title="phase")
        return fig


def plot_refit_tax(run: Run, path: Path) -> Path:
    """One run's chart: refit tax per case (bars, a line at x1) and refit/floor (log scale)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
        rows = tax_and_floor(run)
        names = [_plain_label(case) for case, _, _ in rows]
        fig = Figure(figsize=(max(7.0, 0.55 * len(rows) + 2.5), 7.5), dpi=100)
        FigureCanvasAgg(fig)
        top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
        xs = list(range(len(rows)))
        colors = {"fp32": "#1f77b4", "tf32": "#2ca02c", "fp16": "#ff7f0e"}
        prec = [(tax.get("precision") or floor.get("precision") or "fp32") for _, tax, floor in rows]
        taxes = [float(tax.get("ratio") or 0.0) for _, tax, _ in rows]
        floors = [float(floor.get("ratio") or 0.0) for _, _, floor in rows]
        top.bar(xs, taxes, color=[colors.get(p, "#7f7f7f") for p in prec])
        top.axhline(1.0, color="black", linewidth=0.8)
        top.set_ylabel("REFIT / no REFIT latency")
        top.set_title(_plain_label(f"Refit tax per case, {run.label}"))
        bottom.bar(xs, [f if f > 0 else float("nan") for f in floors], color=[colors.get(p, "#7f7f7f") for p in prec])
        log = _spans_decades(floors)
        if log:
            bottom.set_yscale("log")
        bottom.set_ylabel("refit median / H2D floor" + (" (log scale)" if log else ""))
        bottom.set_title("Refit time over the host-to-device floor of its weight bytes")
        for ax in (top, bottom):
            ax.set_xticks(xs)
            ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
            ax.set_xlabel("case")
            ax.grid(axis="y", alpha=0.3)
        top.legend(handles=[Patch(color=c, label=p) for p, c in colors.items()], fontsize=8, title="precision")
        return _save(fig, Path(path))


def _plain_label(text: Any) -> str:
    """Chart text: one line, and "$" escaped so matplotlib never parses it as mathtext."""
    return one_line(text).replace("$", r"\$")


# --------------------------------------------------------------------------------------
# Inputs and writing (the CLI glue is reporting/cli.py)
# --------------------------------------------------------------------------------------

def input_files(arguments: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(files, notes): the files the arguments name (a file; a folder: the files directly in it;
    a glob: its matches), each once, in order; notes: a line for each sub-folder left out.
    ReportInputError for an argument that names nothing."""
    files: List[str] = []
    notes: List[str] = []
    for argument in arguments:
        if os.path.isdir(argument):
            entries = sorted(os.path.join(argument, name) for name in os.listdir(argument))
            found = [e for e in entries if os.path.isfile(e)]
            notes += [f"report: skipped {e}: a folder (name it to include its files)"
                      for e in entries if os.path.isdir(e)]
        elif os.path.exists(argument):
            found = [argument]
        elif glob.has_magic(argument):
            found = sorted(m for m in glob.glob(argument) if os.path.isfile(m))
            if not found:
                raise ReportInputError(f"{one_line(argument)}: no file matches")
        else:
            raise ReportInputError(f"{one_line(argument)}: no such file or folder")
        seen = {os.path.realpath(f) for f in files}
        files += [f for f in found if os.path.realpath(f) not in seen]
    return files, notes


def load_runs(arguments: Sequence[str]) -> Tuple[List[Tuple[str, RecordModel]], List[str]]:
    """(path, record) of every record among the files the arguments name, and one line for each
    file skipped as no record (NotARecord: a log, a benchmark file, an older schema).
    ReportInputError when no record is left; ResultsFileError for a damaged record or an unreadable file."""
    files, notes = input_files(arguments)
    records = []
    for path in files:
        try:
            records.append((path, load_results(path)))
        except NotARecord as exc:
            notes.append(f"report: skipped {one_line(exc)}")
    if not records:
        raise ReportInputError(f"no results record in {', '.join(one_line(a) for a in arguments)} "
                               f"({len(files)} file(s), none a schema-3 record)")
    return records, notes


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
    charts = _matplotlib_available()
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
            print(f"report: matplotlib is not installed, no charts written ({PLOT_NAME}, ...); "
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

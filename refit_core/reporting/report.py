"""Human-readable report across TensorRT versions: a markdown table and a refit-vs-rebuild chart.

The gate answers "did this upgrade regress?"; the report answers "what did each version
do?", for release notes and upgrade decisions. matplotlib is imported only inside the
plotting function, because the GPU kit has none; without it the markdown is still written.
"""
from __future__ import annotations

import io
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..fileio import atomic_write_bytes, atomic_write_text
from .formatting import md, md_cell, one_line, pct as _pct, ratio as _ratio, seconds as _seconds
from .rules import test_outcomes
from .schema import ResultsFileError, load_results, record_dict
from .timings import REBUILD_KIND, REFIT_KIND, derive_ratios, primary_timing, timing_models

REPORT_NAME = "report.md"
PLOT_NAME = "refit_vs_rebuild.png"
DEFAULT_OUT = "refit_report"

#: Exit codes of run_report.
EXIT_OK = 0
EXIT_NO_PLOT = 1
EXIT_UNUSABLE = EXIT_UNREADABLE = 2

Record = Tuple[str, Dict[str, Any]]  # (source path, loaded results)


# --------------------------------------------------------------------------------------
# Helpers shared by the table and the plot
# --------------------------------------------------------------------------------------

def version_key(version: Optional[str]) -> Tuple[Any, ...]:
    """Sort "8.5.3.1" before "8.6.0" before "10.0.1" (numerically); unknown versions last."""
    if not version:
        return (1, ())
    return (0, tuple(int(n) for n in re.findall(r"\d+", str(version))), str(version))


def _env(data: Dict[str, Any]) -> Dict[str, Any]:
    env = data.get("environment")
    return env if isinstance(env, dict) else {}


def sort_records(records: Sequence[Record]) -> List[Record]:
    """Order runs by TensorRT version, then GPU, then file name."""
    return sorted(records, key=lambda r: (version_key(_env(r[1]).get("tensorrt_version")),
                                          str(_env(r[1]).get("gpu_name", "")), r[0]))


def _models(records: Sequence[Record]) -> List[str]:
    """Every model with refit/rebuild timings in any record, "mnist" first."""
    names = set()
    for _, data in records:
        names.update(timing_models(data.get("timings") or {}))
    return sorted(names, key=lambda m: (m != "mnist", m))


def _bidaf_keys(records: Sequence[Record]) -> List[str]:
    keys = set()
    for _, data in records:
        keys.update((data.get("bidaf") or {}).keys())
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


def tax_and_floor(data: Dict[str, Any]) -> List[Tuple[str, Dict[str, Any], Dict[str, Any]]]:
    """(case, refit_tax entry, refit_floor entry) for every case of a record that has either."""
    out = []
    for case, checks in sorted((data.get("cases") or {}).items()):
        if not isinstance(checks, dict):
            continue
        tax, floor = checks.get("refit_tax"), checks.get("refit_floor")
        if isinstance(tax, dict) or isinstance(floor, dict):
            out.append((case, tax if isinstance(tax, dict) else {}, floor if isinstance(floor, dict) else {}))
    return out


def tax_plot_name(data: Dict[str, Any]) -> str:
    """The file name of one record's refit tax chart: refit_tax_<TensorRT version>.png."""
    label = "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in _label(data))
    return f"refit_tax_{label}.png"


def _tax_lines(records: Sequence[Record], with_plots: bool) -> List[str]:
    lines = ["", "## Refit tax and refit floor", "",
             "Refit tax: inference latency of the REFIT engine / the same model built without REFIT "
             "(medians, GPU side, one run). Refit floor: the bytes of the weights a refit is given / the "
             "measured host-to-device bandwidth; refit/floor says how far a refit is from moving its bytes.", ""]
    rows = [(d, case, tax, floor) for _, d in records for case, tax, floor in tax_and_floor(d)]
    if not rows:
        return lines + ["No record here has refit tax or floor measurements (suites before they existed)."]
    header = ["case", "TensorRT", "precision", "refit tax", "refit median", "weights (MB)", "H2D floor",
              "refit/floor"]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for data, case, tax, floor in sorted(rows, key=lambda r: (r[1], version_key(_env(r[0]).get("tensorrt_version")))):
        precision = tax.get("precision") or floor.get("precision") or "-"
        mb = floor.get("weight_bytes")
        r = tax.get("ratio")
        cells = [case, _label(data), precision, f"x{float(r):.3f}" if isinstance(r, (int, float)) else "-", _seconds(floor.get("refit_median_s")),
                 f"{mb / 1e6:.3f}" if isinstance(mb, (int, float)) else "-", _seconds(floor.get("floor_s")),
                 _ratio(floor.get("ratio"))]
        lines.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    if with_plots:
        lines.append("")
        for _, data in records:
            if tax_and_floor(data):
                lines.append(f"![refit tax and refit/floor, TensorRT {md(_label(data))}]({tax_plot_name(data)})")
    return lines


def _phase_lines(records: Sequence[Record]) -> List[str]:
    """Where each run's wall time went (phases: builds ahead, each case's checks, benchmarks)."""
    lines = ["", "## Where the time went", ""]
    runs = [(data, data.get("phases") or {}) for _, data in records]
    if not any(phases for _, phases in runs):
        return lines + ["No record here has phase timings."]
    for data, phases in runs:
        total = sum(phases.values())
        parts = ", ".join(f"{md(name)} {_seconds(s) if s else '0 s'}" for name, s in
                          sorted(phases.items(), key=lambda kv: -kv[1]))
        lines.append(f"- TensorRT {md(_label(data))} ({md(data.get('profile', '-'))} profile): "
                     f"{_seconds(total) if total else '0 s'} in phases: {parts or '-'}")
    return lines


def _tests_line(data: Dict[str, Any]) -> str:
    outcomes = [outcome for outcome, _ in test_outcomes(data).values()]
    counts = {k: outcomes.count(k) for k in ("passed", "failed", "skipped")}
    return (f"{counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed, "
            f"{counts.get('skipped', 0)} skipped")


def _label(data: Dict[str, Any]) -> str:
    env = _env(data)
    return str(env.get("tensorrt_version") or "unknown")


# --------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------

def build_markdown(records: Sequence[Record], plot_name: Optional[str] = PLOT_NAME) -> str:
    """The report text: one table row per run (TensorRT version), then tests, timings used, sources."""
    records = sort_records(records)
    models = _models(records)
    bidaf_keys = _bidaf_keys(records)

    header = ["TensorRT", "GPU", "MNIST before", "MNIST after"]
    for key in bidaf_keys:
        header += [f"BiDAF {key} answer", f"BiDAF {key} EM TRT / ORT"]
    for model in models:
        header += [f"{model} refit median", f"{model} first refit",
                   f"{model} rebuild median", f"{model} rebuild/refit"]

    lines = ["# TensorRT refit results across versions", ""]
    lines.append(f"{len(records)} results file(s). Accuracies and exact match are percentages; "
                 "timings are medians unless stated.")
    lines.append("")
    lines.append("| " + " | ".join(md_cell(h) for h in header) + " |")
    lines.append("|" + "|".join(" --- " for _ in header) + "|")
    for _, data in records:
        env = _env(data)
        mnist = data.get("mnist") or {}
        row = [_label(data), env.get("gpu_name", "-"),
               _pct(mnist.get("accuracy_before")), _pct(mnist.get("accuracy_after"))]
        for key in bidaf_keys:
            entry = (data.get("bidaf") or {}).get(key) or {}
            answer = entry.get("answer_after_refit")
            row.append(f'"{one_line(answer)}"' if answer is not None else "-")
            row.append(f"{_pct(entry.get('heldout_exact_match_trt'))} / "
                       f"{_pct(entry.get('heldout_exact_match_ort'))}" if entry else "-")
        for model in models:
            t = model_timings(data, model)
            ratio = t["ratio"]
            row += [_seconds(t["refit_median_s"]), _seconds(t["first_refit_s"]),
                    _seconds(t["rebuild_median_s"]),
                    _ratio(ratio)]
        lines.append("| " + " | ".join(md_cell(c) for c in row) + " |")

    lines += ["", "## Tests", ""]
    for path, data in records:
        gpu = _env(data).get("gpu_name")
        lines.append(f"- TensorRT {md(_label(data))}" + (f" ({md(gpu)})" if gpu else "")
                     + f": {_tests_line(data)}")

    if models:
        lines += ["", "## Timings used", ""]
        for model in models:
            used = set()
            for _, data in records:
                t = model_timings(data, model)
                used.add((t["refit_name"] or "-", t["rebuild_name"] or "-"))
            for refit_name, rebuild_name in sorted(used):
                lines.append(f"- {md(model)}: refit {md(refit_name)}, rebuild {md(rebuild_name)}")
        if plot_name:
            lines += ["", f"![refit vs rebuild time per TensorRT version]({plot_name})"]

    lines += _tax_lines(records, with_plots=bool(plot_name))
    lines += _phase_lines(records)

    lines += ["", "## Sources", ""]
    for path, data in records:
        note = data.get("note")
        created = data.get("created")
        text = f"- {md(Path(path).name)}" + (f", created {md(created)}" if created else "")
        if note:
            text += f" - note: {md(note)}"
        lines.append(text)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Plot
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


def plot_refit_vs_rebuild(records: Sequence[Record], path: Path) -> Path:
    """Grouped bars (log scale): refit vs rebuild median per TensorRT version and model.

    Uses the Agg canvas directly rather than pyplot, so no global backend state is touched
    and it works headless. Whiskers show min..max of the rounds.
    """
    # matplotlib 3.9 calls pyparsing APIs that newer pyparsing deprecates; the warnings are
    # not actionable for users of this report, so they are kept out of their output.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _plot(records, Path(path))


def _plot(records: Sequence[Record], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    records = sort_records(records)
    models = _models(records)
    labels = [_plain_label(f"TRT {_label(d)}") + "\n" + _plain_label(_env(d).get("gpu_name", ""))
              for _, d in records]
    series = [(m, k) for m in models for k in (REFIT_KIND, REBUILD_KIND)]

    fig = Figure(figsize=(max(6.0, 1.6 + 1.3 * len(records) * max(1, len(models))), 4.8),
                 dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(series))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    drawn = 0
    for index, (model, kind) in enumerate(series):
        color = palette[models.index(model) % len(palette)]
        xs, heights, lows, highs = [], [], [], []
        for group, (_, data) in enumerate(records):
            t = model_timings(data, model)
            median = t[f"{kind}_median_s"]
            if median is None or float(median) <= 0:
                continue
            median = float(median)
            low = float(t[f"{kind}_min_s"] if t[f"{kind}_min_s"] is not None else median)
            high = float(t[f"{kind}_max_s"] if t[f"{kind}_max_s"] is not None else median)
            xs.append(group - 0.4 + width * (index + 0.5))
            heights.append(median)
            lows.append(max(0.0, median - low))
            highs.append(max(0.0, high - median))
        if not xs:
            continue
        drawn += len(xs)
        refit = kind == REFIT_KIND
        ax.bar(xs, heights, width=width * 0.95, color=color, alpha=1.0 if refit else 0.45,
               hatch=None if refit else "//", edgecolor=color, label=_plain_label(f"{model} {kind}"),
               yerr=[lows, highs], capsize=2, error_kw={"elinewidth": 0.8})

    ax.set_xticks(list(range(len(records))))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_title("Refit vs rebuild time per TensorRT version (median, min..max)")
    if drawn:
        ax.set_yscale("log")
        # Plain labels ("10 ms", "1 s"): readable, and no mathtext (10^x) rendering needed.
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: _seconds(value)))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel("time (log scale)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        ax.grid(axis="y", which="both", alpha=0.3)
    else:
        ax.text(0.5, 0.5, "no refit/rebuild timings in these results", ha="center",
                va="center", transform=ax.transAxes)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_refit_tax(data: Dict[str, Any], path: Path) -> Path:
    """One record's chart: refit tax per case (bars, a line at x1) and refit/floor (log scale)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
        rows = tax_and_floor(data)
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
        top.set_title(_plain_label(f"Refit tax per case, TensorRT {_label(data)} ({_env(data).get('gpu_name', '')})"))
        bottom.bar(xs, [f if f > 0 else float("nan") for f in floors], color=[colors.get(p, "#7f7f7f") for p in prec])
        if any(f > 0 for f in floors):
            bottom.set_yscale("log")
        bottom.set_ylabel("refit median / H2D floor (log)")
        bottom.set_title("Refit time over the host-to-device floor of its weight bytes")
        for ax in (top, bottom):
            ax.set_xticks(xs)
            ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
            ax.grid(axis="y", alpha=0.3)
        handles = [Patch(color=c, label=p) for p, c in colors.items()]
        top.legend(handles=handles, fontsize=8)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _plain_label(text: Any) -> str:
    """Chart text: one line, and "$" escaped so matplotlib never parses it as mathtext."""
    return one_line(text).replace("$", r"\$")


# --------------------------------------------------------------------------------------
# Writing (the CLI glue is reporting/cli.py)
# --------------------------------------------------------------------------------------

def write_report(paths: Sequence[str], out_dir: Optional[str] = None) -> int:
    """Write OUT/report.md (atomically) and OUT/refit_vs_rebuild.png; print their paths.

    Exit code 0 when both are written, 1 when the PNG could not be made (no matplotlib; the
    markdown is still written), 2 for an unreadable record or an unwritable OUT (one line).
    """
    records: List[Record] = []
    try:
        for path in paths:
            records.append((str(path), record_dict(load_results(path))))
    except ResultsFileError as exc:
        print(f"report: {one_line(exc)}", file=sys.stderr)
        return EXIT_UNREADABLE
    out = Path(out_dir or DEFAULT_OUT)
    plot_path: Optional[Path] = out / PLOT_NAME if _matplotlib_available() else None
    report_path = out / REPORT_NAME
    try:
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"{out} exists and is not a directory")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(report_path, build_markdown(records, PLOT_NAME if plot_path else None))
        print(report_path)
        if plot_path is None:
            print(f"report: matplotlib is not installed, {PLOT_NAME} not written "
                  "(pip install matplotlib)", file=sys.stderr)
            return EXIT_NO_PLOT
        plot_refit_vs_rebuild(records, plot_path)
        for _, data in records:
            if tax_and_floor(data):
                print(plot_refit_tax(data, out / tax_plot_name(data)))
    except OSError as exc:
        print(f"report: cannot write to {out}: {one_line(exc.strerror or exc)}", file=sys.stderr)
        return EXIT_UNREADABLE
    print(plot_path)
    return EXIT_OK

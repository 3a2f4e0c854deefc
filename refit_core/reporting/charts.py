"""The report's charts (PNG): refit median and rebuild/refit per case and run, wall time per
phase, and each run's refit tax and refit/floor.

matplotlib is imported only inside these functions, because the GPU kit has none; report.py
asks `matplotlib_available()` first and still writes the markdown without it.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any, Sequence

from ..fileio import atomic_write_bytes
from .formatting import one_line, ratio as _ratio, seconds as _seconds
from .runs import Record, Run, case_refits, cases_of, make_runs, phases_of, tax_and_floor


def matplotlib_available() -> bool:
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
        cases = cases_of(runs)
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

"""The runs a report is about: the records the arguments name, each with its label and file-name
part, sorted; and what the report reads from each (the figures of a model's timings, refit per
case, refit tax and floor, phases, whether it is a suite or a `check` run).

The markdown (report.py) and the charts (charts.py) both read the runs through these.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .formatting import one_line
from .record import CHECK_TEST_PREFIX, Record as RecordModel, metric_case
from .rules import as_record
from .schema import NotARecord, ResultsFileError, load_results, record_dict
from .timings import REBUILD_KIND, REFIT_KIND, derive_ratios, primary_timing, timing_models

#: The phase a run records as its whole wall time (the others are its parts).
TOTAL_PHASE = "total"


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


def models_of(runs: Sequence[Run]) -> List[str]:
    """Every model with refit/rebuild timings in any run, "mnist" first."""
    names = set()
    for run in runs:
        names.update(timing_models(run.data.get("timings") or {}))
    return sorted(names, key=lambda m: (m != "mnist", m))


def bidaf_keys_of(runs: Sequence[Run]) -> List[str]:
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


def cases_of(runs: Sequence[Run]) -> List[str]:
    """Every case with a refit time in any run (case_refits), "mnist" first."""
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


def phases_of(run: Run) -> Tuple[Optional[float], Dict[str, float]]:
    """(the run's total wall time or None, its other phases) from record.phases."""
    phases = dict(run.record.phases)
    return phases.pop(TOTAL_PHASE, None), phases


def run_subject(run: Run) -> str:
    """"suite" for a run of the suite; "check <cases>" for a `check` run (its tests are all
    CHECK_TEST_PREFIX ones): only check runs of the same model are gated against each other."""
    tests = list(run.record.tests)
    if tests and all(t.startswith(CHECK_TEST_PREFIX) for t in tests):
        return "check " + ", ".join(sorted(run.record.cases))
    return "suite"


# --------------------------------------------------------------------------------------
# Finding and loading the records
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

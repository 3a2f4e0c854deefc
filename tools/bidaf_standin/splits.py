"""The stand-in's evaluation table: splits a-c x (stand-in, regex baseline, overlap+offset
heuristic) and its goals (the exact-match floors the tests hold the committed file to are
refit_core.samples.bidaf.reference.floors).

    python -m tools.bidaf_standin.splits [--measure]

No torch: ONNX Runtime on the committed file (reference.py) and pure-Python baselines,
so the GPU kit (CPython 3.9) can measure and print it too.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

from refit_core.samples.bidaf import data as rc
from .baselines import (OverlapOffsetBaseline, RegexBaseline,
                                                     baseline_exact_match)
from refit_core.samples.bidaf.reference import load_metadata

# The stand-in's goals: exact match per split, and the lead over the best baseline on split b.
GOALS = {"a": 0.90, "b": 0.75, "c": 0.75}
GOAL_MARGIN_SPLIT = "b"
GOAL_MARGIN = 0.20
ANSWERERS = ("standin", "regex", "heuristic")


def standin_exact_match(model_path, examples: Sequence[rc.Example]) -> float:
    from refit_core.samples.bidaf.reference import exact_match
    return exact_match(model_path, examples)


def measure(model_path: Union[str, Path, bytes], n: int = rc.EVAL_SIZE,
            train: Optional[Sequence[rc.Example]] = None) -> Dict[str, Dict[str, object]]:
    """{split: {title, n, standin, regex, heuristic}} measured now (ONNX Runtime)."""
    train = rc.train_examples() if train is None else train
    regex, heuristic = RegexBaseline(), OverlapOffsetBaseline(train)
    table: Dict[str, Dict[str, object]] = {}
    for split in rc.EVAL_SPLITS:
        examples = rc.split_examples(split, n)
        table[split] = {
            "title": rc.SPLIT_TITLES[split], "n": len(examples),
            "standin": round(standin_exact_match(model_path, examples), 4),
            "regex": round(baseline_exact_match(regex, examples), 4),
            "heuristic": round(baseline_exact_match(heuristic, examples), 4),
        }
    return table


def goals_met(table: Mapping[str, Mapping[str, object]]) -> Dict[str, bool]:
    """Each goal, met or not, for a table like :func:`measure`'s."""
    met = {f"{s}>={GOALS[s]:.2f}": float(table[s]["standin"]) >= GOALS[s] for s in GOALS}
    row = table[GOAL_MARGIN_SPLIT]
    lead = float(row["standin"]) - max(float(row["regex"]), float(row["heuristic"]))
    met[f"{GOAL_MARGIN_SPLIT}: best baseline + {GOAL_MARGIN:.2f}"] = lead >= GOAL_MARGIN - 1e-9
    return met


def format_table(table: Mapping[str, Mapping[str, object]]) -> str:
    lines = ["| split | questions | stand-in | regex baseline | overlap+offset |",
             "|---|---:|---:|---:|---:|"]
    for split in rc.EVAL_SPLITS:
        row = table[split]
        lines.append(f"| ({split}) {row['title']} | {row['n']} | "
                     + " | ".join(f"{100 * float(row[k]):.1f}%" for k in ANSWERERS) + " |")
    return "\n".join(lines)


def report(measure_now: bool = False, out=print) -> int:
    """Print the recorded table (and, with ``measure_now``, the one measured now with ONNX
    Runtime); exit status 1 when the two disagree."""
    from refit_core.samples.bidaf.reference import STANDIN_PATH
    meta = load_metadata()
    recorded = meta["splits"]
    out(f"BiDAF stand-in {meta['file']} ({meta['size_bytes']} bytes, sha256 {meta['sha256'][:12]}), "
        f"recorded at generation (ONNX Runtime, exact match):")
    out(format_table(recorded))
    for goal, ok in meta["goals_met"].items():
        out(f"goal {goal}: {'met' if ok else 'NOT met'}")
    if not measure_now:
        return 0
    measured = measure(STANDIN_PATH)
    out("measured now:")
    out(format_table(measured))
    differ = [s for s in rc.EVAL_SPLITS for k in ANSWERERS
              if abs(float(measured[s][k]) - float(recorded[s][k])) > 1e-4]
    if differ:
        out(f"measured values differ from the metadata in splits {sorted(set(differ))}")
        return 1
    out("measured values equal the metadata")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bidaf_standin.splits",
                                     description="the BiDAF stand-in's exact match on splits a-c next to a regex "
                                                 "baseline and an overlap+offset heuristic")
    parser.add_argument("--measure", action="store_true",
                        help="also measure now with ONNX Runtime; exit 1 if it differs from the metadata")
    return report(measure_now=parser.parse_args(argv).measure)


if __name__ == "__main__":
    raise SystemExit(main())

"""The stand-in's evaluation table: splits a-c x (stand-in, regex baseline, overlap+offset
heuristic), its goals, and the exact-match floors the tests hold the committed file to.

No torch: ONNX Runtime on the committed file (reference.py) and pure-Python baselines,
so the GPU kit (CPython 3.9) can measure and print it too.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Union

from .. import data as rc
from ..baselines import (OverlapOffsetBaseline, RegexBaseline,
                                                     baseline_exact_match)
from .. import STANDIN_METADATA

# Issue 11's goals: exact match per split, and the lead over the best baseline on split b.
GOALS = {"a": 0.90, "b": 0.75, "c": 0.75}
GOAL_MARGIN_SPLIT = "b"
GOAL_MARGIN = 0.20
# The one place the tests' exact-match floors come from: what ONNX Runtime measured for
# the committed file (its metadata) minus this margin, so a TensorRT engine or another
# ONNX Runtime may lose a few answers to float rounding, a broken one cannot pass.
FLOOR_MARGIN = 0.03
ANSWERERS = ("standin", "regex", "heuristic")


def standin_exact_match(model_path, examples: Sequence[rc.Example]) -> float:
    from ..reference import exact_match
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
    """Each goal of issue 11, met or not, for a table like :func:`measure`'s."""
    met = {f"{s}>={GOALS[s]:.2f}": float(table[s]["standin"]) >= GOALS[s] for s in GOALS}
    row = table[GOAL_MARGIN_SPLIT]
    lead = float(row["standin"]) - max(float(row["regex"]), float(row["heuristic"]))
    met[f"{GOAL_MARGIN_SPLIT}: best baseline + {GOAL_MARGIN:.2f}"] = lead >= GOAL_MARGIN - 1e-9
    return met


def floors(metadata: Optional[Mapping[str, object]] = None) -> Dict[str, float]:
    """Exact-match floor per split: the recorded ONNX Runtime value minus FLOOR_MARGIN."""
    meta = metadata if metadata is not None else load_metadata()
    return {s: round(float(meta["splits"][s]["standin"]) - FLOOR_MARGIN, 4)
            for s in rc.EVAL_SPLITS}


def load_metadata(path: Union[str, Path] = STANDIN_METADATA) -> Dict[str, object]:
    return json.loads(Path(path).read_text())


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
    from ..reference import STANDIN_PATH
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

"""Regenerate the BiDAF stand-in: data set -> vocabulary -> training -> ONNX -> checks.

    python -m tools.bidaf_standin.generate [--out PATH]

Writes PATH (default refit_core/assets/bidaf_standin.onnx) and its metadata next to it
(same name, .json). Everything is seeded; on one CPU with one thread, a rerun writes the
same bytes. The metadata records the evaluation table (splits a-c x stand-in, regex
baseline, overlap+offset heuristic; see splits.py) and whether its goals (splits.GOALS) are met.
Fails (exit status 1) when the result misses a hard target: split a exact match through
ONNX Runtime below MIN_SPLIT_A_EXACT_MATCH, the sample pair not answered "brown",
the ones_like fakes of W_0 / Parameter576_B_0 still answering "brown", or ONNX Runtime
disagreeing with PyTorch.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from refit_core.samples.bidaf import data as rc
from refit_core.fileio import sha256_file
from refit_core.samples.bidaf import STANDIN_ONNX
from .export import (IR_VERSION, ML_OPSET, OPSET, REFIT_BIAS_NAME, REFIT_WEIGHT_NAME,
                     build_onnx, save_onnx)
from refit_core.samples.bidaf.reference import answer_from_span, ort_session, run_session

# A hard failure of the generator (the goals are recorded, met or not, not enforced
# here): split a far below its goal means the training broke.
MIN_SPLIT_A_EXACT_MATCH = 0.85
MIN_TORCH_AGREEMENT = 0.99
PREFIX_STEPS = 12          # training steps of the bit-identity prefix check


def sha256_of(path) -> str:
    return sha256_file(path)


def with_fake_refit_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose W_0 and Parameter576_B_0 are np.ones_like the real ones (the sample's fakes)."""
    fake = onnx.ModelProto()
    fake.CopyFrom(model)
    for init in fake.graph.initializer:
        if init.name in (REFIT_WEIGHT_NAME, REFIT_BIAS_NAME):
            ones = np.ones_like(numpy_helper.to_array(init))
            init.CopyFrom(numpy_helper.from_array(ones, init.name))
    return fake


def _sample_answer(session) -> str:
    start, end = run_session(session, rc.SAMPLE_CONTEXT, rc.SAMPLE_QUERY)
    return answer_from_span(rc.tokenize(rc.SAMPLE_CONTEXT), start, end)


def _data_metadata(train, split_examples) -> Dict[str, object]:
    return {
        "train_seed": rc.TRAIN_SEED, "split_seeds": dict(rc.SPLIT_SEEDS),
        "train_size": len(train), "split_size": rc.EVAL_SIZE,
        "relations": len(rc.RELATIONS),
        "train_sentence_templates": sum(len(r.train_sentences) for r in rc.RELATIONS),
        "eval_only_sentence_templates": sum(len(r.eval_sentences) for r in rc.RELATIONS),
        "train_phrasings": sum(len(q.train_phrasings) for r in rc.RELATIONS for q in r.questions),
        "eval_only_phrasings": sum(len(q.eval_phrasings) for r in rc.RELATIONS for q in r.questions),
        "train_sha256": rc.dataset_fingerprint(train),
        "split_sha256": {s: rc.dataset_fingerprint(ex) for s, ex in split_examples.items()},
    }


def train_and_export(out: Path, train, vocab, train_config, progress: bool = True, log=print,
                     max_steps: Optional[int] = None):
    """Train from scratch and write the ONNX file; returns (proto, model, stats)."""
    from .model import BidafConfig
    from .train import train_model

    config = BidafConfig()
    model, stats = train_model(train, vocab, config, train_config, progress=progress, log=log,
                               max_steps=max_steps)
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    proto = build_onnx(state, vocab, config.to_dict(), doc=(
        "BiDAF stand-in for the ONNX model zoo's bidaf-9.onnx, trained on refit_core's "
        "synthetic reading-comprehension set; regenerate with "
        "python -m tools.bidaf_standin.generate"))
    save_onnx(proto, out)
    return proto, model, stats


def graph_structure_sha256(model: onnx.ModelProto) -> str:
    """sha256 of everything in the ONNX graph but the initializers' values: opsets, inputs,
    outputs, nodes (op, domain, tensors, attributes) and each initializer's name, type and
    shape. The same on every CPU for the same data and recipe (float values are not)."""
    from refit_core.fileio import sha256_bytes
    g = model.graph
    blob = {
        "opsets": sorted((o.domain, o.version) for o in model.opset_import),
        "inputs": [v.SerializeToString().hex() for v in g.input],
        "outputs": [v.SerializeToString().hex() for v in g.output],
        "nodes": [[n.op_type, n.domain, list(n.input), list(n.output),
                   sorted((a.name, a.SerializeToString().hex()) for a in n.attribute)] for n in g.node],
        "initializers": [[i.name, i.data_type, list(i.dims)] for i in g.initializer],
    }
    return sha256_bytes(json.dumps(blob, sort_keys=True).encode("utf-8"))


def vocab_sha256(vocab) -> str:
    from refit_core.fileio import sha256_bytes
    return sha256_bytes(json.dumps(vocab.to_json(), sort_keys=True).encode("utf-8"))


def prefix_fingerprint(train, vocab, steps: int = PREFIX_STEPS) -> Dict[str, object]:
    """The first ``steps`` training steps, exported: what CI compares with the metadata.

    Portable (exact on every CPU): vocabulary and graph structure. Numeric (within
    tests' stated tolerances): each step's loss and each initializer's root mean square.
    ``onnx_sha256`` is bit-exact only on the machine that made the asset (float training
    differs across CPUs: other kernels on other instruction sets)."""
    import tempfile
    from .train import BidafTrainConfig
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prefix.onnx"
        proto, _, stats = train_and_export(path, train, vocab, BidafTrainConfig(), progress=False,
                                           log=lambda *_: None, max_steps=steps)
        return {
            "steps": steps,
            "onnx_sha256": sha256_of(path),
            "structure_sha256": graph_structure_sha256(proto),
            "vocab_sha256": vocab_sha256(vocab),
            "losses": [round(x, 7) for x in stats["step_losses"]],
            "initializer_rms": {i.name: round(float(np.sqrt(np.mean(np.square(
                numpy_helper.to_array(i).astype(np.float64))))), 7)
                for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT},
        }


def generate(out: Path = STANDIN_ONNX, progress: bool = True, log=print) -> Dict[str, object]:
    """Build the stand-in into ``out`` (+ ``out``.json); returns the metadata written."""
    from .model import BidafConfig
    from .splits import GOAL_MARGIN, GOALS, goals_met, measure
    from .train import BidafTrainConfig, exact_match, predict_spans, vocab_from_examples
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train = rc.train_examples()
    splits = {s: rc.split_examples(s) for s in rc.EVAL_SPLITS}
    vocab = vocab_from_examples(train)
    log(f"data: {len(train)} training examples, {rc.EVAL_SIZE} per evaluation split "
        f"{'/'.join(rc.EVAL_SPLITS)}; vocabulary {vocab.n_words} words, {vocab.n_chars} chars")

    train_config = BidafTrainConfig()
    proto, model, stats = train_and_export(out, train, vocab, train_config, progress, log)
    log(f"trained in {stats['train_seconds']:.1f} s (final loss {stats['final_loss']:.4f})")

    session = ort_session(out)
    torch_em, agreement = {}, {}
    for s, examples in splits.items():
        torch_spans = predict_spans(model, examples, vocab)
        torch_em[s] = exact_match(torch_spans, examples)
        ort_spans = [run_session(session, e.context, e.query) for e in examples]
        agreement[s] = sum(1 for a, b in zip(ort_spans, torch_spans) if a == b) / len(examples)
    table = measure(out, train=train)
    for s in rc.EVAL_SPLITS:
        table[s]["standin_torch"] = round(torch_em[s], 4)
        table[s]["onnx_torch_agreement"] = round(agreement[s], 4)
    met = goals_met(table)
    sample = _sample_answer(session)
    fake_session = ort_session(with_fake_refit_weights(proto).SerializeToString())
    fake_sample = _sample_answer(fake_session)
    fake_span = run_session(fake_session, rc.SAMPLE_CONTEXT, rc.SAMPLE_QUERY)
    log(f"sample answer {sample!r}, with ones_like fakes {fake_sample!r}")
    log("exact match (ONNX Runtime): " + "; ".join(
        f"({s}) stand-in {table[s]['standin']:.4f} regex {table[s]['regex']:.4f} "
        f"heuristic {table[s]['heuristic']:.4f}" for s in rc.EVAL_SPLITS))
    log("goals: " + ", ".join(f"{g} {'met' if ok else 'NOT met'}" for g, ok in met.items()))
    log("training prefix fingerprint ...")
    prefix = prefix_fingerprint(train, vocab)

    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    metadata: Dict[str, object] = {
        "file": out.name,
        "sha256": sha256_of(out),
        "size_bytes": out.stat().st_size,
        "generator": "python -m tools.bidaf_standin.generate",
        "opset": OPSET,
        "ml_opset": ML_OPSET,
        "ir_version": IR_VERSION,
        "data": _data_metadata(train, splits),
        "vocab": {"words": vocab.n_words, "chars": vocab.n_chars},
        "model": BidafConfig().to_dict(),
        "train": train_config.to_dict(),
        "train_seconds": round(stats["train_seconds"], 1),
        "structure_sha256": graph_structure_sha256(proto),
        "final_loss": round(stats["final_loss"], 6),
        "splits": table,
        "goals": {"exact_match": GOALS, "margin_split": "b", "margin_over_best_baseline": GOAL_MARGIN},
        "goals_met": met,
        "prefix_check": prefix,
        "sample": {"context": rc.SAMPLE_CONTEXT, "query": rc.SAMPLE_QUERY,
                   "answer": sample, "answer_with_ones_like_fakes": fake_sample,
                   "span_with_ones_like_fakes": list(fake_span)},
        "refit_weights": {n: list(inits[n].shape) for n in (REFIT_BIAS_NAME, REFIT_WEIGHT_NAME)},
        "torch_version": torch.__version__,
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    meta_path = out.with_suffix(".json")
    meta_path.write_text(json.dumps(metadata, indent=2) + "\n")

    problems = []
    if table["a"]["standin"] < MIN_SPLIT_A_EXACT_MATCH:
        problems.append(f"split a exact match {table['a']['standin']:.4f} < {MIN_SPLIT_A_EXACT_MATCH}")
    if sample != rc.SAMPLE_ANSWER:
        problems.append(f"sample pair answered {sample!r}, not {rc.SAMPLE_ANSWER!r}")
    if fake_sample == rc.SAMPLE_ANSWER:
        problems.append("ones_like fakes of the refit weights still answer the sample pair")
    worst = min(agreement.values())
    if worst < MIN_TORCH_AGREEMENT:
        problems.append(f"ONNX Runtime agrees with torch on only {worst:.4f} of a split's spans")
    if problems:
        raise RuntimeError("BiDAF stand-in misses its targets: " + "; ".join(problems))
    log(f"wrote {out} ({metadata['size_bytes']} bytes) and {meta_path}")
    return metadata


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bidaf_standin.generate",
        description="Regenerate the BiDAF stand-in ONNX file and its metadata.")
    parser.add_argument("--out", type=Path, default=STANDIN_ONNX,
                        help=f"ONNX file to write (default {STANDIN_ONNX}); metadata goes to .json beside it")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    args = parser.parse_args(argv)
    try:
        generate(args.out, progress=not args.no_progress)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

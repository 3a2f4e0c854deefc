"""Regenerate the BiDAF stand-in: data set -> vocabulary -> training -> ONNX -> checks.

    python -m refit_core.models.bidaf.generate [--out PATH]

Writes PATH (default refit_core/assets/bidaf_standin.onnx) and its metadata next to it
(same name, .json). Everything is seeded; on one CPU with one thread, a rerun writes the
same bytes. Fails (exit status 1) when the result misses a target: held-out exact match
through ONNX Runtime below MIN_HELDOUT_EXACT_MATCH, the sample pair not answered "brown",
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

from ...data import reading_comprehension as rc
from ...fileio import sha256_file
from . import STANDIN_ONNX
from .export import (IR_VERSION, ML_OPSET, OPSET, REFIT_BIAS_NAME, REFIT_WEIGHT_NAME,
                     build_onnx, save_onnx)
from .reference import answer_from_span, ort_session, run_session

MIN_HELDOUT_EXACT_MATCH = 0.95
MIN_TORCH_AGREEMENT = 0.995


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


def generate(out: Path = STANDIN_ONNX, progress: bool = True, log=print) -> Dict[str, object]:
    """Build the stand-in into ``out`` (+ ``out``.json); returns the metadata written."""
    from .model import BidafConfig
    from .train import BidafTrainConfig, exact_match, predict_spans, train_model, vocab_from_examples
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train = rc.train_examples()
    heldout = rc.heldout_examples()
    vocab = vocab_from_examples(train)
    log(f"data: {len(train)} training / {len(heldout)} held-out examples from "
        f"{len(rc.TEMPLATES)} templates; vocabulary {vocab.n_words} words, {vocab.n_chars} chars")

    config = BidafConfig()
    train_config = BidafTrainConfig()
    model, stats = train_model(train, vocab, config, train_config, progress=progress, log=log)
    log(f"trained in {stats['train_seconds']:.1f} s (final loss {stats['final_loss']:.4f})")
    torch_spans = predict_spans(model, heldout, vocab)
    torch_em = exact_match(torch_spans, heldout)

    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    hparams = config.to_dict()
    proto = build_onnx(state, vocab, hparams, doc=(
        "BiDAF stand-in for the ONNX model zoo's bidaf-9.onnx, trained on refit_core's "
        "synthetic reading-comprehension set; regenerate with "
        "python -m refit_core.models.bidaf.generate"))
    save_onnx(proto, out)

    session = ort_session(out)
    ort_spans = [run_session(session, e.context, e.query) for e in heldout]
    ort_em = sum(1 for s, e in zip(ort_spans, heldout) if s == e.span) / len(heldout)
    agreement = sum(1 for a, b in zip(ort_spans, torch_spans) if a == b) / len(heldout)
    sample = _sample_answer(session)
    fake_session = ort_session(with_fake_refit_weights(proto).SerializeToString())
    fake_sample = _sample_answer(fake_session)
    fake_span = run_session(fake_session, rc.SAMPLE_CONTEXT, rc.SAMPLE_QUERY)
    log(f"held-out exact match: ONNX Runtime {ort_em:.4f}, torch {torch_em:.4f} "
        f"(agreement {agreement:.4f}); sample answer {sample!r}, with ones_like fakes {fake_sample!r}")

    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    metadata: Dict[str, object] = {
        "file": out.name,
        "sha256": sha256_of(out),
        "size_bytes": out.stat().st_size,
        "generator": "python -m refit_core.models.bidaf.generate",
        "opset": OPSET,
        "ml_opset": ML_OPSET,
        "ir_version": IR_VERSION,
        "data": {
            "train_seed": rc.TRAIN_SEED, "heldout_seed": rc.HELDOUT_SEED,
            "train_size": len(train), "heldout_size": len(heldout),
            "templates": len(rc.TEMPLATES),
            "questions": sum(len(t.questions) for t in rc.TEMPLATES),
            "heldout_modulus": rc.HELDOUT_MODULUS,
            "train_sha256": rc.dataset_fingerprint(train),
            "heldout_sha256": rc.dataset_fingerprint(heldout),
        },
        "vocab": {"words": vocab.n_words, "chars": vocab.n_chars},
        "model": hparams,
        "train": train_config.to_dict(),
        "train_seconds": round(stats["train_seconds"], 1),
        "final_loss": round(stats["final_loss"], 6),
        "heldout_exact_match": round(ort_em, 4),
        "heldout_exact_match_torch": round(torch_em, 4),
        "onnx_torch_agreement": round(agreement, 4),
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
    if ort_em < MIN_HELDOUT_EXACT_MATCH:
        problems.append(f"held-out exact match {ort_em:.4f} < {MIN_HELDOUT_EXACT_MATCH}")
    if sample != rc.SAMPLE_ANSWER:
        problems.append(f"sample pair answered {sample!r}, not {rc.SAMPLE_ANSWER!r}")
    if fake_sample == rc.SAMPLE_ANSWER:
        problems.append("ones_like fakes of the refit weights still answer the sample pair")
    if agreement < MIN_TORCH_AGREEMENT:
        problems.append(f"ONNX Runtime agrees with torch on only {agreement:.4f} of held-out spans")
    if problems:
        raise RuntimeError("BiDAF stand-in misses its targets: " + "; ".join(problems))
    log(f"wrote {out} ({metadata['size_bytes']} bytes) and {meta_path}")
    return metadata


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m refit_core.models.bidaf.generate",
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

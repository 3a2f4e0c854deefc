"""Seeded, deterministic training of the BiDAF stand-in on the synthetic set (CPU)."""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from refit_core.samples.bidaf.data import Example, tokenize
from .model import BidafConfig, BidafStandin
from .vocab import CHARS_PER_WORD, WORD_PAD_ID, CHAR_PAD_ID, Vocab, build_vocab


@dataclass(frozen=True)
class BidafTrainConfig:
    """Hyper-parameters of the stand-in's training (LeNet's are tools.train_lenet.LenetTrainConfig)."""

    seed: int = 1611
    epochs: int = 6
    batch_size: int = 64
    lr: float = 5e-3
    lr_final: float = 3e-4     # cosine decay from lr to lr_final
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    # Each distinct word of an example (context and query alike) is replaced by the unknown
    # id with this probability, so the model learns to answer with words it never saw
    # (split c's values map to the CategoryMapper's default id, as unknown words do).
    word_dropout: float = 0.1
    threads: int = 1           # one thread: bitwise reproducible on a given CPU

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


Batch = Tuple[torch.Tensor, ...]


def vocab_from_examples(examples: Sequence[Example]) -> Vocab:
    return build_vocab([tokenize(e.context) for e in examples]
                       + [tokenize(e.query) for e in examples])


def encode_batch(examples: Sequence[Example], vocab: Vocab,
                 word_dropout: float = 0.0, rng: Optional[random.Random] = None) -> Batch:
    """Padded tensors (cw, cc, qw, qc, c_len, q_len, start, end) of the examples; with
    ``word_dropout`` > 0, each example's distinct words map to the unknown id with that
    probability (drawn from ``rng``; characters are kept)."""
    ctx = [tokenize(e.context) for e in examples]
    qry = [tokenize(e.query) for e in examples]
    lc = max(len(t) for t in ctx)
    lq = max(len(t) for t in qry)
    b = len(examples)
    cw = torch.full((b, lc), WORD_PAD_ID, dtype=torch.long)
    qw = torch.full((b, lq), WORD_PAD_ID, dtype=torch.long)
    cc = torch.full((b, lc, CHARS_PER_WORD), CHAR_PAD_ID, dtype=torch.long)
    qc = torch.full((b, lq, CHARS_PER_WORD), CHAR_PAD_ID, dtype=torch.long)
    for i, (ct, qt) in enumerate(zip(ctx, qry)):
        dropped = set()
        if word_dropout > 0.0:
            for w in sorted({t.lower() for t in ct + qt}):
                if rng.random() < word_dropout:
                    dropped.add(w)
        if dropped:
            ct_w = ["\x00" if t.lower() in dropped else t for t in ct]
            qt_w = ["\x00" if t.lower() in dropped else t for t in qt]
        else:
            ct_w, qt_w = ct, qt
        cw[i, :len(ct)] = torch.tensor(vocab.encode_words(ct_w))
        qw[i, :len(qt)] = torch.tensor(vocab.encode_words(qt_w))
        cc[i, :len(ct)] = torch.tensor(vocab.encode_chars(ct))
        qc[i, :len(qt)] = torch.tensor(vocab.encode_chars(qt))
    c_len = torch.tensor([len(t) for t in ctx])
    q_len = torch.tensor([len(t) for t in qry])
    start = torch.tensor([e.answer_start for e in examples])
    end = torch.tensor([e.answer_end for e in examples])
    return cw, cc, qw, qc, c_len, q_len, start, end


def train_model(examples: Sequence[Example], vocab: Vocab,
                config: BidafConfig = BidafConfig(), train_config: BidafTrainConfig = BidafTrainConfig(),
                progress: bool = True, log=print,
                max_steps: Optional[int] = None) -> Tuple[BidafStandin, Dict[str, float]]:
    """Train from scratch; same inputs, same CPU, same thread count -> same weights.

    ``max_steps`` stops after that many steps of the very same run (same schedule): the
    generator's cheap bit-identity check trains such a prefix."""
    torch.manual_seed(train_config.seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(train_config.threads)
    try:
        return _train(examples, vocab, config, train_config, progress, log, max_steps)
    finally:
        torch.set_num_threads(previous_threads)


def _train(examples, vocab, config, tc, progress, log, max_steps=None):
    model = BidafStandin(vocab.n_words, vocab.n_chars, config)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    rng = random.Random(tc.seed)
    drop_rng = random.Random(tc.seed + 1)
    order = list(range(len(examples)))
    steps_per_epoch = (len(order) + tc.batch_size - 1) // tc.batch_size
    total = steps_per_epoch * tc.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: _cosine(step, total, tc.lr_final / tc.lr))
    t0 = time.perf_counter()
    stats: Dict[str, object] = {"step_losses": []}
    limit = total if max_steps is None else min(total, max_steps)
    bar = tqdm(total=limit, desc="training BiDAF stand-in", disable=not progress, unit="step")
    done = 0
    for epoch in range(tc.epochs):
        if done >= limit:
            break
        rng.shuffle(order)
        model.train()
        loss_sum = 0.0
        for k in range(steps_per_epoch):
            if done >= limit:
                break
            done += 1
            idx = order[k * tc.batch_size:(k + 1) * tc.batch_size]
            cw, cc, qw, qc, c_len, q_len, start, end = encode_batch(
                [examples[i] for i in idx], vocab, tc.word_dropout, drop_rng)
            s_logits, e_logits = model(cw, cc, qw, qc, c_len, q_len, start_index=start)
            loss = F.cross_entropy(s_logits, start) + F.cross_entropy(e_logits, end)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            sched.step()
            loss_sum += float(loss.detach())
            stats["step_losses"].append(float(loss.detach()))
            bar.update(1)
        stats["final_loss"] = loss_sum / steps_per_epoch
        bar.set_postfix(epoch=epoch + 1, loss=f"{stats['final_loss']:.4f}")
    bar.close()
    model.eval()
    stats["train_seconds"] = time.perf_counter() - t0
    return model, stats


def _cosine(step: int, total: int, floor: float) -> float:
    import math
    t = min(step, total) / max(total, 1)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


@torch.no_grad()
def predict_spans(model: BidafStandin, examples: Sequence[Example], vocab: Vocab,
                  batch_size: int = 128) -> List[Tuple[int, int]]:
    """(start, end) per example from the torch model (argmax start, as the ONNX graph)."""
    model.eval()
    out: List[Tuple[int, int]] = []
    for k in range(0, len(examples), batch_size):
        cw, cc, qw, qc, c_len, q_len, _, _ = encode_batch(examples[k:k + batch_size], vocab)
        s, e = model(cw, cc, qw, qc, c_len, q_len)
        out.extend(zip(s.argmax(1).tolist(), e.argmax(1).tolist()))
    return out


def exact_match(spans: Sequence[Tuple[int, int]], examples: Sequence[Example]) -> float:
    hits = sum(1 for (s, e), ex in zip(spans, examples) if (s, e) == (ex.answer_start, ex.answer_end))
    return hits / max(len(examples), 1)

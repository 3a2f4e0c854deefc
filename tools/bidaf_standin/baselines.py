"""Two answerers that do not read, to measure the stand-in against.

* :class:`RegexBaseline`: regular expressions written from the *training* sentence
  templates and question phrasings (no training, no value lists: a slot is any word, or
  any capitalised word for people and cities). It parses the question, finds a context
  sentence of the question's relation that names the question's entity, and returns the
  answer slot. A question or fact sentence it cannot parse gets no answer ("").
* :class:`OverlapOffsetBaseline`: "take the context sentence that overlaps the question
  most, answer at the most common answer offset learned from training". Overlap counts
  the distinct lower-cased words (punctuation left out) the sentence shares with the
  question, first sentence on ties; the (offset, length) of the answer inside its
  sentence is the most common one in training among questions with the same first two
  words, else the most common one overall.

Both return answer text; exact match compares it with the gold answer's tokens,
case-insensitively. Pure Python (Python 3.9, no numpy).
"""
from __future__ import annotations

import collections
import re
import string
from typing import Dict, List, Optional, Sequence, Tuple

from refit_core.samples.bidaf.tokenize import tokenize
from refit_core.samples.bidaf.data import RELATIONS, Example, QuestionSpec, Relation, _base, sentences_of

__all__ = ["RegexBaseline", "OverlapOffsetBaseline", "answer_matches", "baseline_exact_match"]

_SLOT_RE = {"per": r"[A-Z][a-z]+", "city": r"[A-Z][a-z]+(?: [A-Z][a-z]+)?"}
_WORD_RE = r"[a-z]+"


def _regex(pattern: str) -> "re.Pattern[str]":
    parts: List[str] = []
    seen = set()
    for literal, name, _, _ in string.Formatter().parse(pattern):
        parts.append(re.escape(literal))
        if name:
            body = _SLOT_RE.get(_base(name), _WORD_RE)
            parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>{body})")
            seen.add(name)
    return re.compile("".join(parts))


def answer_matches(predicted: str, example: Example) -> bool:
    """Exact match of answer text: same tokens as the gold answer, case ignored."""
    return [t.lower() for t in tokenize(predicted)] == [t.lower() for t in tokenize(example.answer)]


class RegexBaseline:
    """Template matching against the training templates and phrasings."""

    def __init__(self, relations: Sequence[Relation] = RELATIONS) -> None:
        self.questions: List[Tuple["re.Pattern[str]", Relation, QuestionSpec]] = []
        for rel in relations:
            for q in rel.questions:
                for phrasing in q.train_phrasings:
                    self.questions.append((_regex(phrasing), rel, q))
        self.sentences = {rel.name: [_regex(s) for s in rel.train_sentences] for rel in relations}

    def answer(self, context: str, query: str) -> str:
        for q_re, rel, spec in self.questions:
            m = q_re.fullmatch(query.strip())
            if not m:
                continue
            keys = m.groupdict()
            for sentence in sentences_of(context):
                for s_re in self.sentences[rel.name]:
                    sm = s_re.fullmatch(sentence)
                    if sm and all(sm.groupdict().get(k) == v for k, v in keys.items()):
                        return sm.group(spec.answer)
        return ""


class OverlapOffsetBaseline:
    """Most-overlapping sentence, most common answer offset (learned from ``train``)."""

    def __init__(self, train: Sequence[Example]) -> None:
        by_opening: Dict[str, collections.Counter] = {}
        overall: collections.Counter = collections.Counter()
        for ex in train:
            start = 0
            for sentence in sentences_of(ex.context):
                n = len(tokenize(sentence))
                if start <= ex.answer_start < start + n:
                    break
                start += n
            key = (ex.answer_start - start, ex.answer_end - ex.answer_start + 1)
            by_opening.setdefault(self._opening(ex.query), collections.Counter())[key] += 1
            overall[key] += 1
        # most common; ties broken by the smaller (offset, length) so the choice is stable
        self.offsets = {k: min(c, key=lambda o: (-c[o], o)) for k, c in by_opening.items()}
        self.default = min(overall, key=lambda o: (-overall[o], o)) if overall else (0, 1)

    @staticmethod
    def _opening(query: str) -> str:
        return " ".join(t.lower() for t in tokenize(query)[:2])

    def answer(self, context: str, query: str) -> str:
        q_words = {t.lower() for t in tokenize(query) if any(ch.isalnum() for ch in t)}
        best: Optional[List[str]] = None
        best_overlap = -1
        for sentence in sentences_of(context):
            tokens = tokenize(sentence)
            overlap = len(q_words & {t.lower() for t in tokens})
            if overlap > best_overlap:
                best, best_overlap = tokens, overlap
        if not best:
            return ""
        offset, length = self.offsets.get(self._opening(query), self.default)
        offset = min(offset, len(best) - 1)
        return " ".join(best[offset:offset + length])


def baseline_exact_match(baseline, examples: Sequence[Example]) -> float:
    """Fraction of ``examples`` that ``baseline.answer`` answers exactly."""
    hits = sum(1 for ex in examples if answer_matches(baseline.answer(ex.context, ex.query), ex))
    return hits / max(len(examples), 1)

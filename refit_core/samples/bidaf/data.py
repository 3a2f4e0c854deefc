"""A seeded, synthetic reading-comprehension set for the BiDAF stand-in, built so that
answering needs reading.

Why it looks like this: a set whose held-out questions repeat the training templates, and
whose context holds exactly one value of the asked kind, is solved by template matching.
Here

* every context has 1 to 5 sentences; the other sentences are mostly *of the same
  relation* as the fact sentence, attached to other entities ("The cat is black." next to
  "The fox is brown." for "What color is the fox?"), so the answer's kind alone never
  picks it: the model must find the question's entity;
* each relation has several sentence templates and each question several phrasings; some
  templates and phrasings exist only for evaluation (:data:`Relation.eval_sentences`,
  :data:`QuestionSpec.eval_phrasings`);
* every value pool (colours, animals, people, cities, objects, numbers, plural nouns)
  has values that appear only in evaluation (:data:`EVAL_ONLY_VALUES`);
* question kinds: colour, place, person (who did / who has / who holds), number, object.

Splits (each its own seed):

* ``train``: training templates, phrasings and values;
* ``a`` (``same``): held-out examples of the training distribution (no (context, query)
  pair of training repeats);
* ``b`` (``templates``): the fact sentence comes from an evaluation-only template, or the
  question from an evaluation-only phrasing, or both (a third each);
* ``c`` (``values``): training templates and phrasings, but the answer (and half of the
  time the question's entity too) is an evaluation-only value.

NVIDIA's sample pair ("A quick brown fox jumps over the lazy dog." / "What color is the
fox?" -> "brown") is an instance of a training template with training values.

Pure Python (no numpy, no torch): runs on CPython 3.9 as well, on the GPU kit.
"""
from __future__ import annotations

import functools
import random
import re
import string
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ...fileio import sha256_chunks
from .tokenize import tokenize

__all__ = [
    "SAMPLE_CONTEXT", "SAMPLE_QUERY", "SAMPLE_ANSWER", "Example", "tokenize",
    "RELATIONS", "EVAL_SPLITS", "SPLIT_TITLES", "train_examples", "heldout_examples",
    "split_examples", "generate_split", "sample_example", "dataset_fingerprint",
    "word_vocabulary", "sentences_of",
]

SAMPLE_CONTEXT = "A quick brown fox jumps over the lazy dog."
SAMPLE_QUERY = "What color is the fox?"
SAMPLE_ANSWER = "brown"

TRAIN_SEED = 20261123
TRAIN_SIZE = 12000
SPLIT_SEEDS = {"train": TRAIN_SEED, "a": 101, "b": 202, "c": 303}
EVAL_SIZE = 400          # per evaluation split
EVAL_SPLITS = ("a", "b", "c")
SPLIT_TITLES = {"a": "held-out examples, training templates",
                "b": "held-out templates and phrasings",
                "c": "held-out entity values"}
SPLITS = ("train",) + EVAL_SPLITS
MAX_SENTENCES = 5
SAME_RELATION_DISTRACTOR = 0.75   # a distractor is of the fact's own relation this often

# --------------------------------------------------------------------------- values
# Slot name (trailing digits stripped) -> (training values, evaluation-only values).
# No value starts with a vowel sound where it follows "a" in a template.
VALUES: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "col": (("red", "blue", "green", "yellow", "brown", "black", "white", "purple", "pink",
             "grey", "golden"),
            ("violet", "silver", "crimson", "teal")),
    "ani": (("fox", "dog", "cat", "horse", "rabbit", "bear", "wolf", "mouse", "duck", "goat",
             "lion", "tiger", "frog", "sheep"),
            ("zebra", "camel", "panda", "monkey")),
    "per": (("Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Jack",
             "Karen", "Liam", "Maria", "Noah", "Peter", "Mary", "John", "Sarah", "Tom"),
            ("Quentin", "Rosa", "Victor", "Wendy", "Yusuf", "Zoe")),
    "city": (("Paris", "London", "Tokyo", "Rome", "Berlin", "Madrid", "Cairo", "Lima",
              "New York", "Oslo", "Vienna", "Dublin", "Hong Kong"),
             ("Prague", "Nairobi", "Seoul", "Cape Town")),
    "obj": (("book", "lamp", "key", "ball", "cup", "kite", "bag", "pen", "box", "clock",
             "chair", "basket", "bottle", "radio"),
            ("hammer", "violin", "candle", "wallet", "ladder")),
    "pl": (("cats", "dogs", "books", "apples", "coins", "pens", "cups", "keys", "shirts",
            "stamps"),
           ("candles", "hammers", "marbles")),
    "num": (("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
            ("eleven", "twelve", "twenty")),
    "adj": (("quick", "lazy", "small", "big", "sleepy", "happy", "old", "young"), ()),
}
_REPEATABLE = frozenset(["adj"])   # adjectives may repeat (they never answer a question)
EVAL_ONLY_VALUES = {k: v[1] for k, v in VALUES.items()}
# Question kind of each answer slot.
ANSWER_KINDS = {"col": "colour", "city": "place", "per": "person", "num": "number",
                "obj": "object"}


def _base(slot: str) -> str:
    return slot.rstrip("0123456789")


# --------------------------------------------------------------------------- relations
@dataclass(frozen=True)
class QuestionSpec:
    """One question about a relation: which slot answers it, in which words it is asked."""

    answer: str                        # slot holding the answer
    train_phrasings: Tuple[str, ...]
    eval_phrasings: Tuple[str, ...]    # only in split b

    @property
    def keys(self) -> Tuple[str, ...]:
        """The slots the question names (its entity)."""
        return _slots(self.train_phrasings[0])

    @property
    def kind(self) -> str:
        return ANSWER_KINDS[_base(self.answer)]


@dataclass(frozen=True)
class Relation:
    name: str
    train_sentences: Tuple[str, ...]
    eval_sentences: Tuple[str, ...]    # only in split b
    questions: Tuple[QuestionSpec, ...] = field(default_factory=tuple)


def _slots(pattern: str) -> Tuple[str, ...]:
    return tuple(dict.fromkeys(f for _, f, _, _ in string.Formatter().parse(pattern) if f))


def _q(answer: str, train: Sequence[str], evaluation: Sequence[str]) -> QuestionSpec:
    return QuestionSpec(answer, tuple(train), tuple(evaluation))


RELATIONS: Tuple[Relation, ...] = (
    Relation("colour",
             ("The {ani} is {col}.",
              "A {adj} {col} {ani} jumps over the {adj2} {ani2}.",
              "The {col} {ani} sleeps under the tree."),
             ("Under the tree sleeps a {col} {ani}.",
              "The {ani} is {adj} and {col}."),
             (_q("col", ("What color is the {ani}?", "What is the color of the {ani}?"),
                 ("Which color is the {ani}?", "The {ani} is what color?")),)),
    Relation("lives",
             ("{per} lives in {city}.", "{per} moved to {city}."),
             ("The home of {per} is in {city}.",),
             (_q("city", ("Where does {per} live?", "In which city does {per} live?"),
                 ("Which city does {per} live in?", "Where is the home of {per}?")),
              _q("per", ("Who lives in {city}?",), ("Which person lives in {city}?",)))),
    Relation("bought",
             ("{per} bought a {obj}.", "{per} bought a {col} {obj} at the market."),
             ("The {obj} was bought by {per}.",),
             (_q("per", ("Who bought a {obj}?", "Who bought the {obj}?"),
                 ("Which person bought the {obj}?",)),
              _q("obj", ("What did {per} buy?",), ("Which thing did {per} buy?",)))),
    Relation("has",
             ("{per} has a {obj}.", "{per} owns a {col} {obj}."),
             ("The {obj} is owned by {per}.",),
             (_q("per", ("Who has a {obj}?", "Who owns the {obj}?"),
                 ("Which person has the {obj}?",)),)),
    Relation("holding",
             ("{per} is holding a {obj}.", "{per} holds a {obj} in the park."),
             ("In the park, {per} holds a {obj}.",),
             (_q("obj", ("What is {per} holding?", "What does {per} hold?"),
                 ("Which thing is {per} holding?",)),
              _q("per", ("Who is holding the {obj}?",), ("Which person holds the {obj}?",)))),
    Relation("count",
             ("{per} has {num} {pl}.", "{per} counted {num} {pl}."),
             ("There are {num} {pl} in the house of {per}.",),
             (_q("num", ("How many {pl} does {per} have?",),
                 ("What number of {pl} does {per} have?",)),)),
)
_RELATION_BY_NAME = {r.name: r for r in RELATIONS}


# --------------------------------------------------------------------------- examples
@dataclass(frozen=True)
class Example:
    """One question about one context; the answer is tokens[answer_start:answer_end + 1]."""

    context: str
    query: str
    answer: str
    answer_start: int = -1   # index of the answer's first token in tokenize(context)
    answer_end: int = -1     # index of its last token (inclusive)
    template: str = ""       # "relation/question index/sentence template/phrasing" (t* / e*)

    @property
    def context_tokens(self) -> List[str]:
        return tokenize(self.context)

    @property
    def query_tokens(self) -> List[str]:
        return tokenize(self.query)

    @property
    def span(self) -> Tuple[int, int]:
        return self.answer_start, self.answer_end


class _Values:
    """Values drawn for one context: distinct within a category across all its sentences."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: Dict[str, set] = {}

    def draw(self, slot: str, pool: Sequence[str], fallback: Sequence[str] = ()) -> str:
        """A value of ``pool`` not used yet in this context (``fallback`` when none is left;
        adjectives may repeat)."""
        used = self.used.setdefault(_base(slot), set())
        choices = [v for v in pool if v not in used] or [v for v in fallback if v not in used]
        if not choices and _base(slot) in _REPEATABLE:
            choices = list(pool)
        value = choices[self.rng.randrange(len(choices))]
        used.add(value)
        return value


def _pool(slot: str, which: str) -> Tuple[str, ...]:
    train, evaluation = VALUES[_base(slot)]
    if which == "train":
        return train
    if which == "eval":
        return evaluation or train
    return train + evaluation


def _render(pattern: str, values: Dict[str, str]) -> Tuple[List[str], Dict[str, Tuple[int, int]]]:
    """Tokens of the filled pattern and each slot's token span (first, last inclusive)."""
    tokens: List[str] = []
    spans: Dict[str, Tuple[int, int]] = {}
    for literal, name, _, _ in string.Formatter().parse(pattern):
        tokens.extend(tokenize(literal))
        if name:
            value_tokens = tokenize(values[name])
            spans[name] = (len(tokens), len(tokens) + len(value_tokens) - 1)
            tokens.extend(value_tokens)
    if tokens != tokenize(pattern.format(**values)):  # slot borders must be token borders
        raise AssertionError(f"template {pattern!r} does not tokenise slot by slot")
    return tokens, spans


def _choice(rng: random.Random, items: Sequence):
    return items[rng.randrange(len(items))]


def _shuffle(rng: random.Random, items: List) -> None:
    for i in range(len(items) - 1, 0, -1):  # Fisher-Yates on our own draws (stable across Pythons)
        j = rng.randrange(i + 1)
        items[i], items[j] = items[j], items[i]


def _make_example(rng: random.Random, split: str) -> Example:
    relation = _choice(rng, RELATIONS)
    qi = rng.randrange(len(relation.questions))
    question = relation.questions[qi]
    new_sentence = new_phrasing = False
    if split == "b":
        mode = rng.randrange(3)
        new_sentence, new_phrasing = mode in (0, 2), mode in (1, 2)
    sentences = relation.eval_sentences if new_sentence else relation.train_sentences
    phrasings = question.eval_phrasings if new_phrasing else question.train_phrasings
    si, pi = rng.randrange(len(sentences)), rng.randrange(len(phrasings))
    template = (f"{relation.name}/{qi}/{'e' if new_sentence else 't'}{si}/"
                f"{'e' if new_phrasing else 't'}{pi}")
    pattern, phrasing = sentences[si], phrasings[pi]

    # the fact: in split c the answer (and half of the time the entity) is an eval-only value
    values = _Values(rng)
    fact: Dict[str, str] = {}
    eval_keys = split == "c" and rng.randrange(2) == 0
    for slot in (question.answer,) + question.keys + _slots(pattern):
        if slot in fact:
            continue
        if split == "c" and (slot == question.answer or (eval_keys and slot in question.keys)):
            which = "eval"
        else:
            which = "train"
        fact[slot] = values.draw(slot, _pool(slot, which))
    fact_tokens, spans = _render(pattern, fact)
    query = phrasing.format(**fact)
    answer = fact[question.answer]

    # distractors: mostly the same relation about other entities (same-kind answers)
    distractor_templates = "b" if split == "b" else "train"
    texts: List[Tuple[str, List[str]]] = [(pattern.format(**fact), fact_tokens)]
    n_sentences = 1 + rng.randrange(MAX_SENTENCES)
    key_values = {fact[k] for k in question.keys}
    while len(texts) < n_sentences:
        other = relation if rng.random() < SAME_RELATION_DISTRACTOR else _choice(rng, RELATIONS)
        pool = other.train_sentences
        if distractor_templates == "b" and other.eval_sentences and rng.randrange(2) == 0:
            pool = other.eval_sentences
        other_pattern = _choice(rng, pool)
        filled: Dict[str, str] = {}
        for slot in _slots(other_pattern):
            if (other is relation and relation.name == "count" and slot == "per"
                    and "per" in question.keys and rng.randrange(3) == 0):
                filled[slot] = fact["per"]   # same person, other things: "Alice has two cats."
                continue
            which = "eval" if split == "c" and rng.randrange(2) == 0 else "train"
            filled[slot] = values.draw(slot, _pool(slot, which), _pool(slot, "train"))
        if key_values <= set(filled.values()):
            continue  # never a second sentence naming all the question's key values
        text = other_pattern.format(**filled)
        texts.append((text, tokenize(text)))

    order = list(range(len(texts)))
    _shuffle(rng, order)
    offset = 0
    for idx in order:
        if idx == 0:
            break
        offset += len(texts[idx][1])
    context = " ".join(texts[idx][0] for idx in order)
    first, last = spans[question.answer]
    example = Example(context=context, query=query, answer=answer,
                      answer_start=offset + first, answer_end=offset + last, template=template)
    tokens = example.context_tokens
    if tokens[example.answer_start:example.answer_end + 1] != tokenize(answer):
        raise AssertionError(f"answer span is wrong for {example!r}")
    return example


def generate_split(name: str, n: int, seed: Optional[int] = None,
                   exclude: Sequence[Example] = ()) -> List[Example]:
    """``n`` examples of split ``name`` ("train", "a", "b", "c"), reproducible from ``seed``
    (default: the split's own); (context, query) pairs of ``exclude`` are skipped."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(SPLIT_SEEDS[name] if seed is None else seed)
    seen = {(e.context, e.query) for e in exclude}
    out: List[Example] = []
    while len(out) < n:
        ex = _make_example(rng, name)
        if (ex.context, ex.query) in seen:
            continue
        seen.add((ex.context, ex.query))
        out.append(ex)
    return out


@functools.lru_cache(maxsize=None)
def _cached(name: str, n: int) -> Tuple[Example, ...]:
    exclude = _cached("train", TRAIN_SIZE) if name == "a" else ()
    return tuple(generate_split(name, n, exclude=exclude))


def train_examples(n: int = TRAIN_SIZE) -> List[Example]:
    """The training split."""
    return list(_cached("train", n))


def split_examples(split: str, n: int = EVAL_SIZE) -> List[Example]:
    """Evaluation split ``split`` ("a", "b" or "c"; see the module docstring)."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown evaluation split {split!r}; expected one of {EVAL_SPLITS}")
    if n < 0 or n > EVAL_SIZE:
        raise ValueError(f"n must be in [0, {EVAL_SIZE}]")
    return list(_cached(split, EVAL_SIZE)[:n])


def heldout_examples(n: int = EVAL_SIZE, split: str = "a") -> List[Example]:
    """Held-out questions for probes and GPU checks: split ``split`` (default "a", the
    training distribution); see :func:`split_examples`."""
    return split_examples(split, n)


def sample_example() -> Example:
    """NVIDIA's sample pair as an Example (answer span included)."""
    tokens = tokenize(SAMPLE_CONTEXT)
    i = tokens.index(SAMPLE_ANSWER)
    return Example(SAMPLE_CONTEXT, SAMPLE_QUERY, SAMPLE_ANSWER, i, i, "colour/0/t1/t0")


_SENTENCE_END = re.compile(r"(?<=\.)\s+")


def sentences_of(context: str) -> List[str]:
    """The context's sentences (every generated sentence ends with a period)."""
    return [s for s in _SENTENCE_END.split(context.strip()) if s]


def word_vocabulary(examples: Sequence[Example]) -> List[str]:
    """Sorted lower-cased words of the examples' contexts and queries."""
    words = set()
    for ex in examples:
        words.update(w.lower() for w in ex.context_tokens)
        words.update(w.lower() for w in ex.query_tokens)
    return sorted(words)


def dataset_fingerprint(examples: Sequence[Example]) -> str:
    """SHA-256 over the examples (text, answer, span, template): same on every Python."""
    return sha256_chunks(
        "\x1f".join((ex.context, ex.query, ex.answer, str(ex.answer_start), str(ex.answer_end), ex.template))
        .encode("utf-8") + b"\x1e" for ex in examples)

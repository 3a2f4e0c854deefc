"""A seeded, synthetic reading-comprehension set for the BiDAF stand-in.

Every example is a short context (one fact sentence, shuffled among zero to three
distractor sentences) and a question whose answer is a single token or a short span
of the context. The facts come from templates about colours, animals, places, people,
numbers and objects; questions ask what / where / who / which / how many / what color.

Two splits exist:

* ``train``: slot combinations whose stable hash puts them in the training part;
* ``heldout``: a different seed *and* only the held-out combinations (the question's
  key values together with the answer), so the held-out questions are never seen in
  training as such, although every word is.

NVIDIA's sample pair ("A quick brown fox jumps over the lazy dog." / "What color is
the fox?" -> "brown") is an instance of the first template and its combination lies in
the training part.

Pure Python (no numpy, no torch): runs on CPython 3.9 as well, on the GPU kit.
"""
from __future__ import annotations

import functools
import random
import re
import string
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ..fileio import sha256_chunks
from ..text.tokenize import tokenize

SAMPLE_CONTEXT = "A quick brown fox jumps over the lazy dog."
SAMPLE_QUERY = "What color is the fox?"
SAMPLE_ANSWER = "brown"

TRAIN_SEED = 20240611
HELDOUT_SEED = 977
TRAIN_SIZE = 6000
HELDOUT_SIZE = 600
MAX_DISTRACTORS = 3
# One combination in HELDOUT_MODULUS is held out (stable crc32 of the combination).
HELDOUT_MODULUS = 5

SPLITS = ("train", "heldout", "all")

# The suite's nltk-compatible tokenizer defines the answer spans. The sentences here have
# no apostrophes, abbreviations or quotes, so it splits them exactly like the plain
# regular expression SIMPLE_TOKEN_RE (words and single punctuation marks, case kept);
# the tests check that on every generated example.
SIMPLE_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


# --------------------------------------------------------------------------- vocabularies
COLOURS = ("red", "blue", "green", "yellow", "brown", "black", "white", "orange",
           "purple", "pink", "grey", "golden")
ANIMALS = ("fox", "dog", "cat", "horse", "rabbit", "bear", "wolf", "mouse", "owl",
           "duck", "goat", "lion", "tiger", "sheep", "frog", "deer")
ANIMALS_PLURAL = ("foxes", "dogs", "cats", "horses", "rabbits", "bears", "wolves", "mice",
                  "owls", "ducks", "goats", "lions", "tigers", "frogs", "deer", "sheep")
PEOPLE = ("Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene",
          "Jack", "Karen", "Liam", "Maria", "Noah", "Olivia", "Peter")
CITIES = ("Paris", "London", "Tokyo", "Rome", "Berlin", "Madrid", "Cairo", "Lima",
          "New York", "Cape Town", "Hong Kong", "Los Angeles", "Buenos Aires", "San Diego")
PLACES = ("kitchen", "garden", "library", "park", "school", "market", "office", "beach",
          "forest", "museum", "station", "bakery", "harbour", "barn")
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve")
DIGITS = tuple(str(i) for i in range(1, 13))
OBJECTS = ("book", "lamp", "key", "ball", "cup", "kite", "bag", "pen", "box", "clock",
           "chair", "umbrella", "basket", "bottle")
OBJECTS_PLURAL = ("books", "lamps", "keys", "balls", "cups", "kites", "bags", "pens",
                  "boxes", "clocks", "chairs", "umbrellas", "baskets", "bottles")
CLOTHES = ("hat", "scarf", "coat", "dress", "shirt", "jacket", "sweater", "cap")
ADJECTIVES = ("quick", "lazy", "small", "big", "sleepy", "happy", "old", "young")
FOODS = ("apples", "carrots", "cookies", "berries", "sandwiches", "plums")

# Slot name (trailing digits stripped) -> the values it draws from.
CATEGORIES: Dict[str, Tuple[str, ...]] = {
    "col": COLOURS, "ani": ANIMALS, "anip": ANIMALS_PLURAL, "per": PEOPLE,
    "city": CITIES, "place": PLACES, "num": NUMBERS, "digit": DIGITS, "obj": OBJECTS,
    "objp": OBJECTS_PLURAL, "clo": CLOTHES, "adj": ADJECTIVES, "food": FOODS,
}

# Question words that say nothing about which sentence holds the answer.
_QUESTION_STOPWORDS = frozenset(
    "what where who whom which how many much is are was were the a an did does do of to "
    "from in on at color colour ? , .".split())


# --------------------------------------------------------------------------- templates
@dataclass(frozen=True)
class Question:
    pattern: str   # e.g. "What color is the {ani}?"
    answer: str    # the slot holding the answer, e.g. "col"


@dataclass(frozen=True)
class Template:
    name: str
    sentence: str
    questions: Tuple[Question, ...]

    @property
    def slots(self) -> Tuple[str, ...]:
        return tuple(dict.fromkeys(
            field for _, field, _, _ in string.Formatter().parse(self.sentence) if field))


def _t(name: str, sentence: str, *questions: Tuple[str, str]) -> Template:
    return Template(name, sentence, tuple(Question(p, a) for p, a in questions))


TEMPLATES: Tuple[Template, ...] = (
    _t("jumps_over", "A {adj} {col} {ani} jumps over the {adj2} {ani2}.",
       ("What color is the {ani}?", "col"),
       ("What does the {ani} jump over?", "ani2")),
    _t("sleeps_under", "The {ani} sleeps under the {col} {obj}.",
       ("What color is the {obj}?", "col"),
       ("What does the {ani} sleep under?", "obj")),
    _t("lives_in", "{per} lives in {city}.",
       ("Where does {per} live?", "city"),
       ("Who lives in {city}?", "per")),
    _t("has_animals", "{per} has {num} {anip}.",
       ("How many {anip} does {per} have?", "num")),
    _t("bought", "{per} bought a {col} {obj} at the {place}.",
       ("What did {per} buy?", "obj"),
       ("Who bought a {obj}?", "per")),
    _t("is_in_place", "The {obj} is in the {place}.",
       ("Where is the {obj}?", "place")),
    _t("gave", "{per} gave the {obj} to {per2}.",
       ("Who gave the {obj} to {per2}?", "per"),
       ("What did {per} give to {per2}?", "obj")),
    _t("on_the_table", "There are {num} {objp} on the table.",
       ("How many {objp} are on the table?", "num")),
    _t("painted_fence", "{per} painted the fence {col}.",
       ("What color did {per} paint the fence?", "col")),
    _t("ate_food", "The {ani} ate {num} {food}.",
       ("How many {food} did the {ani} eat?", "num"),
       ("What did the {ani} eat?", "food")),
    _t("met_in_city", "{per} met {per2} in {city}.",
       ("Who did {per} meet?", "per2"),
       ("Where did {per} meet {per2}?", "city")),
    _t("favourite_colour", "The favourite colour of {per} is {col}.",
       ("What is the favourite colour of {per}?", "col")),
    _t("works_near", "{per} works at the {place} near the {place2}.",
       ("Where does {per} work?", "place")),
    _t("belongs_to", "The {col} {obj} belongs to {per}.",
       ("Who owns the {obj}?", "per"),
       ("What color is the {obj}?", "col")),
    _t("rode_bicycle", "{per} rode a {col} bicycle to the {place}.",
       ("Where did {per} ride to?", "place"),
       ("What color is the bicycle of {per}?", "col")),
    _t("animals_sleeping", "{num} {anip} were sleeping in the {place}.",
       ("How many {anip} were sleeping?", "num"),
       ("Where were the {anip} sleeping?", "place")),
    _t("chased_ball", "The {ani} chased a {col} ball across the {place}.",
       ("What chased the ball?", "ani"),
       ("What color was the ball?", "col")),
    _t("holding", "{per} is holding a {obj}.",
       ("What is {per} holding?", "obj")),
    _t("flew", "{per} flew from {city} to {city2}.",
       ("Where did {per} fly to?", "city2"),
       ("Where did {per} fly from?", "city")),
    _t("windows", "The {place} has {num} windows.",
       ("How many windows does the {place} have?", "num")),
    _t("seen_near", "A {col} {ani} was seen near the {place}.",
       ("What color was the {ani}?", "col"),
       ("Where was the {ani} seen?", "place")),
    _t("played_with", "{per} and {per2} played with a {obj}.",
       ("Who played with {per}?", "per2"),
       ("What did {per} and {per2} play with?", "obj")),
    _t("teacher", "The teacher of {per} is {per2}.",
       ("Who is the teacher of {per}?", "per2")),
    _t("wore", "{per} wore a {col} {clo}.",
       ("What color was the {clo}?", "col"),
       ("Who wore a {clo}?", "per")),
    _t("found_in_city", "In {city}, {per} found {num} {objp}.",
       ("How many {objp} did {per} find?", "num"),
       ("Where did {per} find the {objp}?", "city")),
    _t("hiding_behind", "The {ani} is hiding behind the {obj}.",
       ("What is the {ani} hiding behind?", "obj")),
    _t("platform", "The train to {city} leaves from platform {digit}.",
       ("Which platform does the train to {city} leave from?", "digit")),
    _t("pet_name", "The {ani} of {per} is called {per2}.",
       ("What is the {ani} of {per} called?", "per2"),
       ("Who owns the {ani}?", "per")),
)

TEMPLATE_NAMES = tuple(t.name for t in TEMPLATES)
_TEMPLATE_BY_NAME = {t.name: t for t in TEMPLATES}


def _category(slot: str) -> Tuple[str, ...]:
    return CATEGORIES[slot.rstrip("0123456789")]


# --------------------------------------------------------------------------- examples
@dataclass(frozen=True)
class Example:
    """One question about one context; the answer is tokens[answer_start:answer_end + 1]."""

    context: str
    query: str
    answer: str
    answer_start: int = -1   # index of the answer's first token in tokenize(context)
    answer_end: int = -1     # index of its last token (inclusive)
    template: str = ""       # "template_name/question_index"

    @property
    def context_tokens(self) -> List[str]:
        return tokenize(self.context)

    @property
    def query_tokens(self) -> List[str]:
        return tokenize(self.query)

    @property
    def span(self) -> Tuple[int, int]:
        return self.answer_start, self.answer_end


def _fill(rng: random.Random, template: Template) -> Dict[str, str]:
    """Random values for the template's slots; slots of one category get distinct values."""
    values: Dict[str, str] = {}
    used: Dict[str, set] = {}
    for slot in template.slots:
        base = slot.rstrip("0123456789")
        pool = [v for v in _category(slot) if v not in used.setdefault(base, set())]
        value = pool[rng.randrange(len(pool))]
        used[base].add(value)
        values[slot] = value
    return values


def _render(pattern: str, values: Dict[str, str]) -> Tuple[List[str], Dict[str, Tuple[int, int]]]:
    """Tokens of the filled pattern and each slot's token span (first, last inclusive)."""
    tokens: List[str] = []
    spans: Dict[str, Tuple[int, int]] = {}
    for literal, field, _, _ in string.Formatter().parse(pattern):
        tokens.extend(tokenize(literal))
        if field:
            value_tokens = tokenize(values[field])
            spans[field] = (len(tokens), len(tokens) + len(value_tokens) - 1)
            tokens.extend(value_tokens)
    if tokens != tokenize(pattern.format(**values)):  # slot borders must be token borders
        raise AssertionError(f"template {pattern!r} does not tokenise slot by slot")
    return tokens, spans


def combination_key(template: Template, question_index: int, values: Dict[str, str]) -> str:
    """The question's key values plus the answer: what the train / held-out split is over."""
    q = template.questions[question_index]
    fields = {f for _, f, _, _ in string.Formatter().parse(q.pattern) if f}
    fields.add(q.answer)
    parts = [f"{k}={values[k]}" for k in sorted(fields)]
    return f"{template.name}/{question_index}:" + ",".join(parts)


SAMPLE_COMBINATION = combination_key(
    _TEMPLATE_BY_NAME["jumps_over"], 0,
    {"adj": "quick", "col": "brown", "ani": "fox", "adj2": "lazy", "ani2": "dog"})


def is_heldout_combination(key: str) -> bool:
    """Stable (crc32) choice of one combination in HELDOUT_MODULUS; never the sample's."""
    if key == SAMPLE_COMBINATION:
        return False
    return zlib.crc32(key.encode("utf-8")) % HELDOUT_MODULUS == 0


def _split_accepts(split: str, key: str) -> bool:
    if split == "all":
        return True
    held = is_heldout_combination(key)
    return held if split == "heldout" else not held


def _make_example(rng: random.Random, split: str) -> Example:
    while True:
        template = TEMPLATES[rng.randrange(len(TEMPLATES))]
        qi = rng.randrange(len(template.questions))
        values = _fill(rng, template)
        if _split_accepts(split, combination_key(template, qi, values)):
            break
    question = template.questions[qi]
    fact_tokens, spans = _render(template.sentence, values)
    query = question.pattern.format(**values)
    answer = values[question.answer]

    # Distractors never mention the question's content words nor the answer, so the
    # question has exactly one answer in the context.
    forbidden = {w.lower() for w in tokenize(query)} - _QUESTION_STOPWORDS
    forbidden |= {w.lower() for w in tokenize(answer)}
    sentences: List[Tuple[str, List[str]]] = [(template.sentence.format(**values), fact_tokens)]
    n_distractors = rng.randrange(MAX_DISTRACTORS + 1)
    attempts = 0
    while len(sentences) < n_distractors + 1 and attempts < 100:
        attempts += 1
        other = TEMPLATES[rng.randrange(len(TEMPLATES))]
        text = other.sentence.format(**_fill(rng, other))
        toks = tokenize(text)
        if forbidden.intersection(w.lower() for w in toks):
            continue
        if any(text == s for s, _ in sentences):
            continue
        sentences.append((text, toks))
    order = list(range(len(sentences)))
    for i in range(len(order) - 1, 0, -1):  # Fisher-Yates on our own draws (stable across Pythons)
        j = rng.randrange(i + 1)
        order[i], order[j] = order[j], order[i]
    offset = 0
    for idx in order:
        if idx == 0:
            break
        offset += len(sentences[idx][1])
    context = " ".join(sentences[idx][0] for idx in order)
    first, last = spans[question.answer]
    example = Example(context=context, query=query, answer=answer,
                      answer_start=offset + first, answer_end=offset + last,
                      template=f"{template.name}/{qi}")
    tokens = example.context_tokens
    if " ".join(tokens[example.answer_start:example.answer_end + 1]) != " ".join(tokenize(answer)):
        raise AssertionError(f"answer span is wrong for {example!r}")
    return example


def generate_split(name: str, n: int, seed: int) -> List[Example]:
    """``n`` examples of split ``name`` ("train", "heldout" or "all"), reproducible from ``seed``."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    return [_make_example(rng, name) for _ in range(n)]


@functools.lru_cache(maxsize=None)
def _cached(name: str, n: int, seed: int) -> Tuple[Example, ...]:
    return tuple(generate_split(name, n, seed))


def train_examples(n: int = TRAIN_SIZE, seed: int = TRAIN_SEED) -> List[Example]:
    """The training split (combinations outside the held-out part)."""
    return list(_cached("train", n, seed))


def heldout_examples(n: int = HELDOUT_SIZE, seed: int = HELDOUT_SEED) -> List[Example]:
    """The held-out split: another seed and only held-out combinations."""
    return list(_cached("heldout", n, seed))


def sample_example() -> Example:
    """NVIDIA's sample pair as an Example (answer span included)."""
    tokens = tokenize(SAMPLE_CONTEXT)
    i = tokens.index(SAMPLE_ANSWER)
    return Example(SAMPLE_CONTEXT, SAMPLE_QUERY, SAMPLE_ANSWER, i, i, "jumps_over/0")


def match_template(context: str, query: str) -> Optional[str]:
    """"name/question_index" of a template that produces this fact sentence and question,
    with the context being that single sentence; None when none does."""
    for template in TEMPLATES:
        sentence_re = _pattern_regex(template.sentence)
        m = sentence_re.fullmatch(context)
        if not m:
            continue
        values = m.groupdict()
        by_category: Dict[str, List[str]] = {}
        for slot, value in values.items():
            by_category.setdefault(slot.rstrip("0123456789"), []).append(value)
        if any(len(set(v)) != len(v) for v in by_category.values()):
            continue  # the generator never repeats a value of one category in a sentence
        for qi, q in enumerate(template.questions):
            try:
                if q.pattern.format(**values) == query:
                    return f"{template.name}/{qi}"
            except KeyError:
                continue
    return None


def _pattern_regex(pattern: str) -> "re.Pattern[str]":
    parts: List[str] = []
    seen = set()
    for literal, field, _, _ in string.Formatter().parse(pattern):
        parts.append(re.escape(literal))
        if field:
            if field in seen:
                parts.append(f"(?P={field})")
            else:
                seen.add(field)
                alternatives = "|".join(re.escape(v) for v in _category(field))
                parts.append(f"(?P<{field}>{alternatives})")
    return re.compile("".join(parts))


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

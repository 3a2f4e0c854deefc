"""The synthetic reading-comprehension set behind the BiDAF stand-in, and its baselines."""
from __future__ import annotations

import ast
import collections
import json
import re
from pathlib import Path

import pytest

import refit_core
from refit_core.samples.bidaf import data as rc
from tools.bidaf_standin.baselines import (OverlapOffsetBaseline, RegexBaseline,
                                                             answer_matches, baseline_exact_match)
from refit_core.samples.bidaf.tokenize import tokenize

# the GPU engine's optimization profile (flows/bidaf.py): every question must fit it
MAX_CONTEXT_TOKENS, MAX_QUERY_TOKENS = 64, 32


@pytest.fixture(scope="module")
def train():
    return rc.train_examples()


@pytest.fixture(scope="module")
def splits():
    return {s: rc.split_examples(s) for s in rc.EVAL_SPLITS}


def _all_eval_only_values():
    return {v for values in rc.EVAL_ONLY_VALUES.values() for v in values}


def _words(text):
    return {t.lower() for t in tokenize(text)}


def test_generation_is_deterministic():
    a = rc.generate_split("train", 200, seed=5)
    assert a == rc.generate_split("train", 200, seed=5)
    assert a != rc.generate_split("train", 200, seed=6)
    assert rc.train_examples()[:50] == rc.generate_split("train", 50)
    assert rc.heldout_examples() == rc.split_examples("a")
    assert rc.heldout_examples(20, split="c") == rc.split_examples("c")[:20]


def test_splits_are_the_ones_the_committed_stand_in_was_trained_and_scored_on(train, splits):
    """The generator's output is pinned by the stand-in's metadata (any Python, 3.9 on)."""
    from refit_core.samples.bidaf import STANDIN_METADATA
    data = json.loads(Path(STANDIN_METADATA).read_text())["data"]
    assert rc.dataset_fingerprint(train) == data["train_sha256"], (
        "the training split changed: regenerate the stand-in "
        "(python -m tools.bidaf_standin.generate)")
    for s, examples in splits.items():
        assert rc.dataset_fingerprint(examples) == data["split_sha256"][s], s
    assert rc.TRAIN_SEED == data["train_seed"] and rc.SPLIT_SEEDS == data["split_seeds"]


def test_split_names_are_checked():
    with pytest.raises(ValueError, match="unknown split"):
        rc.generate_split("validation", 3)
    with pytest.raises(ValueError):
        rc.generate_split("train", -1)
    with pytest.raises(ValueError, match="unknown evaluation split"):
        rc.split_examples("train")
    assert rc.generate_split("a", 0) == []


def test_question_kinds_and_phrasings():
    kinds = collections.Counter(q.kind for r in rc.RELATIONS for q in r.questions)
    assert set(kinds) == {"colour", "place", "person", "number", "object"}
    openers = {p.split()[0].lower() for r in rc.RELATIONS for q in r.questions for p in q.train_phrasings}
    assert {"what", "where", "who", "how"} <= openers
    for r in rc.RELATIONS:
        assert r.eval_sentences and not set(r.eval_sentences) & set(r.train_sentences)
        for q in r.questions:
            assert q.eval_phrasings and not set(q.eval_phrasings) & set(q.train_phrasings)
            for p in q.eval_phrasings:   # the same entity is asked about
                assert set(rc._slots(p)) == set(q.keys), p


def test_answers_are_unique_spans_of_the_context(train, splits):
    lengths = collections.Counter()
    for ex in train + [e for ex in splits.values() for e in ex]:
        tokens = tokenize(ex.context)
        assert 0 <= ex.answer_start <= ex.answer_end < len(tokens)
        assert tokens[ex.answer_start:ex.answer_end + 1] == tokenize(ex.answer)
        lengths[ex.answer_end - ex.answer_start + 1] += 1
        first = tokens[ex.answer_start].lower()
        assert [t.lower() for t in tokens].count(first) == 1, ex
        assert len(tokens) <= MAX_CONTEXT_TOKENS and len(tokenize(ex.query)) <= MAX_QUERY_TOKENS
    assert lengths[1] > 0 and lengths[2] > 0          # single tokens and short spans


def test_contexts_have_one_to_five_sentences_with_same_kind_distractors(train):
    n_sentences = collections.Counter(len(rc.sentences_of(e.context)) for e in train)
    assert set(n_sentences) == {1, 2, 3, 4, 5}
    # a distractor of the same kind: another sentence holds a value of the answer's category
    with_distractor = 0
    multi = [e for e in train if len(rc.sentences_of(e.context)) > 1]
    for ex in multi:
        relation, qi = ex.template.split("/")[:2]
        slot = next(r for r in rc.RELATIONS if r.name == relation).questions[int(qi)].answer
        category = set(rc.VALUES[rc._base(slot)][0])
        others = [s for s in rc.sentences_of(ex.context) if ex.answer not in s]
        if any(v in _phrases(s) for s in others for v in category):
            with_distractor += 1
    assert with_distractor / len(multi) > 0.7


def _phrases(sentence):
    tokens = tokenize(sentence)
    return {" ".join(tokens[i:i + n]) for n in (1, 2) for i in range(len(tokens))}


def test_question_entity_is_named_by_the_fact_sentence_only(train):
    """Other sentences attach to other entities: no second sentence names all the keys."""
    for ex in train[:3000]:
        relation, qi = ex.template.split("/")[:2]
        spec = next(r for r in rc.RELATIONS if r.name == relation).questions[int(qi)]
        naming = [s for s in rc.sentences_of(ex.context)
                  if all(any(w in _words(s) for w in _key_words(ex, spec, k)) for k in spec.keys)]
        assert len(naming) == 1, ex


def _key_words(ex, spec, key):
    """Words of the query that fill slot ``key`` (found by the training phrasing regexes)."""
    for phrasing in spec.train_phrasings + spec.eval_phrasings:
        m = _regex(phrasing).fullmatch(ex.query)
        if m:
            return _words(m.group(key))
    raise AssertionError(f"no phrasing parses {ex.query!r}")


def _regex(pattern):
    from tools.bidaf_standin.baselines import _regex as make
    return make(pattern)


def test_evaluation_only_templates_phrasings_and_values_never_reach_training(train, splits):
    eval_values = _all_eval_only_values()
    train_words = set(rc.word_vocabulary(train))
    assert not {w.lower() for v in eval_values for w in tokenize(v)} & train_words
    assert all("/t" in e.template and e.template.count("/t") == 2 for e in train)
    # split b: each example uses an evaluation-only template or phrasing (or both)
    b_tags = collections.Counter(tuple(p[0] for p in e.template.split("/")[2:]) for e in splits["b"])
    assert set(b_tags) == {("e", "t"), ("t", "e"), ("e", "e")}
    # split c: the answer is an evaluation-only value, in training templates and phrasings
    assert all(e.answer in eval_values and e.template.count("/t") == 2 for e in splits["c"])
    # split a: the training distribution, but no (context, query) pair of training
    assert all(e.template.count("/t") == 2 and e.answer not in eval_values for e in splits["a"])
    assert not {(e.context, e.query) for e in train} & {(e.context, e.query) for e in splits["a"]}


def test_shared_tokenizer_splits_like_a_plain_regex(train, splits):
    simple = re.compile(r"\w+|[^\w\s]")
    for ex in train[:2000] + splits["b"] + splits["c"]:
        for text in (ex.context, ex.query):
            assert tokenize(text) == simple.findall(text)


def test_sample_pair_is_in_the_training_distribution(train):
    assert (rc.SAMPLE_CONTEXT, rc.SAMPLE_QUERY, rc.SAMPLE_ANSWER) == (
        "A quick brown fox jumps over the lazy dog.", "What color is the fox?", "brown")
    assert RegexBaseline().answer(rc.SAMPLE_CONTEXT, rc.SAMPLE_QUERY) == "brown"
    sample = rc.sample_example()
    assert tokenize(sample.context)[sample.answer_start] == "brown"
    vocab = set(rc.word_vocabulary(train))
    assert _words(rc.SAMPLE_CONTEXT + " " + rc.SAMPLE_QUERY) <= vocab
    assert sum(1 for e in train if e.template.startswith("colour/0/t1/")) > 100


# --------------------------------------------------------------------------- baselines

def test_regex_baseline_solves_the_training_templates(train):
    """It is a real template solver: every training-distribution question, no training."""
    assert baseline_exact_match(RegexBaseline(), train[:1500]) == 1.0


def test_regex_baseline_cannot_parse_evaluation_only_wording(splits):
    regex = RegexBaseline()
    for ex in splits["b"][:100]:
        assert regex.answer(ex.context, ex.query) == ""
    assert regex.answer("Mary lives in London. John lives in Rome.", "Where does John live?") == "Rome"
    assert regex.answer("Mary lives in London.", "Where does John live?") == ""


def test_overlap_offset_heuristic_takes_the_overlapping_sentence(train):
    heuristic = OverlapOffsetBaseline(train)
    offset = heuristic.offsets["what color"]
    assert offset == (2, 1)        # "A quick brown fox jumps ..." is the most common shape
    context = "A big black cat jumps over the old dog. A quick brown fox jumps over the lazy owl."
    assert heuristic.answer(context, "What color is the fox?") == "brown"
    # the offset is learned, not read: another sentence shape puts it on the wrong word
    assert heuristic.answer("The cat is black. The fox is brown.", "What color is the fox?") == "is"
    assert baseline_exact_match(heuristic, train[:500]) < 0.9   # it does not solve the task


def test_answer_matches_compares_tokens_case_insensitively():
    ex = rc.Example("Bob lives in New York.", "Where does Bob live?", "New York", 3, 4)
    assert answer_matches("new york", ex) and answer_matches("New  York", ex)
    assert not answer_matches("New", ex) and not answer_matches("", ex)


def test_torch_free_modules_parse_as_python39():
    """The data generator, the baselines and the ORT side run on the GPU kit's CPython 3.9."""
    root = Path(refit_core.__file__).resolve().parents[1]
    for rel in ("refit_core/samples/bidaf/data.py", "tools/bidaf_standin/baselines.py",
                "refit_core/samples/bidaf/__init__.py", "tools/bidaf_standin/vocab.py",
                "refit_core/samples/bidaf/reference.py", "tools/bidaf_standin/splits.py"):
        source = (root / rel).read_text()
        assert source.lstrip().startswith('"""') and "from __future__ import annotations" in source
        tree = ast.parse(source, filename=rel, feature_version=(3, 9))
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                    for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and n.level == 0}
        assert not imported & {"torch", "numpy"} or rel.endswith(("reference.py",)), rel
        assert "torch" not in imported, rel

"""The synthetic reading-comprehension set behind the BiDAF stand-in."""
from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

import refit_core
from refit_core.data import reading_comprehension as rc
from refit_core.text.tokenize import tokenize


@pytest.fixture(scope="module")
def train():
    return rc.train_examples()


@pytest.fixture(scope="module")
def heldout():
    return rc.heldout_examples()


def test_generation_is_deterministic():
    a = rc.generate_split("train", 200, seed=5)
    b = rc.generate_split("train", 200, seed=5)
    c = rc.generate_split("train", 200, seed=6)
    assert a == b
    assert a != c
    assert rc.train_examples()[:50] == rc.generate_split("train", rc.TRAIN_SIZE, rc.TRAIN_SEED)[:50]


def test_splits_are_the_ones_the_committed_stand_in_was_trained_and_scored_on(train, heldout):
    """The generator's output is pinned by the stand-in's metadata (any Python, 3.9 on)."""
    import json
    from refit_core.models.bidaf import STANDIN_METADATA
    data = json.loads(Path(STANDIN_METADATA).read_text())["data"]
    assert rc.dataset_fingerprint(train) == data["train_sha256"], (
        "the training split changed: regenerate the stand-in "
        "(python -m refit_core.models.bidaf.generate)")
    assert rc.dataset_fingerprint(heldout) == data["heldout_sha256"]
    assert (rc.TRAIN_SEED, rc.HELDOUT_SEED) == (data["train_seed"], data["heldout_seed"])


def test_split_names_are_checked():
    with pytest.raises(ValueError, match="unknown split"):
        rc.generate_split("validation", 3, 0)
    with pytest.raises(ValueError):
        rc.generate_split("train", -1, 0)
    assert rc.generate_split("all", 0, 0) == []


def test_at_least_twenty_templates_and_all_question_kinds(train):
    assert len(rc.TEMPLATES) >= 20
    assert len(set(rc.TEMPLATE_NAMES)) == len(rc.TEMPLATES)
    openers = {" ".join(q.pattern.split()[:2]).lower() for t in rc.TEMPLATES for q in t.questions}
    for kind in ("what color", "how many"):
        assert kind in openers
    first_words = {o.split()[0] for o in openers}
    assert {"what", "where", "who", "how", "which"} <= first_words
    # every question of every template is used by the training split
    used = collections.Counter(e.template for e in train)
    expected = {f"{t.name}/{i}" for t in rc.TEMPLATES for i in range(len(t.questions))}
    assert set(used) == expected


def test_answers_are_spans_of_the_context(train, heldout):
    lengths = collections.Counter()
    for ex in train + heldout:
        tokens = tokenize(ex.context)
        assert 0 <= ex.answer_start <= ex.answer_end < len(tokens)
        assert tokens[ex.answer_start:ex.answer_end + 1] == tokenize(ex.answer)
        lengths[ex.answer_end - ex.answer_start + 1] += 1
        # the answer is unambiguous: its first token appears nowhere else in the context
        first = tokens[ex.answer_start].lower()
        assert [t.lower() for t in tokens].count(first) == 1, ex
    assert lengths[1] > 0 and lengths[2] > 0          # single tokens and short spans
    assert max(lengths) <= 2


def test_contexts_have_distractors(train):
    n_sentences = collections.Counter(e.context.count(". ") + 1 for e in train)
    assert set(n_sentences) >= {1, 2, 3, 4}


def test_shared_tokenizer_splits_like_the_simple_regex(train, heldout):
    """The spans were defined with the nltk-compatible tokenizer; on these sentences it is
    the plain words-and-punctuation split the brief describes."""
    for ex in train[:2000] + heldout:
        for text in (ex.context, ex.query):
            assert tokenize(text) == rc.SIMPLE_TOKEN_RE.findall(text)


def test_sample_pair_is_in_the_training_distribution(train):
    assert rc.SAMPLE_CONTEXT == "A quick brown fox jumps over the lazy dog."
    assert rc.SAMPLE_QUERY == "What color is the fox?"
    assert rc.SAMPLE_ANSWER == "brown"
    assert rc.match_template(rc.SAMPLE_CONTEXT, rc.SAMPLE_QUERY) == "jumps_over/0"
    assert not rc.is_heldout_combination(rc.SAMPLE_COMBINATION)
    sample = rc.sample_example()
    assert tokenize(sample.context)[sample.answer_start] == "brown"
    vocab = set(rc.word_vocabulary(train))
    assert {t.lower() for t in tokenize(rc.SAMPLE_CONTEXT + " " + rc.SAMPLE_QUERY)} <= vocab
    same_question = [e for e in train if e.template == "jumps_over/0"]
    assert len(same_question) > 50
    assert any(e.answer == "brown" for e in same_question)
    assert any("fox" in e.query for e in same_question)
    # the template also produces the sample sentence itself (no distractors)
    assert any(rc.match_template(e.context, e.query) == "jumps_over/0" for e in same_question)


def test_match_template_rejects_other_text():
    assert rc.match_template("A quick brown fox jumps over the lazy fox.", rc.SAMPLE_QUERY) is None
    assert rc.match_template(rc.SAMPLE_CONTEXT, "Where is the fox?") is None
    assert rc.match_template("Alice lives in New York.", "Where does Alice live?") == "lives_in/0"


def test_heldout_is_disjoint_from_train(train, heldout):
    assert len(heldout) == rc.HELDOUT_SIZE and len(train) == rc.TRAIN_SIZE
    assert not {(e.context, e.query) for e in train} & {(e.context, e.query) for e in heldout}
    # held-out combinations (question keys + answer) never occur in training
    assert all(_key(e) is not None and rc.is_heldout_combination(_key(e)) for e in heldout[:200])
    assert not any(rc.is_heldout_combination(_key(e)) for e in train[:1000])
    # but every held-out word is known from training
    assert set(rc.word_vocabulary(heldout)) <= set(rc.word_vocabulary(train))


def _key(ex: rc.Example):
    """Recover an example's combination key from its fact sentence and question."""
    name, qi = ex.template.split("/")
    template = next(t for t in rc.TEMPLATES if t.name == name)
    regex = rc._pattern_regex(template.sentence)
    for sentence in _sentences(ex.context):
        m = regex.fullmatch(sentence)
        if m and template.questions[int(qi)].pattern.format(**m.groupdict()) == ex.query:
            return rc.combination_key(template, int(qi), m.groupdict())
    return None


def _sentences(context: str):
    parts = context.split(". ")
    return [p if p.endswith(".") else p + "." for p in parts]


def test_torch_free_modules_parse_as_python39():
    """The data generator and the ORT reference run on the GPU kit's CPython 3.9."""
    root = Path(refit_core.__file__).resolve().parent
    for rel in ("data/reading_comprehension.py", "models/bidaf/__init__.py",
                "models/bidaf/vocab.py", "models/bidaf/reference.py"):
        source = (root / rel).read_text()
        assert source.lstrip().startswith('"""') and "from __future__ import annotations" in source
        tree = ast.parse(source, filename=rel, feature_version=(3, 9))
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                    for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and n.level == 0}
        assert "torch" not in imported, rel

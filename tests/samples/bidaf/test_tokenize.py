"""The offline tokenizer: nltk.word_tokenize's conventions on the sample's kind of text."""
from __future__ import annotations

from typing import List

import pytest

from refit_core.samples.bidaf.tokenize import tokenize

CASES = [
    ("A quick brown fox jumps over the lazy dog.",
     ["A", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "."]),
    ("What color is the fox?", ["What", "color", "is", "the", "fox", "?"]),
    ("Wait... what?! Yes; no.", ["Wait", "...", "what", "?", "!", "Yes", ";", "no", "."]),
    ("(yes) [no] {x} <y> a--b a*b", ["(", "yes", ")", "[", "no", "]", "{", "x", "}", "<", "y", ">",
                                     "a", "--", "b", "a", "*", "b"]),
    # contractions, Treebank style (what BiDAF's vocabulary holds)
    ("I don't know.", ["I", "do", "n't", "know", "."]),
    ("It's mine, I'm sure; we're, they've, she'll, he'd", ["It", "'s", "mine", ",", "I", "'m", "sure", ";",
                                                          "we", "'re", ",", "they", "'ve", ",", "she", "'ll",
                                                          ",", "he", "'d"]),
    ("DON'T", ["DO", "N'T"]),
    ("You cannot, gonna, wanna go", ["You", "can", "not", ",", "gon", "na", ",", "wan", "na", "go"]),
    ("o'clock y'all rock 'n' roll", ["o'clock", "y'all", "rock", "'n", "'", "roll"]),
    ("the dogs' bowls", ["the", "dogs", "'", "bowls"]),
    ("'them'", ["'", "them", "'"]),
    # quotes become Treebank quotes
    ('He said "hello" to me.', ["He", "said", "``", "hello", "''", "to", "me", "."]),
    ('"Go," she said.', ["``", "Go", ",", "''", "she", "said", "."]),
    ("“Smart” quotes", ["“", "Smart", "”", "quotes"]),
    # numbers, money, time, hyphens
    ("It costs $1,000.50 at 10:30 today, 50% off",
     ["It", "costs", "$", "1,000.50", "at", "10:30", "today", ",", "50", "%", "off"]),
    ("a state-of-the-art e-mail", ["a", "state-of-the-art", "e-mail"]),
    ("pi is 3.14", ["pi", "is", "3.14"]),
    ("It was 1990.", ["It", "was", "1990", "."]),
    # periods: final one split, abbreviations kept mid-text, sentence ends split
    ("I live in the U.S.", ["I", "live", "in", "the", "U.S", "."]),
    ("I live in the U.S. now.", ["I", "live", "in", "the", "U.S.", "now", "."]),
    ("Mr. Smith met Dr. Jones at 5 p.m. today.", ["Mr.", "Smith", "met", "Dr.", "Jones", "at", "5", "p.m.",
                                                  "today", "."]),
    ("He left. She stayed.", ["He", "left", ".", "She", "stayed", "."]),
    ("She said \"no.\" Then left.", ["She", "said", "``", "no", ".", "''", "Then", "left", "."]),
    ("J. R. R. Tolkien wrote it.", ["J.", "R.", "R.", "Tolkien", "wrote", "it", "."]),
    # case kept; typographic apostrophe read as a straight one (documented difference)
    ("The FOX’s den", ["The", "FOX", "'s", "den"]),
    ("don’t", ["do", "n't"]),
    # whitespace of any kind
    ("  tabs\tand\nnewlines\u00a0here  ", ["tabs", "and", "newlines", "here"]),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0][:30] for c in CASES])
def test_tokenize(text: str, expected: List[str]) -> None:
    assert tokenize(text) == expected


@pytest.mark.parametrize("text", ["", " ", "\t\n  "])
def test_blank_text_has_no_tokens(text: str) -> None:
    assert tokenize(text) == []


def test_long_words_are_one_token() -> None:
    assert tokenize("supercalifragilisticexpialidocious!") == ["supercalifragilisticexpialidocious", "!"]


NLTK_SENTENCES = [c[0] for c in CASES if c[0] not in {
    "He left. She stayed.", "She said \"no.\" Then left.",  # two sentences: punkt's business
    "The FOX’s den", "don’t",                               # documented difference 2
}] + [
    "Super Bowl 50 was an American football game to determine the champion of the National "
    "Football League (NFL) for the 2015 season.",
    "The Normans (Norman: Nourmands; French: Normands; Latin: Normanni) were the people who in "
    "the 10th and 11th centuries gave their name to Normandy, a region in France.",
    "Which NFL team represented the AFC at Super Bowl 50?",
]


def test_same_as_nltk_on_single_sentences() -> None:
    """Where nltk is installed (not needed by the suite), compare with its word tokenizer.

    NLTKWordTokenizer is what word_tokenize runs on each punkt sentence; it needs no
    downloaded data, so single sentences compare exactly.
    """
    destructive = pytest.importorskip("nltk.tokenize.destructive", reason="nltk not installed")
    nltk_tok = destructive.NLTKWordTokenizer()
    for text in NLTK_SENTENCES:
        assert tokenize(text) == nltk_tok.tokenize(text), text


def test_reading_comprehension_text_splits_into_words_and_punctuation() -> None:
    """The data set's text (plain words, numbers and sentence punctuation) tokenizes as a
    word/punctuation split computed independently here; and each gold answer span, taken
    from tokenize(context), spells the answer. (The old check compared tokenize(x) with
    Example.context_tokens, which is tokenize(x) itself.)"""
    import re
    from refit_core.samples.bidaf import data as rc
    plain = re.compile(r"[A-Za-z0-9 ,.?!]*")
    examples = rc.heldout_examples()[:200] + [rc.sample_example()]
    checked = 0
    for ex in examples:
        for text in (ex.context, ex.query):
            if plain.fullmatch(text):  # no quotes, apostrophes, abbreviations: the split is obvious
                assert tokenize(text) == re.findall(r"[A-Za-z0-9]+|[,.?!]", text), text
                checked += 1
        span = tokenize(ex.context)[ex.answer_start:ex.answer_end + 1]
        assert "".join(span) == "".join(ex.answer.split()), (ex.context, ex.answer, span)
    assert checked >= 0.9 * 2 * len(examples), f"only {checked} texts were plain enough to check"

"""BiDAF preprocessing: shapes, case, the 16-char cut, id lookup, feeds, empty input."""
from __future__ import annotations

from typing import Dict

import numpy as np
import pytest

from refit_core.errors import DataError
from refit_core.samples.bidaf.prepare import CategoryMap
from refit_core.samples.bidaf.preprocess import (MAX_CHARS, answer_span, encode_text, feeds_for_original,
                                        feeds_for_prepared)

WORDS = ["a", "quick", "brown", "fox", ".", "what", "color", "is", "the", "?"]
CHARS = list("abcdefghijklmnopqrstuvwxyz.?") + ["Q", "W"]


@pytest.fixture()
def maps() -> Dict[str, CategoryMap]:
    """Tables shaped like bidaf-9's: words lower-case, chars single characters."""
    out = {}
    for side in ("context", "query"):
        out[f"{side}_word"] = CategoryMap(WORDS, list(range(10, 10 + len(WORDS))), -1,
                                          f"CM_{side}_w", f"{side}_word", f"{side}_word_ids")
        out[f"{side}_char"] = CategoryMap(CHARS, list(range(100, 100 + len(CHARS))), 0,
                                          f"CM_{side}_c", f"{side}_char", f"{side}_char_ids")
    return out


def test_encode_context(maps: Dict[str, CategoryMap]) -> None:
    enc = encode_text("A quick Brown fox.", maps, "context")
    assert enc.side == "context" and len(enc) == 5
    assert enc.tokens == ["A", "quick", "Brown", "fox", "."]
    assert enc.words_str.shape == (5, 1) and enc.chars_str.shape == (5, 1, 1, MAX_CHARS)
    assert enc.words_str.ravel().tolist() == ["a", "quick", "brown", "fox", "."], "words lower-cased"
    assert enc.chars_str[0, 0, 0].tolist() == ["A"] + [""] * 15, "chars keep their case, '' padded"
    assert enc.chars_str[2, 0, 0, :5].tolist() == list("Brown")
    assert enc.word_ids.dtype == np.int64 and enc.word_ids.shape == (5, 1)
    assert enc.char_ids.dtype == np.int64 and enc.char_ids.shape == (5, 1, 1, MAX_CHARS)
    assert enc.word_ids.ravel().tolist() == [10, 11, 12, 13, 14]
    # 'A' and 'B' are not in the char table (upper case): default id, as is the '' padding
    assert enc.char_ids[0, 0, 0].tolist() == [0] * 16
    assert enc.char_ids[1, 0, 0, :5].tolist() == [100 + CHARS.index(c) for c in "quick"]
    assert enc.char_ids[1, 0, 0, 5:].tolist() == [0] * 11
    assert enc.char_ids[2, 0, 0, 0] == 0 and enc.char_ids[2, 0, 0, 1] == 100 + CHARS.index("r")


def test_unknown_words_and_long_words(maps: Dict[str, CategoryMap]) -> None:
    long_word = "Pneumonoultramicroscopic"  # 24 characters
    enc = encode_text(f"what {long_word} zebra?", maps, "query")
    assert enc.tokens == ["what", long_word, "zebra", "?"]
    assert enc.word_ids.ravel().tolist() == [15, -1, -1, 19]
    assert enc.chars_str[1, 0, 0].tolist() == list(long_word[:16]), "cut at 16 characters"
    assert enc.chars_str[2, 0, 0].tolist() == list("zebra") + [""] * 11


def test_feeds(maps: Dict[str, CategoryMap]) -> None:
    ctx = encode_text("A quick brown fox.", maps, "context")
    qry = encode_text("What color is the fox?", maps, "query")
    prepared = feeds_for_prepared(ctx, qry)
    assert sorted(prepared) == sorted(["context_word_ids", "context_char_ids", "query_word_ids",
                                       "query_char_ids"])
    assert prepared["query_word_ids"] is qry.word_ids
    renamed = feeds_for_prepared(ctx, qry, {"context_word": "cw", "context_char": "cc",
                                            "query_word": "qw", "query_char": "qc"})
    assert sorted(renamed) == ["cc", "cw", "qc", "qw"]
    original = feeds_for_original(ctx, qry)
    assert sorted(original) == ["context_char", "context_word", "query_char", "query_word"]
    assert original["context_char"] is ctx.chars_str
    with pytest.raises(ValueError, match="expected the context encoding"):
        feeds_for_prepared(qry, ctx)
    bare = encode_text("A fox.", None, "context")
    assert bare.word_ids is None and bare.char_ids is None
    with pytest.raises(ValueError, match="without CategoryMapper tables"):
        feeds_for_prepared(bare, qry)
    assert sorted(feeds_for_original(bare, qry)) == sorted(original)


@pytest.mark.parametrize("side", ["context", "query"])
@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_a_data_error(maps: Dict[str, CategoryMap], side: str, text: str) -> None:
    with pytest.raises(DataError, match=f"the {side} is empty"):
        encode_text(text, maps, side)


def test_bad_side_and_missing_tables(maps: Dict[str, CategoryMap]) -> None:
    with pytest.raises(ValueError, match="side must be one of"):
        encode_text("fox", maps, "answer")
    with pytest.raises(DataError, match="no CategoryMapper table"):
        encode_text("fox", {"context_word": maps["context_word"]}, "context")


def test_answer_span() -> None:
    tokens = ["A", "quick", "brown", "fox", "."]
    assert answer_span(tokens, 2, 2) == "brown"
    assert answer_span(tokens, 1, 3) == "quick brown fox"
    assert answer_span(tokens, 3, 1) == ""
    assert answer_span(tokens, 4, 99) == "."
    with pytest.raises(ValueError):
        answer_span(tokens, -1, 2)

"""Turn a context or query into BiDAF's four inputs, as strings and as CategoryMapper ids.

Why: the original bidaf-9 takes strings and maps them to ids inside the graph; the
prepared model (CategoryMappers removed, see :mod:`refit_core.samples.bidaf.surgery`) takes the
ids, so the lookup moves here. Both must see exactly the same tokens, so both are made
from one :class:`EncodedText`.

What the TensorRT sample (and the ONNX model zoo's README) do, reproduced here:

* tokens from the word tokenizer (:func:`refit_core.samples.bidaf.tokenize.tokenize`);
* words: each token lower-cased, shape ``[n, 1]``;
* chars: the characters of each token *as written* (not lower-cased), cut at 16 and
  padded with ``''`` to 16, shape ``[n, 1, 1, 16]``. The original char map holds single
  characters; ``''`` is not in it, so padding maps to the default id like any unknown.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from ...errors import DataError
from . import BIDAF_CHARS_PER_WORD
from .category_map import CategoryMap
from .tokenize import tokenize

__all__ = ["SIDES", "MAX_CHARS", "EncodedText", "encode_text", "word_input", "char_input",
           "feeds_for_prepared", "feeds_for_original", "answer_span"]

SIDES = ("context", "query")
#: Characters kept per token (the model's fourth char dimension); defined in samples/bidaf/__init__.py.
MAX_CHARS = BIDAF_CHARS_PER_WORD


def word_input(side: str) -> str:
    """The original model's word input for ``side`` (``context_word`` / ``query_word``)."""
    return f"{side}_word"


def char_input(side: str) -> str:
    """The original model's char input for ``side`` (``context_char`` / ``query_char``)."""
    return f"{side}_char"


@dataclass
class EncodedText:
    """One side's tokens, their string arrays and (when maps were given) their ids.

    ``word_ids``/``char_ids`` are None when encoded without maps (for the original model,
    which does the lookup itself). ``prepared_word_name``/``prepared_char_name`` are the
    prepared model's input names, when the maps recorded them.
    """

    side: str
    tokens: List[str]
    words_str: np.ndarray
    chars_str: np.ndarray
    word_ids: Optional[np.ndarray] = None
    char_ids: Optional[np.ndarray] = None
    prepared_word_name: Optional[str] = None
    prepared_char_name: Optional[str] = None

    def __len__(self) -> int:
        return len(self.tokens)


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, not {side!r}")


def _string_arrays(tokens: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    """([n,1] lower-cased words, [n,1,1,16] chars as written, '' padded) as object arrays."""
    n = len(tokens)
    words = np.empty((n, 1), dtype=object)
    chars = np.full((n, 1, 1, MAX_CHARS), "", dtype=object)
    for i, tok in enumerate(tokens):
        words[i, 0] = tok.lower()
        for j, ch in enumerate(tok[:MAX_CHARS]):
            chars[i, 0, 0, j] = ch
    return words, chars


def encode_text(text: str, maps: Optional[Mapping[str, CategoryMap]], side: str) -> EncodedText:
    """Tokenize ``text`` and build ``side``'s inputs; ``maps`` keyed by original input name.

    Empty or whitespace-only text raises DataError naming the side. With ``maps`` None
    only the strings are made (enough for the original model).
    """
    _check_side(side)
    if text is None or not str(text).strip():
        raise DataError(f"the {side} is empty: BiDAF needs at least one word of {side} "
                        f"text (got {text!r})")
    tokens = tokenize(str(text))
    if not tokens:  # cannot happen for non-blank text; kept as a guard
        raise DataError(f"the {side} has no tokens: {text!r}")
    words, chars = _string_arrays(tokens)
    enc = EncodedText(side=side, tokens=tokens, words_str=words, chars_str=chars)
    if maps is not None:
        wname, cname = word_input(side), char_input(side)
        missing = [n for n in (wname, cname) if n not in maps]
        if missing:
            raise DataError(f"no CategoryMapper table for {missing}; tables given for "
                            f"{sorted(maps)}")
        wmap, cmap = maps[wname], maps[cname]
        enc.word_ids = wmap.lookup(words)
        enc.char_ids = cmap.lookup(chars)
        enc.prepared_word_name = wmap.output_name
        enc.prepared_char_name = cmap.output_name
    return enc


def feeds_for_prepared(ctx: EncodedText, qry: EncodedText,
                       input_names: Optional[Mapping[str, str]] = None) -> Dict[str, np.ndarray]:
    """int64 id feeds keyed by the prepared model's input names (CategoryMapper outputs).

    ``input_names`` (original -> prepared, e.g. ``PreparedBidaf.input_names``) overrides
    the names the maps recorded.
    """
    feeds: Dict[str, np.ndarray] = {}
    for enc, side in ((ctx, "context"), (qry, "query")):
        if enc.side != side:
            raise ValueError(f"expected the {side} encoding, got the {enc.side} one")
        if enc.word_ids is None or enc.char_ids is None:
            raise ValueError(f"the {side} was encoded without CategoryMapper tables; "
                             f"pass maps to encode_text")
        for orig, recorded, ids in ((word_input(side), enc.prepared_word_name, enc.word_ids),
                                    (char_input(side), enc.prepared_char_name, enc.char_ids)):
            name = input_names.get(orig) if input_names is not None else recorded
            if not name:
                raise ValueError(f"no prepared input name known for {orig!r}; pass input_names")
            feeds[name] = ids
    return feeds


def feeds_for_original(ctx: EncodedText, qry: EncodedText) -> Dict[str, np.ndarray]:
    """String feeds keyed by the original model's inputs (context_word, ...)."""
    feeds: Dict[str, np.ndarray] = {}
    for enc, side in ((ctx, "context"), (qry, "query")):
        if enc.side != side:
            raise ValueError(f"expected the {side} encoding, got the {enc.side} one")
        feeds[word_input(side)] = enc.words_str
        feeds[char_input(side)] = enc.chars_str
    return feeds


def answer_span(tokens: List[str], start: int, end: int) -> str:
    """The answer text: ``tokens[start:end+1]`` joined by spaces ('' when end < start)."""
    start, end = int(start), int(end)
    if start < 0 or end < 0:
        raise ValueError(f"answer span [{start}, {end}] has a negative index")
    return " ".join(tokens[start:end + 1])

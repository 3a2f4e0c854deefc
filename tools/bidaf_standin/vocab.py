"""Word and character maps of the BiDAF stand-in (no torch, no numpy; Python 3.9).

The maps are what the ONNX file's four CategoryMapper nodes hold: words are looked up
lower-cased; characters map case-insensitively (the original model's preprocessing keeps
the characters' case, the simpler one lower-cases them: both give the same ids here).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from refit_core.samples.bidaf import BIDAF_CHARS_PER_WORD

# As in bidaf-9.onnx, the maps hold real words / single characters only; everything else
# (unknown words, unknown characters, the '' that pads a word's chars to 16) maps to the
# CategoryMapper's default_int64.
WORD_UNK_ID = 0      # default_int64 of the word maps; also the padding id in training batches
CHAR_UNK_ID = 0      # default_int64 of the char maps: '' padding and unknown characters
WORD_PAD_ID = WORD_UNK_ID
CHAR_PAD_ID = CHAR_UNK_ID
CHARS_PER_WORD = BIDAF_CHARS_PER_WORD  # the one definition is samples/bidaf/__init__.py
_FIRST_ID = 1


@dataclass(frozen=True)
class Vocab:
    words: Tuple[str, ...]   # id = index + 1 (lower-case words)
    chars: Tuple[str, ...]   # id = index + 1 (lower-case characters)

    @property
    def n_words(self) -> int:
        return len(self.words) + _FIRST_ID

    @property
    def n_chars(self) -> int:
        return len(self.chars) + _FIRST_ID

    def word_map(self) -> Dict[str, int]:
        return {w: i + _FIRST_ID for i, w in enumerate(self.words)}

    def char_map(self) -> Dict[str, int]:
        """Every string the char CategoryMapper knows: each character in both cases.

        An upper-case letter gets the id of its lower-case form, so the original
        preprocessing (chars as written) and a lower-casing one give the same ids.
        """
        mapping: Dict[str, int] = {}
        for i, c in enumerate(self.chars):
            mapping[c] = i + _FIRST_ID
        for i, c in enumerate(self.chars):
            for variant in (c.upper(), c.lower()):
                if len(variant) == 1 and variant not in mapping:
                    mapping[variant] = i + _FIRST_ID
        return mapping

    def encode_words(self, tokens: Sequence[str]) -> List[int]:
        ids = self._word_ids()
        return [ids.get(t.lower(), WORD_UNK_ID) for t in tokens]

    def encode_chars(self, tokens: Sequence[str]) -> List[List[int]]:
        ids = self._char_ids()
        out = []
        for t in tokens:
            row = [ids.get(c, CHAR_UNK_ID) for c in t.lower()[:CHARS_PER_WORD]]
            out.append(row + [CHAR_PAD_ID] * (CHARS_PER_WORD - len(row)))
        return out

    def _word_ids(self) -> Dict[str, int]:
        cache = self.__dict__.get("_wcache")
        if cache is None:
            cache = self.word_map()
            object.__setattr__(self, "_wcache", cache)
        return cache

    def _char_ids(self) -> Dict[str, int]:
        cache = self.__dict__.get("_ccache")
        if cache is None:
            cache = self.char_map()
            object.__setattr__(self, "_ccache", cache)
        return cache

    def to_json(self) -> Dict[str, List[str]]:
        return {"words": list(self.words), "chars": list(self.chars)}


def build_vocab(token_lists: Sequence[Sequence[str]]) -> Vocab:
    """Sorted lower-cased words and characters of the given token lists."""
    words = set()
    chars = set()
    for tokens in token_lists:
        for t in tokens:
            low = t.lower()
            words.add(low)
            chars.update(low[:CHARS_PER_WORD])
    return Vocab(tuple(sorted(words)), tuple(sorted(chars)))

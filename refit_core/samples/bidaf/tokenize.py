"""A word tokenizer for the BiDAF inputs that downloads nothing.

Why: the TensorRT sample (and the ONNX model zoo's BiDAF README) tokenize with
``nltk.word_tokenize``, which needs the ``punkt`` sentence model to be downloaded at run
time. The suite must run offline and without nltk, so this module re-implements the
conventions of nltk's word tokenizer (Penn Treebank style, as done by nltk 3.8-3.10)
for the kind of text BiDAF reads: plain English sentences.

What it does (same as nltk.word_tokenize):

* splits on whitespace, then splits punctuation off words: ``"fox?" -> ["fox", "?"]``,
  ``"dog." -> ["dog", "."]``; ``? ! ; @ # $ % & *`` and brackets ``( ) [ ] { } < >`` are
  always tokens of their own; ``--`` and runs of two or more periods (``...``) are tokens;
* commas and colons split unless a digit follows, so ``1,000``, ``10:30`` and ``3.5`` stay
  whole; hyphenated words (``state-of-the-art``) stay whole;
* contractions are split the Treebank way: ``don't -> do n't``, ``it's -> it 's``,
  ``I'm -> I 'm``, ``we're / they've / she'll / he'd -> ... 're / 've / 'll / 'd``
  (suffixes all lower or all upper case, as in nltk), ``cannot -> can not``,
  ``gonna / gotta / wanna / gimme / lemme -> gon na`` etc.; we follow nltk here on
  purpose: BiDAF's vocabulary was built from nltk tokens, so ``n't`` and ``'s`` are in
  it while ``don't`` is not;
* a closing apostrophe is split (``dogs' -> dogs '``), an opening one is split unless a
  contraction follows (``'them' -> ' them '``, ``'s`` and ``'n'`` stay);
* straight double quotes become Treebank quotes: an opening ``"`` (at the start, after
  whitespace, an opening bracket or quote) becomes two backticks, any other ``"`` (and
  ``''``) becomes two single quotes; typographic quotes (“ ” ‘ ’ « » „) and figure, en
  and em dashes are tokens of their own;
* the case of the text is kept (the BiDAF preprocessing lower-cases words, not chars).

Where it differs from nltk.word_tokenize (also in docs/tokenizer.md):

1. Sentence ends. nltk first splits the text into sentences with the learned punkt model
   and then splits only each sentence's final period off. Here a period that ends a word
   is split off when the word is the last of the text (before closing quotes/brackets),
   or when the word is not an abbreviation. Abbreviations are: initialisms with inner
   periods (``U.S.``, ``a.m.``, ``e.g.``), single letters (``J.``) and the fixed list
   :data:`ABBREVIATIONS` (``Mr.``, ``Dr.``, ``etc.``, ``Jan.`` ...). Punkt's learned list
   is larger and it also weighs the next word, so "... made in the U.S. Then ..." keeps
   ``U.S.`` whole here (punkt may end a sentence there: ``U.S`` ``.``), and "No. 5" or
   "Co." split here (``No`` ``.``) where punkt may keep them.
2. A typographic apostrophe between two letters or digits (``don’t``) is read as a
   straight one, so it splits like ``don't -> do n't``; nltk makes ``’`` a token of its
   own (``don ’ t``), which BiDAF's vocabulary would not know.
3. Runs of punctuation glued to words without spaces can split differently, because
   nltk's regular expressions overlap in odd ways there (nltk: ``,:Dog -> , :Dog``,
   here ``, : Dog``; nltk keeps ``it's'`` whole before a closing quote, here
   ``it 's '``).
4. nltk's optional conversions (brackets to ``-LRB-``, ``preserve_line``) are not offered.

On one-sentence text without such glued punctuation the tokens are identical to
``nltk.tokenize.NLTKWordTokenizer`` (nltk 3.10); the test suite checks that when nltk is
installed.
"""
from __future__ import annotations

import re
from typing import List, Tuple

__all__ = ["tokenize", "ABBREVIATIONS"]

#: Words that keep their trailing period when they are not the last word of the text.
ABBREVIATIONS = frozenset("""
mr mrs ms dr prof st jr sr vs etc inc ltd corp vol vols fig figs pp
jan feb apr jun jul aug sep sept oct nov dec mt ft gov sen capt lt sgt
approx dept univ assn bros messrs
""".split())

# Characters that are always a token of their own (incl. figure/en/em dashes, bars).
_ALWAYS_SPLIT = "?!;@#$%&*()[]{}<>«»“”‘„\u2012\u2013\u2014\u2015"
# A straight double quote right after one of these (or whitespace) opens a quotation.
_OPENERS_BEFORE_QUOTE = "([{<«“‘„`"
_CLOSERS_AFTER_PERIOD = frozenset(["''", "'", ")", "]", "}", ">", "”", "’", "»"])

# One lexeme at a time; the order of the alternatives is the priority.
_LEXEME = re.compile(
    r"""
      (?P<ellipsis>\.{2,})
    | (?P<dashes>--)
    | (?P<backticks>`+)
    | (?P<dquote>"|'')
    | (?P<single>[""" + re.escape(_ALWAYS_SPLIT) + r"""])
    | (?P<sep>[,:])(?!\d)
    | (?P<word>(?:[^\s""" + re.escape(_ALWAYS_SPLIT) + r"""`"',:.\-’]
                 |'(?!')
                 |[,:](?=\d)
                 |-(?!-)
                 |\.(?!\.)
                 |(?<=\w)’(?=\w)
               )+)
    | (?P<other>\S)
    """,
    re.VERBOSE,
)

# Suffixes split off the end of a word, exactly in the cases nltk accepts.
_CLITICS = ("n't", "N'T", "'ll", "'LL", "'re", "'RE", "'ve", "'VE",
            "'s", "'S", "'m", "'M", "'d", "'D")
# An apostrophe that starts a word part (not after a letter/digit) is a quote mark,
# unless a contraction suffix follows it as a whole word part ('s, 're, 'n ...).
_OPENING_APOSTROPHE = re.compile(r"(?i)(?<!\w)'(?=\w)(?!(?:re|ve|ll|m|t|s|d|n)\b)")
# Treebank's two-token words; each alternative's two groups are the two tokens.
_TWO_TOKEN_WORDS = re.compile(
    r"(?i)\b(?:(can)(not)|(d)('ye)|(gim)(me)|(gon)(na)|(got)(ta)|(lem)(me)|(more)('n))\b"
    r"|\b(wan)(na)(?!\w)")


def _is_abbreviation(stem: str) -> bool:
    """True when ``stem + '.'`` reads as an abbreviation rather than a word ending a sentence."""
    if "." in stem:                      # U.S, e.g, a.m
        return True
    if len(stem) == 1 and stem.isalpha():  # an initial: J. Smith
        return True
    return stem.lower() in ABBREVIATIONS


def _split_suffixes(part: str) -> List[str]:
    """Split a closing apostrophe and one contraction suffix off the end of a word part."""
    tail: List[str] = []
    if len(part) > 1 and part.endswith("'") and part[-2] != "'":
        tail.append("'")
        part = part[:-1]
    for clitic in _CLITICS:
        if part.endswith(clitic) and len(part) > len(clitic) and part[-len(clitic) - 1] != "'":
            tail.insert(0, clitic)
            part = part[:-len(clitic)]
            break
    return [part] + tail


def _split_two_token_words(token: str) -> List[str]:
    """cannot -> can not, gonna -> gon na, ... wherever such a word stands inside ``token``."""
    out: List[str] = []
    pos = 0
    for m in _TWO_TOKEN_WORDS.finditer(token):
        out.append(token[pos:m.start()])
        out.extend(g for g in m.groups() if g)
        pos = m.end()
    out.append(token[pos:])
    return out


def _split_word(word: str) -> List[str]:
    """Treebank-split one word lexeme whose sentence-final period is already handled."""
    parts: List[str] = []
    pos = 0
    for m in _OPENING_APOSTROPHE.finditer(word):
        parts.append(word[pos:m.start()])
        parts.append("'")
        pos = m.end()
    parts.append(word[pos:])
    tokens: List[str] = []
    for part in parts:
        pieces = [part] if part == "'" else _split_suffixes(part)
        for piece in pieces:
            tokens.extend(_split_two_token_words(piece))
    return [t for t in tokens if t]


def _lex(text: str) -> List[Tuple[str, str]]:
    """(kind, text) pairs in order; quotes already turned into Treebank quotes."""
    out: List[Tuple[str, str]] = []
    for m in _LEXEME.finditer(text):
        kind = m.lastgroup or "other"
        value = m.group(0)
        if kind == "dquote":
            if m.start() == 0:
                opening = value == '"'   # nltk: a leading '' stays closing
            else:
                before = text[m.start() - 1]
                opening = (before.isspace() or before in _OPENERS_BEFORE_QUOTE
                           or (m.start() == 1 and before == '"'))
            out.append((kind, "``" if opening else "''"))
        elif kind == "backticks":
            # a run of backticks reads as pairs (opening quotes), an odd one left alone
            out.extend((kind, value[i:i + 2]) for i in range(0, len(value), 2))
        elif kind == "word":
            out.append((kind, value.replace("’", "'")))
        else:
            out.append((kind, value))
    return out


def tokenize(text: str) -> List[str]:
    """Split ``text`` into word and punctuation tokens the way nltk.word_tokenize would.

    Returns an empty list for empty or whitespace-only text; callers that need tokens
    (the BiDAF preprocessing) turn that into a DataError with context.
    """
    lexemes = _lex(text)
    # index of the last lexeme that is not a closing quote/bracket: a word there (or later)
    # ends the text, and its period is always split off (nltk's final-period rule)
    last_word_at = max((i for i, (_, v) in enumerate(lexemes) if v not in _CLOSERS_AFTER_PERIOD),
                       default=-1)
    tokens: List[str] = []
    for i, (kind, value) in enumerate(lexemes):
        if kind != "word":
            tokens.append(value)
            continue
        # A period may be followed by closing apostrophes inside the same lexeme: quote.'
        core = value.rstrip("'")
        closing = value[len(core):]
        if core.endswith(".") and len(core) > 1:
            stem = core[:-1]
            if i >= last_word_at or not _is_abbreviation(stem):
                tokens.extend(_split_word(stem))
                tokens.append(".")
                tokens.extend(closing)
                continue
        tokens.extend(_split_word(value))
    return tokens

"""Texts as the near-duplicate rules compare them, in any script: words with case, accents and punctuation gone
(a character each where words are not space-separated), and their shingles."""

from __future__ import annotations

import unicodedata

import regex

# Accents of Latin, Greek and Cyrillic letters decompose (NFKD) into these generic combining marks; the marks of
# other scripts (Devanagari vowel signs, Arabic harakat, ...) are part of their letters and stay.
DIACRITICS = regex.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
# Scripts written without spaces between words: each character is a unit of their text.
UNSPACED = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}"
UNITS = regex.compile(rf"[{UNSPACED}]|(?:(?![{UNSPACED}])[\p{{L}}\p{{M}}\p{{N}}])+")


def units(text: str) -> list[str]:
    """The words of `text` (a character each in scripts written without spaces), with case, accents and
    punctuation gone, in any script: compatibility forms unified (full-width letters, ligatures), accents of
    Latin, Greek and Cyrillic letters removed, casefolded; only letters, marks and digits remain."""
    plain = unicodedata.normalize("NFKC", DIACRITICS.sub("", unicodedata.normalize("NFKD", text))).casefold()
    return UNITS.findall(plain)


def normal_form(text: str, size: int = 3) -> tuple[str, frozenset[str]]:
    """What the near-duplicate rules compare: the text's units joined by spaces (texts equal after this say the
    same thing) and its shingles, the overlapping runs of `size` units that Jaccard compares."""
    words = units(text)
    if len(words) < size:
        return " ".join(words), frozenset([" ".join(words)])
    return " ".join(words), frozenset(" ".join(words[i : i + size]) for i in range(len(words) - size + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0

"""An edit of a text: the smallest span changed, every other character kept byte for byte, and helpers that keep
the case and the article of what is replaced. Every rule op builds its `Edit` here."""

from __future__ import annotations

from dataclasses import dataclass

from spacy.tokens import Token

from pairforge.pipeline.contrast import syntax


@dataclass(frozen=True)
class Edit:
    op: str
    edited: str
    preserves_meaning: bool
    detail: str


def replace_span(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def match_case(template: str, word: str) -> str:
    if len(template) > 1 and template.isupper():
        return word.upper()
    return word[:1].upper() + word[1:] if template[:1].isupper() else word


def make_edit(op: str, text: str, changes: list[tuple[int, int, str]], detail: str | None = None) -> Edit | None:
    """Apply non-overlapping (start, end, new) changes; None when nothing changes (an op never forces an edit)."""
    edited = text
    for start, end, new in sorted(changes, reverse=True):
        edited = replace_span(edited, start, end, new)
    if edited == text:
        return None
    detail = detail or "; ".join(f"{text[s:e]} -> {new}" for s, e, new in changes)
    return Edit(op, edited, op.startswith("paraphrase_"), detail)


def with_article(tok: Token, new: str) -> tuple[int, str]:
    """Start offset and replacement, taking a preceding "a"/"an" along when the new word needs the other one."""
    prev = syntax.previous(tok)
    if prev is None or prev.lower_ not in ("a", "an"):
        return tok.idx, new
    article = "an" if new[:1].lower() in "aeiou" else "a"
    return prev.idx, match_case(prev.text, article) + tok.doc.text[syntax.end(prev) : tok.idx] + new

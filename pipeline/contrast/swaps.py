"""The swap ops: two named entities, or subject and object, trade places (ARO-style). Off by default: read by hand
they were rarely valid (README, "Counterfactual contrast pairs"); a user can name them in `generate.rules`."""

from __future__ import annotations

from spacy.tokens import Doc, Span, Token

from pairforge.pipeline.contrast import lexicon, syntax
from pairforge.pipeline.contrast.edit import Edit, make_edit, match_case


def _swappable(ent: Span) -> bool:
    text = ent.doc.text
    before = text[ent.start_char - 1] if ent.start_char else " "
    after = text[ent.end_char] if ent.end_char < len(text) else " "
    if before == "(" and after == ")":
        return False  # an abbreviation defined in parentheses names the same thing as what precedes it
    if before.isalnum() or before in lexicon.JOINERS or after.isalnum() or after in lexicon.JOINERS:
        return False  # part of a larger name: "TNF" of "TNF-α"
    doc, start, end = ent.doc, ent.start, ent.end
    if (
        end < len(doc)
        and doc[end].dep_ == "compound"
        or start
        and doc[start - 1].dep_ == "compound"
        and (doc[start - 1].head.i in range(start, end))
    ):
        return False  # a part of a longer name: "Staphylococcus" of "Staphylococcus aureus", "EB" of "factor EB"
    return ent.label_ != "CARDINAL" and ent.text[-1] not in ".,;:"  # spaCy tags identifiers like "6MP" CARDINAL


def _coordinated(first: Span, other: Span) -> bool:
    """ "X and Y": swapping conjuncts keeps the meaning ("between India and Pakistan"), it is no counterfactual."""
    a, b = first.root, other.root
    return (a.dep_ == "conj" and a.head.i in range(other.start, other.end)) or (
        b.dep_ == "conj" and b.head.i in range(first.start, first.end)
    )


def swap_entities(doc: Doc) -> Edit | None:
    ents = [e for e in doc.ents if _swappable(e)]
    for i, first in enumerate(ents):
        same_kind = (e for e in ents[i + 1 :] if e.label_ == first.label_ and e.text != first.text)
        other = next((e for e in same_kind if not _coordinated(first, e)), None)
        if other is not None:
            changes = [(first.start_char, first.end_char, other.text), (other.start_char, other.end_char, first.text)]
            return make_edit("swap_entities", doc.text, changes, f"{first.text} <-> {other.text}")
    return None


def _phrase(tok: Token | None) -> Span | None:
    """The whole noun phrase headed by `tok` (its subtree, edge punctuation trimmed), if contiguous and movable."""
    if tok is None or tok.pos_ == "PRON" or any(t.tag_.startswith("W") for t in tok.subtree):
        return None  # pronouns would need a case change ("he" -> "him"); wh-words make questions unparseable
    words = list(tok.subtree)
    while words and words[-1].text in lexicon.EDGE_PUNCT:
        words.pop()
    while words and words[0].text in lexicon.EDGE_PUNCT:
        words.pop(0)
    if not words or words[-1].i - words[0].i + 1 != len(words) or words[-1].dep_ == "cc":
        return None  # non-contiguous, or cut inside a coordination ("Intake of X and | vitamin B6 increases")
    if words[0].lower_ in ("no", "none"):
        return None  # "no effect" cannot move to subject position and keep a sensible reading
    phrase = tok.doc[words[0].i : words[-1].i + 1]
    final_stop = phrase.end_char == len(tok.doc.text) and phrase.text[-1] in ".!?"  # tokenizer left it attached
    return phrase if phrase.text.count("(") == phrase.text.count(")") and not final_stop else None


def _keeps_case(phrase: Span) -> bool:
    """Names and identifiers ("PrP", "DNA", "p53") keep their case wherever they move."""
    word = phrase[0].text
    identifier = (len(word) > 1 and word.isupper()) or any(c.isupper() or c.isdigit() for c in word[1:])
    return phrase[0].pos_ == "PROPN" or identifier


def swap_noun_phrases(doc: Doc) -> Edit | None:
    root = syntax.main_verb(doc)
    if root is None:
        return None
    subject = _phrase(next((c for c in root.children if c.dep_ in ("nsubj", "nsubjpass")), None))
    objects = [c for c in root.children if c.dep_ == "dobj"]
    objects += [g for c in root.children if c.dep_ in ("prep", "agent") for g in c.children if g.dep_ == "pobj"]
    obj = _phrase(objects[0] if objects else None)
    if subject is None or obj is None or subject.text.lower() == obj.text.lower():
        return None
    if not subject.end <= root.i < obj.start:
        return None  # a fronted "During X, ..." is not the object of the verb
    first, second = sorted((subject, obj), key=lambda phrase: phrase.start)
    to_first, to_second = second.text, first.text
    if first.start_char == 0:  # a sentence-initial capital belongs to the position, not to the phrase
        to_second = to_second if _keeps_case(first) else to_second[:1].lower() + to_second[1:]
        to_first = match_case("A", to_first) if doc.text[:1].isupper() and not _keeps_case(second) else to_first
    changes = [(first.start_char, first.end_char, to_first), (second.start_char, second.end_char, to_second)]
    return make_edit("swap_noun_phrases", doc.text, changes, f"{first.text} <-> {second.text}")

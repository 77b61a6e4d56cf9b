"""What the rule ops read off a spaCy parse before they edit: where a token sits (the previous word, the root),
whether a number measures or names ("3 patients" vs "protein 5", "hbo 24 7"), whether a text is a question, and
where the parser is likely wrong (a noun read as the verb, a reduced relative clause); which words name a title
is `pipeline.contrast.titles`. Each answer is a small function the ops in `pipeline.contrast.rules` combine.
"""

from __future__ import annotations

import itertools
import re
from decimal import Decimal

from lemminflect import getAllLemmas, getLemma
from spacy.tokens import Doc, Token

from pairforge.pipeline.contrast import lexicon


def end(tok: Token) -> int:
    return tok.idx + len(tok.text)


def lemma(verb: Token) -> str:
    # lemminflect's lemmas are American and verb-aware ("enrolled" -> "enroll"; spaCy gives "enrol")
    return next(iter(getLemma(verb.lower_, upos="VERB")), verb.lemma_.lower())


def previous(tok: Token) -> Token | None:
    """The previous token, skipping spaCy's SPACE tokens (runs of extra whitespace)."""
    return next((t for t in reversed(tok.doc[: tok.i]) if not t.is_space), None)


def main_verb(doc: Doc) -> Token | None:
    return next(doc.sents).root if len(doc) else None


def standalone(tok: Token) -> bool:
    """A number token not glued (no whitespace) to letters, digits or joiners; a glued unit ("40mg") is fine."""
    doc = tok.doc
    prev = doc[tok.i - 1] if tok.i and not doc[tok.i - 1].whitespace_ else None
    nxt = doc[tok.i + 1] if tok.i + 1 < len(doc) and not tok.whitespace_ else None
    if prev is not None and (prev.text[-1].isalnum() or prev.text[-1] in lexicon.JOINERS + "."):
        return False
    glued = nxt is not None and (nxt.text[0] in lexicon.JOINERS or nxt.text[0].isalnum())
    return not glued or nxt.lower_ in lexicon.UNITS and nxt.text[0] not in lexicon.JOINERS


def is_count(tok: Token) -> bool:
    """A standalone number used as a count ("3 patients"), not a label ("type 2", "season 5") or amount ("$5", "3%")."""
    prev, nxt = previous(tok), tok.doc[tok.i + 1] if tok.i + 1 < len(tok.doc) else None
    if prev is not None:
        # after a noun (or a name the tagger missed) a number is a label: "transglutaminase 2", "CTLA - 4"
        label = prev.pos_ not in lexicon.BEFORE_COUNT or prev.text in lexicon.JOINERS
        if label or (not prev.whitespace_ and prev.text not in "(["):
            return False
    return standalone(tok) and (nxt is None or nxt.lower_ not in lexicon.UNITS | {"percent"})


def number_word(tok: Token) -> int | None:
    return lexicon.WORD_VALUE.get(tok.lower_) if tok.pos_ == "NUM" else None


def value(tok: Token) -> Decimal | None:
    if lexicon.NUMBER_RE.fullmatch(tok.text):
        return Decimal(tok.text.replace(",", ""))
    word = number_word(tok)
    return None if word is None else Decimal(word)


def counts_plural(tok: Token) -> bool:
    """A number counting the plural noun it modifies ("3 patients", "two N-terminal domains")."""
    return tok.dep_ == "nummod" and tok.head.tag_ in ("NNS", "NNPS") and tok.head.i > tok.i


def is_label(tok: Token) -> bool:
    """A number naming rather than measuring: after its noun ("protein 5", "Foxo 1", "season 1", "type 2"),
    where changing it edits an identifier (years and dates are values: "world cup 2018", "feb 28"), or a group
    named by its size ("the five")."""
    prev = previous(tok)
    if prev is not None and prev.text in lexicon.JOINERS and prev.whitespace_:  # "CTLA - 4", spaced as tokenised
        prev = previous(prev)
    after_noun = prev is not None and prev.pos_ in ("NOUN", "PROPN") and bool(prev.whitespace_)
    named = after_noun or (tok.dep_ == "nummod" and tok.head.i < tok.i and tok.head.pos_ in ("NOUN", "PROPN"))
    # "the five on fox", "the 100": a number that heads its own noun phrase after "the" names a group or a show
    group = prev is not None and prev.lower_ == "the" and tok.dep_ in ("nsubj", "dobj", "pobj", "attr", "appos")
    return group or named and tok.ent_type_ != "DATE" and not re.fullmatch(r"(19|20)\d\d", tok.text)


def breaks_agreement(tok: Token) -> bool:
    """One of something, or one thing: a changed value would need a plural ("one of the pathways" -> "two of")."""
    nxt = tok.doc[tok.i + 1] if tok.i + 1 < len(tok.doc) else None
    singular_head = tok.dep_ == "nummod" and tok.head.tag_ in ("NN", "NNP")
    return value(tok) == 1 and (singular_head or (nxt is not None and nxt.lower_ == "of"))


def is_question(doc: Doc) -> bool:
    return bool(len(doc)) and (doc[0].tag_.startswith("W") or doc.text.rstrip().endswith("?"))


def copular_question(root: Token) -> bool:
    """ "What is the capital of X", "who was the oldest player", "X is which type of Y": a wh-question whose verb is
    a copula. Negated ("what is not the capital") it asks for nothing a document could answer, so negation leaves
    it alone. A wh-word in a relative clause ("a tissue which stores fat") is not the copula's."""
    if root.lemma_ != "be":
        return False
    asks = (t for t in root.doc if t.tag_.startswith("W"))
    return any(t.head == root or t.head.head == root and t.head.dep_ in ("attr", "nsubj", "acomp") for t in asks)


def misparsed_question(doc: Doc) -> bool:
    """ "who played X in never let me go", "who sang can't buy me love": the parser made the title's verb the root
    and the question's own verb a clausal subject. The root's negation is then the title's, not the question's."""
    return any(t.dep_ in ("csubj", "csubjpass") and t.left_edge.tag_.startswith("W") for t in doc)


def coordinated(root: Token) -> bool:
    """A verb coordinated with another ("where does the river start and finish"), or a coordination the parser left
    without its second half (a noun read as the subject: "the nile river end and begin"): negating one verb of a
    pair asks something else than either."""
    dangling = any(t.dep_ == "cc" and not any(c.dep_ == "conj" for c in t.head.children) for t in root.doc)
    return dangling or any(c.dep_ == "conj" and c.pos_ in ("VERB", "AUX") for c in root.children)


def misparsed_verb(root: Token) -> bool:
    """A root the tagger made a verb from a noun ("complex I proteins ND3 prevents": "proteins"), or the past form
    of a reduced relative clause ("Proteins synthesized at the cone are ubiquitinated": the verb is "are
    ubiquitinated"). Negating either gives nonsense, so the op does not apply."""
    word = root.lower_
    if root.pos_ not in ("VERB", "AUX") or (getAllLemmas(word, "NOUN") and not getAllLemmas(word, "VERB")):
        return True
    if root.tag_ == "VBZ" and not word.endswith("s"):
        return True  # a present third-person verb ends in -s: "in Escherichia coli" gave "coli"
    designs = (c for c in root.children if c.dep_ == "dobj" and c.lemma_ in ("trial", "study"))
    if word in lexicon.DESIGN_PARTICIPLES and any(designs):
        return True  # "the Physicians' Health Study II randomized controlled trial": a design, no act
    # "season 2 of X release date": a plural-form verb with a singular noun subject, or two subjects, is a noun
    subjects = [c for c in root.children if c.dep_ in ("nsubj", "nsubjpass") and c.pos_ in ("NOUN", "PROPN")]
    if len(subjects) > 1 or root.tag_ == "VBP" and subjects and subjects[0].tag_ in ("NN", "NNP"):
        return not any(c.dep_ == "conj" for s in subjects for c in s.children)
    later_finite = (t for t in root.doc[root.i + 1 :] if t.tag_ in lexicon.FINITE and t.dep_ in ("aux", "auxpass"))
    return root.tag_ == "VBD" and any(
        t.head.dep_ in ("advcl", "ccomp", "conj")
        and not any(c.dep_ in ("mark", "nsubj", "nsubjpass") for c in t.head.children)
        for t in later_finite
    )


def negated(root: Token) -> bool:
    """Negated by "not"/"never" on the verb, or by a "no"/"nothing" argument ("has no association")."""
    arguments = (c for c in root.children if c.dep_ in ("nsubj", "nsubjpass", "dobj", "attr", "dative", "oprd"))
    return any(c.dep_ == "neg" for c in root.children) or any(
        t.lower_ in lexicon.NEGATORS for c in arguments for t in (c, *c.children)
    )


def in_number_run(tok: Token) -> bool:
    """Next to another number with only a space between ("hbo 24 7", "9 11"), or part of a number in words ("twenty
    one pilots"): a name, or half of a number, not a quantity."""
    doc = tok.doc
    neighbours = (doc[tok.i - 1] if tok.i else None, doc[tok.i + 1] if tok.i + 1 < len(doc) else None)
    words = number_word(tok) is not None
    return any(t is not None and (lexicon.NUMBER_RE.fullmatch(t.text) or words and number_word(t)) for t in neighbours)


def not_a_quantity(tok: Token) -> bool:
    """A list's enumerator ("1. what was", "1 the bureau of"), "one" as a pronoun ("one who signals"), a long
    digit string that is a code ("90210", a zip code or a show), a mass in kDa, or a name ("the big ten"): changing
    it changes no amount."""
    enumerator = tok.i == 0 and len(tok.doc) > 1 and (tok.doc[1].text in ".)" or tok.doc[1].pos_ == "DET")
    pronoun = tok.lower_ == "one" and tok.dep_ not in ("nummod", "quantmod", "compound")
    code = bool(re.fullmatch(r"\d{5,}", tok.text)) and not counts_plural(tok)
    before = previous(tok)
    # a protein's mass names it ("tail interacting protein of 47 kDa", "the 70 kDa subunit")
    mass = tok.i + 1 < len(tok.doc) and tok.doc[tok.i + 1].lower_ == "kda"
    return enumerator or pronoun or code or mass or before is not None and before.lower_ in lexicon.NAMING


RANGE_WORDS = {"to", "-", "–", "through", "and"}


def range_partner(tok: Token) -> tuple[Token, bool] | None:
    """The other bound of the range `tok` bounds ("30% to 50%", "from 2009 to 2014", "between 5 and 10"), and
    whether `tok` is the lower one; None outside a range."""
    doc = tok.doc

    def unit_skipped(i: int, step: int) -> int:
        return i + step if 0 <= i < len(doc) and doc[i].lower_ in ("%", "percent") else i

    word = unit_skipped(tok.i + 1, 1)
    if word + 1 < len(doc) and doc[word].lower_ in RANGE_WORDS and value(doc[word + 1]) is not None:
        return doc[word + 1], True
    word = tok.i - 1
    if word >= 1 and doc[word].lower_ in RANGE_WORDS:
        lower = unit_skipped(word - 1, -1)
        if lower >= 0 and value(doc[lower]) is not None:
            return doc[lower], False
    return None


def enumerated(tok: Token) -> bool:
    """The count of a set the text names: "all three layers", "both two" (a set known by its size), or a counted
    noun its list or parenthesis follows ("the 6 trials: A, B, ...", "three factors (IF1-IF3)", "two cohorts of
    patients (A and B)", "two cell lines, H9.1 and H9.2", "two mutations in the daf-2 gene and the clk-1 gene"):
    another count contradicts what the text lists."""
    before = previous(tok)
    if before is not None and before.lower_ in ("all", "both"):
        return True
    noun = tok.head if tok.dep_ == "nummod" and tok.head.i > tok.i else None
    if noun is None or noun.i + 1 >= len(tok.doc):
        return False
    if tok.doc[noun.i + 1].text in (":", "("):
        return True
    count = value(tok)
    # a small count, then a comma and a list ("two cell lines, H9.1 and H9.2"), or a coordination of as many
    # items under the counted noun ("two mutations in the daf-2 gene and the clk-1 gene")
    rest = tok.doc[noun.i + 2 : noun.sent.end]
    if count is not None and count <= 10 and tok.doc[noun.i + 1].text == "," and any(t.lower_ == "and" for t in rest):
        return True
    heads = (t for t in noun.subtree if t.i > noun.i and t.dep_ != "conj")
    return any(conjuncts(t) == count for t in heads if any(c.dep_ == "conj" for c in t.children)) or listed(noun)


def conjuncts(tok: Token) -> int:
    """How many items a coordination headed by `tok` joins ("A, B and C": 3)."""
    nxt = next((c for c in tok.children if c.dep_ == "conj"), None)
    return 1 + (conjuncts(nxt) if nxt is not None else 0)


def listed(noun: Token) -> bool:
    """Further on from a counted noun, a parenthesis that lists ("studies of patients (the A cohort and the B
    cohort)")."""
    opened = next((t for t in noun.doc[noun.i + 1 : noun.right_edge.i + 2] if t.text == "("), None)
    inside = itertools.takewhile(lambda t: t.text != ")", noun.doc[opened.i + 1 :] if opened is not None else ())
    return any(t.lower_ in (",", "and") for t in inside)


ABBREVIATION = re.compile(r"[A-Z][A-Za-z0-9-]*[A-Z0-9][A-Za-z0-9-]*")


def abbreviated(tok: Token, reach: int = 8) -> bool:
    """A word of a term the text abbreviates right after it ("embryonic genome activation (EGA)", "angiopoietin-like 3
    (Angptl3)", "AMP-activated protein kinase (AMPK)"): the words back from the parenthesis whose first letters are
    letters of the abbreviation, up to a finite verb ("promotes nucleoside triphosphate (NTP)") or a word that is
    not ("Increased diastolic blood pressure (DBP)": "Increased" is no part of the name)."""
    doc = tok.doc
    opened = next(
        (t for t in doc[tok.i + 1 : tok.i + 1 + reach] if t.text == "(" or t.is_punct and t.text not in "-–/"), None
    )
    if (
        opened is None
        or opened.text != "("
        or opened.i + 1 >= len(doc)
        or not ABBREVIATION.match(doc[opened.i + 1].text)
    ):
        return False
    letters = set(doc[opened.i + 1].text.lower())
    for word in reversed(doc[tok.i : opened.i]):
        if word.text in "-–/":
            continue
        if word.tag_ in lexicon.FINITE or word.lower_[0] not in letters:
            return False
    return True

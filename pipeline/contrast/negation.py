"""The negation ops: `negation_insert` puts a "not" on the main verb (an auxiliary's, or do-support), in question
word order after the subject; `negation_remove` takes a predicate's negation away. Both leave a text alone where
the parse is likely wrong or the negation would land inside a title (`pipeline.contrast.titles`), since a
negated name or a misplaced "not" teaches nothing.
"""

from __future__ import annotations

from lemminflect import getInflection
from spacy.tokens import Doc, Token

from pairforge.pipeline.contrast import lexicon, syntax, titles
from pairforge.pipeline.contrast.edit import Edit, make_edit, match_case


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


CLAUSES = {"ccomp", "xcomp", "acl", "relcl", "advcl", "csubj", "csubjpass", "parataxis", "conj", "dep"}


def negation_insert(doc: Doc) -> Edit | None:
    root = syntax.main_verb(doc)
    if root is None or syntax.negated(root) or syntax.misparsed_verb(root) or syntax.copular_question(root):
        return None
    if syntax.coordinated(root) or syntax.misparsed_question(doc):
        return None
    if any((t.dep_ == "neg" or t.lower_ in ("not", "never")) and not titles.inside(t) for t in root.sent):
        return None  # "effective in X but not in Y": a second "not" makes the contrast say nothing
    aux = next((c for c in root.children if c.dep_ in ("aux", "auxpass") and c.tag_ in lexicon.FINITE), None)
    if aux is None and root.tag_ in lexicon.FINITE and (root.pos_ == "AUX" or root.lemma_ == "be"):
        aux = root  # copula or modal as the main verb: "is a cause" -> "is not a cause"
        if aux.i == 0:
            return None  # "is coca cola a public or private company": negated, an alternative question asks nothing
        if syntax.is_question(doc) and any(c.lower_ == "there" and c.i == root.i + 1 for c in root.children):
            return None  # "how many episodes are there": "are not there" asks nothing
    between = doc[aux.i + 1 : root.i] if aux is not None else ()
    if any(t.pos_ in ("VERB", "AUX") and (t.dep_ in CLAUSES or t.head != root and t.dep_ == "aux") for t in between):
        return None  # "when is pokemon let's go eevee released": a title's or a relative clause's verb in between
    if aux is not None:
        anchor = _not_anchor(root, aux)
        if anchor is aux:
            anchor = _inverted_subject_end(root, aux) or aux
        if titles.inside(anchor) and anchor.i + 1 < len(doc) and titles.inside(doc[anchor.i + 1]):
            return None  # "when did all night long come out": "not" would split the title
        subjectless = not any(c.dep_ in ("nsubj", "nsubjpass", "expl", "csubj") for c in root.children)
        if anchor is aux and aux.i + 1 < root.i and subjectless:
            return None  # "what does n mean": words between auxiliary and verb, none parsed as the subject
        new = anchor.text + match_case(anchor.text, "not" if anchor.lower_ == "can" else " not")
        return make_edit("negation_insert", doc.text, [(anchor.idx, syntax.end(anchor), new)])
    if root.tag_ not in lexicon.DO_FORM or syntax.lemma(root) == "do" or titles.inside(root):
        # "When did World War II end?" parsed with "did" as the verb: no second "do" to add; "who played little
        # ricky on i love lucy show" parsed with the title's "love" as the verb
        return None
    if any(t.lemma_ == "do" and t.pos_ == "AUX" for t in doc[: root.i]):
        return None  # "when did super smash bros 64 come out": the parser hung "did" on a title's word
    first = root  # adverbs go after the new "not": "does not significantly raise"; a "when" or "how" stays first
    while first.i and (before := doc[first.i - 1]).dep_ == "advmod" and before.head == root:
        if before.tag_.startswith("W"):
            break
        first = doc[first.i - 1]
    new = f"{lexicon.DO_FORM[root.tag_]} not {doc.text[first.idx : root.idx]}{syntax.lemma(root)}"
    return make_edit("negation_insert", doc.text, [(first.idx, syntax.end(root), match_case(first.text, new))])


def _unnegate(doc: Doc, neg: Token) -> Edit | None:
    text, op = doc.text, "negation_remove"
    prev, verb = syntax.previous(neg), neg.head
    if prev is None:  # "Not all X ..." / "Never ...": drop it and re-capitalise what now opens the text
        nxt = next((t for t in doc[neg.i + 1 :] if not t.is_space), None)
        return make_edit(op, text, [(neg.idx, syntax.end(nxt), match_case(neg.text, nxt.text))]) if nxt else None
    glued = syntax.end(prev) == neg.idx
    if glued and prev.lower_ == "ai":
        return None  # "ain't" could be is/are/am/has/have
    if any(t.lower_ in lexicon.NEGATIVE_POLARITY for t in doc[neg.i + 1 :]):
        return None  # "does not cause any adverse events" -> "causes any adverse events" is not English
    after = [t.lower_ for t in neg.sent if t.i > neg.i]
    known_if = any(word in lexicon.KNOWING and nxt == "if" for word, nxt in zip(after[:3], after[1:4]))
    if "whether" in after[:4] or known_if:
        return None  # "it is not clear whether X" -> "it is clear whether X" says nothing
    if any(a == "but" and b in ("instead", "rather") for a, b in zip(after, after[1:])):
        return None  # "does not block X but instead causes Y": the "but" answers the negation
    between = doc[neg.i + 1 : verb.i]
    if prev.lower_ in lexicon.DO_TAG and verb.i > neg.i and all(t.pos_ in ("ADV", "SPACE") for t in between):
        forms = getInflection(syntax.lemma(verb), tag=lexicon.DO_TAG[prev.lower_])
        if not forms:
            return None
        new = text[syntax.end(neg) : verb.idx].lstrip() + forms[0]
        return make_edit(op, text, [(prev.idx, syntax.end(verb), match_case(prev.text, new))])
    stem = prev.text
    if glued and prev.lower_ in lexicon.NT_STEM:
        stem = match_case(prev.text, lexicon.NT_STEM[prev.lower_])
    return make_edit(op, text, [(prev.idx, syntax.end(neg), stem)])


def negation_remove(doc: Doc) -> Edit | None:
    # A negation of the predicate; "in visceral fat, not subcutaneous fat" contrasts two phrases, and dropping its
    # "not" leaves a list that says something else than the opposite.
    # In a question, only the main verb's: a negation deeper in is almost always part of a title ("last world
    # series that didn't go 7 games" aside), "why did kevin can't wait wife leave the show".
    question = syntax.is_question(doc)
    if question and syntax.misparsed_question(doc):
        return None
    negations = (
        t
        for t in doc
        if (t.dep_ == "neg" or t.lower_ in ("n't", "n’t", "never"))
        and (t.head.pos_ in ("VERB", "AUX") or not t.i)
        and not (question and t.head != syntax.main_verb(doc))
        and not titles.inside(t)
    )
    return next(filter(None, (_unnegate(doc, t) for t in negations)), None)

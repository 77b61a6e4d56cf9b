"""Which words of a question name a work rather than say something: a song, film, book or show that a lower-cased
search query ("who plays the robot maid in richie rich", "when did the nightmare before christmas come out")
names without quotes or capitals. Its words are the title's, so an antonym, a changed number, a removed
negation or an expanded contraction there changes a name, not a meaning, and the rule ops leave them alone.

The cues are where NQ-style questions put titles: after the verb that made the work ("who sang ..."), after the
preposition of a role ("who plays X in ..."), between the question's auxiliary and a release verb ("when did
... come out"), after a work noun ("the song ...", "the cast of ..."), and around an episode ("... season 4",
"season 5 of ..."). A declarative, capitalised sentence (a SciFact claim) has none of these cues read.
"""

from __future__ import annotations

import re

from spacy.tokens import Doc, Token

from pairforge.pipeline.contrast import lexicon, syntax

AUXILIARIES = {"be", "do", "will", "have", "can"}


def searchlike(doc: Doc) -> bool:
    """A question, or a lower-case search query ("the man in the high castle episode 1"): where titles go unmarked."""
    return syntax.is_question(doc) or not any(c.isupper() for c in doc.text)


def _after_maker(doc: Doc) -> int | None:
    """First index after "who sang", "which artist wrote": a verb that made a work, first after the wh-word."""
    if not len(doc) or not doc[0].tag_.startswith("W"):
        return None
    for tok in doc[1:4]:
        if tok.pos_ in ("VERB", "AUX") and tok.lemma_ not in AUXILIARIES:
            return tok.i + 1 if tok.lemma_ in lexicon.CREATIVE_VERBS else None
    return None


def _after_role(doc: Doc) -> int | None:
    """ "who plays father in haunting of hill house": what follows the role verb's first "in" / "on"."""
    verb = next((t for t in doc if t.pos_ == "VERB" and t.lemma_ in lexicon.ROLE_VERBS), None)
    if verb is None:
        return None
    where = next((t for t in doc[verb.i + 1 :] if t.lower_ in ("in", "on")), None)
    return None if where is None else where.i + 1


def _release_verb(doc: Doc) -> int | None:
    """ "when did [first fast and furious] come out", "when is [pokemon let's go eevee] released": the index of a
    verb of release after the question's auxiliary; the words between name what was released."""
    if len(doc) < 4 or not doc[0].tag_.startswith("W") or doc[1].lemma_ not in AUXILIARIES:
        return None
    for tok in doc[3:]:
        particle = doc[tok.i + 1].lower_ if tok.i + 1 < len(doc) else ""
        if tok.lemma_ in lexicon.RELEASE_VERBS or particle in lexicon.RELEASE_PHRASES.get(tok.lemma_, ()):
            return tok.i
    return None


def _around_episode(doc: Doc) -> set[int]:
    """ "the man in the high castle episode 1", "who died in season 2 of game of thrones": the words before an
    episode's number back to the last verb or preposition, and everything after its "of"."""
    found: set[int] = set()
    for tok in doc[:-1]:
        number = doc[tok.i + 1]
        if tok.lower_ not in lexicon.EPISODES or not (number.like_num or number.pos_ == "NUM"):
            continue
        start = tok.i
        while start and doc[start - 1].pos_ not in ("VERB", "AUX", "ADP", "PUNCT") and doc[start - 1].tag_[:1] != "W":
            start -= 1
        found.update(range(start, tok.i))
        if tok.i + 2 < len(doc) and doc[tok.i + 2].lower_ == "of":
            for after in doc[tok.i + 3 :]:  # up to the question's verb: "season 5 of [the blacklist] resume"
                if after.pos_ in ("VERB", "AUX"):
                    break
                found.add(after.i)
    return found


def _after_work(doc: Doc) -> int | None:
    """ "who is the song you're my best friend about", "the cast of don't tell mom": after a work noun, or after
    "<maker or work> of"."""
    for tok in doc[:-1]:
        following = doc[tok.i + 1]
        named = following.pos_ not in ("VERB", "AUX", "ADP", "PUNCT", "SCONJ") and not following.tag_.startswith("W")
        if tok.pos_ == "NOUN" and tok.lower_ in lexicon.WORKS and named and following.lower_ != "that":
            return tok.i + 1  # "which film won the oscar", "the song that goes" name nothing
        if tok.lemma_ in lexicon.CREATORS | lexicon.WORKS and following.lower_ == "of":
            return tok.i + 2
    return None


def words(doc: Doc) -> frozenset[int]:
    """Indices of the tokens a question names as a title (empty for a text that is not search-like)."""
    if "title_words" not in doc.user_data:
        found: set[int] = set()
        if searchlike(doc):
            for start in (_after_maker(doc), _after_role(doc), _after_work(doc)):
                if start is not None:
                    found.update(range(start, len(doc)))
            found |= _around_episode(doc)
            released = _release_verb(doc)
            if released is not None:  # the title ends where its release is said: "the song hello | come out"
                verb = doc[released]
                named = (i for i in range(2, released) if doc[i].head != verb or doc[i].dep_ not in ("aux", "auxpass"))
                found = {i for i in found if i < released} | set(named)
        doc.user_data["title_words"] = frozenset(found)
    return doc.user_data["title_words"]


def inside(tok: Token) -> bool:
    return tok.i in words(tok.doc)


def edition(tok: Token) -> bool:
    """A year or an episode's number in a title's place ("in the 2003 movie", "the walking dead season 4"): it
    picks a version or an episode of the work, so changing it asks about another one."""
    before = tok.doc[tok.i - 1].lower_ if tok.i else ""
    return bool(re.fullmatch(r"(19|20)\d\d", tok.text)) or before in lexicon.EPISODES

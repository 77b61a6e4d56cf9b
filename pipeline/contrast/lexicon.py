"""Word lists for the rule-based edits: auxiliaries and contractions, number words and units, and the antonym
and comparative pairs that `antonym_flip` uses."""

from __future__ import annotations

import re

FINITE = {"VBZ", "VBP", "VBD", "MD"}
DO_FORM = {"VBZ": "does", "VBP": "do", "VBD": "did"}
DO_TAG = {form: tag for tag, form in DO_FORM.items()}
NT_STEM = {"ca": "can", "wo": "will", "sha": "shall"}  # spaCy splits "can't" as "ca" + "n't"
NT_EXPANDED = {"ca": "cannot", "wo": "will not", "sha": "shall not"}
NT_CONTRACTED = {"can": "can't", "will": "won't", "shall": "shan't"}
CONTRACTIBLE = {"do", "does", "did", "is", "are", "was", "were", "has", "have", "had", "could", "should", "would"}
NEGATORS = {"no", "nothing", "none", "nobody", "neither", "nor"}
NEGATIVE_POLARITY = {"any", "anything", "anyone", "anybody", "anymore", "ever", "yet", "either"}  # need a negation
# In a question, what follows these verbs, or "<creator> of", is a title (a song, book, film, show).
CREATIVE_VERBS = {"sing", "write", "compose", "perform", "record", "direct", "produce", "release", "cover", "say"}
CREATORS = {"singer", "writer", "author", "composer", "director", "producer", "lyric", "cast", "episode", "season"}
# ... and what follows these (pipeline.contrast.titles): a role's "in" / "on", a work noun, a release verb's
# subject, the words around an episode's number
ROLE_VERBS = {"play", "star", "voice", "portray", "appear"}
WORKS = {"song", "film", "movie", "show", "album", "novel", "book", "sitcom", "musical", "opera", "poem", "single"}
WORKS |= {"composition", "quote"}
NAMING = {"big", "final"}  # a number after these names a league or a round ("the big ten", "the final four")
CATEGORY = {"best", "worst"}  # after "for" they name an award's category: "the oscar for best actor"
RELEASE_VERBS = {"release", "premiere", "air", "debut", "film", "shoot", "start", "begin", "end", "return", "resume"}
RELEASE_PHRASES = {"come": {"out", "on", "back"}, "take": {"place"}}
EPISODES = {"season", "episode", "series"}
# Words that take a "whether" / "if" of what is (not) known: "not clear if" (a conditional "if" is another thing)
KNOWING = {"clear", "known", "sure", "certain", "established", "determined", "understood", "evident", "obvious"}
TIME_ADVERBS = {"previously", "recently", "newly", "originally", "initially", "already", "formerly"}
DESIGN_PARTICIPLES = {"randomized", "randomised"}  # "a randomized controlled trial" names a design
QUANTIFIERS = {"most", "least", "more", "less"}  # antonyms as quantities of things only with care (antonym_flip)
CLITICS = {"'re": "are", "'ll": "will", "'ve": "have", "'m": "am"}  # "'d" is would/had: ambiguous, left alone

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
WORDS += ["thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
VALUE_WORD = {**dict(enumerate(WORDS)), 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy"}
VALUE_WORD |= {80: "eighty", 90: "ninety", 100: "hundred", 10**3: "thousand", 10**6: "million", 10**9: "billion"}
WORD_VALUE = {word: value for value, word in VALUE_WORD.items()}
NUMBER_RE = re.compile(r"\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?")
# A digit glued to one of these is part of an identifier ("4-PBA", "IL-6", "5'-nucleotidase"), not a quantity.
JOINERS = "-‐‑–'’_/"
UNITS = {"%", "mg", "g", "kg", "µg", "μg", "ml", "l", "mm", "cm", "m", "km", "h", "hr", "min", "s", "mmol", "nm"}
UNITS |= {"µm", "μm", "mmhg", "kda", "bp", "kb", "x", "iu", "u", "mph", "°c", "°f"}
BEFORE_COUNT = {"ADP", "VERB", "AUX", "DET", "CCONJ", "SCONJ", "ADV", "PART", "PUNCT"}  # what precedes a count
EDGE_PUNCT = {",", ".", ";", ":", "!", "?", "-", "--", "—"}  # trimmed off the ends of a moved noun phrase

# Pairs listed surface form by surface form (text is matched as written); the reverse direction is derived, the
# first pair naming a word wins, so "inhibit" flips to "promote" and adjectival "lower" to "higher".
PAIRS = """
increase decrease increases decreases increased decreased increasing decreasing
higher lower raise lower raises lowers raised lowered raising lowering more less greater smaller larger smaller
positive negative positively negatively positivity negativity
promote inhibit promotes inhibits promoted inhibited promoting inhibiting
activate inhibit activates inhibits activated inhibited activating inhibiting activation inhibition
upregulate downregulate upregulates downregulates upregulated downregulated upregulating downregulating
up-regulate down-regulate up-regulates down-regulates up-regulated down-regulated up-regulating down-regulating
upregulation downregulation up-regulation down-regulation
reduce increase reduces increases reduced increased reducing increasing
enhance reduce enhances reduces enhanced reduced enhancing reducing
improve worsen improves worsens improved worsened improving worsening
before after high low above below maximum minimum maximal minimal most least better worse best worst
agonist antagonist agonists antagonists early late earlier later strong weak stronger weaker fast slow
faster slower gain loss gains losses benefit harm benefits harms beneficial harmful sensitive resistant
efficient inefficient male female males females present absent presence absence rich poor
"""
WORDLIST = PAIRS.split()
ANTONYMS: dict[str, str] = dict(zip(WORDLIST[::2], WORDLIST[1::2]))
for _word, _opposite in list(ANTONYMS.items()):
    ANTONYMS.setdefault(_opposite, _word)
# Where a word's sense depends on its part of speech: replacement by POS, None = leave that sense alone.
SENSE = {"lower": {"VERB": "raise"}, "present": {"VERB": None, "NOUN": None}, "gain": {"VERB": "lose"}}
SENSE |= {"fast": {"VERB": None, "NOUN": None}, "late": {"NOUN": None}, "poor": {"NOUN": None}}
# Before its noun, a quality: "poor prognosis" is the opposite of "good prognosis" ("the poor" of "the rich"), unless
# the noun is one that has wealth ("poor families")
ATTRIBUTIVE = {"poor": "good"}
WEALTH_NOUNS = {"people", "person", "family", "household", "country", "nation", "community", "neighborhood", "area"}
WEALTH_NOUNS |= {"region", "man", "woman", "child", "kid", "student", "farmer", "worker", "city", "state", "village"}
# Opposites outside the pairs: "upper and lower egypt" already holds its contrast (and "upper and higher" is none).
OPPOSED_TOO = {"lower": {"upper"}, "upper": {"lower"}}
# Fixed compounds holding a word of the pairs: a name or a term, not a degree ("high school" has no "low school").
COMPOUNDS = {
    "high school", "junior high", "high court", "high street", "high priest", "high seas", "fast food",
    "slow motion", "late night", "best man", "poor law", "present tense", "named after", "name after",
    "best known",
}  # fmt: skip
ANTONYM_RE = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(ANTONYMS, key=len, reverse=True))) + r")\b", re.I)

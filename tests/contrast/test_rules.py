"""Rule-based minimal edits on a real spaCy pipeline: exact outputs per op, minimality, the Arrow batch contract."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import pyarrow as pa
import pytest

from pairforge.pipeline.contrast import rules
from tests.conftest import DATASETS, need

# (op, text, expected edit or None when the op must not apply)
CASES = [
    # negation_insert
    (
        "negation_insert",
        "Obesity is associated with an increased risk.",
        "Obesity is not associated with an increased risk.",
    ),
    ("negation_insert", "Aspirin can cause bleeding in 3 patients.", "Aspirin cannot cause bleeding in 3 patients."),
    ("negation_insert", "Smoking is a cause of cancer.", "Smoking is not a cause of cancer."),
    (
        "negation_insert",
        "The drug has been shown to reduce mortality.",
        "The drug has not been shown to reduce mortality.",
    ),
    ("negation_insert", "4-PBA treatment decreases ER stress.", "4-PBA treatment does not decrease ER stress."),
    (
        "negation_insert",
        "0-dimensional biomaterials lack inductive properties.",
        "0-dimensional biomaterials do not lack inductive properties.",
    ),
    ("negation_insert", "The study enrolled 1,200 participants.", "The study did not enroll 1,200 participants."),
    (
        "negation_insert",
        "Ultrasound guidance significantly raises the number of procedures.",
        "Ultrasound guidance does not significantly raise the number of procedures.",
    ),
    (
        "negation_insert",
        "who wrote he ain't heavy he's my brother lyrics",
        "who did not write he ain't heavy he's my brother lyrics",
    ),
    ("negation_insert", "when did the us enter world war 2", "when did the us not enter world war 2"),
    ("negation_insert", "A man is playing a guitar", "A man is not playing a guitar"),
    ("negation_insert", "6MP treatment does not affect CD4 counts.", None),
    ("negation_insert", "Mutations never occur in this region.", None),
    ("negation_insert", "Aspirin use in elderly patients.", None),
    ("negation_insert", "Activity level has no association with fitness.", None),
    # the failures: a noun read as the verb, a reduced relative, "did" read as the verb of a question
    ("negation_insert", "Mitochondrial complex I proteins ND3 and ND6 prevents oxidative stress.", None),
    (
        "negation_insert",
        "Proteins synthesized at the growth cone are ubiquitinated at a higher rate than proteins from the cell body.",
        None,
    ),
    ("negation_insert", "When did World War II end?", None),
    ("negation_insert", "what are the three types of wind turbines", None),  # "what are not the three types"
    ("negation_insert", "what does n mean on an irish stamp", None),  # "n" read as an adverb: no subject
    (
        "negation_insert",
        "when do lisa and jack get married in heartland",
        "when do lisa and jack not get married in heartland",
    ),
    ("negation_insert", "when have the bears won the super bowl", "when have the bears not won the super bowl"),
    # negation_remove
    ("negation_remove", "6MP treatment does not affect CD4 counts.", "6MP treatment affects CD4 counts."),
    ("negation_remove", "Aspirin doesn't inhibit platelet aggregation.", "Aspirin inhibits platelet aggregation."),
    ("negation_remove", "Differentiated cells do not exhibit apoptosis.", "Differentiated cells exhibit apoptosis."),
    ("negation_remove", "Germany did not fight France.", "Germany fought France."),
    ("negation_remove", "Statins cannot prevent heart failure.", "Statins can prevent heart failure."),
    ("negation_remove", "The protein isn't expressed in T cells.", "The protein is expressed in T cells."),
    ("negation_remove", "It won't rain and they can't go.", "It will rain and they can't go."),
    ("negation_remove", "The patients were not treated.", "The patients were treated."),
    ("negation_remove", "Mutations never occur in this region.", "Mutations occur in this region."),
    ("negation_remove", "Not all patients respond to chemotherapy.", "All patients respond to chemotherapy."),
    ("negation_remove", "A man is playing a guitar", None),
    ("negation_remove", "Leptin resistance occurs in visceral fat, not subcutaneous fat.", None),  # a contrast
    ("negation_remove", "Co-IR blockade does not cause any adverse autoimmune events.", None),  # "causes any"
    ("negation_remove", "who sings i can't take my eyes off of you", None),  # a title
    (
        "negation_remove",
        "which economist was not a proponent of a laissez-faire government",
        "which economist was a proponent of a laissez-faire government",
    ),
    # number_change
    (
        "number_change",
        "1 in 5 million in UK have abnormal PrP positivity.",
        "2 in 5 million in UK have abnormal PrP positivity.",
    ),
    ("number_change", "The drug reduced mortality by 32% in mice.", "The drug reduced mortality by 64% in mice."),
    ("number_change", "Roughly 85% of women have no pathology.", "Roughly 42% of women have no pathology."),
    ("number_change", "Three patients died after 1.5 years.", "Six patients died after 1.5 years."),
    ("number_change", "Mice gained 0.25 g per week.", "Mice gained 0.50 g per week."),
    ("number_change", "Incidence decreased by 10% since 1979.", "Incidence decreased by 20% since 1979."),
    ("number_change", "who was the ruler of england in 1616", "who was the ruler of england in 1620"),
    ("number_change", "The study enrolled 1,200 participants.", "The study enrolled 2,400 participants."),
    ("number_change", "Taking 400mg of vitamin E prevents cancer.", "Taking 800mg of vitamin E prevents cancer."),
    ("number_change", "CD4 counts fell in 12 patients.", "CD4 counts fell in 24 patients."),
    ("number_change", "4-PBA treatment decreases ER stress.", None),
    ("number_change", "0-dimensional biomaterials lack inductive properties.", None),
    ("number_change", "6MP treatment does not affect CD4 counts.", None),
    ("number_change", "5'-nucleotidase activity is lower in CD4 cells.", None),
    (
        "number_change",
        "who is playing the halftime show at super bowl 2016",
        "who is playing the halftime show at super bowl 2020",
    ),
    (
        "number_change",
        "when do you celebrate birthday if born on feb 28",
        "when do you celebrate birthday if born on feb 29",
    ),
    ("number_change", "Demethylase inhibitor JIB 04 is inactive.", None),
    ("number_change", "A man is playing a guitar", None),
    ("number_change", "Deletion of protein 5 reduces tumour growth.", None),  # an identifier
    ("number_change", "LRBA prevents CTLA - 4 recycling.", None),
    ("number_change", "who does the voice for hbo 24 7", None),  # a name
    ("number_change", "Ten percent (10%) of kidney cancers are due to excess weight.", None),  # restated
    (
        "number_change",
        "Incidence of sepsis has fallen from 2009 to 2014.",
        "Incidence of sepsis has fallen from 2013 to 2014.",
    ),
    ("number_change", "One in two trials are discontinued early.", "One in four trials are discontinued early."),
    ("number_change", "HTLV type 1 is most frequent in individuals of African origin.", None),
    ("number_change", "More than 50 percent of patients relapse.", "More than 25 percent of patients relapse."),
    ("number_change", "Glycolysis is one of the primary pathways in cells.", None),  # "two of the pathway"
    # swap_entities
    ("swap_entities", "Paris is larger than Berlin.", "Berlin is larger than Paris."),
    ("swap_entities", "how many wars held between india and pakistan", None),  # conjuncts: the meaning stays
    ("swap_entities", "when do lisa and jack get married in heartland", None),
    ("swap_entities", "Transcription factor EB is activated by Staphylococcus aureus infection.", None),  # parts
    ("swap_entities", "1 in 5 million in UK have abnormal PrP positivity.", None),
    ("swap_entities", "A man is playing a guitar", None),
    # swap_noun_phrases
    (
        "swap_noun_phrases",
        "4-PBA treatment decreases endoplasmic reticulum stress.",
        "endoplasmic reticulum stress decreases 4-PBA treatment.",
    ),
    (
        "swap_noun_phrases",
        "Aspirin doesn't inhibit platelet aggregation.",
        "Platelet aggregation doesn't inhibit aspirin.",
    ),
    (
        "swap_noun_phrases",
        "Obesity is associated with an increased risk of diabetes.",
        "An increased risk of diabetes is associated with obesity.",
    ),
    ("swap_noun_phrases", "Activation of PPM1D enhances p53 function.", "p53 function enhances activation of PPM1D."),
    ("swap_noun_phrases", "A man is playing a guitar", "A guitar is playing a man"),
    ("swap_noun_phrases", "when did ole miss beat alabama in football", "when did alabama beat ole miss in football"),
    ("swap_noun_phrases", "who wrote he ain't heavy he's my brother lyrics", None),
    ("swap_noun_phrases", "Charcoal shows no benefit for paraquat poisoning.", None),
    ("swap_noun_phrases", "Smoking is a cause of cancer.", None),
    # antonym_flip
    (
        "antonym_flip",
        "4-PBA treatment decreases endoplasmic reticulum stress.",
        "4-PBA treatment increases endoplasmic reticulum stress.",
    ),
    (
        "antonym_flip",
        "Obesity is associated with an increased risk of diabetes.",
        "Obesity is associated with a decreased risk of diabetes.",
    ),
    ("antonym_flip", "Metformin lowers blood glucose.", "Metformin raises blood glucose."),
    ("antonym_flip", "Activity is lower in CD4 cells.", "Activity is higher in CD4 cells."),
    ("antonym_flip", "IL-6 up-regulates TNF expression.", "IL-6 down-regulates TNF expression."),
    ("antonym_flip", "High levels of copeptin predict diabetes.", "Low levels of copeptin predict diabetes."),
    ("antonym_flip", "who has won the most college football titles", "who has won the fewest college football titles"),
    ("antonym_flip", "In adult tissue, most T cells are memory T cells.", None),  # "least T cells" is not English
    ("antonym_flip", "where is most of the worlds oil located", None),
    ("antonym_flip", "the power to raise or lower tax rates", None),  # the opposite is there already
    ("antonym_flip", "who wrote the song after you've gone", None),  # a title, named not said
    ("antonym_flip", "who is the director of nightmare before christmas", None),
    ("antonym_flip", "what is the most dangerous kind of bear", "what is the least dangerous kind of bear"),
    (
        "antonym_flip",
        "British male students are bullied more than British female students.",
        "British male students are bullied less than British female students.",
    ),
    ("antonym_flip", "We present a new method.", None),
    ("antonym_flip", "A man is playing a guitar", None),
    # paraphrase_contraction
    (
        "paraphrase_contraction",
        "Aspirin doesn't inhibit platelet aggregation.",
        "Aspirin does not inhibit platelet aggregation.",
    ),
    ("paraphrase_contraction", "It can't be cured.", "It cannot be cured."),
    ("paraphrase_contraction", "It won't rain.", "It will not rain."),
    ("paraphrase_contraction", "why won't you buy me a car", None),  # inverted: "will not you" is not English
    ("paraphrase_contraction", "who sings she's like the wind lyrics", None),  # a title is written as it is
    ("paraphrase_contraction", "who wrote he ain't heavy he's my brother lyrics", None),
    ("paraphrase_contraction", "when was i don't like mondays released", None),
    ("paraphrase_contraction", "The protein is not expressed in T cells.", "The protein isn't expressed in T cells."),
    ("paraphrase_contraction", "Statins cannot prevent heart failure.", "Statins can't prevent heart failure."),
    ("paraphrase_contraction", "Vaccines will not cause autism.", "Vaccines won't cause autism."),
    ("paraphrase_contraction", "who sings the song it ain't me", None),
    ("paraphrase_contraction", "who's got the worst record in nfl", "who has got the worst record in nfl"),
    ("paraphrase_contraction", "A man is playing a guitar", None),
    # paraphrase_number_format
    (
        "paraphrase_number_format",
        "Aspirin can cause bleeding in 3 patients.",
        "Aspirin can cause bleeding in three patients.",
    ),
    ("paraphrase_number_format", "Three patients died.", "3 patients died."),
    (
        "paraphrase_number_format",
        "1 in 5 million in UK have abnormal PrP positivity.",
        "One in 5 million in UK have abnormal PrP positivity.",
    ),
    ("paraphrase_number_format", "name the four major layers of the earth", "name the 4 major layers of the earth"),
    ("paraphrase_number_format", "0-dimensional biomaterials lack inductive properties.", None),
    ("paraphrase_number_format", "Mortality fell by 3% in 2010.", None),
    ("paraphrase_number_format", "Hypertension is frequent in type 1 diabetes patients.", None),
    ("paraphrase_number_format", "when does season 5 of the blacklist resume", None),
    ("paraphrase_number_format", "The system can save up to $5 billion.", None),
    ("paraphrase_number_format", "LRBA prevents CTLA - 4 recycling.", None),
    ("paraphrase_number_format", "Forkhead 0 (fox0) transcription factors are involved in apoptosis.", None),
    ("paraphrase_number_format", "Glycolysis is one of the primary pathways in cells.", None),
    # From the blind read of NQ EfficientQA dev questions (our own wordings of each failure):
    ("negation_insert", "where does the danube river start and finish", None),  # coordinated verbs
    ("negation_insert", "season 2 of stranger things release date", None),  # "release" is a noun: no verb at all
    ("negation_insert", "game of thrones season 8 episodes release date", None),
    ("negation_insert", "a relational database is which kind of database", None),  # a copula with its wh-word after
    ("negation_remove", "who played the teacher in never let me go", None),  # the negation is the film's title
    ("negation_remove", "who sang can't buy me love", None),
    ("negation_remove", "who played the nurse in never been kissed again", None),
    ("paraphrase_number_format", "a closed system is one in which energy is exchanged", None),  # "one": a pronoun
    ("paraphrase_number_format", "the risk is 1 in 5 for smokers", "the risk is one in 5 for smokers"),  # a ratio
    ("paraphrase_contraction", "who's won the most grand slams", "who has won the most grand slams"),
    ("paraphrase_contraction", "who's been to the moon", "who has been to the moon"),
    ("paraphrase_contraction", "what's made of glass", "what is made of glass"),  # a passive: "is made"
    ("antonym_flip", "what is the first year of high school in japan", None),  # a compound, not a degree
    ("number_change", "who are the anchors of the four on nbc", None),  # "the four": a show's name
    ("number_change", "who hosts the five on fox news", None),
    # from a read of NQ questions: titles a search query names unmarked, enumerators, codes, number words
    ("negation_insert", "when did all night long come out lionel richie", None),
    ("negation_insert", "who played little ricky on i love lucy show", None),
    ("negation_insert", "is the united states a country or nation", None),
    ("negation_insert", "when is pokemon let's go eevee released", None),
    ("negation_insert", "when will the flash season 4 be released", "when will the flash season 4 not be released"),
    (
        "negation_insert",
        "where does aarp fall on the political spectrum",
        "where does aarp not fall on the political spectrum",
    ),
    ("negation_remove", "when did never been kissed come out", None),
    ("number_change", "1. what was the precursor to the present day internet", None),
    ("number_change", "one who signals train to start or stop", None),
    ("number_change", "when did the twenty one pilots hiatus start", None),
    ("number_change", "who played kelly taylor's mom on 90210", None),
    ("number_change", "who played tom in four weddings and a funeral", None),
    ("number_change", "who plays michael myers in the 2018 version", "who plays michael myers in the 2022 version"),
    ("number_change", "The US could save up to $750 million.", "The US could save up to $1500 million."),
    (
        "number_change",
        "which film won the oscar for best animated feature in 2007",
        "which film won the oscar for best animated feature in 2011",
    ),
    ("antonym_flip", "who plays the robot maid in richie rich", None),
    ("antonym_flip", "when did the nightmare before christmas come out", None),
    ("antonym_flip", "who is the song you're my best friend about", None),
    ("antonym_flip", "the man in the high castle episode 1 season 1", None),
    ("antonym_flip", "colby cheese is named after a town in what state", None),
    ("antonym_flip", "the unification of upper and lower egypt took place in which period", None),
    (
        "antonym_flip",
        "who played the female lead in the 1942 film casablanca",
        "who played the male lead in the 1942 film casablanca",
    ),
    ("paraphrase_number_format", "when did snow white and the seven dwarfs premiere", None),
    ("antonym_flip", "who won the oscar for best actor when titanic was nominated", None),
    ("antonym_flip", "the piano player best known for his composition", None),
    ("number_change", "who has the most big ten championships in football", None),
    ("number_change", "where is final four being held this year", None),
    ("negation_insert", "how many episodes are there in the first season of the haunting of hill house", None),
    ("negation_insert", "when did super smash bros 64 come out", None),
    ("paraphrase_contraction", "who said it ain t over til it's over", None),
    ("paraphrase_contraction", "the very last episode of that's so raven", None),
    # A count the text restates by listing (or knows the size of) and a range's bounds stay as they are.
    ("number_change", "We pooled the 4 trials: ALPHA, BETA, GAMMA and DELTA.", None),
    ("number_change", "Three release factors (RF1-RF3) bind the ribosome.", None),
    ("number_change", "Grafts gave rise to all three lineages in mice.", None),
    ("number_change", "Levels fell by 30% to 50% in treated rats.", None),
    # A negation answered by what follows it, or asking "whether", is not removed; a sentence with a "not" already
    # gets no second one.
    ("negation_remove", "It is not clear whether the drug lowers mortality.", None),
    ("negation_remove", "It is not known if the drug lowers mortality.", None),
    (
        "negation_remove",
        "The test may not be useful if pain began within 3 hours.",
        "The test may be useful if pain began within 3 hours.",
    ),
    (
        "number_change",
        "About 40% of deaths from the syndrome (ABC) occur early.",
        "About 80% of deaths from the syndrome (ABC) occur early.",
    ),
    ("negation_remove", "Loss of the kinase does not block activation but instead delays it.", None),
    ("negation_insert", "The drug is effective in adults but not in children.", None),
    # A term its abbreviation follows is a name; a statement its figure follows is held to the figure.
    ("antonym_flip", "Zygotic genome activation (ZGA) starts early.", "Zygotic genome activation (ZGA) starts late."),
    ("number_change", "We measured cyclin-like 3 (Ccnl3) in 40 mice.", "We measured cyclin-like 3 (Ccnl3) in 80 mice."),
    (
        "antonym_flip",
        "Increased systolic blood pressure (SBP) is common.",
        "Decreased systolic blood pressure (SBP) is common.",
    ),
    (
        "antonym_flip",
        "AMP-activated protein kinase (AMPK) is low in fat.",
        "AMP-activated protein kinase (AMPK) is high in fat.",
    ),
    # "most" counting a noun has no clean opposite.
    ("antonym_flip", "Breaks occurred in most previously described regions.", None),
    # A count its list restates after a comma or in a coordination under the counted noun; a protein's mass.
    ("number_change", "We grew two mouse lines, B6 and C3 in the lab.", None),
    ("number_change", "It is driven by two variants in the abc-1 gene and the xyz-2 gene.", None),
    ("number_change", "It binds a protein of 52 kDa in yeast.", None),
    ("number_change", "We grew two mouse lines in the lab.", "We grew four mouse lines in the lab."),
    # "reduce" flips to "increase" ("enhance the risk" is no phrase); "poor" as a quality to "good".
    ("antonym_flip", "Aspirin reduces the risk of stroke.", "Aspirin increases the risk of stroke."),
    ("antonym_flip", "Smokers have a poor prognosis.", "Smokers have a good prognosis."),
    ("antonym_flip", "The king gave bread to the poor.", "The king gave bread to the rich."),
    ("antonym_flip", "Poor families moved to the city.", "Rich families moved to the city."),
    # No verb in a title: a present-tense form without its -s, a study design's participle; "not" in capitals.
    ("negation_insert", "A Transport System Required for Iron Uptake in Escherichia coli.", None),
    ("negation_insert", "Aspirin and stroke: the Nurses' Health Study III randomized controlled trial.", None),
    ("negation_insert", "BASOPHILS CAN PROMOTE LUPUS NEPHRITIS.", "BASOPHILS CANNOT PROMOTE LUPUS NEPHRITIS."),
]


@pytest.fixture(scope="module")
def nlp():
    return rules.load_nlp()


def _changed(original: str, edited: str) -> tuple[str, str, str, str]:
    """(prefix, old middle, new middle, suffix) of the smallest differing region."""
    start = 0
    while start < min(len(original), len(edited)) and original[start] == edited[start]:
        start += 1
    end = 0
    while end < min(len(original), len(edited)) - start and original[-1 - end] == edited[-1 - end]:
        end += 1
    return (
        original[:start],
        original[start : len(original) - end],
        edited[start : len(edited) - end],
        original[len(original) - end :],
    )


@pytest.mark.parametrize(("op", "text", "expected"), CASES, ids=[f"{op}:{text[:40]}" for op, text, _ in CASES])
def test_op_exact_output(nlp, op, text, expected):
    edit = rules.OPS[op](nlp(text))
    if expected is None:
        assert edit is None, edit
        return
    assert edit is not None
    assert (edit.op, edit.edited) == (op, expected)
    assert edit.preserves_meaning is op.startswith("paraphrase_")
    assert edit.detail


def _blocks(original: str, edited: str) -> list[tuple[str, str]]:
    """The changed (old, new) runs between original and edit, over words and whitespace runs alike."""
    old, new = re.split(r"(\s+)", original), re.split(r"(\s+)", edited)
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    return [("".join(old[a:b]), "".join(new[c:d])) for tag, a, b, c, d in matcher.get_opcodes() if tag != "equal"]


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+|[^\w\s]", text)


def _region(original: str, edited: str) -> tuple[str, str]:
    """The smallest (old, new) runs of words and whitespace that differ: everything around them is shared."""
    old, new = re.split(r"(\s+)", original), re.split(r"(\s+)", edited)
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    changed = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    assert changed
    (_, a, _, c, _), (_, _, b, _, d) = changed[0], changed[-1]
    return "".join(old[a:b]), "".join(new[c:d])


@pytest.mark.parametrize("op", list(rules.OPS))
def test_every_edit_the_rules_make_is_local(op):
    """What the op itself makes of every text of the table (not the table's expectations): non-swap edits change
    one short run of words; swaps move words around without adding or losing any."""
    texts = sorted({text for _, text, _ in CASES})
    made = [(text, edit.edited) for text, (edit,) in zip(texts, rules.apply(texts, [op])) if edit is not None]
    assert made, f"{op} applies to some text of the table"
    for text, edited in made:
        if op.startswith("swap_"):
            assert sorted(_words(text.lower())) == sorted(_words(edited.lower())), (text, edited)
        else:
            old, new = _region(text, edited)
            assert len(old.split()) <= 3 and len(new.split()) <= 4, (text, edited)


# Irregular whitespace and punctuation around the change must survive byte for byte.
ODD_SPACING = [
    (
        "negation_remove",
        "  Aspirin\tdoes not  inhibit   platelets ,  really .  ",
        "  Aspirin\tinhibits   platelets ,  really .  ",
    ),
    (
        "negation_insert",
        "Statins\u00a0and diet  can  prevent  disease ;  sometimes .",
        "Statins\u00a0and diet  cannot  prevent  disease ;  sometimes .",
    ),
    ("number_change", "Mice  (n = 12)\tgained weight .", "Mice  (n = 24)\tgained weight ."),
    ("antonym_flip", "Risk   was  higher\u2009in  men .", "Risk   was  lower\u2009in  men ."),
    ("swap_entities", "Paris  is larger than\tBerlin !", "Berlin  is larger than\tParis !"),
    ("paraphrase_contraction", "It  doesn't\twork  .", "It  does not\twork  ."),
]


@pytest.mark.parametrize(("op", "text", "expected"), ODD_SPACING, ids=[c[0] for c in ODD_SPACING])
def test_text_outside_the_change_is_byte_identical(nlp, op, text, expected):
    edit = rules.OPS[op](nlp(text))
    assert edit is not None and edit.edited == expected


def test_apply_takes_texts_and_docs(nlp):
    texts = ["Aspirin does not inhibit COX-2.", "A man is playing a guitar"]
    results = rules.apply([texts[0], nlp(texts[1])], ["negation_remove", "negation_insert"])
    assert [[e and e.edited for e in row] for row in results] == [
        ["Aspirin inhibits COX-2.", None],
        [None, "A man is not playing a guitar"],
    ]
    assert rules.apply([], ["antonym_flip"]) == []


def test_ops_are_the_documented_codes():
    """Every op a user can name in params has a function, in the same order, and a row in the README's table."""
    from pairforge.pipeline.vocabulary import RULE_OPS

    assert list(rules.OPS) == list(RULE_OPS)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = re.findall(r"^\| `(\w+)` \| ", readme, re.MULTILINE)
    assert [op for op in documented if op in rules.OPS] == list(RULE_OPS)


def test_unknown_op_is_an_error_naming_it_and_the_known_ones():
    for call in (lambda: rules.RuleBatch(["negation_insert", "sarcasm"]), lambda: rules.apply(["x"], ["sarcasm"])):
        with pytest.raises(ValueError, match=r"sarcasm.*negation_insert.*paraphrase_number_format"):
            call()


def test_rule_batch_rows_per_input_and_op_in_order():
    batch = pa.table(
        {
            "source_kind": ["query", "query", "sentence"],
            "source_id": ["q1", "q2", "s1"],
            "text": ["Aspirin does not inhibit COX-2.", "Three patients died.", "A man is playing a guitar"],
        }
    )
    ops = ["negation_remove", "paraphrase_number_format"]
    out = rules.RuleBatch(ops)(batch)
    assert out.schema == rules.RULE_EDITS
    assert out.column_names == [
        "source_kind",
        "source_id",
        "original",
        "op",
        "outcome",
        "edited",
        "preserves_meaning",
        "detail",
    ]
    rows = out.to_pylist()
    assert [(r["source_id"], r["op"]) for r in rows] == [(i, op) for i in ("q1", "q2", "s1") for op in ops]
    assert [r["original"] for r in rows[::2]] == batch["text"].to_pylist()
    assert rows[0] == {
        "source_kind": "query",
        "source_id": "q1",
        "original": "Aspirin does not inhibit COX-2.",
        "op": "negation_remove",
        "outcome": "applied",
        "edited": "Aspirin inhibits COX-2.",
        "preserves_meaning": False,
        "detail": "does not inhibit -> inhibits",
    }
    assert rows[3]["edited"] == "3 patients died." and rows[3]["preserves_meaning"] is True
    for r in (rows[1], rows[2], rows[4], rows[5]):
        assert (r["outcome"], r["edited"], r["preserves_meaning"], r["detail"]) == ("not_applicable", None, None, None)
    assert rules.RuleBatch(ops)(batch.slice(0, 0)).num_rows == 0


def _unify_contractions(text: str) -> str:
    text = text.lower().replace("can't", "cannot").replace("won't", "will not").replace("shan't", "shall not")
    return text.replace("n't", " not").replace("'re", " are").replace("'ll", " will").replace("'ve", " have")


def _paraphrase_is_intended(op: str, original: str, edited: str) -> bool:
    ((old, new),) = _blocks(original, edited)
    if op == "paraphrase_number_format":
        old, new = old.strip(".,;:()").lower(), new.strip(".,;:()").lower()
        return {old, new} in ({str(n), w} for n, w in enumerate(NUMBER_WORDS))
    expansions = (_unify_contractions(old).replace("'s", form) for form in (" is", " has"))
    return _unify_contractions(new) in expansions or _unify_contractions(old) == _unify_contractions(new)


NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
NUMBER_WORDS += ["twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]


def test_every_op_on_the_scifact_claims():
    path = DATASETS / "scifact" / "queries.jsonl"
    need(path, "SciFact")
    claims = [json.loads(line)["text"] for line in path.read_text().splitlines()]
    results = rules.apply(claims, list(rules.OPS))
    for j, op in enumerate(rules.OPS):
        applied = [(claim, row[j]) for claim, row in zip(claims, results) if row[j] is not None]
        assert len(applied) >= 10, op
        for claim, edit in applied:
            assert edit.op == op and edit.edited != claim and edit.detail
            assert edit.preserves_meaning is op.startswith("paraphrase_")
            if edit.preserves_meaning:
                assert _paraphrase_is_intended(op, claim, edit.edited), (claim, edit)

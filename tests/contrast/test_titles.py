"""Which words of a question name a title, on the real spaCy pipeline: the cues NQ-style questions give, and none
read in a capitalised claim."""

from __future__ import annotations

import pytest

from pairforge.pipeline.contrast import rules, titles

# (text, the words read as a title, in order)
CASES = [
    ("who sang do you know where you're going to", "do you know where you 're going to"),
    ("who plays the robot maid in richie rich", "richie rich"),
    ("when did first fast and furious come out", "first fast and furious"),
    ("when will the flash season 4 be released", "the flash season 4"),
    ("who is the song you're my best friend about", "you 're my best friend about"),
    ("the man in the high castle episode 1 season 1", "the high castle episode 1"),
    ("who died in season 2 of game of thrones", "game of thrones"),
    ("who is the director of nightmare before christmas", "nightmare before christmas"),
    ("which film won the oscar for best animated feature in 2007", ""),
    ("who has the most points in the nba", ""),
    ("Obesity is associated with an increased risk of diabetes in the first season.", ""),
]


@pytest.fixture(scope="module")
def nlp():
    return rules.load_nlp()


@pytest.mark.parametrize(("text", "title"), CASES, ids=[text[:40] for text, _ in CASES])
def test_title_words(nlp, text, title):
    doc = nlp(text)
    assert " ".join(t.text for t in doc if titles.inside(t)) == title


def test_editions_inside_a_title_are_still_edited(nlp):
    doc = nlp("who plays michael myers in the 2018 version")
    year = next(t for t in doc if t.text == "2018")
    assert titles.inside(year) and titles.edition(year)

"""Counterfactual contrast pairs: rule-based minimal edits (rules.py), LLM edit tasks (prompts.py), validators
(validate.py), and the generate stage's bookkeeping (generate.py)."""

# The rule ops' stable codes, in the order they run; `rules.OPS` maps each to its function. Kept here, apart from
# rules.py, so that checking params does not import spaCy.
RULE_OPS = (
    "negation_insert",
    "negation_remove",
    "number_change",
    "swap_entities",
    "swap_noun_phrases",
    "antonym_flip",
    "paraphrase_contraction",
    "paraphrase_number_format",
)

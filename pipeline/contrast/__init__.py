"""Counterfactual contrast pairs: rule-based minimal edits (rules.py), LLM edit tasks (prompts.py), validators
(validate.py), and the generate stage's bookkeeping (generate.py)."""

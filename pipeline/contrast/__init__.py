"""Counterfactual contrast pairs: rule-based minimal edits (rules.py) and LLM edit tasks (prompts.py)."""

"""The filter stage's library: catch false negatives among the mined negatives (`negatives`: near-duplicate rules,
refill rounds; `judges`: cross-encoder and LLM judges, combined by a policy) and validate the generated edits
(`edits`), auditing every decision."""

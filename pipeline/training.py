"""Training on the export's batches with sentence-transformers: a `batch_sampler` for its trainer that hands over
exactly the rows of each `batch_id`. (Reading the rows in order with the export's batch size gives the same
batches for every full one; rows that no full batch could take without a shared positive come last, in smaller
batches, which only this sampler keeps apart.)"""

from __future__ import annotations

import numpy as np


def export_batches(batch_ids, shuffle_batches: bool = True):
    """`SentenceTransformerTrainingArguments(batch_sampler=export_batches(table["batch_id"]))`, for a dataset
    holding the export's rows in their order (`select_columns` keeps it). Each epoch visits the batches in a
    seeded random order (the trainer's seed plus the epoch) unless `shuffle_batches` is False; a batch's rows
    always stay together."""
    from sentence_transformers.base.sampler import DefaultBatchSampler

    ids = np.asarray(batch_ids)
    if len(ids) and (np.diff(ids) < 0).any():
        raise ValueError("batch_id must be non-decreasing: pass the export's rows in the order they were written")
    groups = [rows.tolist() for rows in np.split(np.arange(len(ids)), np.flatnonzero(np.diff(ids)) + 1)]

    class ExportBatches(DefaultBatchSampler):
        def __iter__(self):
            order = range(len(groups))
            if shuffle_batches:
                order = np.random.default_rng(self.seed + getattr(self, "epoch", 0)).permutation(len(groups))
            for batch in order:
                yield groups[batch]

        def __len__(self) -> int:
            return len(groups)

    def make(dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        if len(dataset) != len(ids):
            raise ValueError(f"the dataset has {len(dataset)} rows, the export's batch ids {len(ids)}")
        return ExportBatches(dataset, batch_size, drop_last, valid_label_columns, generator, seed)

    return make

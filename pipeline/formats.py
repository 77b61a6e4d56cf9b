"""Trainer-ready tables in sentence-transformers' formats, built from the mined and counterfactual frames.

Text columns come first (`anchor`, `positive`, `negative...` / `document`, `label`); metadata columns follow
(ids, scores, kind, topic). Trainers that take every column as an input want
`dataset.select_columns(TEXT_COLUMNS[format])`; the card says so.
"""

from __future__ import annotations

import functools

import polars as pl
import pyarrow as pa

from pairforge.pipeline.vocabulary import JUDGED, KEPT

TEXT_COLUMNS = {
    "triplet": ["anchor", "positive", "negative"],
    "contrast-triplet": ["anchor", "positive", "negative"],
    "mixed": ["anchor", "positive", "negative"],
    "labeled-pair": ["anchor", "document", "label"],
    "labeled-list": ["anchor", "documents", "labels"],
}


def to_arrow(frame: pl.DataFrame) -> pa.Table:
    """Polars -> Arrow with plain (not large) strings and lists, the types every reader expects."""
    table = frame.to_arrow()

    def plain(dtype: pa.DataType) -> pa.DataType:
        if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
            return pa.string()
        if pa.types.is_large_list(dtype) or pa.types.is_list(dtype):
            return pa.list_(plain(dtype.value_type))
        return dtype

    return table.cast(pa.schema([pa.field(f.name, plain(f.type)) for f in table.schema]))


PAIR_KIND = ["query_id", "doc_id", "positive_kind"]


def _kinded(positives: pa.Table) -> pl.DataFrame:
    """`positives` with each pair's `positive_kind` (judged, generated, promoted): judged where the table has none
    (a pairs artifact older than the column holds judged pairs only)."""
    pairs = pl.from_arrow(positives)
    return pairs if "positive_kind" in pairs.columns else pairs.with_columns(pl.lit(JUDGED).alias("positive_kind"))


def with_kinds(scores: pa.Table, positives: pa.Table) -> pa.Table:
    """`scores` (one row per (query, positive) pair) with each pair's `positive_kind` from `positives`."""
    kinds = _kinded(positives).select(PAIR_KIND).unique(["query_id", "doc_id"], keep="first")
    joined = pl.from_arrow(scores).join(kinds, on=["query_id", "doc_id"], how="left", maintain_order="left")
    return joined.with_columns(pl.col("positive_kind").fill_null(JUDGED)).to_arrow()


def triplet_frame(
    corpus: pa.Table,
    queries: pa.Table,
    positives: pa.Table,
    negatives: pa.Table,
    topics: pa.Table,
    teacher: pa.Table | None = None,
) -> pl.DataFrame:
    """One row per (query, positive, negative), in query order, then positive order, then negative rank.

    `positives` holds each (query, positive) pair with its model similarity in `score` (and its `positive_kind`,
    judged where it has none: see `with_kinds`). With `teacher` (`schema.TEACHER`), its scores of the pairs become
    `pos_teacher` and `neg_teacher`.
    """
    docs = pl.from_arrow(corpus).select("doc_id", "text")
    query_topics = pl.from_arrow(topics).select(pl.col("id").alias("query_id"), "topic")
    frame = (
        pl.from_arrow(queries)
        .with_row_index("q_order")
        .rename({"text": "anchor"})
        .join(query_topics, on="query_id", how="left")
        .join(
            _kinded(positives).with_row_index("p_order").rename({"doc_id": "positive_id", "score": "pos_score"}),
            on="query_id",
        )
        .join(
            pl.from_arrow(negatives).select(
                "query_id", pl.col("doc_id").alias("negative_id"), "rank", pl.col("score").alias("neg_score")
            ),
            on="query_id",
        )
        .join(docs.rename({"doc_id": "positive_id", "text": "positive"}), on="positive_id", how="left")
        .join(docs.rename({"doc_id": "negative_id", "text": "negative"}), on="negative_id", how="left")
        .sort("q_order", "p_order", "rank")
    )
    if teacher is not None:
        scores = pl.from_arrow(teacher)
        for side in ("pos", "neg"):
            renamed = {"doc_id": f"{'positive' if side == 'pos' else 'negative'}_id", "score": f"{side}_teacher"}
            frame = frame.join(scores.rename(renamed), on=["query_id", renamed["doc_id"]], how="left")
    return frame.with_columns(pl.lit("mined").alias("negative_kind"))


CONTRAST_COLUMNS = ["anchor", "positive", "negative", "anchor_id", "positive_id", "negative_id", "query_id"]


def contrast_frame(
    edits: pa.Table, corpus: pa.Table, queries: pa.Table, positives: pa.Table, topics: pa.Table
) -> pl.DataFrame:
    """Kept meaning-changing edits as (anchor, positive, minimally edited negative), one row per context:

    - an edited query: anchor = each positive document of the query, positive = the query, negative = the edit
      (the document supports the query, not its counterfactual);
    - an edited positive document: anchor = each query it answers, positive = the document, negative = the edit;
    - an edited sentence: anchor = the sentence, positive = its first kept paraphrase edit, negative = the edit
      (SugarCrepe++ style; sentences without a kept paraphrase give no row).
    """
    kept = pl.from_arrow(edits).filter(pl.col("decision") == KEPT)
    negatives = kept.filter(~pl.col("preserves_meaning")).with_row_index("e_order")
    docs = pl.from_arrow(corpus).select("doc_id", pl.col("text").alias("doc_text"))
    pairs = _kinded(positives).select(PAIR_KIND).with_row_index("p_order")
    query_text = pl.from_arrow(queries).select("query_id", pl.col("text").alias("query_text"))
    common = [pl.col("edited").alias("negative"), pl.col("pair_id").alias("negative_id"), "op", "generator"]
    from_queries = (
        negatives.filter(pl.col("source_kind") == "query")
        .join(pairs, left_on="source_id", right_on="query_id")
        .join(docs, on="doc_id")
        .select(
            "e_order", "p_order", pl.col("doc_text").alias("anchor"), pl.col("original").alias("positive"),
            pl.col("doc_id").alias("anchor_id"), pl.col("source_id").alias("positive_id"), *common,
            pl.col("source_id").alias("query_id"), "source_kind", "positive_kind",
        )
    )  # fmt: skip
    from_positives = (
        negatives.filter(pl.col("source_kind") == "positive")
        .join(pairs, left_on="source_id", right_on="doc_id")
        .join(query_text, on="query_id")
        .select(
            "e_order", "p_order", pl.col("query_text").alias("anchor"), pl.col("original").alias("positive"),
            pl.col("query_id").alias("anchor_id"), pl.col("source_id").alias("positive_id"), *common,
            "query_id", "source_kind", "positive_kind",
        )
    )  # fmt: skip
    paraphrases = (
        kept.filter(pl.col("preserves_meaning") & (pl.col("source_kind") == "sentence"))
        .group_by("source_id", maintain_order=True)
        .first()
        .select("source_id", pl.col("edited").alias("paraphrase"), pl.col("pair_id").alias("paraphrase_id"))
    )
    from_sentences = (
        negatives.filter(pl.col("source_kind") == "sentence")
        .join(paraphrases, on="source_id")
        .select(
            "e_order", pl.lit(0, pl.UInt32).alias("p_order"), pl.col("original").alias("anchor"),
            pl.col("paraphrase").alias("positive"), pl.col("source_id").alias("anchor_id"),
            pl.col("paraphrase_id").alias("positive_id"), *common, pl.lit(None, pl.String).alias("query_id"),
            "source_kind", pl.lit(None, pl.String).alias("positive_kind"),
        )
    )  # fmt: skip
    query_topics = pl.from_arrow(topics).select(pl.col("id").alias("query_id"), "topic")
    direction = pl.col("source_kind").replace_strict(DIRECTION, return_dtype=pl.String)
    return (
        pl.concat([from_queries, from_positives, from_sentences])
        .sort("e_order", "p_order")
        .join(query_topics, on="query_id", how="left", maintain_order="left")
        .drop("e_order", "p_order")
        .with_columns(pl.lit("counterfactual").alias("negative_kind"), direction.alias("direction"))
    )


# What a contrast row's anchor and its positive / negative are, by what was edited. Only the query-side anchors
# fit the other formats, whose anchor is always the query (one role per column, as asymmetric models need).
DIRECTION = {"positive": "query->document", "sentence": "sentence->sentence", "query": "document->query"}
QUERY_ANCHORED = ("query->document", "sentence->sentence")


def _query_anchored(contrast: pl.DataFrame) -> pl.DataFrame:
    """Counterfactual rows whose anchor is the query (edits of a positive) or the sentence edited."""
    return contrast.filter(pl.col("direction").is_in(QUERY_ANCHORED))


def contrast_triplet(frame: pl.DataFrame, contrast: pl.DataFrame, num_negatives: int) -> pl.DataFrame:
    """Every kept meaning-changing edit, of queries and documents alike; `direction` says which way a row reads."""
    return contrast.select(*CONTRAST_COLUMNS, "direction", "op", "generator", "source_kind", "topic", "positive_kind")


def triplet(frame: pl.DataFrame, contrast: pl.DataFrame, num_negatives: int) -> pl.DataFrame:
    """Mined triplets, then the counterfactual ones anchored on the query (`negative_kind`, `op` tell them apart);
    edits of queries, anchored on a document, are in `contrast-triplet` only."""
    counterfactual = _query_anchored(contrast).select(
        "anchor", "positive", "negative", "query_id", "positive_id", "negative_id", "negative_kind", "op",
        pl.lit(None, pl.Float32).alias("pos_score"), pl.lit(None, pl.Float32).alias("neg_score"), "topic",
        "positive_kind",
    )  # fmt: skip
    return pl.concat([_mined_triplet(frame), counterfactual], how="vertical_relaxed")


def _mined_triplet(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.lit(None, pl.String).alias("op")).select(
        "anchor",
        "positive",
        "negative",
        "query_id",
        "positive_id",
        "negative_id",
        "negative_kind",
        "op",
        "pos_score",
        "neg_score",
        "topic",
        "positive_kind",
    )


def _per_positive(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per (query, positive), its mined negatives (and their teacher scores, where there are) as lists in
    rank order."""
    teacher = [pl.col("pos_teacher").first(), pl.col("neg_teacher")] if "neg_teacher" in frame.columns else []
    return frame.group_by("q_order", "p_order", maintain_order=True).agg(
        pl.col(
            "anchor", "positive", "query_id", "positive_id", "negative_kind", "pos_score", "topic", "positive_kind"
        ).first(),
        pl.col("negative").alias("negatives"),
        pl.col("negative_id").alias("negative_ids"),
        pl.col("neg_score").alias("neg_scores"),
        *teacher,
    )


def n_tuple(frame: pl.DataFrame, contrast: pl.DataFrame, num_negatives: int) -> pl.DataFrame:
    """One row per (query, positive) with negative_1..n of mined negatives; pairs short of n negatives are left
    out, as the peer does. Counterfactuals have their own anchors, so they go to the other formats."""
    return _n_tuple(frame, num_negatives)


def _n_tuple(frame: pl.DataFrame, num_negatives: int, *after_negatives: pl.Expr) -> pl.DataFrame:
    grouped = _per_positive(frame).filter(pl.col("negatives").list.len() == num_negatives)
    negatives = [pl.col("negatives").list.get(i).alias(f"negative_{i + 1}") for i in range(num_negatives)]
    return grouped.select(
        "anchor",
        "positive",
        *negatives,
        *after_negatives,
        "query_id",
        "positive_id",
        "negative_ids",
        "negative_kind",
        "pos_score",
        "neg_scores",
        "topic",
        "positive_kind",
    )


def n_tuple_scores(frame: pl.DataFrame, contrast: pl.DataFrame, num_negatives: int) -> pl.DataFrame:
    """n-tuple plus `score`: [positive's, negative_1's, ...] scores, the distillation target of MarginMSE-style
    losses (sentence-transformers' n-tuple-scores): the teacher's (the filter's cross-encoder) where the frame
    carries them, else the embedding model's similarity."""
    if "neg_teacher" in frame.columns:
        score = pl.concat_list(pl.col("pos_teacher"), pl.col("neg_teacher"))
    else:
        score = pl.concat_list(pl.col("pos_score"), pl.col("neg_scores"))
    return _n_tuple(frame, num_negatives, score.alias("score"))


def labeled_list(frame: pl.DataFrame, contrast: pl.DataFrame, num_negatives: int) -> pl.DataFrame:
    """(anchor, documents, labels) per (query, positive): the positive (label 1) then its mined negatives
    (label 0), for listwise losses (sentence-transformers' labeled-list)."""
    grouped = _per_positive(frame)
    return grouped.select(
        "anchor",
        pl.concat_list(pl.col("positive"), pl.col("negatives")).alias("documents"),
        pl.concat_list(pl.lit(1, pl.Int64), pl.col("negatives").list.eval(pl.lit(0, pl.Int64))).alias("labels"),
        "query_id",
        pl.concat_list(pl.col("positive_id"), pl.col("negative_ids")).alias("doc_ids"),
        pl.concat_list(pl.col("pos_score"), pl.col("neg_scores")).alias("scores"),
        "topic",
        "positive_kind",
    )


def labeled_pair(frame: pl.DataFrame, contrast: pl.DataFrame, num_negatives: int) -> pl.DataFrame:
    """(anchor, document, label): each query's positives (label 1), then its negatives (label 0); then each
    counterfactual anchored on a query (label 0)."""
    common = ["anchor", "query_id", "q_order", "topic"]
    positives = frame.unique(["q_order", "p_order"], maintain_order=True).select(
        *common,
        pl.col("positive").alias("document"),
        pl.lit(1, pl.Int64).alias("label"),
        pl.col("positive_id").alias("doc_id"),
        pl.lit("positive").alias("kind"),
        pl.col("pos_score").alias("score"),
        "positive_kind",
        pl.lit(0).alias("group"),
        pl.col("p_order").cast(pl.Int64).alias("order"),
    )
    negatives = frame.unique(["q_order", "negative_id"], maintain_order=True).select(
        *common,
        pl.col("negative").alias("document"),
        pl.lit(0, pl.Int64).alias("label"),
        pl.col("negative_id").alias("doc_id"),
        pl.col("negative_kind").alias("kind"),
        pl.col("neg_score").alias("score"),
        pl.lit(None, pl.String).alias("positive_kind"),
        pl.lit(1).alias("group"),
        pl.col("rank").cast(pl.Int64).alias("order"),
    )
    both = pl.concat([positives, negatives]).sort("q_order", "group", "order")
    columns = ["anchor", "document", "label", "query_id", "doc_id", "kind", "score", "topic", "positive_kind"]
    counterfactual = _query_anchored(contrast).select(
        "anchor", pl.col("negative").alias("document"), pl.lit(0, pl.Int64).alias("label"), "query_id",
        pl.col("negative_id").alias("doc_id"), pl.col("negative_kind").alias("kind"),
        pl.lit(None, pl.Float32).alias("score"), "topic", pl.lit(None, pl.String).alias("positive_kind"),
    )  # fmt: skip
    return pl.concat([both.select(columns), counterfactual], how="vertical_relaxed")


def mixed(frame: pl.DataFrame, contrast: pl.DataFrame, num_negatives: int, counterfactual_share: float):
    """Triplets with `num_negatives` negatives per (query, positive) pair: `round(share * n)` counterfactuals of
    the pair where the generator made them, mined negatives for the rest. A pair's counterfactuals are edits of
    its positive (anchor: the query, which the edit no longer answers; edits of queries are anchored on a document
    and stay in `contrast-triplet`); `pair_doc` names the pair's document."""
    wanted = round(counterfactual_share * num_negatives)
    keys = ["query_id", "pair_doc"]
    counterfactual = (
        contrast.filter(pl.col("direction") == DIRECTION["positive"])
        .with_row_index("rank")
        .with_columns(pl.col("positive_id").alias("pair_doc"), pl.col("rank").cast(pl.Int64))
        .filter(pl.int_range(pl.len()).over(keys) < wanted)
    )
    used = counterfactual.group_by(keys).len("used")
    order = frame.select("query_id", pl.col("positive_id").alias("pair_doc"), "q_order", "p_order").unique(keys)
    mined = (
        _mined_triplet(frame)
        .with_columns(frame["rank"].cast(pl.Int64), pl.col("positive_id").alias("pair_doc"))
        .join(used, on=keys, how="left", maintain_order="left")
        .filter(pl.int_range(pl.len()).over(keys) < num_negatives - pl.col("used").fill_null(0))
        .drop("used")
    )
    counterfactual = counterfactual.with_columns(
        pl.lit(None, pl.Float32).alias("pos_score"), pl.lit(None, pl.Float32).alias("neg_score")
    ).select(mined.columns)
    both = pl.concat([counterfactual, mined], how="vertical_relaxed").join(order, on=keys, how="inner")
    kind = (pl.col("negative_kind") == "mined").cast(pl.Int8)
    return both.sort("q_order", "p_order", kind, "rank").drop("q_order", "p_order", "rank")


def mixed_at(counterfactual_share: float):
    """`mixed` with its share of counterfactuals set: a builder like the others."""
    return functools.partial(mixed, counterfactual_share=counterfactual_share)


FORMATS = {
    "triplet": triplet,
    "n-tuple": n_tuple,
    "n-tuple-scores": n_tuple_scores,
    "labeled-pair": labeled_pair,
    "labeled-list": labeled_list,
    "contrast-triplet": contrast_triplet,
}


def text_columns(fmt: str, table: pa.Table) -> list[str]:
    if fmt.startswith("n-tuple"):
        negatives = [c for c in table.column_names if c.startswith("negative_") and c[-1].isdigit()]
        return ["anchor", "positive", *negatives, *(["score"] if fmt == "n-tuple-scores" else [])]
    return TEXT_COLUMNS[fmt]


def batch_rows(fmt: str, table: pa.Table, known: dict[str, set[str]]):
    """What batching needs of a format's rows (see `pipeline.batches`); None for formats not trained with
    in-batch negatives (labeled-pair)."""
    from pairforge.pipeline.batches import Rows

    if fmt == "labeled-pair":
        return None
    anchors = table["anchor_id"].to_pylist() if "anchor_id" in table.column_names else [None] * table.num_rows
    # Sentence counterfactuals have no query: their anchor sentence stands in for it.
    query_ids = [q if q is not None else f"anchor:{a}" for q, a in zip(table["query_id"].to_pylist(), anchors)]
    if fmt == "labeled-list":
        docs = table["doc_ids"].to_pylist()
        return Rows(query_ids, [d[0] for d in docs], [d[1:] for d in docs], known)
    if fmt.startswith("n-tuple"):
        negatives = table["negative_ids"].to_pylist()
    else:
        negatives = [[n] for n in table["negative_id"].to_pylist()]
    return Rows(query_ids, table["positive_id"].to_pylist(), negatives, known)

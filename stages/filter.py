"""DVC stage `filter`: mined candidates -> data/filtered/{negatives,judged,edits,rejections}, false negatives caught.

The mined candidates stream through in shards of whole queries; each shard reads only its own documents' texts
and vectors, so the stage's memory follows `filter.query_shard`, not the corpus.
"""

import collections

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import artifacts, filter, ledger, mine, params, schema
from stages import scoring
from stages.common import EMBEDDINGS, FILTERED, GENERATED, INGESTED, MINED, doc_topics, stage
from stages.edit_judges import context_scores, validate_edits


def cross_encoder_judge(config: params.FilterParams, query_text, doc_text, positives: pa.Table) -> filter.Judge:
    """Scores pairs in a Ray actor pool; the positives are scored once, up front, for the relative threshold."""

    def score(pairs: pa.Table) -> dict[str, np.ndarray]:
        queries = [query_text[q] for q in pairs["query_id"].to_pylist()]
        return {"ce": scoring.cross_encoder_scores(config, queries, [doc_text[d] for d in pairs["doc_id"].to_pylist()])}

    positive_scores = score(positives)["ce"]
    hardest: dict[str, float] = {}
    for query_id, value in zip(positives["query_id"].to_pylist(), positive_scores):
        hardest[query_id] = min(float(value), hardest.get(query_id, float(value)))
    return filter.Judge("cross_encoder", score, filter.cross_encoder_flags(config, hardest))


def llm_judge(config: params.FilterParams, query_text, doc_text) -> filter.Judge:
    """The LLM judge: local transformers or an OpenAI-compatible endpoint in an actor pool, vLLM on GPU workers."""

    def score(pairs: pa.Table) -> dict[str, np.ndarray]:
        queries = [query_text[q] for q in pairs["query_id"].to_pylist()]
        documents = [doc_text[d] for d in pairs["doc_id"].to_pylist()]
        out = scoring.llm_answers(config, "relevance", queries, documents)
        return {
            "p_yes": out["p_yes"].to_numpy(zero_copy_only=False).astype(np.float32),
            "failure": out["failure"].to_numpy(),
            "raw_output": np.array(out["raw_output"].to_pylist(), object),
        }

    return filter.Judge("llm", score, filter.llm_flags(config))


def judge_shard(
    config: params.FilterParams, candidates: pa.Table, positives: pa.Table, query_text: dict, num_negatives: int
) -> pa.Table:
    """Every judged row of one shard's candidates (their queries' positives given), in the shard's query order."""
    query_order = pc.unique(candidates["query_id"])
    positives = positives.filter(pc.is_in(positives["query_id"], query_order))
    doc_ids = pc.unique(pa.concat_arrays([pc.unique(candidates["doc_id"]), pc.unique(positives["doc_id"])]))
    texts = artifacts.select(INGESTED / "corpus", "doc_id", doc_ids, ["doc_id", "text"])
    doc_text = dict(zip(texts["doc_id"].to_pylist(), texts["text"].to_pylist()))
    vectors = artifacts.select(EMBEDDINGS / "corpus", "id", doc_ids, ["id", "vector"])
    doc_vector = dict(zip(vectors["id"].to_pylist(), schema.vectors_matrix(vectors["vector"])))
    pairs = list(zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist()))
    known = filter.Positives.build(pairs, doc_text, doc_vector)
    judges = []
    if config.cross_encoder:
        judges.append(cross_encoder_judge(config, query_text, doc_text, positives))
    if config.llm_backend != "none":
        judges.append(llm_judge(config, query_text, doc_text))
    return filter.run(candidates, known, doc_text, doc_vector, num_negatives, config, judges, query_order.to_pylist())


def main() -> None:
    with stage("filter") as log:
        config = params.load("filter")
        num_negatives = params.load("mine").num_negatives
        queries = artifacts.read(INGESTED / "queries", ["query_id", "text"])
        query_text = dict(zip(queries["query_id"].to_pylist(), queries["text"].to_pylist()))
        positives = artifacts.read(INGESTED / "positives", ["query_id", "doc_id"])
        topics = doc_topics()
        edits = validate_edits(config, artifacts.read(GENERATED / "contrast"))
        edits = edits.append_column("context_scores", context_scores(edits, positives, query_text))
        rejected_edits = edits.filter(pc.equal(edits["decision"], "rejected"))
        measures = ("token_edits", "edit_ratio", "nll_increase", "sameness")
        inputs = {
            name: artifacts.fingerprint(path)
            for name, path in (
                ("ingested", INGESTED),
                ("embeddings", EMBEDDINGS),
                ("mined", MINED),
                ("generated", GENERATED),
            )
        }
        reasons, per_query = collections.Counter(), collections.Counter()
        with artifacts.ArtifactWriter(FILTERED, config, inputs) as out:
            # Mine wrote each query's candidates together, in ingest order: shards of whole queries, in order.
            for candidates in artifacts.iter_groups(MINED / "candidates", "query_id", config.query_shard):
                judged = judge_shard(config, candidates, positives, query_text, num_negatives)
                # Judged rows come round by round; negatives go out per query (in ingest order), by rank.
                negatives = mine.negatives(judged, topics)
                at = pc.index_in(negatives["query_id"], candidates["query_id"].unique())
                negatives = (
                    negatives.append_column("_q", at).sort_by([("_q", "ascending"), ("rank", "ascending")]).drop(["_q"])
                )
                rejected = judged.filter(pc.equal(judged["decision"], "rejected"))
                out.write("negatives", negatives)
                out.write("judged", judged)
                out.write("rejections", ledger.entries("filter", "negative", rejected))
                reasons.update(rejected["reason"].to_pylist())
                per_query.update(negatives["query_id"].to_pylist())
            if not out.rows("judged"):  # no candidates at all: the artifacts still exist, with their schemas
                out.write("negatives", schema.NEGATIVES.empty_table())
                out.write("judged", filter.JUDGED.empty_table())
            out.write("edits", edits)
            out.write("rejections", ledger.entries("filter", "edit", rejected_edits, measures, ("pair_id",)))
            judged_rows, kept_rows = out.rows("judged"), out.rows("negatives")
        short = sum(1 for q in query_text if per_query[q] < num_negatives)
        edit_reasons = collections.Counter(rejected_edits["reason"].to_pylist())
        log.info(
            "validated %d generated edits: %d kept, %d rejected (%s)",
            edits.num_rows,
            edits.num_rows - rejected_edits.num_rows,
            rejected_edits.num_rows,
            ", ".join(f"{r}: {c}" for r, c in sorted(edit_reasons.items())),
        )
        log.info(
            "judged %d candidates: %d kept, %d rejected (%s); %d queries short of %d negatives",
            judged_rows,
            kept_rows,
            judged_rows - kept_rows,
            ", ".join(f"{r}: {c}" for r, c in sorted(reasons.items())),
            short,
            num_negatives,
        )


if __name__ == "__main__":
    main()

"""DVC stage `filter`: mined candidates -> data/filtered/{negatives,judged,rejections}, false negatives caught."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import artifacts, embed, filter, ledger, mine, params
from stages import scoring
from stages.common import EMBEDDINGS, FILTERED, GENERATED, INGESTED, MINED, doc_topics, stage
from stages.edit_judges import validate_edits


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


def main() -> None:
    with stage("filter") as log:
        config = params.load("filter")
        num_negatives = params.load("mine").num_negatives
        corpus = artifacts.read(INGESTED / "corpus", ["doc_id", "text"])
        doc_text = dict(zip(corpus["doc_id"].to_pylist(), corpus["text"].to_pylist()))
        queries = artifacts.read(INGESTED / "queries")
        query_text = dict(zip(queries["query_id"].to_pylist(), queries["text"].to_pylist()))
        positives = artifacts.read(INGESTED / "positives")
        candidates = artifacts.read(MINED / "candidates")
        docs = artifacts.read(EMBEDDINGS / "corpus")
        doc_vector = dict(zip(docs["id"].to_pylist(), embed.to_numpy(docs["vector"])))
        pairs = list(zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist()))
        known = filter.Positives.build(pairs, doc_text, doc_vector)
        judges = []
        if config.cross_encoder:
            judges.append(cross_encoder_judge(config, query_text, doc_text, positives))
        if config.llm_backend != "none":
            judges.append(llm_judge(config, query_text, doc_text))
        judged = filter.run(
            candidates, known, doc_text, doc_vector, num_negatives, config, judges, queries["query_id"].to_pylist()
        )
        negatives = mine.negatives(judged, doc_topics())
        order = {q: i for i, q in enumerate(queries["query_id"].to_pylist())}
        negatives = negatives.append_column("_q", pa.array([order[q] for q in negatives["query_id"].to_pylist()]))
        negatives = negatives.sort_by([("_q", "ascending"), ("rank", "ascending")]).drop(["_q"])
        rejected = judged.filter(pc.equal(judged["decision"], "rejected"))
        edits = validate_edits(config, artifacts.read(GENERATED / "contrast"))
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
        with artifacts.ArtifactWriter(FILTERED, config, inputs) as out:
            out.write("negatives", negatives)
            out.write("judged", judged)
            out.write("edits", edits)
            out.write("rejections", ledger.entries("filter", "negative", rejected))
            out.write("rejections", ledger.entries("filter", "edit", rejected_edits, measures, ("pair_id",)))
        served = set(negatives["query_id"].to_pylist())
        per_query = pc.value_counts(negatives["query_id"])
        short = sum(1 for c in per_query.field("counts").to_pylist() if c < num_negatives) + len(order) - len(served)
        reasons = pc.value_counts(rejected["reason"]).to_pylist() if rejected.num_rows else []
        edit_reasons = pc.value_counts(rejected_edits["reason"]).to_pylist() if rejected_edits.num_rows else []
        log.info(
            "validated %d generated edits: %d kept, %d rejected (%s)",
            edits.num_rows,
            edits.num_rows - rejected_edits.num_rows,
            rejected_edits.num_rows,
            ", ".join(f"{r['values']}: {r['counts']}" for r in edit_reasons),
        )
        log.info(
            "judged %d candidates: %d kept, %d rejected (%s); %d queries short of %d negatives",
            judged.num_rows,
            negatives.num_rows,
            rejected.num_rows,
            ", ".join(f"{r['values']}: {r['counts']}" for r in reasons),
            short,
            num_negatives,
        )


if __name__ == "__main__":
    main()

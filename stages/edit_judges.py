"""The filter stage's validation of generated edits: the checks of `pipeline.contrast.validate`, with the measured
ones (fluency LM, meaning judge) run in Ray actor pools through the result caches of `stages.scoring`."""

import collections

import numpy as np
import pyarrow as pa

from pipeline import artifacts, params
from pipeline.contrast import validate
from stages import scoring
from stages.common import INGESTED


def sameness(config: params.FilterParams, original: list[str], edited: list[str]) -> np.ndarray:
    """How much each edit kept its original's meaning, by `edit_judge`: cosine, cross-encoder score or P(same)."""
    if config.edit_judge == "encoder":
        vectors = scoring.vectors(params.load("embed"), original + edited)
        return np.sum(vectors[: len(original)] * vectors[len(original) :], axis=1)
    if config.edit_judge == "cross_encoder":
        return scoring.cross_encoder_scores(config, original, edited)
    answers = scoring.llm_answers(config, "same_meaning", original, edited)
    return answers["p_yes"].to_numpy(zero_copy_only=False).astype(np.float32)


def fluency(config: params.FilterParams, original: list[str], edited: list[str]) -> np.ndarray:
    """Mean token NLL increase (nats) of each edit over its original under `edit_lm`."""
    nll = scoring.mean_nll(config, original + edited)
    return nll[len(original) :] - nll[: len(original)]


def validate_edits(config: params.FilterParams, contrast: pa.Table) -> pa.Table:
    """Every generated edit with `decision`, `reason`, `detail` and its measures (NaN where not measured)."""
    checked = validate.check(contrast, config.edit_max_tokens, config.edit_max_ratio)
    reasons, details = checked["reason"].to_pylist(), checked["detail"].to_pylist()
    original, edited = checked["original"].to_pylist(), checked["edited"].to_pylist()
    measures = {name: np.full(checked.num_rows, np.nan, np.float32) for name in ("nll_increase", "sameness")}
    live = [i for i, reason in enumerate(reasons) if reason is None]
    if config.edit_max_nll_increase is not None and live:
        increase = fluency(config, [original[i] for i in live], [edited[i] for i in live])
        for i, value in zip(live, increase):
            measures["nll_increase"][i] = value
            if value > config.edit_max_nll_increase:
                reasons[i] = "edit_not_fluent"
                details[i] = f"mean token NLL +{value:.2f} nats (max {config.edit_max_nll_increase})"
        live = [i for i in live if reasons[i] is None]
    if config.edit_judge != "none" and live:
        scores = sameness(config, [original[i] for i in live], [edited[i] for i in live])
        preserves = np.array(checked["preserves_meaning"].to_pylist(), bool)[live]
        verdicts = validate.meaning_reasons(
            preserves, scores, config.edit_unchanged_above, config.edit_drifted_below, config.edit_paraphrase_min
        )
        for i, score, verdict in zip(live, scores, verdicts):
            measures["sameness"][i] = score
            if verdict:
                reasons[i], details[i] = verdict, f"{config.edit_judge} sameness {score:.3f}"
    decisions = [validate.KEPT if r is None else validate.REJECTED for r in reasons]
    checked = checked.drop(["decision", "reason", "detail"])
    for name, values in measures.items():
        checked = checked.append_column(name, pa.array(values, pa.float32()))
    return (
        checked.append_column("decision", pa.array(decisions))
        .append_column("reason", pa.array(reasons, pa.string()))
        .append_column("detail", pa.array(details, pa.string()))
    )


def context_scores(edits: pa.Table, positives: pa.Table, query_text: dict[str, str]) -> pa.Array:
    """Per edit, the encoder's cosine of a kept meaning-changing edit to each context the export pairs it with
    (`pipeline.export.contrast_frame`, in its order): an edited query against the query's positive documents, an
    edited positive against the queries it answers, an edited sentence against its original (when a paraphrase of
    it was kept, as the export asks). That is the score a counterfactual negative gets on the axis of the
    positives' and the mined negatives' (`dvc plots`); empty for every other edit."""
    kinds, sources = edits["source_kind"].to_pylist(), edits["source_id"].to_pylist()
    originals, edited = edits["original"].to_pylist(), edits["edited"].to_pylist()
    decisions, keeps_meaning = edits["decision"].to_pylist(), edits["preserves_meaning"].to_pylist()
    negatives = [i for i, (d, keeps) in enumerate(zip(decisions, keeps_meaning)) if d == validate.KEPT and not keeps]
    paraphrased = {
        source
        for source, kind, decision, keeps in zip(sources, kinds, decisions, keeps_meaning)
        if kind == "sentence" and decision == validate.KEPT and keeps
    }
    docs_of, queries_of = collections.defaultdict(list), collections.defaultdict(list)
    for query_id, doc_id in zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist()):
        docs_of[query_id].append(doc_id)
        queries_of[doc_id].append(query_id)
    wanted = pa.array(sorted({d for i in negatives if kinds[i] == "query" for d in docs_of[sources[i]]}), pa.string())
    corpus = artifacts.select(INGESTED / "corpus", "doc_id", wanted, ["doc_id", "text"])
    doc_text = dict(zip(corpus["doc_id"].to_pylist(), corpus["text"].to_pylist()))
    contexts = {
        "query": lambda i: [doc_text[d] for d in docs_of[sources[i]] if d in doc_text],
        "positive": lambda i: [query_text[q] for q in queries_of[sources[i]]],
        # The export pairs a sentence's edits only where one of its paraphrases was kept (the row's positive).
        "sentence": lambda i: [originals[i]] if sources[i] in paraphrased else [],
    }
    texts = {i: contexts[kinds[i]](i) for i in negatives}
    scores = [[] for _ in kinds]
    if negatives:
        flat = [text for i in negatives for text in texts[i]]
        vectors = scoring.vectors(params.load("embed"), [edited[i] for i in negatives] + flat)
        at = len(negatives)
        for row, i in enumerate(negatives):
            scores[i] = (vectors[at : at + len(texts[i])] @ vectors[row]).tolist()
            at += len(texts[i])
    return pa.array(scores, pa.list_(pa.float32()))

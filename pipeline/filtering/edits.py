"""The filter stage's validation of generated edits: the cheap checks of `pipeline.contrast.validate` on every
edit, then the measured ones, each a declared model call (`pipeline.work`) with its cache: fluency under a small
LM, and a meaning judge (the encoder's cosine, a cross-encoder's score, or an LLM's P(same meaning))."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pairforge.pipeline import artifacts, embed, ledger, models, work
from pairforge.pipeline.contrast import validate
from pairforge.pipeline.filtering import judges
from pairforge.pipeline.params import EmbedParams, FilterParams
from pairforge.pipeline.vocabulary import (
    EDIT_NOT_FLUENT,
    EDIT_STILL_SUPPORTED,
    KEPT,
    MEANING_UNJUDGED,
    PENDING,
    REJECTED,
)

# Judges that read meaning. The encoder's cosine does not: it scores real number and antonym changes 0.99+, so it
# can catch a drifted edit but cannot confirm that an LLM's edit changed (or kept) the meaning it was asked to.
MEANING_JUDGES = ("cross_encoder", "llm")

# The encoder side (its prompt) of an edit of each source kind, and of its contexts (`contexts`): a query is embedded
# as a query and a document as a document, whichever end of the exported row it is. Sentence pairs are symmetric:
# both sentences take the query side, as E5's and MTEB's convention has symmetric tasks.
SIDE = {"query": "query", "positive": "document", "sentence": "query"}
CONTEXT_SIDE = {"query": "document", "positive": "query", "sentence": "query"}

MEASURES = (
    "token_edits",
    "edit_ratio",
    "nll_increase",
    "sameness",
    "support_drop",
)  # what the ledger keeps of a rejected edit


class FluencyBatch:
    """Actor body: a causal LM loaded once; adds `nll` (mean token negative log-likelihood, nats) per `text`."""

    def __init__(self, model: str, batch_size: int):
        from pairforge.pipeline.models.llm import TransformersLLM

        self.lm = TransformersLLM(model, batch_size=batch_size)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return batch.append_column("nll", pa.array(self.lm.mean_nll(batch["text"].to_pylist()), pa.float32()))


def fluency_call(config: FilterParams) -> work.Work:
    """`edit_lm`'s mean token NLL per text, cached by the model's identity and the text."""
    return work.Work(
        worker=FluencyBatch,
        args={"model": config.edit_lm, "batch_size": config.batch_size},
        resources=judges.pool(config),
        rows_per_task=config.batch_size,
        columns=("nll",),
        inputs=("text",),
        cache=work.Cache(
            Path(config.cache) / "fluency", {"model": models.identity(config.edit_lm)}, config.checkpoint_rows
        ),
    )


def fluency(config: FilterParams, original: list[str], edited: list[str]) -> np.ndarray:
    """Mean token NLL increase (nats) of each edit over its original under `edit_lm` (`validate_edits` gives the
    sentences an edit changed)."""
    texts = pa.table({"text": pa.array(original + edited, pa.string())})
    nll = work.compute(fluency_call(config), texts)[0]["nll"].to_numpy().astype(np.float32)
    return nll[len(original) :] - nll[: len(original)]


def _llm_scores(config: FilterParams, question: str, first: list[str], second: list[str]):
    """The LLM's P(yes) per pair (NaN without one), and why there is none: None (there is), unparseable_output,
    backend_error, or pending (its endpoint failed; the next run asks again)."""
    answers = judges.llm_answers(config, question, first, second)
    p_yes = answers["p_yes"].fill_null(np.nan).to_numpy(zero_copy_only=False).astype(np.float32)
    failures = answers["failure"].to_pylist()
    return p_yes, [None if p == p else judges.LLM_FAILURES[code] for p, code in zip(p_yes, failures)]


def sameness(config: FilterParams, embed_config: EmbedParams, original: list[str], edited: list[str], sides: list[str]):
    """How much each edit kept its original's meaning, by `edit_judge`: cosine (both texts on the edit's encoder
    side, `sides`), cross-encoder score or P(same); and per edit why there is no score (only an LLM can fail to give
    one: `_llm_scores`)."""
    if config.edit_judge == "encoder":
        vectors = embed.vectors(embed_config, original + edited, sides + sides)
        return np.sum(vectors[: len(original)] * vectors[len(original) :], axis=1), [None] * len(original)
    if config.edit_judge == "cross_encoder":
        return judges.cross_encoder_scores(config, original, edited), [None] * len(original)
    return _llm_scores(config, "same_meaning", original, edited)


def validate_edits(config: FilterParams, embed_config: EmbedParams, contrast: pa.Table) -> pa.Table:
    """Every generated edit with `decision`, `reason`, `detail` and its measures (NaN where not measured)."""
    checked = validate.check(contrast, config.edit_max_tokens, config.edit_max_ratio)
    reasons, details = checked["reason"].to_pylist(), checked["detail"].to_pylist()
    # fluency and meaning are judged on the sentences the edit changed (a claim's: the claim)
    pairs = zip(checked["original"].to_pylist(), checked["edited"].to_pylist())
    local = [validate.changed_sentences(before, after) for before, after in pairs]
    original, edited = [before for before, _ in local], [after for _, after in local]
    measures = {name: np.full(checked.num_rows, np.nan, np.float32) for name in ("nll_increase", "sameness")}
    live = [i for i, reason in enumerate(reasons) if reason is None]
    if config.edit_max_nll_increase is not None and live:
        increase = fluency(config, [original[i] for i in live], [edited[i] for i in live])
        for i, value in zip(live, increase):
            measures["nll_increase"][i] = value
            if value > config.edit_max_nll_increase:
                reasons[i] = EDIT_NOT_FLUENT
                details[i] = f"mean token NLL +{value:.2f} nats (max {config.edit_max_nll_increase})"
        live = [i for i in live if reasons[i] is None]
    if config.edit_judge != "none" and live:
        kinds = checked["source_kind"].to_pylist()
        scores, unanswered = sameness(
            config, embed_config, [original[i] for i in live], [edited[i] for i in live], [SIDE[kinds[i]] for i in live]
        )
        preserves = np.array(checked["preserves_meaning"].to_pylist(), bool)[live]
        verdicts = validate.meaning_reasons(
            preserves, scores, config.edit_unchanged_above, config.edit_drifted_below, config.edit_paraphrase_min
        )
        for i, score, verdict, missing in zip(live, scores, verdicts, unanswered):
            measures["sameness"][i] = score
            if missing:  # an unjudged edit is not kept: rejected, or pending where the endpoint failed
                reasons[i], details[i] = missing, f"{config.edit_judge} gave no verdict on its meaning"
            elif verdict:
                reasons[i], details[i] = verdict, f"{config.edit_judge} sameness {score:.3f}"
    if config.edit_judge not in MEANING_JUDGES:
        # Rule edits change meaning by construction (their ops are checked by hand, README); an LLM's may not.
        for i in (i for i, made_by in enumerate(checked["generator"].to_pylist()) if made_by != "rules"):
            if reasons[i] is None:
                reasons[i] = MEANING_UNJUDGED
                details[i] = f"an LLM edit needs edit_judge {' or '.join(MEANING_JUDGES)} ({config.edit_judge} set)"
    checked = checked.drop(["decision", "reason", "detail"])
    for name, values in measures.items():
        checked = checked.append_column(name, pa.array(values, pa.float32()))
    return (
        checked.append_column("decision", pa.array(_decisions(reasons)))
        .append_column("reason", pa.array(reasons, pa.string()))
        .append_column("detail", pa.array(details, pa.string()))
    )


def contexts(edits: pa.Table, positives: pa.Table, query_text: dict[str, str], corpus: Path) -> dict[int, list[str]]:
    """Per kept meaning-changing edit (by row), the texts the export pairs it with (`pipeline.formats.contrast_frame`,
    in its order): an edited query's positive documents (read from the `corpus` artifact), an edited positive's
    queries, an edited sentence's original (when a paraphrase of it was kept, as the export asks)."""
    kinds, sources = edits["source_kind"].to_pylist(), edits["source_id"].to_pylist()
    originals = edits["original"].to_pylist()
    decisions, keeps_meaning = edits["decision"].to_pylist(), edits["preserves_meaning"].to_pylist()
    negatives = [i for i, (d, keeps) in enumerate(zip(decisions, keeps_meaning)) if d == KEPT and not keeps]
    paraphrased = {
        source
        for source, kind, decision, keeps in zip(sources, kinds, decisions, keeps_meaning)
        if kind == "sentence" and decision == KEPT and keeps
    }
    docs_of, queries_of = collections.defaultdict(list), collections.defaultdict(list)
    for query_id, doc_id in zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist()):
        docs_of[query_id].append(doc_id)
        queries_of[doc_id].append(query_id)
    wanted = pa.array(sorted({d for i in negatives if kinds[i] == "query" for d in docs_of[sources[i]]}), pa.string())
    texts_of_docs = artifacts.select(corpus, "doc_id", wanted, ["doc_id", "text"])
    doc_text = dict(zip(texts_of_docs["doc_id"].to_pylist(), texts_of_docs["text"].to_pylist()))
    of_kind = {
        "query": lambda i: [doc_text[d] for d in docs_of[sources[i]] if d in doc_text],
        "positive": lambda i: [query_text[q] for q in queries_of[sources[i]]],
        # The export pairs a sentence's edits only where one of its paraphrases was kept (the row's positive).
        "sentence": lambda i: [originals[i]] if sources[i] in paraphrased else [],
    }
    return {i: of_kind[kinds[i]](i) for i in negatives}


def _decisions(reasons: list[str | None]) -> list[str]:
    return [KEPT if r is None else PENDING if r == PENDING else REJECTED for r in reasons]


def _pair_scores(config: FilterParams, embed_config: EmbedParams, queries: list[str], documents: list[str]):
    """`edit_judge`'s score of each (query side, document side) pair: the encoder's cosine, the cross-encoder's
    score, or the LLM's P(relevant); and per pair why there is none (`_llm_scores`)."""
    if config.edit_judge == "encoder":
        sides = ["query"] * len(queries) + ["document"] * len(documents)
        vectors = embed.vectors(embed_config, queries + documents, sides)
        return np.sum(vectors[: len(queries)] * vectors[len(queries) :], axis=1), [None] * len(queries)
    if config.edit_judge == "cross_encoder":
        return judges.cross_encoder_scores(config, queries, documents), [None] * len(queries)
    return _llm_scores(config, "relevance", queries, documents)


def check_support(config: FilterParams, embed_config: EmbedParams, edits: pa.Table, found: dict[int, list[str]]):
    """An edit of a query must no longer be supported by the query's positives, an edit of a document must no
    longer answer its queries: under `edit_judge`, each context must score the edit at least
    `edit_support_min_drop` below the original, else `edit_still_supported`. Adds `support_drop` (the smallest
    drop over the edit's contexts; NaN where not checked) and returns the edits with the verdicts."""
    kinds, originals, edited = (
        edits["source_kind"].to_pylist(),
        edits["original"].to_pylist(),
        edits["edited"].to_pylist(),
    )
    drops = np.full(edits.num_rows, np.nan, np.float32)
    checked = [i for i in found if kinds[i] in ("query", "positive") and found[i]]
    if config.edit_support_min_drop is None or config.edit_judge == "none" or not checked:
        return edits.append_column("support_drop", pa.array(drops, pa.float32()))
    pairs = [(i, context, text) for i in checked for context in found[i] for text in (originals[i], edited[i])]
    query_side = [text if kinds[i] == "query" else context for i, context, text in pairs]
    document_side = [context if kinds[i] == "query" else text for i, context, text in pairs]
    scores, unanswered = _pair_scores(config, embed_config, query_side, document_side)
    scores, at = scores.reshape(-1, 2), 0
    missing = {}
    for i in checked:
        drops[i] = float(np.min(scores[at : at + len(found[i]), 0] - scores[at : at + len(found[i]), 1]))
        why = {reason for reason in unanswered[2 * at : 2 * (at + len(found[i]))] if reason}
        if why:  # no verdict on some context: pending where the endpoint failed on one, else rejected
            missing[i] = PENDING if PENDING in why else min(why)
        at += len(found[i])
    reasons, details = edits["reason"].to_pylist(), edits["detail"].to_pylist()
    for i in checked:
        if i in missing:
            reasons[i], details[i] = missing[i], f"{config.edit_judge} gave no verdict on a context"
        elif drops[i] < config.edit_support_min_drop:
            reasons[i] = EDIT_STILL_SUPPORTED
            details[i] = f"{config.edit_judge} score drops {drops[i]:.3f} (min {config.edit_support_min_drop})"
    return (
        edits.drop(["decision", "reason", "detail"])
        .append_column("support_drop", pa.array(drops, pa.float32()))
        .append_column("decision", pa.array(_decisions(reasons)))
        .append_column("reason", pa.array(reasons, pa.string()))
        .append_column("detail", pa.array(details, pa.string()))
    )


def context_scores(edits: pa.Table, found: dict[int, list[str]], embed_config: EmbedParams) -> pa.Array:
    """Per edit still kept, the encoder's cosine to each of its contexts (`contexts`): the score a counterfactual
    negative gets on the axis of the positives' and the mined negatives' (`dvc plots`); empty for every other
    edit."""
    decisions, edited = edits["decision"].to_pylist(), edits["edited"].to_pylist()
    kinds = edits["source_kind"].to_pylist()
    negatives = [i for i in found if decisions[i] == KEPT]
    scores = [[] for _ in decisions]
    if negatives:
        flat = [text for i in negatives for text in found[i]]
        sides = [SIDE[kinds[i]] for i in negatives] + [CONTEXT_SIDE[kinds[i]] for i in negatives for _ in found[i]]
        vectors = embed.vectors(embed_config, [edited[i] for i in negatives] + flat, sides)
        at = len(negatives)
        for row, i in enumerate(negatives):
            scores[i] = (vectors[at : at + len(found[i])] @ vectors[row]).tolist()
            at += len(found[i])
    return pa.array(scores, pa.list_(pa.float32()))


def decisions(edits: pa.Table) -> dict[str, int]:
    """How many edits were kept, rejected and left pending."""
    return dict(collections.Counter(edits["decision"].to_pylist()))


def rejections(edits: pa.Table) -> pa.Table:
    """Ledger rows of the rejected edits, keyed by pair id, with their measures."""
    rejected = edits.filter(pc.equal(edits["decision"], REJECTED))
    return ledger.entries("filter", "edit", rejected, MEASURES, ("pair_id",))

"""The filter stage's validation of generated edits: the checks of `pipeline.contrast.validate`, with the measured
ones (fluency LM, meaning judge) run in Ray actor pools."""

import numpy as np
import pyarrow as pa

from pipeline import embed, params, runtime
from pipeline.contrast import validate


def _pool(config: params.FilterParams | params.EmbedParams) -> runtime.Resources:
    return runtime.Resources(config.actors, config.cpus_per_actor, config.gpus_per_actor)


def _pairs(original: list[str], edited: list[str]) -> pa.Table:
    return pa.table({"query": original, "document": edited})


def sameness(config: params.FilterParams, original: list[str], edited: list[str]) -> np.ndarray:
    """How much each edit kept its original's meaning, by `edit_judge`: cosine, cross-encoder score or P(same)."""
    if config.edit_judge == "encoder":
        encoder = params.load("embed")
        args = {"model": encoder.model, "max_length": encoder.max_length, "batch_size": encoder.batch_size}
        texts = pa.table({"id": [str(i) for i in range(2 * len(original))], "text": original + edited})
        out = runtime.map_batches(
            texts, embed.EmbedBatch, {**args, "device": encoder.device}, _pool(encoder), encoder.batch_size * 2
        )
        vectors = embed.to_numpy(pa.concat_tables(out)["vector"])
        return np.sum(vectors[: len(original)] * vectors[len(original) :], axis=1)
    if config.edit_judge == "cross_encoder":
        from pipeline.models.scorer import CrossEncoderBatch

        args = {"model": config.cross_encoder, "max_length": config.ce_max_length, "batch_size": config.batch_size}
        out = runtime.map_batches(
            _pairs(original, edited), CrossEncoderBatch, {**args, "device": "auto"}, _pool(config), config.batch_size
        )
        return pa.concat_tables(out)["ce_score"].to_numpy().astype(np.float32)
    from pipeline.filter import LLMJudgeBatch

    if config.llm_backend == "vllm":  # ray.data.llm schedules its own GPU workers; this process only drives it
        from pipeline.models.llm import VLLMLLM
        from pipeline.tasks import judge_same_meaning

        results = judge_same_meaning(VLLMLLM(config.llm_model), list(zip(original, edited)))
        return np.array([np.nan if r.yes_probability is None else r.yes_probability for r in results], np.float32)
    options = {"base_url": config.llm_base_url, "api_key_env": config.llm_api_key_env}
    options = options if config.llm_backend == "openai" else {}
    args = {"backend": config.llm_backend, "model": config.llm_model, "options": options, "question": "same_meaning"}
    out = runtime.map_batches(_pairs(original, edited), LLMJudgeBatch, args, _pool(config), config.batch_size)
    return pa.concat_tables(out)["p_yes"].to_numpy(zero_copy_only=False).astype(np.float32)


def fluency(config: params.FilterParams, original: list[str], edited: list[str]) -> np.ndarray:
    """Mean token NLL increase (nats) of each edit over its original under `edit_lm`."""
    texts = pa.table({"text": original + edited})
    args = {"model": config.edit_lm, "batch_size": config.batch_size}
    out = runtime.map_batches(texts, validate.FluencyBatch, args, _pool(config), config.batch_size)
    nll = pa.concat_tables(out)["nll"].to_numpy().astype(np.float32)
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

"""DVC stage `embed`: ingested corpus and the pairs' queries -> data/embeddings/{corpus,queries}, in a Ray actor pool.

Texts stream through in chunks; only those missing from the embedding cache are embedded, and finished vectors are
checkpointed as they arrive, so a re-run after a crash, or after documents were added, embeds only what is missing.
"""

import collections
import time

from pairforge.common import EMBEDDINGS, INGESTED, PAIRS, stage
from pairforge.pipeline import artifacts, embed, models, params


def main() -> None:
    with stage("embed", EMBEDDINGS) as log:
        config = embed.resolved(params.load("embed"), embed.sample(INGESTED))
        inputs = {
            "ingested": artifacts.fingerprint(INGESTED),
            "pairs": artifacts.fingerprint(PAIRS),
            "model": models.fingerprint(models.resolve(config.model)),
        }
        started, embedded, truncated = time.perf_counter(), 0, collections.Counter()
        with artifacts.ArtifactWriter(EMBEDDINGS, config, inputs) as out:
            for chunk in embed.embed_texts(config, INGESTED, PAIRS):
                for name, vectors in chunk.vectors.items():
                    out.write(name, vectors)
                embedded += chunk.computed
                truncated.update(chunk.truncated)
            for name, _ in embed.SOURCES:  # in the manifest: texts cut to the model's token limit, the precision
                out.describe(name, truncated=truncated[name], precision=config.precision)
            seconds = time.perf_counter() - started
            texts = out.rows("corpus") + out.rows("queries")
            log.info(
                "embedded %d new texts in %.1f s (%.1f texts/s); %d were already in the cache",
                embedded,
                seconds,
                embedded / seconds if embedded else 0.0,
                texts - embedded,
            )
            log.info("wrote %d docs and %d queries; texts truncated to the model's limit: %s", out.rows("corpus"),
                     out.rows("queries"), dict(truncated))  # fmt: skip


if __name__ == "__main__":
    main()

"""pairforge: contrastive training data (pairs, filtered hard negatives, counterfactual contrast pairs) as
versioned Parquet.

This package holds one thin entry point per DVC stage (`python -m pairforge.<stage>`: read params, call the
library, write the stage's outs), the `pairforge` command, and the Python API; the library is `pairforge.pipeline`.
"""


def __getattr__(name: str):
    # The API on first use: `import pairforge` stays cheap for the stage entry points, which never call it.
    if name in ("build", "mine_hard_negatives"):
        from pairforge import api

        return getattr(api, name)
    raise AttributeError(f"module 'pairforge' has no attribute {name!r}")

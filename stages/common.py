"""What every stage entry point shares: artifact paths, logging, timing, and the error exit."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from pairforge.pipeline import artifacts, ownership
from pairforge.pipeline.schema import EndpointError, InputError

DATA = Path("data")
INGESTED = DATA / "ingested"
PAIRS = DATA / "pairs"
EMBEDDINGS = DATA / "embeddings"
INDEX = DATA / "index"
MINED = DATA / "mined"
GENERATED = DATA / "generated"
FILTERED = DATA / "filtered"
EXPORT = DATA / "export"
METRICS = Path("metrics")
PLOTS = Path("plots")


@contextlib.contextmanager
def stage(name: str, output: Path) -> Iterator[logging.Logger]:
    """Hold the output's lock from the start (a second run at once is refused before it does any work), log the
    stage's wall time, and turn bad input or a busy output into one clear line on stderr and exit status 1."""
    _arguments(name)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("ray", "faiss", "transformers", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not sys.stderr.isatty():
        # A bar's carriage returns make a log file unreadable: model loads (transformers) draw none, nor does any
        # other tqdm bar (a GGUF's conversion), here and in the Ray workers this process starts (they inherit its
        # environment; tqdm reads TQDM_* when it is imported, after this); pairforge's own progress logs lines.
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TQDM_DISABLE"] = "1"
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
    log = logging.getLogger(f"pairforge.{name}")
    started = time.perf_counter()
    try:
        with ownership.exclusive(output):
            yield log
    except ownership.Busy as err:
        sys.exit(f"pairforge {name}: {err}")
    except Exception as err:
        found = reportable(err)
        if found is None:
            raise
        log.error("%s: %s", "bad input" if isinstance(found, InputError) else "endpoint", found)
        sys.exit(f"pairforge {name}: {found}")
    log.info("%s finished in %.1f s, wrote:\n%s", name, time.perf_counter() - started, artifacts.summary(output))


def _arguments(name: str) -> None:
    """`python -m pairforge.<name> --help` describes the stage and exits without running it; an argument it does not
    take is an error, not ignored. Called by `pairforge run` (or a test), argv is not the stage's to read."""
    if Path(sys.argv[0]).stem != name:
        return
    parser = argparse.ArgumentParser(
        prog=f"python -m pairforge.{name}",
        description=sys.modules["__main__"].__doc__,
        epilog=f"Reads the `{name}` section of ./params.yaml (README: Parameters). `dvc repro` runs every stage "
        "that is out of date; `pairforge run <stage>` runs one.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args()


def reportable(err: BaseException) -> InputError | EndpointError | None:
    """The bad input or failed endpoint behind `err`: raised here, or in a worker and wrapped by Ray on its way
    back (as the error's cause or context, or its `cause`). The innermost one: Ray's wrapper of an error is an
    instance of its class too, with a traceback for a message."""
    seen, found = set(), None
    while err is not None and id(err) not in seen:
        if isinstance(err, (InputError, EndpointError)):
            found = err
        seen.add(id(err))
        err = getattr(err, "cause", None) or err.__cause__ or err.__context__
    return found


def fingerprints(**paths: Path) -> dict[str, str]:
    """The content hash of each input artifact, by name: what a stage's manifest says it was built from."""
    return {name: artifacts.fingerprint(path) for name, path in paths.items()}


def doc_topics() -> pa.Table | None:
    """Each document's k-means topic (id, topic), from the index stage; None when topics are turned off."""
    if not (INDEX / "doc_topics").exists():
        return None
    return artifacts.read(INDEX / "doc_topics", ["id", "topic"])

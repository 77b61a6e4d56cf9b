"""Faulty endpoint: LLM edits through the OpenAI-compatible client against a real local server in front of the
packaged SmolLM2, a share of whose requests fail (500, 429 with Retry-After, a reply slower than the client's
timeout, a truncated JSON body). Prints what the server did and how every item ended; the counts must reconcile.

    python benchmarks/faults.py [--items 60] [--fault-rate 0.3] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.contrast.prompts import CONTROLS, llm_edits  # noqa: E402
from pipeline.models import llm as llms  # noqa: E402
from tests.openai_server import OpenAIServer  # noqa: E402

KEY_ENV = "PAIRFORGE_FAULTS_KEY"
TEXTS = [
    "Vitamin C prevents scurvy in sailors.",
    "The drug lowered blood pressure in 40 of 52 patients.",
    "Mice lacking the gene developed tumours earlier.",
    "Aspirin reduces the risk of a second heart attack.",
    "The vaccine was tested in three trials in 2019.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    controls = sorted(CONTROLS)
    items = [(TEXTS[i % len(TEXTS)], controls[i % len(controls)]) for i in range(args.items)]
    os.environ[KEY_ENV] = "sk-benchmark-secret"
    local = llms.load("transformers", "packaged:SmolLM2-135M-Instruct", batch_size=4)
    # The server generates one reply at a time; the client's timeout leaves room for every request it has in
    # flight, or abandoned requests pile up behind the model and everything times out (an overloaded server).
    timeout_s = args.concurrency * args.max_new_tokens / 4 + 5
    with OpenAIServer(local, fault_rate=args.fault_rate, seed=7, retry_after_s=1, slow_s=timeout_s + 1) as server:
        client = llms.load(
            "openai", "smollm2", base_url=server.base_url, api_key_env=KEY_ENV, concurrency=args.concurrency,
            timeout_s=timeout_s, max_retries=args.max_retries, backoff_s=0.05,
        )  # fmt: skip
        started = time.perf_counter()
        # Edit retries (asking again after unparseable output) off: this counts the endpoint's failures.
        results = llm_edits(client, items, retries=0, max_new_tokens=args.max_new_tokens)
        seconds = time.perf_counter() - started
    faults = collections.Counter(entry["fault"] or "answered" for entry in server.log)
    ended = collections.Counter("edited" if r.edited is not None else r.reason for r in results)
    print(f"{args.items} items, fault rate {args.fault_rate}, client max_retries {args.max_retries}: {seconds:.0f} s")
    print(f"server: {len(server.log)} requests: {dict(sorted(faults.items()))}")
    print(f"items: {dict(sorted(ended.items()))}")
    print(f"requests per item: {len(server.log) / args.items:.2f} on average, at most {args.max_retries + 1}")
    answered = faults["answered"]
    print(f"client: timeout {timeout_s:.1f} s, up to {args.max_retries} retries with backoff")
    kept_or_parsed = ended["edited"] + ended["unparseable_output"]
    # Every answered request is one item's final answer (no edit retries), every other item ran out of retries.
    assert kept_or_parsed == answered, (kept_or_parsed, answered)
    assert sum(ended.values()) == args.items and len(server.log) <= args.items * (args.max_retries + 1)
    print("reconciled: every item edited or rejected with a reason; answered requests = items with a model answer")


if __name__ == "__main__":
    main()

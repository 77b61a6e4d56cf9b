"""Faulty endpoint: the generate stage's LLM edits (its declared call: cache, preflight request, failure budget)
through the OpenAI-compatible client against a real local server in front of the packaged SmolLM2, a share of
whose requests fail (500, 429 with Retry-After, a reply slower than the client's timeout, a truncated JSON body).

Run as a user re-running the stage would, until nothing is pending; then the same items against a healthy server
from an empty cache, and the two results compared; then an endpoint that is down. Prints what the server did and
how every item ended, round by round; exits non-zero when an endpoint error reached the ledger (an item rejected
for the endpoint's sake), when the result differs from the healthy run's, or when the down endpoint did not fail
with a clear message.

    python benchmarks/faults.py [--items 60] [--fault-rate 0.3] [--max-new-tokens 16] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import collections
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pairforge.pipeline.contrast import generate  # noqa: E402
from pairforge.pipeline.models import llm as llms  # noqa: E402
from pairforge.pipeline.params import GenerateParams  # noqa: E402
from pairforge.pipeline.schema import EndpointError  # noqa: E402
from tests.openai_server import OpenAIServer  # noqa: E402

KEY_ENV = "PAIRFORGE_FAULTS_KEY"
TEXTS = [
    "Vitamin C prevents scurvy in sailors.",
    "The drug lowered blood pressure in 40 of 52 patients.",
    "Mice lacking the gene developed tumours earlier.",
    "Aspirin reduces the risk of a second heart attack.",
    "The vaccine was tested in three trials in 2019.",
]
MAX_ROUNDS = 10


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--timeout-s", type=float, help="the client's timeout (default: room for all in flight)")
    parser.add_argument("--retry-after-s", type=int, default=1, help="what the server's 429 replies ask to wait")
    args = parser.parse_args()
    os.environ[KEY_ENV] = "sk-benchmark-secret"
    texts = [f"Case {i}: {TEXTS[i % len(TEXTS)]}" for i in range(args.items)]
    items = pa.table({"source_kind": ["sentence"] * args.items, "source_id": [f"s{i}" for i in range(args.items)],
                      "text": texts})  # fmt: skip
    local = llms.load("transformers", "packaged:SmolLM2-135M-Instruct", batch_size=4)
    # The server generates one reply at a time; the client's timeout leaves room for every request it has in
    # flight, or abandoned requests pile up behind the model and everything times out (an overloaded server).
    timeout_s = args.timeout_s or args.concurrency * args.max_new_tokens / 4 + 5
    problems = []
    with tempfile.TemporaryDirectory() as scratch:

        def config(base_url: str, cache: str) -> GenerateParams:
            # Edit retries (asking again after unparseable output) off: this counts the endpoint's failures.
            return GenerateParams(
                llm_backend="openai", llm_model="smollm2", llm_base_url=base_url, llm_api_key_env=KEY_ENV,
                llm_controls=["negate"], llm_max_items=args.items, llm_max_new_tokens=args.max_new_tokens,
                llm_retries=0, llm_concurrency=args.concurrency, llm_timeout_s=timeout_s,
                cache=str(Path(scratch) / cache), checkpoint_rows=8,
            )  # fmt: skip

        server = OpenAIServer(
            local, fault_rate=args.fault_rate, seed=7, retry_after_s=args.retry_after_s, slow_s=timeout_s + 1
        )
        with server:
            faulty, started = config(server.base_url, "faulty"), time.perf_counter()
            print(f"{args.items} items, fault rate {args.fault_rate}, client timeout {timeout_s:.1f} s, 3 retries")
            for round_number in range(1, MAX_ROUNDS + 1):
                contrast, attempts, rejections, made = generate.llm_edits(faulty, items)
                pending = generate.pending(attempts)
                outcomes = collections.Counter(attempts["outcome"].to_pylist())
                print(f"round {round_number}: asked {made}, ended {dict(sorted(outcomes.items()))}")
                endpoint_reasons = set(rejections["reason"].to_pylist()) - {"unparseable_output"}
                if endpoint_reasons:
                    problems.append(f"endpoint errors in the ledger: {sorted(endpoint_reasons)}")
                if not pending:
                    break
            seconds = time.perf_counter() - started
        faults = collections.Counter(entry["fault"] or "answered" for entry in server.log)
        print(f"server: {len(server.log)} requests in {seconds:.0f} s: {dict(sorted(faults.items()))}")
        if pending:
            problems.append(f"{pending} items still pending after {MAX_ROUNDS} rounds")
        with OpenAIServer(local) as healthy:
            clean = generate.llm_edits(config(healthy.base_url, "healthy"), items)
        same = contrast.equals(clean[0]) and attempts.equals(clean[1])
        print(f"result after {round_number} rounds equals a run against a healthy server: {same}")
        if not same:
            problems.append("the result differs from the healthy run's")
        down = config(f"http://127.0.0.1:{closed_port()}/v1", "down")
        try:
            generate.llm_edits(down, items)
            problems.append("an endpoint that is down did not fail")
        except EndpointError as err:
            print(f"endpoint down: {err}")
            if "did not answer (connection_error" not in str(err):
                problems.append(f"unclear message for an endpoint that is down: {err}")
    if problems:
        sys.exit("FAILED: " + "; ".join(problems))
    print("nothing rejected for the endpoint's sake; pending items asked again until done; the outage named")


if __name__ == "__main__":
    main()

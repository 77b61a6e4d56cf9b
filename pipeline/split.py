"""Train / dev split by query, with nothing leaking across: queries that share a positive document go to the
same split (a dev query whose positive a training row teaches would flatter the dev score)."""

from __future__ import annotations

import hashlib


def dev_queries(pairs: list[tuple[str, str]], dev_fraction: float, seed: int) -> set[str]:
    """Query ids for dev, from (query_id, positive doc_id) pairs: whole groups of queries linked by shared
    positives, each group in dev when a seeded hash of its first query id falls under `dev_fraction`."""
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for query_id, doc_id in pairs:
        a, b = root(f"q:{query_id}"), root(f"d:{doc_id}")
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[str, list[str]] = {}
    for query_id, _ in pairs:
        groups.setdefault(root(f"q:{query_id}"), []).append(query_id)
    dev = set()
    for members in groups.values():
        first = min(members)
        digest = hashlib.blake2b(f"{seed}:{first}".encode(), digest_size=8).digest()
        if int.from_bytes(digest, "big") / 2**64 < dev_fraction:
            dev.update(members)
    return dev

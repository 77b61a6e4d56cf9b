"""What a sentence-transformers model folder declares: its module stack (`modules.json`), pooling, token limit and
prompts (`config_sentence_transformers.json`).

Plain JSON, read without torch: the embed stage's driver keys its cache by the prompts resolved from here, and only
its actors load the model. A folder without these files is a plain transformers model: mean pooling, no prompts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# The modules the encoder runs, by class name. modules.json names a module by its import path, which moved between
# sentence-transformers releases (`sentence_transformers.models.Dense`, `...base.modules.dense.Dense`); other
# packages reuse the class names (PyLate's `pylate.models.Dense` projects every token), so the package is checked too.
HEAD = ("Dense", "Normalize")  # after pooling, in modules.json's order
# Pooling modes the encoder implements; a config names its mode(s) in `pooling_mode`, or older ones by flags.
POOLING = ("cls", "mean", "lasttoken")
LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# The names sentence-transformers' encode_query / encode_document look a side's prompt up by, in its order.
SIDE_NAMES = {"query": ("query",), "document": ("document", "passage", "corpus")}


@dataclass(frozen=True)
class Stack:
    """The transformer's folder, how its tokens pool into one vector, and the modules applied after pooling."""

    transformer: Path
    pooling: str = "mean"
    # False: prompt tokens are attended to but left out of the pooled vector (INSTRUCTOR-style models).
    include_prompt: bool = True
    head: list[tuple[str, Path]] = field(default_factory=list)  # (Dense or Normalize, its folder)


def _json(path: Path) -> dict | list:
    return json.loads(path.read_text()) if path.exists() else {}


def stack(folder: Path) -> Stack:
    """The module stack `folder` declares; an error naming any module the encoder cannot run, not a silent skip."""
    listed = sorted(_json(folder / "modules.json") or [], key=lambda module: module["idx"])
    if not listed:
        return Stack(folder)
    kinds = []
    for module in listed:
        package, _, kind = module["type"].rpartition(".")
        if not package.startswith("sentence_transformers") or kind not in ("Transformer", "Pooling", *HEAD):
            raise ValueError(
                f"{folder}: module {module['name']!r} ({module['type']}) is not one the encoder runs; it runs a "
                f"Transformer, then Pooling, then any of {', '.join(HEAD)} (sentence-transformers' own)"
            )
        kinds.append(kind)
    if kinds[:2] != ["Transformer", "Pooling"] or any(kind not in HEAD for kind in kinds[2:]):
        raise ValueError(f"{folder}: modules {kinds} are not a Transformer, then Pooling, then {' / '.join(HEAD)}")
    paths = [folder / module["path"] for module in listed]
    pooling = _json(paths[1] / "config.json")
    return Stack(
        transformer=paths[0],
        pooling=_pooling_mode(paths[1], pooling),
        include_prompt=bool(pooling.get("include_prompt", True)),
        head=list(zip(kinds[2:], paths[2:])),
    )


def _pooling_mode(folder: Path, config: dict) -> str:
    modes = config.get("pooling_mode") or [mode for key, mode in LEGACY_POOLING.items() if config.get(key)] or "mean"
    modes = [modes] if isinstance(modes, str) else list(modes)
    if len(modes) != 1 or modes[0] not in POOLING:
        raise ValueError(f"{folder}: pooling {modes} is not one the encoder implements ({', '.join(POOLING)})")
    return modes[0]


def max_seq_length(transformer: Path) -> int | None:
    """sentence-transformers' token limit for the model, if its config sets one."""
    return _json(transformer / "sentence_bert_config.json").get("max_seq_length") or None


def prompts(folder: Path) -> tuple[dict[str, str], str | None]:
    """The model's named prompts and the name of its default one (None: no default)."""
    config = _json(folder / "config_sentence_transformers.json")
    return {name: text or "" for name, text in (config.get("prompts") or {}).items()}, config.get("default_prompt_name")


def side_prompt(declared: dict[str, str], side: str) -> str:
    """The prompt the model declares for queries or documents (sentence-transformers' encode_query /
    encode_document), "" where it declares none."""
    return next((declared[name] for name in SIDE_NAMES[side] if name in declared), "")

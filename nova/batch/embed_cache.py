"""Phi-2 once per run: the prompts' embeddings in ``DIR/prompt_embeds.safetensors``.

One tensor per distinct prompt text, named ``p/`` + the text (a bare text may be a name the format
reserves, such as ``__metadata__``): its first ``length`` rows of Phi-2
features (the rows past a prompt's length are never read: the model puts its learned null
embedding there). The empty prompt is not stored: it is all null. The file is written whole under
a temporary name and renamed, so it is either the previous complete cache or the new one.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List

import torch

from ..components.text_encoder import PromptEmbeds, TextEncoder

NAME = "prompt_embeds.safetensors"
PREFIX = "p/"


def _key(text: str) -> str:
    return PREFIX + text


def cached(path: str) -> List[str]:
    """The texts in the cache (a cache of another layout holds none: it is encoded again)."""
    if not os.path.exists(path):
        return []
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        return [k[len(PREFIX) :] for k in f.keys() if k.startswith(PREFIX)]


def encode_missing(path: str, texts: Iterable[str], encoder: TextEncoder, max_length: int, chunk: int = 16) -> int:
    """Encode the texts not yet in the cache and rewrite it; returns how many were encoded."""
    from safetensors.torch import load_file, save_file

    have = set(cached(path))
    todo = sorted({t for t in texts if t and t not in have})
    if not todo:
        return 0
    tensors = {k: v for k, v in load_file(path).items() if k.startswith(PREFIX)} if have else {}
    truncated = _truncated(path)
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        embeds = encoder.encode(part, max_length)
        for i, text in enumerate(part):
            tensors[_key(text)] = embeds.features[i, : embeds.lengths[i]].cpu().contiguous()
            if embeds.truncated[i]:
                truncated.append(text)
    tmp = f"{path}.tmp"  # (one writer: rank 0; a leftover from a kill is removed by discard_partial)
    save_file(tensors, tmp, metadata={"truncated": json.dumps(sorted(set(truncated)), ensure_ascii=False)})
    os.replace(tmp, path)
    return len(todo)


def discard_partial(path: str) -> None:
    if os.path.exists(f"{path}.tmp"):
        os.remove(f"{path}.tmp")


def _truncated(path: str) -> List[str]:
    if not os.path.exists(path):
        return []
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        return json.loads((f.metadata() or {}).get("truncated", "[]"))


def load(path: str, texts: Iterable[str], width: int, dim: int, dtype: torch.dtype) -> Dict[str, PromptEmbeds]:
    """Batch-of-one :class:`PromptEmbeds` for each text (padded to ``width`` rows), read lazily."""
    from safetensors import safe_open

    truncated = set(_truncated(path))
    out = {}
    wanted = sorted(set(texts))
    with safe_open(path, "pt") if os.path.exists(path) else _Empty() as f:
        for text in wanted:
            if not text:
                out[text] = PromptEmbeds(torch.zeros(1, width, dim, dtype=dtype), [0], [False])
                continue
            rows = f.get_tensor(_key(text))
            feats = torch.zeros(1, width, rows.shape[1], dtype=rows.dtype)
            feats[0, : rows.shape[0]] = rows
            out[text] = PromptEmbeds(feats, [rows.shape[0]], [text in truncated])
    return out


class _Empty:
    """Stands in for a missing cache file (only the empty prompt is then loadable)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def get_tensor(self, text):
        raise KeyError(text)

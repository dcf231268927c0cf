"""The dtype names the front ends take (``--dtype fp32|bf16|fp16``), without importing torch: the
CLI's parser is built from them."""

from __future__ import annotations

DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def torch_dtype(name: str):
    """``fp32`` / ``bf16`` / ``fp16`` -> the torch dtype."""
    import torch

    return getattr(torch, DTYPE_NAMES[name])

"""Linear + GELU as one oneDNN call on CPU (the kernel torch.compile uses for this pattern).

Eager PyTorch runs ``gelu(linear(x))`` as a matrix product, a bias copy and a separate pass over
the [tokens, 4 * width] activations. oneDNN applies the bias and the exact (erf) GELU inside the
matrix product. The op is internal to PyTorch, so it is used only when present and verified once
per process against the eager ops; otherwise, and for any other device, dtype or layer type, the
eager ops run.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

_verified: Optional[bool] = None  # None: not checked yet in this process


def _fused(x, weight, bias):
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")


def _available() -> bool:
    global _verified
    if _verified is None:
        _verified = False
        try:
            if torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled:
                g = torch.Generator().manual_seed(0)
                x, w, b = (torch.randn(*s, generator=g) for s in ((3, 5, 16), (24, 16), (24,)))
                _verified = bool(torch.allclose(_fused(x, w, b), F.gelu(F.linear(x, w, b)), rtol=1e-5, atol=1e-6))
        except Exception:  # op missing or refused in this build
            _verified = False
    return _verified


def linear_gelu(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``gelu(layer(x))`` (exact GELU)."""
    if (
        type(layer) is nn.Linear  # host layer types may cast or offload weights in forward
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and layer.weight.dtype == torch.float32
        and layer.weight.device.type == "cpu"
        and not (torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad))
        and _available()
    ):
        return _fused(x, layer.weight, layer.bias)
    return F.gelu(layer(x))

"""Prefilled latents as the official ``latents`` argument takes them, in the plan's [B, C, N, h, w]."""

from __future__ import annotations

import torch

from ..errors import InputError


def as_prefix(latents) -> torch.Tensor:
    """Prefilled latents: [B, C, N, h, w], [B, C, h, w] (one frame) or a list of [B, C, h, w]."""
    try:
        if isinstance(latents, (list, tuple)):
            return torch.stack([torch.as_tensor(l) for l in latents], dim=2)
        latents = torch.as_tensor(latents)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"latents: {exc}; expected [B, C, N, h, w], [B, C, h, w] or a list of [B, C, h, w].") from exc
    return latents.unsqueeze(2) if latents.dim() == 4 else latents

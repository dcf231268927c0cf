"""The per-token diffusion head (official ``DiffusionMLP``, AdaLN-zero MLP blocks)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .embeddings import PatchEmbed


class Projector(nn.Module):
    def __init__(self, in_dim: int, dim: int, ops=nn):
        super().__init__()
        self.fc1 = ops.Linear(in_dim, dim)
        self.fc2 = ops.Linear(dim, dim)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)))


class AdaLayerNormZero(nn.Module):
    """LayerNorm (no affine) modulated by ``z``; returns the normed input and extra stats (gates)."""

    def __init__(self, dim: int, num_stats: int, ops=nn):
        super().__init__()
        self.num_stats = num_stats
        self.proj = ops.Linear(dim, num_stats * dim)

    def forward(self, x, z):
        stats = self.proj(F.silu(z)).chunk(self.num_stats, dim=-1)
        normed = F.layer_norm(x, x.shape[-1:], eps=1e-6)
        return normed * (1 + stats[0]) + stats[1], stats[2:]


class DiffusionBlock(nn.Module):
    def __init__(self, dim: int, ops=nn):
        super().__init__()
        self.norm1 = AdaLayerNormZero(dim, 3, ops)
        self.proj = Projector(dim, dim, ops)
        self.norm2 = ops.LayerNorm(dim)

    def forward(self, x, z):
        h, (gate,) = self.norm1(x, z)
        return self.norm2(self.proj(h)) * gate + x


class TimeCondEmbed(nn.Module):
    def __init__(self, cond_dim: int, dim: int, ops=nn):
        super().__init__()
        self.timestep_proj = Projector(256, dim, ops)
        self.condition_proj = Projector(cond_dim, dim, ops)


class DiffusionMLP(nn.Module):
    def __init__(self, depth: int, dim: int, cond_dim: int, patch_size: int, in_channels: int, ops=nn):
        super().__init__()
        self.patch_size, self.in_channels = patch_size, in_channels
        self.patch_embed = PatchEmbed(in_channels, dim, patch_size, ops)
        self.time_cond_embed = TimeCondEmbed(cond_dim, dim, ops)
        self.blocks = nn.ModuleList(DiffusionBlock(dim, ops) for _ in range(depth))
        self.norm = AdaLayerNormZero(dim, 2, ops)
        self.head = ops.Linear(dim, patch_size**2 * in_channels)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patchified noisy tokens [N, L, p*p*C] -> [N, L, dim].

        The patch conv is applied as the equivalent linear map, so only the tokens being predicted
        are embedded (the official code convolves the whole latent, then gathers).
        """
        conv = self.patch_embed.proj
        # .to(): weights may live on another device/dtype when a host offloads or casts layers.
        weight = conv.weight.to(device=tokens.device, dtype=tokens.dtype)
        bias = None if conv.bias is None else conv.bias.to(device=tokens.device, dtype=tokens.dtype)
        return F.linear(tokens, weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1), bias)

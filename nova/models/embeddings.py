"""Embedding layers of the NOVA transformer (official parameter names).

Frequency tables are recomputed on demand instead of kept as buffers: they are tiny, and a
model built on the ``meta`` device then loads without any non-persistent state to restore.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import torch
from torch import nn


def sincos_freqs(dim: int, device=None) -> torch.Tensor:
    """``1 / 10000 ** (i / dim)`` for i in [0, dim), as the official embeddings compute it."""
    return 1 / (10000 ** (torch.arange(dim, dtype=torch.float32, device=device) / dim))


def sincos_embed(values: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """[N] float values -> [N, 1, dim] ``cat(sin, cos)`` features (time, motion, fps)."""
    angles = values.float().view(-1, 1, 1) * sincos_freqs(dim // 2, values.device).unsqueeze(0)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


@functools.lru_cache(maxsize=16)
def space_embed_2d(dim: int, height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """Absolute 2D sin-cos position embedding, [height * width, dim], row-major. Memoized (it is
    added to the tokens of every set step): callers must not modify it in place."""
    freqs = sincos_freqs(dim // 4, device)
    grid_h = torch.arange(height, dtype=torch.float32, device=device)
    grid_w = torch.arange(width, dtype=torch.float32, device=device)
    pos_w = grid_w.view(1, -1).expand(height, -1).reshape(-1, 1) * freqs.unsqueeze(0)
    pos_h = grid_h.view(-1, 1).expand(-1, width).reshape(-1, 1) * freqs.unsqueeze(0)
    embed = torch.cat([pos_w.sin(), pos_w.cos(), pos_h.sin(), pos_h.cos()], dim=-1)
    return embed.to(dtype=dtype)


def timestep_embed(timestep: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """Diffusion timestep features, ``cat(cos, sin)`` (the diffusion head's own convention)."""
    half = dim // 2
    freqs = torch.arange(half, dtype=torch.float32, device=timestep.device).mul(-math.log(10000) / half).exp()
    angles = timestep.float().unsqueeze(-1) * freqs.unsqueeze(0)
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


def _mlp(ops, in_dim: int, dim: int) -> nn.Sequential:
    return nn.Sequential(ops.Linear(in_dim, dim), nn.SiLU(), ops.Linear(dim, dim))


class PatchEmbed(nn.Module):
    """Non-overlapping patches of a latent -> tokens (a strided conv, official key ``proj``)."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, ops=nn):
        super().__init__()
        self.patch_size = patch_size
        self.proj = ops.Conv2d(in_channels, dim, patch_size, patch_size)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, (H/p)*(W/p), dim]."""
        return self.proj(latent).flatten(2).transpose(1, 2)


def patchify(latent: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, L, p*p*C] in the official (p_h, p_w, C) order."""
    b, c, h, w = latent.shape
    x = latent.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(tokens: torch.Tensor, patch: int, channels: int, grid: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    gh, gw = grid
    x = tokens.reshape(-1, gh, gw, patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(-1, channels, gh * patch, gw * patch)


class TextEmbed(nn.Module):
    """Projects Phi-2 features; ``weight`` holds the learned null (padding) token features."""

    def __init__(self, token_dim: int, dim: int, num_tokens: int, ops=nn):
        super().__init__()
        self.token_dim, self.num_tokens = token_dim, num_tokens
        self.proj = ops.Linear(token_dim, dim)
        self.norm = ops.LayerNorm(dim)
        self.register_buffer("weight", torch.zeros(512, token_dim))

    def null_features(self, batch: int, length: Optional[int] = None) -> torch.Tensor:
        """Raw (pre-projection) features of an empty prompt: [batch, length, token_dim]."""
        return self.weight[: length or self.num_tokens].expand(batch, -1, -1).clone()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(features.to(self.proj.weight.dtype)))


class MotionEmbed(nn.Module):
    """Two conditioning tokens for video models: motion flow and fps."""

    def __init__(self, dim: int, ops=nn):
        super().__init__()
        self.flow_proj = _mlp(ops, 256, dim)
        self.fps_proj = _mlp(ops, 256, dim)

    def forward(self, flow: Sequence[float], fps: Sequence[float], device, dtype) -> torch.Tensor:
        """Per-sample flow and fps -> [B, 2, dim]."""
        tokens = []
        for proj, values in ((self.flow_proj, flow), (self.fps_proj, fps)):
            feats = sincos_embed(torch.as_tensor(list(values), dtype=torch.float32), 256)
            tokens.append(proj(feats.to(device=device, dtype=dtype)))
        return torch.cat(tokens, dim=1)


class VideoPosEmbed(nn.Module):
    """Time embedding (learned projection of sin-cos) and the video token grid's sin-cos."""

    def __init__(self, dim: int, base_size: Sequence[int], ops=nn):
        super().__init__()
        self.dim, self.base_t, self.grid = dim, base_size[0], tuple(base_size[1:])
        self.norm = ops.LayerNorm(dim)
        self.time_proj = _mlp(ops, 256, dim)

    def positions(self, num_frames: int) -> torch.Tensor:
        """Official time positions: ``arange(T) * base_t / T`` (T frames always span base_t)."""
        return torch.arange(num_frames, dtype=torch.float32) / (num_frames / self.base_t)

    def time_embed(self, positions: torch.Tensor) -> torch.Tensor:
        """[T] positions -> [T, 1, dim]."""
        weight = self.time_proj[0].weight
        feats = sincos_embed(positions, 256).to(device=weight.device, dtype=weight.dtype)
        return self.norm(self.time_proj(feats))

    def space_embed(self, device, dtype) -> torch.Tensor:
        return space_embed_2d(self.dim, *self.grid, device=device, dtype=dtype)


class MaskEmbed(nn.Module):
    """The BOS token (input of the first frame) and the mask token (unknown image tokens)."""

    def __init__(self, dim: int):
        super().__init__()
        self.bos_token = nn.Parameter(torch.zeros(1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))


class Rotary3D:
    """3D rotary position embedding (official ``RotaryEmbed3D``), applied to q and k.

    The head dimension is split into time / height / width parts of sizes d//8, (d - d//8)//2,
    (d - d//8)//2; each pair of channels is rotated by ``pos * theta ** (-2i / part)``.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0):
        self.parts = [head_dim // 8] + [(head_dim - head_dim // 8) // 2] * 2
        self.theta = theta

    @staticmethod
    def grid(t: int, h: int, w: int, t_offset: float = 0.0) -> torch.Tensor:
        """[(t*h*w), 3] integer (t, h, w) coordinates."""
        tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
        return torch.stack([tt.float() + t_offset, hh.float(), ww.float()], dim=-1).view(-1, 3)

    def rotation(self, pos: torch.Tensor, pad: int = 0) -> torch.Tensor:
        """[B, L, 3] positions -> [B, 1, pad + L, head_dim/2, 2, 2] rotation matrices."""
        pos = nn.functional.pad(pos, (0, 0, pad, 0)) if pad else pos
        mats = []
        for i, part in enumerate(self.parts):
            scale = torch.arange(0, part, 2, dtype=torch.float32, device=pos.device) / part
            angle = pos[..., i : i + 1] * torch.pow(self.theta, scale).reciprocal().unsqueeze(0)
            mat = torch.stack([angle.cos(), -angle.sin(), angle.sin(), angle.cos()], dim=-1)
            mats.append(mat.view(mat.shape[:-1] + (2, 2)))
        return torch.cat(mats, dim=-3).unsqueeze(1)

    @staticmethod
    def apply(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
        """Rotate interleaved channel pairs of ``x`` [B, heads, L, d]."""
        pairs = x.view(*x.shape[:-1], -1, 1, 2)
        rot = rot.to(x.dtype)
        return (rot[..., 0] * pairs[..., 0] + rot[..., 1] * pairs[..., 1]).flatten(3)

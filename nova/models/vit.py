"""Post-norm vision transformer used for NOVA's temporal (video) and spatial (image) encoders."""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .embeddings import PatchEmbed, Rotary3D

KV = Tuple[torch.Tensor, torch.Tensor]


class EagerKernels:
    """How the spatial encoder runs a block, its linear layers and its attention: here, as the
    modules say. Its speed modes (nova/speed/spatial_kernels.py) pass a subclass that overrides what the
    mode changes; it travels as an argument, so the module holds no mode."""

    def block(self, blk: nn.Module, x: torch.Tensor, rot, rows=None) -> torch.Tensor:
        return blk(x, rot, rows=rows, kernels=self)[0]

    def linear(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return layer(x)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


EAGER = EagerKernels()


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, ops=nn):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = ops.Linear(dim, dim * 3)
        self.proj = ops.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, rot: Optional[torch.Tensor] = None, past: Optional[KV] = None, rows=None, kernels=EAGER
    ):
        """Returns (output, (k, v)); ``past`` K/V (already rotated) are prepended to this step's.
        ``rows`` [B, n]: compute the output of these rows only (keys/values still use all)."""
        b, n, _ = x.shape
        q, k, v = (
            kernels.linear(self.qkv, x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        )
        if rot is not None:
            q, k = Rotary3D.apply(q, rot), Rotary3D.apply(k, rot)
        if rows is not None:
            q = q.gather(2, rows[:, None, :, None].expand(-1, self.num_heads, -1, self.head_dim))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        out = kernels.attention(q, k, v)
        return kernels.linear(self.proj, out.transpose(1, 2).flatten(2)), (k, v)


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: int = 4, ops=nn):
        super().__init__()
        self.fc1 = ops.Linear(dim, dim * ratio)
        self.fc2 = ops.Linear(dim * ratio, dim)

    def forward(self, x, kernels=EAGER):
        return kernels.linear(self.fc2, F.gelu(kernels.linear(self.fc1, x)))


class Block(nn.Module):
    """``x = norm1(attn(x)) + x; x = norm2(mlp(x)) + x`` (post-norm, as trained)."""

    def __init__(self, dim: int, num_heads: int, ops=nn):
        super().__init__()
        self.norm1 = ops.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, ops)
        self.norm2 = ops.LayerNorm(dim)
        self.mlp = MLP(dim, ops=ops)

    def forward(self, x, rot=None, past: Optional[KV] = None, rows=None, kernels=EAGER):
        h, kv = self.attn(x, rot, past, rows, kernels)
        if rows is not None:
            x = x.gather(1, rows.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = self.norm1(h) + x
        return self.norm2(self.mlp(x, kernels)) + x, kv


class AdaLayerNorm(nn.Module):
    """The video mixer: ``x * (1 + scale(z)) + shift(z)`` with a low-rank projection, no norm."""

    def __init__(self, dim: int, rank: int, ops=nn):
        super().__init__()
        self.lora = ops.Linear(dim, rank, bias=False) if rank > 0 else nn.Identity()
        self.proj = ops.Linear(rank if rank > 0 else dim, 2 * dim)

    def forward(self, x, z):
        scale, shift = self.proj(self.lora(F.silu(z))).chunk(2, dim=-1)
        return x * (1 + scale) + shift


class VisionTransformer(nn.Module):
    def __init__(self, depth: int, dim: int, num_heads: int, patch_size: int, in_channels: int, ops=nn):
        super().__init__()
        self.dim, self.num_heads = dim, num_heads
        self.patch_embed = PatchEmbed(in_channels, dim, patch_size, ops)
        self.blocks = nn.ModuleList(Block(dim, num_heads, ops) for _ in range(depth))
        self.norm = ops.LayerNorm(dim)
        self.encoder_depth = depth // 2

    # -- temporal (video) encoder ---------------------------------------------------------
    def forward_causal(
        self,
        tokens: torch.Tensor,
        context: Optional[torch.Tensor],
        past: Optional[List[KV]],
        rot: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, List[KV]]:
        """One frame of the block-causal video encoder.

        ``context`` (text + motion tokens) is given with the first frame only; later frames attend to
        it, and to every earlier frame, through ``past`` (one (k, v) per block). Returns the frame's
        features and the extended K/V; nothing is stored on the module.
        """
        x = tokens if context is None else torch.cat([context, tokens], dim=1)
        new_kv = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, rot, None if past is None else past[i])
            new_kv.append(kv)
        x = x if context is None else x[:, context.shape[1] :]
        return self.norm(x), new_kv

    # -- spatial (image) encoder ---------------------------------------------------------
    def forward_masked(
        self,
        tokens: torch.Tensor,
        context: torch.Tensor,
        known_ids: torch.Tensor,
        rot_known: Optional[torch.Tensor] = None,
        rot_all: Optional[torch.Tensor] = None,
        out_ids: Optional[torch.Tensor] = None,
        kernels=EAGER,
    ) -> torch.Tensor:
        """Set-by-set image encoder: the first half sees [context; known tokens], the second half
        sees [context; all tokens] (unknown ones as the mask token). ``known_ids`` is [B, K, 1].
        With ``out_ids`` [B, n, 1] only those tokens' features are returned, and the last block
        computes only them. ``kernels``: how the blocks compute (:class:`EagerKernels`)."""
        n_ctx = context.shape[1]
        index = known_ids.expand(-1, -1, tokens.shape[-1])
        x = torch.cat([context, tokens.gather(1, index)], dim=1)
        blocks = list(self.blocks)  # (slicing an nn.ModuleList builds a new module every call)
        for blk in blocks[: self.encoder_depth]:
            x = kernels.block(blk, x, rot_known)
        context, known = x[:, :n_ctx], x[:, n_ctx:]
        x = torch.cat([context, tokens.to(known.dtype).scatter(1, index, known)], dim=1)
        last = len(blocks) - 1
        for i, blk in enumerate(blocks[self.encoder_depth :], start=self.encoder_depth):
            if out_ids is not None and i == last:
                return self.norm(kernels.block(blk, x, rot_all, rows=out_ids[..., 0] + n_ctx))
            x = kernels.block(blk, x, rot_all)
        x = x[:, n_ctx:]
        return self.norm(x if out_ids is None else x.gather(1, out_ids.expand(-1, -1, x.shape[-1])))

"""URSA's video tokenizer (``AutoencoderVQCosmos3D``): a Cosmos-style causal 3D autoencoder with a
Haar-wavelet patcher and finite scalar quantization (FSQ, levels 8,8,8,5,5,5 = 64,000 codes).

Frames -> ids: ``(uint8 - 127.5) / 127.5`` [B, 3, F, H, W] -> ids [B, T, h, w] with T = (F-1)/4 + 1
and h, w = H/8, W/8 for the official 4x time / 8x space checkpoints. Ids -> frames is the reverse.
Clips longer than the checkpoint's ``sample_frames`` are encoded and decoded in temporal tiles,
exactly as the official code cuts them (including its dropping of a trailing partial tile).

Module and parameter names follow the official state dict (``encoder.down_blocks.0.resnets.0.conv1.0``,
...). The convolutions are causal in time: they pad at the front by repeating the first frame.
"""

from __future__ import annotations

import math
from typing import List

import torch
from torch import nn

from .config import UrsaVAEConfig
from .tokenizer_layers import MidBlock, ResBlock, ResStage, StagedDecoder, StagedEncoder

FSQ_LEVELS = (8, 8, 8, 5, 5, 5)


class CausalConv3d(nn.Conv3d):
    """A Conv3d whose time axis is padded at the front only (replicating the first frame), so frame t
    never sees later frames. ``time_stride`` overrides the stride along time."""

    def __init__(self, in_dim, out_dim, kernel, stride=1, padding=0, time_stride=None):
        super().__init__(in_dim, out_dim, kernel, stride, padding)
        time_stride = time_stride or self.stride[0]
        self.front_pad = (self.kernel_size[0] - 1) + (1 - time_stride)
        self.stride = (time_stride,) + tuple(self.stride[1:])
        self.padding = (0,) + tuple(self.padding[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_size[0] > 1:
            x = nn.functional.pad(x, (0, 0, 0, 0, self.front_pad, 0), mode="replicate")
        return super().forward(x)


def factorized_conv(in_dim: int, out_dim: int) -> nn.Sequential:
    """A 3x3 spatial conv then a 3-tap causal temporal conv (keys ``.0`` and ``.1``)."""
    return nn.Sequential(CausalConv3d(in_dim, out_dim, (1, 3, 3), 1, 1), CausalConv3d(out_dim, out_dim, (3, 1, 1)))


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over (C, H, W) of each frame separately."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames = x.shape[0], x.shape[2]
        y = super().forward(x.transpose(1, 2).flatten(0, 1))
        return y.unflatten(0, (batch, frames)).transpose(1, 2)


class AxisAttention(nn.Module):
    """Single-head self-attention over the pixels of each frame (``spatial``) or over the frames at
    each pixel (temporal), with a residual connection."""

    def __init__(self, dim: int, spatial: bool):
        super().__init__()
        self.spatial = spatial
        self.group_norm = FrameGroupNorm(1, dim, eps=1e-6)
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = self.group_norm(x).permute(0, 2, 3, 4, 1)  # [b, t, h, w, c]
        if self.spatial:
            y = y.reshape(b * t, 1, h * w, c)
        else:
            y = y.permute(0, 2, 3, 1, 4).reshape(b * h * w, 1, t, c)
        out = self.to_out[0](nn.functional.scaled_dot_product_attention(self.to_q(y), self.to_k(y), self.to_v(y)))
        if self.spatial:
            out = out.reshape(b, t, h, w, c)
        else:
            out = out.reshape(b, h, w, t, c).permute(0, 3, 1, 2, 4)
        return out.permute(0, 4, 1, 2, 3).add_(x)  # in place, as official (keeps its memory layout)


def factorized_attention(dim: int) -> nn.Sequential:
    return nn.Sequential(AxisAttention(dim, spatial=True), AxisAttention(dim, spatial=False))


class Resize(nn.Module):
    """Down- (flags 1) or up-sampling (flags 2) in space and/or time; a flag of 0 leaves that axis.

    The modules built follow the official layout exactly (some exist without being used, e.g.
    ``conv1`` of a time-only downsampler), so state dicts match."""

    def __init__(self, dim: int, spatial: int = 1, temporal: int = 1):
        super().__init__()
        self.spatial, self.temporal = spatial, temporal
        self.conv1, self.conv2 = nn.Identity(), nn.Identity()
        if spatial == 1 or temporal == 1:
            self.conv1 = CausalConv3d(dim, dim, (1, 3, 3), 2, time_stride=1)
            if temporal:
                self.conv2 = CausalConv3d(dim, dim, (3, 1, 1), 1, time_stride=2)
        elif spatial == 2 or temporal == 2:
            if temporal:
                self.conv1 = CausalConv3d(dim, dim, (3, 1, 1), 1, 0)
            self.conv2 = CausalConv3d(dim, dim, (1, 3, 3), 1, 1)
        self.conv3 = CausalConv3d(dim, dim, 1) if spatial or temporal else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial == 1:
            pooled = nn.functional.avg_pool3d(x, (1, 2, 2), (1, 2, 2))
            x = self.conv1(nn.functional.pad(x, (0, 1, 0, 1, 0, 0))).add_(pooled)
        if self.temporal == 1:
            x = nn.functional.pad(x, (0, 0, 0, 0, 1, 0), mode="replicate")
            x = self.conv2(x).add_(nn.functional.avg_pool3d(x, (2, 1, 1), (2, 1, 1)))
        if self.temporal == 2:
            x = x.repeat_interleave(2, dim=2)[:, :, 1:]  # T -> 2T - 1: the first frame stays single
            x = self.conv1(x).add_(x)
        if self.spatial == 2:
            x = x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
            x = self.conv2(x).add_(x)
        return self.conv3(x)


def res_block(dim: int, out_dim: int) -> ResBlock:
    """The shared residual block with per-frame GroupNorm(1) and factorized causal 3D convolutions."""
    return ResBlock(
        dim, out_dim, lambda d: FrameGroupNorm(1, d, eps=1e-6), factorized_conv, lambda i, o: CausalConv3d(i, o, 1)
    )


def res_stage(dim: int, out_dim: int, depth: int, downsample=None, upsample=None) -> ResStage:
    """Residual blocks then an optional resize (``downsample``/``upsample``: Resize's factors)."""
    down = Resize(out_dim, *downsample) if downsample else None
    return ResStage(dim, out_dim, depth, res_block, down, Resize(out_dim, *upsample) if upsample else None)


class HaarPatcher3D:
    """One level of the 3D Haar wavelet transform (and its inverse) as grouped (transposed)
    convolutions, one axis at a time: 8 sub-bands stacked on the channel axis."""

    rescale = 2 * 2**0.5

    @staticmethod
    def _filters(channels: int, like: torch.Tensor):
        a = 0.7071067811865476
        low = torch.tensor([a, a], dtype=like.dtype, device=like.device).view(1, 1, -1).repeat(channels, 1, 1)
        high = torch.tensor([a, -a], dtype=like.dtype, device=like.device).view(1, 1, -1).repeat(channels, 1, 1)
        return low, high

    @classmethod
    def forward(cls, x: torch.Tensor) -> torch.Tensor:
        g = x.shape[1]
        low, high = cls._filters(g, x)
        x = nn.functional.pad(x, (0, 1, 0, 1, 0, 1), mode="reflect")
        bands = []
        for wt in (low, high):
            xt = nn.functional.conv3d(x, wt[:, :, :, None, None], stride=(2, 1, 1), groups=g)
            for wy in (low, high):
                xy = nn.functional.conv3d(xt, wy[:, :, None, :, None], stride=(1, 2, 1), groups=g)
                for wx in (low, high):
                    bands.append(nn.functional.conv3d(xy, wx[:, :, None, None, :], stride=(1, 1, 2), groups=g))
        return torch.cat(bands, dim=1) * (1.0 / cls.rescale)

    @classmethod
    def inverse(cls, x: torch.Tensor) -> torch.Tensor:
        g = x.shape[1] // 8
        low, high = cls._filters(g, x)
        bands = list(torch.chunk(x, 8, dim=1))

        def merge(parts: List[torch.Tensor], shape, stride) -> List[torch.Tensor]:
            """Undo one axis: each (low, high) pair of bands becomes one band."""
            out = []
            for i in range(0, len(parts), 2):
                lo = nn.functional.conv_transpose3d(parts[i], low.view(g, 1, *shape), stride=stride, groups=g)
                hi = nn.functional.conv_transpose3d(parts[i + 1], high.view(g, 1, *shape), stride=stride, groups=g)
                out.append(lo + hi)
            return out

        bands = merge(bands, (1, 1, 2), (1, 1, 2))
        bands = merge(bands, (1, 2, 1), (1, 2, 1))
        bands = merge(bands, (2, 1, 1), (2, 1, 1))
        return bands[0] * cls.rescale


class Encoder(StagedEncoder):
    def __init__(self, config: UrsaVAEConfig):
        super().__init__()
        dims, depth, patch = list(config.block_out_channels), config.layers_per_block, config.patch_size
        spatial_downs = int(math.log2(config.spatial_stride)) - int(math.log2(patch))
        temporal_downs = int(math.log2(config.temporal_stride)) - int(math.log2(patch))
        self.patch_size, self.wavelet_levels = patch, int(math.log2(patch))
        self.conv_in = factorized_conv(config.in_channels * patch**3, dims[0])
        self.down_blocks = nn.ModuleList()
        for i in range(len(dims) - 1):
            downsample = (int(i < spatial_downs), int(i < temporal_downs)) if i < len(dims) - 2 else None
            self.down_blocks.append(res_stage(dims[i], dims[i + 1], depth, downsample=downsample))
        self.mid_block = MidBlock(dims[-1], res_block, factorized_attention(dims[-1]), attention_adds_input=True)
        self.conv_norm_out = FrameGroupNorm(1, dims[-1], eps=1e-6)
        self.conv_out = factorized_conv(dims[-1], config.latent_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The first frame is repeated patch_size times so F = 1 + 4k frames patch evenly.
        x = torch.cat([x[:, :, :1].repeat_interleave(self.patch_size, 2), x[:, :, 1:]], 2)
        for _ in range(self.wavelet_levels):
            x = HaarPatcher3D.forward(x)
        return super().forward(x)


class Decoder(StagedDecoder):
    def __init__(self, config: UrsaVAEConfig):
        super().__init__()
        dims, depth, patch = list(reversed(config.block_out_channels)), config.layers_per_block, config.patch_size
        spatial_ups = int(math.log2(config.spatial_stride)) - int(math.log2(patch))
        temporal_ups = int(math.log2(config.temporal_stride)) - int(math.log2(patch))
        self.patch_size, self.wavelet_levels = patch, int(math.log2(patch))
        self.conv_in = factorized_conv(config.latent_channels, dims[0])
        self.mid_block = MidBlock(dims[0], res_block, factorized_attention(dims[0]), attention_adds_input=True)
        self.up_blocks = nn.ModuleList()
        for i in range(len(dims) - 1):
            upsample = None
            if i < len(dims) - 2:
                temporal = 0 < i < temporal_ups + 1
                spatial = temporal or (i < spatial_ups and spatial_ups > temporal_ups)
                upsample = (2 if spatial else 0, 2 if temporal else 0)
            self.up_blocks.append(res_stage(dims[max(i - 1, 0)], dims[i], depth + 1, upsample=upsample))
        last = dims[len(dims) - 2]  # the last stage's width (the reversed list's final entry is unused)
        self.conv_norm_out = FrameGroupNorm(1, last, eps=1e-6)
        self.conv_out = factorized_conv(last, config.out_channels * patch**3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        for _ in range(self.wavelet_levels):
            x = HaarPatcher3D.inverse(x)
        return x[:, :, self.patch_size - 1 :]  # drop the copies of the first frame


class FSQuantizer:
    """Ids <-> FSQ codes: digit k of id (mixed radix 8,8,8,5,5,5) is a level in [-1, 1]."""

    @staticmethod
    def _tables(device):
        levels = torch.tensor(FSQ_LEVELS, dtype=torch.int32, device=device)
        basis = torch.cumprod(torch.tensor((1,) + FSQ_LEVELS[:-1], device=device), dim=0, dtype=torch.int32)
        return levels, levels // 2, basis

    @classmethod
    def quantize(cls, z: torch.Tensor) -> torch.Tensor:
        """z [B, 6, T, h, w] -> ids [B, T, h, w] (int32)."""
        levels, half_width, basis = cls._tables(z.device)
        half_l = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        shift = (offset / half_l).atanh()
        bounded = (z.transpose(1, -1) + shift).tanh() * half_l - offset
        ids = (bounded.round() + half_width).mul(basis).sum(-1).int()  # [B, w, T, h]
        return ids.permute(0, 2, 3, 1)

    @classmethod
    def dequantize(cls, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """ids [B, T, h, w] -> z [B, 6, T, h, w]."""
        levels, half_width, basis = cls._tables(ids.device)
        digits = ids.unsqueeze(-1).floor_divide(basis).fmod(levels) - half_width
        return digits.div(half_width).to(dtype).permute(0, 4, 1, 2, 3)


class AutoencoderVQCosmos3D(nn.Module):
    """The video tokenizer; ``encode`` frames -> ids, ``decode`` ids -> frames in [-1, 1]."""

    def __init__(self, config: UrsaVAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = CausalConv3d(config.latent_channels, config.vq_embed_dim, 1)
        self.post_quant_conv = CausalConv3d(config.vq_embed_dim, config.latent_channels, 1)

    @property
    def dtype(self) -> torch.dtype:
        return self.quant_conv.weight.dtype

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, F, H, W] in [-1, 1] -> ids [B, T, h, w] (int32). Clips longer than
        ``sample_frames`` S go in tiles [0, S), [S-1, 2S-1), ... (whole tiles only, as official)."""
        tile, frames = self.config.sample_frames, pixels.shape[2]
        if frames <= tile:
            z = self.encoder(pixels)
        else:
            starts = range(0, frames, tile - 1)
            z = torch.cat([self.encoder(pixels[:, :, s : s + tile]) for s in starts if s + tile <= frames], dim=2)
        return FSQuantizer.quantize(self.quant_conv(z))

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T, h, w] -> pixels [B, 3, F, H, W]. More than ``latent_tile`` (m) latent frames
        decode in tiles [0, m), [m, 2m), ..., a trailing partial tile dropped and the first frame of
        every later tile dropped (the official cut)."""
        z = self.post_quant_conv(FSQuantizer.dequantize(ids, self.dtype))
        tile, frames = self.config.latent_tile, z.shape[2]
        if frames <= tile:
            return self.decoder(z)
        tiles = [self.decoder(z[:, :, s : s + tile]) for s in range(0, frames, tile) if s + tile <= frames]
        return torch.cat([t if i == 0 else t[:, :, 1:] for i, t in enumerate(tiles)], dim=2)

    def decoded_frames(self, latent_frames: int) -> int:
        """How many frames ``decode`` returns for ``latent_frames`` latent frames."""
        stride, tile = self.config.temporal_stride, self.config.latent_tile
        if latent_frames <= tile:
            return 1 + stride * (latent_frames - 1)
        whole = latent_frames // tile
        return 1 + stride * (tile - 1) + (whole - 1) * stride * (tile - 1)

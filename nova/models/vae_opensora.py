"""Open-Sora-Plan v1.2 3D VAE (``AutoencoderKLOpenSora``), the video model's autoencoder.

diffusers has no class for it, so it is written here, config-driven and key-compatible with the
official ``vae/diffusion_pytorch_model.safetensors``. Its temporal convolutions are causal: the
first frame stands alone (T_frames = 1 + 4 * (T_latents - 1)).

Decoding runs in temporal tiles of ``tile_latents`` latents overlapping by one, as the official
code does (GroupNorm statistics span a tile, so tiling is part of the numerics), but unlike the
official code the last, shorter tile is decoded too: every latent count gives every frame.
"""

from __future__ import annotations

from functools import partial
from typing import List, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError


class CausalConv3d(nn.Conv3d):
    """Conv3d whose time axis is padded in front by replicating the first frame.

    Large inputs are convolved a few frames at a time (each chunk reads its ``k - 1`` frames of
    history): convolution is local in time, so this is exact, and it bounds the convolution's
    workspace, the peak of a full-resolution decode."""

    chunk_elements = 1 << 26  # input elements per chunk (256 MB in fp32)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.padding = (0,) + tuple(self.padding[1:])
        self.time_pad = self.kernel_size[0] - 1

    def _window(self, x, start: int, stop: int):
        """Input frames for output frames [start, stop) (stride 1), replicate-padded at 0."""
        lo = start - self.time_pad
        if lo >= 0:
            return x[:, :, lo:stop]
        first = x[:, :, :1].expand(-1, -1, -lo, -1, -1)
        return torch.cat([first, x[:, :, :stop]], dim=2)

    def forward(self, x):
        frames = x.shape[2]
        per_frame = x[:, :, :1].numel()
        step = max(1, self.chunk_elements // max(1, per_frame) - self.time_pad)
        if self.stride[0] != 1 or frames <= step:
            if self.time_pad:
                x = F.pad(x, (0, 0, 0, 0, self.time_pad, 0), mode="replicate")
            return super().forward(x)
        first = super().forward(self._window(x, 0, min(step, frames)))
        out = first.new_empty(first.shape[:2] + (frames,) + first.shape[3:])
        out[:, :, : first.shape[2]] = first
        del first
        for start in range(step, frames, step):
            stop = min(start + step, frames)
            out[:, :, start:stop] = super().forward(self._window(x, start, stop))
        return out


def _is_3d(block_type: str) -> bool:
    return "Block3D" in block_type


class FrameAttention(nn.Module):
    """Single-head self-attention over each frame's pixels (GroupNorm spans the whole clip)."""

    def __init__(self, dim: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x):
        shape = x.shape
        h = self.group_norm(x)
        if h.dim() == 5:  # [B, C, T, H, W] -> [B*T, H*W, C]
            b, c, t = h.shape[:3]
            h = h.permute(0, 2, 3, 4, 1).reshape(b * t, -1, c)
        else:
            b, c, t = h.shape[0], h.shape[1], 1
            h = h.flatten(2).transpose(1, 2)
        q, k, v = (f(h).unsqueeze(1) for f in (self.to_q, self.to_k, self.to_v))
        h = self.to_out[0](F.scaled_dot_product_attention(q, k, v).squeeze(1))
        if len(shape) == 5:
            h = h.view(b, t, -1, c).permute(0, 3, 1, 2).reshape(shape)
        else:
            h = h.transpose(1, 2).reshape(shape)
        return x + h


class ResBlock(nn.Module):
    def __init__(self, dim: int, out_dim: int, conv, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, dim, eps=1e-6)
        self.conv1 = conv(dim, out_dim, 3, 1, 1)
        self.norm2 = nn.GroupNorm(groups, out_dim, eps=1e-6)
        self.conv2 = conv(out_dim, out_dim, 3, 1, 1)
        self.conv_shortcut = conv(dim, out_dim, 1) if out_dim != dim else None

    def forward(self, x):
        # In-place activations and residual: decoding is memory-bound at full resolution.
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        return self.conv2(F.silu(self.norm2(h), inplace=True)).add_(shortcut)


class Downsample(nn.Module):
    """Stride-2 conv; the first 3D one also folds frames back into a time axis."""

    def __init__(self, dim: int, conv):
        super().__init__()
        self.conv = conv(dim, dim, 3, 2, 0)
        self.is_3d = isinstance(self.conv, nn.Conv3d)

    def forward(self, x, num_frames: int):
        if self.is_3d and x.dim() == 4:  # [B*T, C, H, W] -> [B, C, T, H, W]
            x = x.view(-1, num_frames, *x.shape[1:]).transpose(1, 2)
        pad = (0, 1, 0, 1, 0, 0) if self.is_3d else (0, 1, 0, 1)
        return self.conv(F.pad(x, pad))


class Upsample(nn.Module):
    """x2 upsampling then a conv. 3D kernels also double time, keeping the first frame single."""

    def __init__(self, dim: int, conv):
        super().__init__()
        self.conv = conv(dim, dim, stride=1, padding=1)
        is_3d = isinstance(self.conv, nn.Conv3d)
        self.temporal = is_3d and self.conv.kernel_size[0] > 1

    def forward(self, x):
        if self.temporal:
            first = F.interpolate(x[:, :, :1], scale_factor=(1, 2, 2), mode="trilinear")
            if x.shape[2] > 1:
                rest = F.interpolate(x[:, :, 1:], scale_factor=(2, 2, 2), mode="trilinear")
                first = torch.cat([first, rest], dim=2)
            x = first
        else:
            x = x.repeat_interleave(2, -2).repeat_interleave(2, -1)
        return self.conv(x)


class ResStage(nn.Module):
    def __init__(self, dim, out_dim, conv, depth, groups, down=None, up=None):
        super().__init__()
        self.resnets = nn.ModuleList(ResBlock(dim if i == 0 else out_dim, out_dim, conv, groups) for i in range(depth))
        self.downsamplers = nn.ModuleList([Downsample(out_dim, down)]) if down else nn.ModuleList()
        self.upsamplers = nn.ModuleList([Upsample(out_dim, up)]) if up else nn.ModuleList()


class MidBlock(nn.Module):
    def __init__(self, dim, conv, groups):
        super().__init__()
        self.resnets = nn.ModuleList([ResBlock(dim, dim, conv, groups), ResBlock(dim, dim, conv, groups)])
        self.attentions = nn.ModuleList([FrameAttention(dim, groups)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Encoder(nn.Module):
    def __init__(self, in_ch, latent_ch, block_types, dims, depth, groups):
        super().__init__()
        convs = [CausalConv3d if _is_3d(t) else nn.Conv2d for t in block_types]
        self.conv_in = nn.Conv2d(in_ch, dims[0], 3, 1, 1)
        self.down_blocks = nn.ModuleList(
            ResStage(
                dims[max(i - 1, 0)], dims[i], convs[i], depth, groups, down=convs[i + 1] if i + 1 < len(dims) else None
            )
            for i in range(len(dims))
        )
        self.mid_block = MidBlock(dims[-1], convs[-1], groups)
        self.conv_norm_out = nn.GroupNorm(groups, dims[-1], eps=1e-6)
        self.conv_out = convs[-1](dims[-1], 2 * latent_ch, 3, 1, 1)

    def forward(self, x):
        num_frames = x.shape[2] if x.dim() == 5 else 1
        if x.dim() == 5:  # 2D stages see frames as a batch
            x = x.transpose(1, 2).flatten(0, 1)
        x = self.conv_in(x)
        for stage in self.down_blocks:
            for res in stage.resnets:
                x = res(x)
            for down in stage.downsamplers:
                x = down(x, num_frames)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x), inplace=True))


class Decoder(nn.Module):
    def __init__(self, latent_ch, out_ch, block_types, dims, depth, groups):
        super().__init__()
        dims = list(reversed(dims))
        convs = [CausalConv3d if _is_3d(t) else nn.Conv2d for t in block_types]
        n = len(dims)
        stages = []
        for i in range(n):
            up = None
            if i < n - 1:
                # The last upsampling of a 3D decoder is spatial only (kernel 1x3x3).
                kernel = 3 if i < n - 2 or convs[i] is nn.Conv2d else (1, 3, 3)
                up = partial(convs[i], kernel_size=kernel)
            stages.append(ResStage(dims[max(i - 1, 0)], dims[i], convs[i], depth + 1, groups, up=up))
        self.up_blocks = nn.ModuleList(stages)
        self.conv_in = convs[-1](latent_ch, dims[0], 3, 1, 1)
        self.mid_block = MidBlock(dims[0], convs[-1], groups)
        self.conv_norm_out = nn.GroupNorm(groups, dims[-1], eps=1e-6)
        self.conv_out = convs[-1](dims[-1], out_ch, 3, 1, 1)

    # Activations above this many elements run layer by layer in temporal chunks (exact: GroupNorm
    # statistics are gathered over the whole tile first, convolutions are local in time), so a
    # full-resolution tile holds about two activations at a time instead of five or six.
    stream_elements = 1 << 28
    stream_frames = 1

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for stage in self.up_blocks:
            for res in stage.resnets:
                x = streamed_res(res, x, self.stream_frames) if self._stream(x) else res(_whole(x))
            for up in stage.upsamplers:
                x = streamed_upsample(up, _whole(x), self.stream_frames) if self._stream(up, x) else up(_whole(x))
        if self._stream(x):
            return streamed_norm_conv(self.conv_norm_out, self.conv_out, x, self.stream_frames)
        return self.conv_out(F.silu(self.conv_norm_out(x), inplace=True))

    def _stream(self, *args) -> bool:
        """Stream a layer when its input (or an upsampler's output) is large."""
        x = args[-1]
        if isinstance(x, _Lazy):
            return True
        if x.dim() != 5:
            return False
        grow = 4 if len(args) == 2 else 1  # an upsampler's output is 4x (or 8x) its input
        return x.numel() * grow > self.stream_elements


class _Lazy:
    """An activation that is never held whole: ``make(lo, hi)`` computes frames [lo, hi)."""

    def __init__(self, frames: int, make):
        self.frames, self.make = frames, make


def _frames(src, lo: int, hi: int) -> torch.Tensor:
    return src.make(lo, hi) if isinstance(src, _Lazy) else src[:, :, lo:hi]


def _num_frames(src) -> int:
    return src.frames if isinstance(src, _Lazy) else src.shape[2]


def _whole(src) -> torch.Tensor:
    return src.make(0, src.frames) if isinstance(src, _Lazy) else src


def _group_stats(src, norm: nn.GroupNorm, chunk: int):
    """GroupNorm mean and 1/std over the whole activation, gathered a few frames at a time (two
    passes: mean, then squared deviations)."""
    t, g = _num_frames(src), norm.num_groups
    total = sq = None
    count = 0
    for lo in range(0, t, chunk):
        part = _frames(src, lo, lo + chunk).float()
        part = part.reshape(part.shape[0], g, -1)
        total = part.sum(-1) if total is None else total + part.sum(-1)
        count += part.shape[-1]
    mean = total / count
    for lo in range(0, t, chunk):
        part = _frames(src, lo, lo + chunk).float()
        d = part.reshape(part.shape[0], g, -1) - mean.unsqueeze(-1)
        sq = (d * d).sum(-1) if sq is None else sq + (d * d).sum(-1)
    return mean, torch.rsqrt(sq / count + norm.eps)


def _group_apply(x, norm: nn.GroupNorm, mean, rstd):
    b, c = x.shape[:2]
    g = norm.num_groups
    y = (x.float().reshape(b, g, -1) - mean.unsqueeze(-1)) * rstd.unsqueeze(-1)
    shape = (1, c) + (1,) * (x.dim() - 2)
    y = y.reshape(x.shape) * norm.weight.float().view(shape) + norm.bias.float().view(shape)
    return y.to(x.dtype)


def _conv_streamed(conv, produce, frames: int, chunk: int) -> torch.Tensor:
    """Causal conv over an input made on demand: ``produce(lo, hi)`` gives input frames [lo, hi)."""
    pad = getattr(conv, "time_pad", 0)
    out = None
    for start in range(0, frames, chunk):
        stop = min(start + chunk, frames)
        lo = start - pad
        window = produce(max(lo, 0), stop)
        if lo < 0:
            window = torch.cat([window[:, :, :1].expand(-1, -1, -lo, -1, -1), window], dim=2)
        y = nn.Conv3d.forward(conv, window)
        if out is None:
            out = y.new_empty(y.shape[:2] + (frames,) + y.shape[3:])
        out[:, :, start:stop] = y
    return out


def streamed_res(res: "ResBlock", src, chunk: int) -> torch.Tensor:
    """A ResBlock over a tensor or a :class:`_Lazy` input (which is then recomputed per pass
    instead of held: at full resolution it is the largest activation of the decoder)."""
    frames = _num_frames(src)
    m1, r1 = _group_stats(src, res.norm1, chunk)
    h = _conv_streamed(
        res.conv1, lambda lo, hi: F.silu(_group_apply(_frames(src, lo, hi), res.norm1, m1, r1)), frames, chunk
    )
    m2, r2 = _group_stats(h, res.norm2, chunk)
    out = _conv_streamed(
        res.conv2, lambda lo, hi: F.silu(_group_apply(h[:, :, lo:hi], res.norm2, m2, r2)), frames, chunk
    )
    for lo in range(0, frames, chunk):
        part = _frames(src, lo, lo + chunk)
        out[:, :, lo : lo + chunk] += part if res.conv_shortcut is None else res.conv_shortcut(part)
    return out


def streamed_upsample(up: "Upsample", x: torch.Tensor, chunk: int):
    if up.temporal:  # the doubled clip is made whole (it sits at low resolution), the conv streams
        return _conv_streamed(up.conv, _upsampled(up, x), 1 + 2 * (x.shape[2] - 1), chunk)
    # Spatial-only (kernel 1x3x3, no temporal halo): never held whole, made per chunk when read.
    return _Lazy(x.shape[2], lambda lo, hi: up.conv(x[:, :, lo:hi].repeat_interleave(2, -2).repeat_interleave(2, -1)))


def _upsampled(up: "Upsample", x: torch.Tensor):
    first = F.interpolate(x[:, :, :1], scale_factor=(1, 2, 2), mode="trilinear")
    if x.shape[2] > 1:
        rest = F.interpolate(x[:, :, 1:], scale_factor=(2, 2, 2), mode="trilinear")
        first = torch.cat([first, rest], dim=2)
    return lambda lo, hi: first[:, :, lo:hi]


def streamed_norm_conv(norm: nn.GroupNorm, conv, src, chunk: int) -> torch.Tensor:
    mean, rstd = _group_stats(src, norm, chunk)
    return _conv_streamed(
        conv, lambda lo, hi: F.silu(_group_apply(_frames(src, lo, hi), norm, mean, rstd)), _num_frames(src), chunk
    )


class AutoencoderKLOpenSora(nn.Module):
    """Config keys as in the official ``vae/config.json``."""

    tile_latents = 5  # latents per decode tile (official latent_min_t)
    tile_frames = 17  # frames per encode tile (official sample_min_t)

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        try:
            down, up = list(config["down_block_types"]), list(config["up_block_types"])
            dims = list(config["block_out_channels"])
            depth = int(config.get("layers_per_block", 2))
            latent = int(config.get("latent_channels", 4))
            groups = int(config.get("norm_num_groups", 32))
            in_ch, out_ch = int(config.get("in_channels", 3)), int(config.get("out_channels", 3))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"vae/config.json: missing or invalid key ({exc}) for AutoencoderKLOpenSora.") from exc
        if not (len(down) == len(up) == len(dims)) or not dims:
            raise ConfigError(
                "vae/config.json: down_block_types, up_block_types and block_out_channels must have the same length "
                f"(got {len(down)}, {len(up)}, {len(dims)})."
            )
        if not _is_3d(up[-1]) or any(_is_3d(a) and not _is_3d(b) for a, b in zip(down, down[1:])):
            raise ConfigError(
                "vae/config.json: AutoencoderKLOpenSora needs 3D up blocks and 2D down blocks before 3D ones "
                f"(got down={down}, up={up})."
            )
        if any(d % groups for d in dims):
            raise ConfigError(
                f"vae/config.json: block_out_channels {dims} must be divisible by norm_num_groups={groups}."
            )
        self.scaling_factor = float(config.get("scaling_factor", 0.18215))
        self.shift_factor = config.get("shift_factor") or 0.0
        self.latent_channels = latent
        self.spatial_ratio = 2 ** (len(dims) - 1)
        self.temporal_ratio = 2 ** sum(1 for t in down[1:] if _is_3d(t))
        self.encoder = Encoder(in_ch, latent, down, dims, depth, groups)
        self.decoder = Decoder(latent, out_ch, up, dims, depth, groups)
        quant = CausalConv3d if config.get("use_quant_conv", True) else None
        self.quant_conv = quant(2 * latent, 2 * latent, 1) if quant else nn.Identity()
        post = CausalConv3d if config.get("use_post_quant_conv", True) else None
        self.post_quant_conv = post(latent, latent, 1) if post else nn.Identity()

    @property
    def dtype(self):
        return self.decoder.conv_in.weight.dtype

    # -- encode -------------------------------------------------------------------------------
    def encode_moments(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] (or [B, 3, H, W]) in [-1, 1] -> [B, 2*C, t, h, w] (mean, logvar)."""
        image = pixels.dim() == 4
        x = pixels.unsqueeze(2) if image else pixels
        tiles = []
        for i, (start, stop) in enumerate(temporal_tiles(x.shape[2], self.tile_frames)):
            z = self.encoder(x[:, :, start:stop])
            tiles.append(z if i == 0 else z[:, :, 1:])
        z = self.quant_conv(torch.cat(tiles, dim=2))
        return z.squeeze(2) if image else z

    # -- decode -------------------------------------------------------------------------------
    def decode_tiles(self, latents: torch.Tensor, tile_latents: Optional[int] = None):
        """Yield decoded pixel chunks [B, 3, t, H, W] in order (each tile drops its overlap frame).
        ``tile_latents`` below the official 5 lowers peak memory; the frames then differ slightly
        (GroupNorm statistics span a tile)."""
        z = self.post_quant_conv(latents)
        for i, (start, stop) in enumerate(temporal_tiles(z.shape[2], tile_latents or self.tile_latents)):
            x = self.decoder(z[:, :, start:stop])
            yield x if i == 0 else x[:, :, 1:]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unscaled latents [B, C, T, h, w] (or [B, C, h, w]) -> pixels in about [-1, 1]."""
        image = latents.dim() == 4
        z = latents.unsqueeze(2) if image else latents
        x = torch.cat(list(self.decode_tiles(z)), dim=2)
        return x.squeeze(2) if image else x


def temporal_tiles(length: int, tile: int) -> List[tuple]:
    """(start, stop) tiles of ``tile`` steps overlapping by one, for decoding latents (official
    latent_min_t = 5) and encoding frames (sample_min_t = 17). The last tile may be shorter: the
    official code drops it, losing frames for lengths other than 1 + (tile - 1) k."""
    if length <= tile:
        return [(0, length)]
    starts = [s for s in range(0, length, tile - 1) if s == 0 or s + 1 < length]
    return [(s, min(s + tile, length)) for s in starts]

"""URSA's image tokenizer (``AutoencoderVQ`` with ``VQuantizer``, the IBQ checkpoints): a 2D
convolutional autoencoder (the layout of diffusers' ``AutoencoderKL``, GroupNorm with 32 groups)
whose latents snap to the codebook entry with the largest dot product.

Image -> ids: ``(uint8 - 127.5) / 127.5`` [B, 3, H, W] -> ids [B, h, w]; ids [B, T, h, w] -> pixels
[B, 3, H, W] (T = 1) or [B, 3, T, H, W] (each frame decoded on its own). Parameter names follow the
official state dict.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import UrsaVAEConfig
from .tokenizer_layers import MidBlock, ResBlock, ResStage, StagedDecoder, StagedEncoder


def _group_norm(dim: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, dim, eps=1e-6)


class Attention(nn.Module):
    """Single-head self-attention over the pixels (the caller adds the residual)."""

    def __init__(self, dim: int):
        super().__init__()
        self.group_norm = _group_norm(dim)
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = self.group_norm(x).flatten(2).transpose(1, 2).contiguous()  # [B, HW, C]
        # One head; the [B, HW, 1, C] -> [B, 1, HW, C] view keeps the official strides (SDPA's kernel
        # choice, hence its rounding, depends on them).
        q, k, v = (f(y).unflatten(-1, (1, -1)).transpose(1, 2) for f in (self.to_q, self.to_k, self.to_v))
        out = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return self.to_out[0](out).transpose(1, 2).reshape(shape)


class Resize(nn.Module):
    """Stride-2 conv down (after padding right/bottom by one), or nearest x2 then conv up."""

    def __init__(self, dim: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.conv = nn.Conv2d(dim, dim, 3, 2, 0) if downsample else nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            return self.conv(nn.functional.pad(x, (0, 1, 0, 1)))
        return self.conv(nn.functional.interpolate(x, None, (2, 2)))


# Residual sums are taken in place on the branch's output, as the official code does: the sum then keeps
# that tensor's memory layout (channels-last after some reshapes), which decides the next convolution's
# kernel and so its rounding. Out-of-place sums give the same values up to ~1e-7, not the same bits.


def res_block(dim: int, out_dim: int) -> ResBlock:
    """The shared residual block with GroupNorm(32) and 3x3 2D convolutions."""
    return ResBlock(dim, out_dim, _group_norm, lambda i, o: nn.Conv2d(i, o, 3, 1, 1), lambda i, o: nn.Conv2d(i, o, 1))


def res_stage(dim: int, out_dim: int, depth: int, downsample=False, upsample=False) -> ResStage:
    """Residual blocks (their attentions filled by attn_down_block / attn_up_block), then an optional resize."""
    down = Resize(out_dim, True) if downsample else None
    return ResStage(dim, out_dim, depth, res_block, down, Resize(out_dim, False) if upsample else None)


class Encoder(StagedEncoder):
    def __init__(self, config: UrsaVAEConfig):
        super().__init__()
        dims, depth = list(config.block_out_channels), config.layers_per_block
        self.conv_in = nn.Conv2d(config.in_channels, dims[0], 3, 1, 1)
        self.down_blocks = nn.ModuleList(
            res_stage(dims[max(i - 1, 0)], dims[i], depth, downsample=i < len(dims) - 1) for i in range(len(dims))
        )
        self.mid_block = MidBlock(dims[-1], res_block, Attention(dims[-1]))
        self.conv_norm_out = _group_norm(dims[-1])
        self.conv_out = nn.Conv2d(dims[-1], config.latent_channels, 3, 1, 1)


class Decoder(StagedDecoder):
    def __init__(self, config: UrsaVAEConfig):
        super().__init__()
        dims, depth = list(reversed(config.block_out_channels)), config.layers_per_block
        self.conv_in = nn.Conv2d(config.latent_channels, dims[0], 3, 1, 1)
        self.mid_block = MidBlock(dims[0], res_block, Attention(dims[0]))
        self.up_blocks = nn.ModuleList(
            res_stage(dims[max(i - 1, 0)], dims[i], depth + 1, upsample=i < len(dims) - 1) for i in range(len(dims))
        )
        self.conv_norm_out = _group_norm(dims[-1])
        self.conv_out = nn.Conv2d(dims[-1], config.out_channels, 3, 1, 1)


class AutoencoderVQ(nn.Module):
    """The image tokenizer; ``encode`` pixels -> ids, ``decode`` ids -> pixels in [-1, 1]."""

    def __init__(self, config: UrsaVAEConfig):
        super().__init__()
        self.config = config
        dims, depth = config.block_out_channels, config.layers_per_block
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2d(config.latent_channels, config.vq_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.vq_embed_dim, config.latent_channels, 1)
        if config.attn_down_block:
            self.encoder.down_blocks[-1].attentions.extend(Attention(dims[-1]) for _ in range(depth))
        if config.attn_up_block:
            self.decoder.up_blocks[0].attentions.extend(Attention(dims[-1]) for _ in range(depth + 1))
        self.quantizer = nn.Module()
        self.quantizer.embedding = nn.Embedding(config.num_vq_embeddings, config.vq_embed_dim)

    @property
    def dtype(self) -> torch.dtype:
        return self.quant_conv.weight.dtype

    def cast_decoder(self) -> "AutoencoderVQ":
        """Apply the config's ``decoder_dtype`` (the official model keeps its decoder in it)."""
        if self.config.decoder_dtype:
            self.decoder.to(getattr(torch, self.config.decoder_dtype))
        return self

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, H, W] in [-1, 1] -> ids [B, h, w] (int32): the code of largest z . e_k."""
        z = self.quant_conv(self.encoder(pixels))
        scores = nn.functional.linear(z.transpose(1, -1), self.quantizer.embedding.weight)  # [B, w, h, K]
        return scores.argmax(-1).int().permute(0, 2, 1)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T, h, w] -> pixels [B, 3, H, W] when T = 1, else [B, 3, T, H, W]."""
        frames = ids.shape[1]
        z = self.quantizer.embedding(ids).permute(0, 4, 1, 2, 3)  # [B, D, T, h, w]
        # -> [B*T, D, h, w] as the official code reshapes it: the resulting strides decide the
        # convolutions' memory format (channels-last here), and with it their rounding.
        z = z.squeeze(2) if frames == 1 else z.transpose(1, 2).flatten(0, 1)
        x = self.post_quant_conv(z)
        x = self.decoder(x.to(self.decoder.conv_in.weight.dtype))
        return x if frames == 1 else x.unflatten(0, (-1, frames)).transpose(1, 2)

"""What both URSA tokenizers are built from: the residual block ((norm, SiLU, conv) twice, plus the
input, through a 1x1 convolution when the width changes), the stage of blocks, and the order in which
an encoder and a decoder run their layers. The tokenizers differ in the layers (2D convolutions and
GroupNorm(32) for the image tokenizer; factorized causal 3D convolutions and per-frame GroupNorm(1)
for the video one), which they make; the names are the official state dict's (``norm1``,
``conv1``, ``conv_shortcut``, ``down_blocks``, ``mid_block``, ``conv_norm_out``, ...).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

LayerMaker = Callable[..., nn.Module]


class ResBlock(nn.Module):
    """``norm(width)`` makes a norm layer, ``conv(in, out)`` a 3x3 convolution and ``shortcut(in, out)``
    a 1x1 one, for the tokenizer's number of dimensions."""

    def __init__(self, dim: int, out_dim: int, norm: LayerMaker, conv: LayerMaker, shortcut: LayerMaker):
        super().__init__()
        self.norm1 = norm(dim)
        self.conv1 = conv(dim, out_dim)
        self.norm2 = norm(out_dim)
        self.conv2 = conv(out_dim, out_dim)
        self.conv_shortcut = shortcut(dim, out_dim) if out_dim != dim else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        x = self.conv1(nn.functional.silu(self.norm1(x)))
        # In place on the branch's output, as the official code sums: the result keeps that tensor's
        # memory layout, which decides the next convolution's kernel and so its rounding.
        return self.conv2(nn.functional.silu(self.norm2(x))).add_(shortcut)


class ResStage(nn.Module):
    """``depth`` residual blocks (``block(in, out)``), each followed by its attention when the stage
    has them (``attentions``, empty unless the tokenizer fills it; the caller's attention leaves the
    residual to the stage), then the optional ``downsampler`` or ``upsampler``."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        depth: int,
        block: LayerMaker,
        downsampler: Optional[nn.Module] = None,
        upsampler: Optional[nn.Module] = None,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(block(dim if i == 0 else out_dim, out_dim) for i in range(depth))
        self.attentions = nn.ModuleList()
        self.downsamplers = nn.ModuleList([downsampler] if downsampler is not None else [])
        self.upsamplers = nn.ModuleList([upsampler] if upsampler is not None else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(x)
            if i < len(self.attentions):
                x = self.attentions[i](x).add_(x)
        for resize in list(self.downsamplers) + list(self.upsamplers):
            x = resize(x)
        return x


class MidBlock(nn.Module):
    """A residual block, an attention, another residual block. The attention's input is added to its
    output unless ``attention_adds_input`` (the video tokenizer's axis attentions add it themselves)."""

    def __init__(self, dim: int, block: LayerMaker, attention: nn.Module, attention_adds_input: bool = False):
        super().__init__()
        self.resnets = nn.ModuleList([block(dim, dim), block(dim, dim)])
        self.attentions = nn.ModuleList([attention])
        self.attention_adds_input = attention_adds_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        attended = self.attentions[0](x)
        return self.resnets[1](attended if self.attention_adds_input else attended.add_(x))


class StagedEncoder(nn.Module):
    """``conv_in``, the ``down_blocks``, the ``mid_block``, then ``conv_norm_out``, SiLU and
    ``conv_out``; the subclass makes the layers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(nn.functional.silu(self.conv_norm_out(x)))


class StagedDecoder(nn.Module):
    """``conv_in``, the ``mid_block``, the ``up_blocks``, then ``conv_norm_out``, SiLU and
    ``conv_out``; the subclass makes the layers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(x))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(nn.functional.silu(self.conv_norm_out(x)))

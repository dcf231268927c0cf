"""URSA's transformer: a Qwen3 decoder stack turned bidirectional, with 3D rotary positions and a
head that scores visual codes only.

Written by hand rather than on ``transformers``' ``Qwen3Model`` because the official model differs
from it where it matters: the head size is always 128 (transformers 4.57's ``Qwen3Config`` default,
whatever hidden_size / heads are), attention is full and unmasked (prompt padding is attended), the
rotary angles come from (t, y, x) positions, and ``lm_head`` covers the ``lm_head_size`` visual codes.
Qwen3 also needs transformers >= 4.51 while this pack supports 4.45. The state-dict keys are the
official ones (``model.layers.{i}.self_attn.q_proj.weight`` ...), so checkpoints load unchanged.

The operations, their order and their tensor layouts follow the official code, so on the CPU the logits
are bit-identical to it (tests/test_ursa_golden.py; tools/ursa_vs_official.py at the real 0.6B / 1.7B
widths) and the sampler draws the same ids from them.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .config import UrsaTransformerConfig

HEAD_DIM = 128  # fixed by the official config (see module docstring)


class RMSNorm(nn.Module):
    """``x * rsqrt(mean(x^2) + eps) * weight``; the statistic in fp32, as the official module."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.float().square().mean(-1, keepdim=True).add(self.eps).rsqrt().to(x.dtype)
        return x.mul(scale) * self.weight


def rope_positions(prompt_length: int, grid: Sequence[int], device=None) -> torch.Tensor:
    """The (t, y, x) position of every token of ``[prompt | bov | T*h*w codes]``: [L, 3] int64.

    Prompt token i sits at (i, i, i), bov at (P, P, P), code (t, y, x) at (P + 1 + t, y, x)."""
    frames, height, width = (int(v) for v in grid)
    text = torch.arange(prompt_length, device=device).view(-1, 1).expand(-1, 3)
    bov = torch.full((1, 3), prompt_length, dtype=torch.long, device=device)
    t, y, x = torch.meshgrid(
        torch.arange(frames, device=device) + prompt_length + 1,
        torch.arange(height, device=device),
        torch.arange(width, device=device),
        indexing="ij",
    )
    codes = torch.stack([t, y, x], dim=-1).view(-1, 3)
    return torch.cat([text, bov, codes]).long()


def rope_angles(positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary angles [L, 64] (fp32) for positions [L, 3].

    Frequency j (of 64) turns with axis j mod 3 for j < 48 (t, y, x, t, y, x, ...) and with axis
    1 + (j - 48) mod 2 for the last 16 (y, x, y, x, ...): time gets 16 frequencies, y and x 24 each."""
    inv_freq = torch.pow(theta, torch.arange(0, HEAD_DIM, 2, device=positions.device).float() / HEAD_DIM).reciprocal()
    quarter = HEAD_DIM // 8  # 16 repetitions of (t, y, x)
    spatial = (HEAD_DIM // 2 - 3 * quarter) // 2  # 8 repetitions of (y, x)
    per_freq = torch.cat([positions.repeat(1, quarter), positions[:, 1:].repeat(1, spatial)], dim=-1)
    return per_freq * inv_freq.unsqueeze(0)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[j], x[j + 64]) of x [B, L, H, 128] by the angles; cos/sin [L, 1, 64].

    The result is laid out interleaved (pair j at 2j, 2j + 1) as the official kernel writes it: q and k
    share the layout, so attention is unchanged, and the same layout keeps the same summation order."""
    first, second = x[..., : HEAD_DIM // 2], x[..., HEAD_DIM // 2 :]
    rotated_first = cos * first + (-sin) * second
    rotated_second = sin * first + cos * second
    return torch.stack([rotated_first, rotated_second], dim=-1).flatten(-2)


def _sdpa_supports_gqa() -> bool:
    """torch >= 2.5 takes ``enable_gqa`` (what the official code calls); older versions get the kv heads
    repeated instead (the same attention, computed from a larger tensor)."""
    try:
        q = torch.zeros(1, 2, 1, 4)
        nn.functional.scaled_dot_product_attention(q, q[:, :1], q[:, :1], enable_gqa=True)
        return True
    except TypeError:
        return False


SDPA_HAS_GQA = _sdpa_supports_gqa()


class Attention(nn.Module):
    """Bidirectional grouped-query attention with per-head q/k RMSNorm."""

    def __init__(self, config: UrsaTransformerConfig):
        super().__init__()
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        hidden = config.hidden_size
        self.q_proj = nn.Linear(hidden, self.heads * HEAD_DIM, bias=False)
        self.k_proj = nn.Linear(hidden, self.kv_heads * HEAD_DIM, bias=False)
        self.v_proj = nn.Linear(hidden, self.kv_heads * HEAD_DIM, bias=False)
        self.o_proj = nn.Linear(self.heads * HEAD_DIM, hidden, bias=False)
        self.q_norm = RMSNorm(HEAD_DIM, config.rms_norm_eps)
        self.k_norm = RMSNorm(HEAD_DIM, config.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q = self.q_norm(self.q_proj(x).unflatten(-1, (-1, HEAD_DIM)))
        k = self.k_norm(self.k_proj(x).unflatten(-1, (-1, HEAD_DIM)))
        v = self.v_proj(x).unflatten(-1, (-1, HEAD_DIM))
        q, k = apply_rope(q, cos.to(q.dtype), sin.to(q.dtype)), apply_rope(k, cos.to(k.dtype), sin.to(k.dtype))
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        if SDPA_HAS_GQA:
            out = nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        else:  # torch < 2.5: expand kv heads (query head j reads kv head j // group)
            group = self.heads // self.kv_heads
            k, v = (t.repeat_interleave(group, dim=1) for t in (k, v))
            out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.o_proj(out.transpose(1, 2).flatten(2))


class MLP(nn.Module):
    """SwiGLU feed-forward: ``down(gate * up / (1 + exp(-gate)))``."""

    def __init__(self, config: UrsaTransformerConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_proj(x), self.up_proj(x)
        # The official CUDA kernel computes this expression in fp32 whatever the input dtype.
        hidden = gate.float() * up.float() / (1.0 + torch.exp(-gate.float()))
        return self.down_proj(hidden.to(x.dtype))


class DecoderLayer(nn.Module):
    def __init__(self, config: UrsaTransformerConfig):
        super().__init__()
        self.self_attn = Attention(config)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = self.self_attn(self.input_layernorm(x), cos, sin) + x
        return self.mlp(self.post_attention_layernorm(x)) + x


class QwenBackbone(nn.Module):
    """``model.*`` of the checkpoint: token embedding, decoder layers, final norm."""

    def __init__(self, config: UrsaTransformerConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class UrsaTransformer(nn.Module):
    """Token ids [B, L] + positions [L, 3] -> logits over the visual codes [B, L, lm_head_size]."""

    def __init__(self, config: UrsaTransformerConfig):
        super().__init__()
        self.config = config
        self.model = QwenBackbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.lm_head_size, bias=False)

    def forward(self, input_ids: torch.Tensor, rope_pos: torch.Tensor, keep: Optional[slice] = None) -> torch.Tensor:
        """``keep``: the positions whose logits are wanted (all by default); the pipeline keeps the
        code predictions. The head still runs on every position (the prompt is ~1% of them) so that
        its matmul has the official shape and rounding."""
        x = self.model.embed_tokens(input_ids)
        angles = rope_angles(rope_pos.to(x.device), self.config.rope_theta).unsqueeze(1)  # [L, 1, 64]
        cos, sin = angles.cos(), angles.sin()
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        logits = self.lm_head(self.model.norm(x))
        return logits if keep is None else logits[:, keep]

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

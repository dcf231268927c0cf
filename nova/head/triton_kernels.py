"""Triton kernels of the diffusion head's per-step work (used through :mod:`nova.head.triton`).

This module imports triton at the top: only :mod:`nova.head.triton` imports it, and only when the
``Accel.triton_head`` switch is on and Triton can run (CUDA, or ``TRITON_INTERPRET=1`` in tests).
Every kernel computes in float32 and stores in its output's dtype. Row-wise kernels take ``ROWS``
rows per program, each whole (the head's width, 1024-1280, fits in one block).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def modulated_layer_norm(
    x_ptr, scale_ptr, shift_ptr, out_ptr, rows, x_rows, mod_stride, width, eps, ROWS: tl.constexpr, BLOCK: tl.constexpr
):
    """out[r] = layer_norm(x[r % x_rows]) * scale[r] + shift[r] (AdaLN-modulate; ``scale`` is 1 + scale)."""
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    inside = (r < rows) & (cols < width)
    x = tl.load(x_ptr + (r % x_rows) * width + cols, mask=inside, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1)[:, None] / width
    centred = tl.where(inside, x - mean, 0.0)
    normed = centred * tl.rsqrt(tl.sum(centred * centred, axis=1)[:, None] / width + eps)
    scale = tl.load(scale_ptr + r * mod_stride + cols, mask=inside, other=0.0).to(tl.float32)
    shift = tl.load(shift_ptr + r * mod_stride + cols, mask=inside, other=0.0).to(tl.float32)
    tl.store(out_ptr + r * width + cols, (normed * scale + shift).to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def linear(
    a_ptr,
    w_ptr,
    bias_ptr,
    out_ptr,
    rows,
    n_out,
    n_in,
    SILU: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """out = a @ w + bias, then SiLU if ``SILU``. ``a`` [rows, n_in] (cast to w's dtype, as the
    eager head casts the float32 tokens), ``w`` [n_in, n_out] (the head keeps weights transposed)."""
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, n_in, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(
            a_ptr + rm[:, None] * n_in + rk[None, :], mask=(rm[:, None] < rows) & (rk[None, :] < n_in), other=0.0
        )
        w = tl.load(
            w_ptr + rk[:, None] * n_out + rn[None, :], mask=(rk[:, None] < n_in) & (rn[None, :] < n_out), other=0.0
        )
        acc += tl.dot(a.to(w.dtype), w, input_precision=PRECISION)
    acc += tl.load(bias_ptr + rn, mask=rn < n_out, other=0.0).to(tl.float32)[None, :]
    if SILU:
        acc = acc * tl.sigmoid(acc)
    tl.store(
        out_ptr + rm[:, None] * n_out + rn[None, :],
        acc.to(out_ptr.dtype.element_ty),
        mask=(rm[:, None] < rows) & (rn[None, :] < n_out),
    )


@triton.jit
def norm_gate_residual(
    h_ptr,
    weight_ptr,
    bias_ptr,
    gate_ptr,
    x_ptr,
    out_ptr,
    rows,
    x_rows,
    mod_stride,
    width,
    eps,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """out[r] = x[r % x_rows] + layer_norm(h[r]; weight, bias) * gate[r] (the block's output)."""
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    inside = (r < rows) & (cols < width)
    h = tl.load(h_ptr + r * width + cols, mask=inside, other=0.0).to(tl.float32)
    mean = tl.sum(h, axis=1)[:, None] / width
    centred = tl.where(inside, h - mean, 0.0)
    normed = centred * tl.rsqrt(tl.sum(centred * centred, axis=1)[:, None] / width + eps)
    weight = tl.load(weight_ptr + cols, mask=cols < width, other=0.0).to(tl.float32)
    bias = tl.load(bias_ptr + cols, mask=cols < width, other=0.0).to(tl.float32)
    gate = tl.load(gate_ptr + r * mod_stride + cols, mask=inside, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + (r % x_rows) * width + cols, mask=inside, other=0.0).to(tl.float32)
    out = x + (normed * weight + bias) * gate
    tl.store(out_ptr + r * width + cols, out.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def guided_step(
    pred_ptr,
    x_ptr,
    noise_ptr,
    out_ptr,
    numel,
    a,
    b,
    std,
    scale,
    TWO_PASSES: tl.constexpr,
    NOISE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Guidance and scheduler step: eps = uncond + scale * (cond - uncond) (two passes stacked in
    ``pred``) or pred; out = a * x + b * eps (+ std * noise)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < numel
    eps = tl.load(pred_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    if TWO_PASSES:
        uncond = tl.load(pred_ptr + numel + offs, mask=inside, other=0.0).to(tl.float32)
        eps = uncond + scale * (eps - uncond)
    out = a * tl.load(x_ptr + offs, mask=inside, other=0.0) + b * eps
    if NOISE:
        out += std * tl.load(noise_ptr + offs, mask=inside, other=0.0)
    tl.store(out_ptr + offs, out, mask=inside)

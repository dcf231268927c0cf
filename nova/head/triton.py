"""The diffusion head's per-step work as a few fused Triton kernels (off: slower than the default
on an H200, see nova/speed/options.py).

The eager fused head (:class:`nova.head.prepared.HeadPlan`) runs ~7 small operations per block and ~30 per
diffusion step; here a step is 4 kernels per block plus 4 (patch embed, final AdaLN, output
linear, guidance + scheduler step): 16 for the 3-block heads.

- AdaLN-modulate + LayerNorm:              ``layer_norm(x) * (1 + scale) + shift``
- fc1 + SiLU (and the plain linears):      ``silu(h @ w1 + b1)``
- fc2:                                     ``h @ w2 + b2``
- LayerNorm(affine) + gate + residual:     ``x + norm2(h) * gate``
- guidance + scheduler step:               ``a * x + b * (uncond + s * (cond - uncond)) (+ std * noise)``

Off by default (``Accel.triton_head``): it is NOT YET MEASURED on a GPU, so it must not replace the
eager head until bench/gpu_run.sh shows it faster there. It runs only where Triton can: on CUDA
with triton importable, or anywhere under ``TRITON_INTERPRET=1`` (the CPU tests). Elsewhere the
eager head is used. Importing this module does not import triton; :func:`load` does.
"""

from __future__ import annotations

import importlib.util
import logging
import os

import torch

log = logging.getLogger("nova")


def usable(device: torch.device) -> bool:
    """Whether the Triton head can run on ``device``: CUDA with triton installed, or the Triton
    interpreter (``TRITON_INTERPRET=1``, which runs kernels on CPU tensors)."""
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return False
    return importlib.util.find_spec("triton") is not None


def load(head) -> "TritonHead | None":
    """A :class:`TritonHead` over the prepared eager head ``head`` (a fused ``HeadPlan``), or
    ``None`` (with a log line) where Triton cannot run on its device."""
    device = head.out[1].device
    if not usable(device):
        log.info("NOVA: the Triton head needs CUDA and triton (device: %s); using the eager head.", device.type)
        return None
    return TritonHead(head)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` as rows of equal stride (the AdaLN modulations are column slices of one product)."""
    if t.stride(-1) != 1 or (t.dim() == 3 and t.stride(0) != t.shape[1] * t.stride(1)):
        return t.contiguous()
    return t


class TritonHead:
    """The fused head's forward and the guided scheduler step as Triton kernels. Same inputs and
    outputs as ``HeadPlan.__call__``; the weights are the eager head's tensors (no copy)."""

    # Tile sizes (tl.dot needs >= 16 per side). Untuned: the GPU run should tune them. The
    # interpreter runs each program in Python, so it gets big tiles (same kernels, fewer programs).
    block_m, block_n, block_k, rows_per_program = 16, 64, 32, 4
    if os.environ.get("TRITON_INTERPRET") == "1":
        block_m, block_n, block_k, rows_per_program = 64, 128, 128, 64

    def __init__(self, head):
        from . import triton_kernels  # imports triton

        self.k = triton_kernels
        self.head = head
        self.width = head.width
        self.block = max(16, 1 << (self.width - 1).bit_length())

    # -- one kernel each --------------------------------------------------------------------

    def linear(self, a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, silu: bool = False) -> torch.Tensor:
        rows, n_in = a.shape
        out = torch.empty(rows, w.shape[1], device=w.device, dtype=w.dtype)
        grid = (triton_cdiv(rows, self.block_m), triton_cdiv(w.shape[1], self.block_n))
        precision = "ieee" if w.dtype == torch.float32 else "tf32"  # fp32 stays fp32 (no TF32 rounding)
        self.k.linear[grid](
            a.contiguous(),
            w,
            bias,
            out,
            rows,
            w.shape[1],
            n_in,
            SILU=silu,
            PRECISION=precision,
            BLOCK_M=self.block_m,
            BLOCK_N=self.block_n,
            BLOCK_K=self.block_k,
        )
        return out

    def modulated_layer_norm(self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """``layer_norm(x) * scale + shift``; x [R, D] or [P, R, D], scale/shift [P, R, D] -> [P, R, D]."""
        scale, shift = _rows(scale), _rows(shift)
        assert scale.stride() == shift.stride()
        out = torch.empty(scale.shape, device=scale.device, dtype=scale.dtype)
        return self._by_rows(self.k.modulated_layer_norm, (x.contiguous(), scale, shift), out, x, scale, 1e-6)

    def norm_gate_residual(self, h, weight, bias, eps, gate, x) -> torch.Tensor:
        """``x + layer_norm(h; weight, bias) * gate``; h and gate [P, R, D], x [R, D] or [P, R, D]."""
        gate = _rows(gate)
        out = torch.empty(gate.shape, device=gate.device, dtype=x.dtype)
        inputs = (h.contiguous(), weight, bias, gate, x.contiguous())
        return self._by_rows(self.k.norm_gate_residual, inputs, out, x, gate, eps)

    def _by_rows(self, kernel, inputs: tuple, out: torch.Tensor, x: torch.Tensor, modulation, eps: float):
        """Launch a layer-norm kernel over the rows of ``out`` [P, R, D], ``rows_per_program`` a
        program: ``x`` has R rows, or P * R; ``modulation`` (rows of equal stride) gives the row stride
        of the modulations."""
        rows = out.numel() // self.width
        grid = (triton_cdiv(rows, self.rows_per_program),)
        kernel[grid](
            *inputs,
            out,
            rows,
            x.numel() // self.width,
            modulation.stride(-2),
            self.width,
            eps,
            ROWS=self.rows_per_program,
            BLOCK=self.block,
        )
        return out

    def step(self, pred: torch.Tensor, x: torch.Tensor, noise, coeffs: tuple, scale: float) -> torch.Tensor:
        """One guided scheduler step: ``pred`` [passes (1 or 2), B, n, ppC] head output, ``x``
        [B, n, ppC] float32, ``coeffs`` the StepPlan's (a, b, std)."""
        a, b, std = coeffs
        passes = pred.shape[0]
        if passes not in (1, 2):
            raise ValueError(f"the Triton step combines 1 or 2 guidance passes, got {passes}")
        x = x.contiguous()
        out = torch.empty_like(x)
        numel, block = x.numel(), 1024
        with_noise = std is not None
        self.k.guided_step[(triton_cdiv(numel, block),)](
            pred.contiguous(),
            x,
            noise.contiguous() if with_noise else x,
            out,
            numel,
            float(a),
            float(b),
            float(std or 0.0),
            float(scale),
            TWO_PASSES=passes == 2,
            NOISE=with_noise,
            BLOCK=block,
        )
        return out

    # -- the head ---------------------------------------------------------------------------

    def __call__(self, tokens: torch.Tensor, mods: tuple) -> torch.Tensor:
        """Head output for ``tokens`` [B, n, ppC] (float32) under one step's modulations, as
        [passes, B, n, ppC] in the model's dtype (what ``HeadPlan.__call__`` returns)."""
        head, d = self.head, self.width
        passes, (b, n, ppc) = mods[0].shape[0], tokens.shape
        x = self.linear(tokens.reshape(b * n, ppc), head.embed[1], head.embed[0])  # [B*n, D], shared by the passes
        for k, (b1, w1, b2, w2, nw, nb, eps) in enumerate(head.blocks):
            scale, shift, gate = mods[3 * k : 3 * k + 3]
            h = self.modulated_layer_norm(x, scale, shift).view(-1, d)
            h = self.linear(self.linear(h, w1, b1, silu=True), w2, b2)
            x = self.norm_gate_residual(h, nw, nb, eps, gate, x)  # [P, B*n, D]
        scale, shift = mods[-2:]
        h = self.modulated_layer_norm(x, scale, shift).view(-1, d)
        return self.linear(h, head.out[1], head.out[0]).view(passes, b, n, ppc)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)

"""How the spatial encoder computes: its attention backend and its linear layers. The spatial
encoder is 97% of a video's FLOPs, so this is where the speed modes act. None of them is offered to
users while no GPU run shows it faster than the default (nova/speed/options.py).

Exact modes (same latents as the default, up to the rounding of another attention kernel):
- ``attention="auto"``: PyTorch picks the SDPA kernel (the default).
- ``attention="flash" | "cudnn" | "efficient" | "math"``: that SDPA kernel only. Which is fastest
  for NOVA's shapes is measured by bench/gpu_run.sh; a kernel that cannot run on the device,
  dtype or head size is refused before sampling starts.

- ``compile_encoder=True``: the blocks through ``torch.compile`` (Inductor fuses the LayerNorms,
  GELU and bias adds into the products' neighbours). Same arithmetic, other rounding; the first
  set steps of a run wait for the compilation (once per process and token-count shape family).

Optional modes that change the latents (never the default; bench/speed_modes.py reports by how
much):
- ``attention="sage"``: SageAttention (8-bit Q/K), when the user has installed ``sageattention``.
  It is imported only when chosen.
- ``fp8_matmuls=True``: every linear layer of the spatial encoder's blocks as an fp8 (e4m3)
  matrix product, ``torch._scaled_mm``: weights quantized once per run with a scale per output
  channel, activations per token at each call; float32 accumulation. Hopper and Ada GPUs run it
  on their fp8 tensor cores (Ada with one scale per tensor: its cuBLAS has no row-wise scales);
  the CPU runs the same arithmetic, slowly (the tests and the difference report use it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import os
import shutil
from typing import Dict, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from ..models.vit import EagerKernels
from .options import check_mode

_BACKENDS = {"flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "math": "MATH"}
FP8 = getattr(torch, "float8_e4m3fn", None)
_FP8_MAX = 448.0  # largest finite float8_e4m3fn


# -- fp8 matrix products ------------------------------------------------------------------------
def quantize_rows(x: torch.Tensor, rowwise: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """``x`` [M, K] as float8_e4m3fn and its float32 scale ([M, 1], or one scale when not
    ``rowwise``): ``x ~= q * scale``, each row's (or the tensor's) largest magnitude mapped to 448."""
    xf = x.float()
    amax = xf.abs().amax(dim=-1, keepdim=True) if rowwise else xf.abs().amax()
    scale = amax.clamp(min=1e-12) / _FP8_MAX
    return (xf / scale).to(FP8), scale


def fp8_rowwise_supported(device: torch.device) -> bool:
    """Row-wise scales need the CPU kernel or CUDA compute capability >= 9.0 (Hopper)."""
    return device.type != "cuda" or torch.cuda.get_device_capability(device) >= (9, 0)


def check_fp8_device(device: torch.device) -> None:
    if FP8 is None or not hasattr(torch, "_scaled_mm"):
        raise InputError(
            f"fp8 matmuls need PyTorch with float8 and torch._scaled_mm (this is {torch.__version__}); "
            "upgrade PyTorch or turn fp8 matmuls off."
        )
    if device.type == "cuda":
        cap = torch.cuda.get_device_capability(device)
        if cap < (8, 9):
            raise InputError(
                f"fp8 matmuls need an Ada or Hopper GPU (compute capability 8.9 or newer); "
                f"{torch.cuda.get_device_name(device)} is {cap[0]}.{cap[1]}. Turn fp8 matmuls off."
            )
    elif device.type != "cpu":
        raise InputError(
            f"fp8 matmuls run on CUDA (Ada/Hopper) and, slowly, on the CPU; not on {device.type}. Turn fp8 matmuls off."
        )


@dataclasses.dataclass(frozen=True)
class Fp8Product:
    """One linear layer's weight in fp8: ``weight_t`` [K, N] (column-major, as _scaled_mm wants
    its second operand), its float32 scale ([1, N], or one), the bias in the compute dtype."""

    weight_t: torch.Tensor
    scale: torch.Tensor
    bias: Optional[torch.Tensor]
    rowwise: bool

    @classmethod
    def prepare(cls, layer: nn.Module, device, dtype, rowwise: bool) -> "Fp8Product":
        n, k = layer.weight.shape
        if torch.device(device).type == "cuda" and (n % 16 or k % 16):
            raise InputError(
                f"fp8 matmuls need layer sizes that are multiples of 16 on CUDA; this model has a "
                f"{k} -> {n} linear layer. Turn fp8 matmuls off."
            )
        w = layer.weight.to(device=device, dtype=torch.float32)  # (a host may keep it elsewhere)
        q, scale = quantize_rows(w, rowwise)
        bias = None if layer.bias is None else layer.bias.to(device=device, dtype=dtype)
        return cls(q.t(), scale.reshape(1, -1) if rowwise else scale, bias, rowwise)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lead, k = x.shape[:-1], x.shape[-1]
        q, scale = quantize_rows(x.reshape(-1, k), self.rowwise)
        scale_b = self.scale
        if not self.rowwise and q.device.type == "cpu":
            # The same per-tensor scales, spelled per row and column: the CPU's per-tensor kernel
            # is ~10x slower (it seems to rebuild itself for every scale value).
            # (repeat, not expand: the kernel wants unit strides, even for a single row)
            scale, scale_b = (
                scale.reshape(1, 1).repeat(q.shape[0], 1),
                scale_b.reshape(1, 1).repeat(1, self.weight_t.shape[1]),
            )
        # CUDA's row-wise kernel writes bfloat16 only (fp16/fp32 models convert back)
        out_dtype = torch.bfloat16 if self.rowwise and q.device.type == "cuda" else x.dtype
        out = torch._scaled_mm(q, self.weight_t, scale_a=scale, scale_b=scale_b, out_dtype=out_dtype).to(x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*lead, out.shape[-1])


# -- the kernels object the blocks call ---------------------------------------------------------
class SpatialKernels(EagerKernels):
    """The spatial encoder's blocks, linear layers and attention for one run (see the module
    docstring); what a mode leaves alone runs as :class:`EagerKernels` does. Built by
    :meth:`build`; the default mode is ``None`` there (the blocks' eager kernels)."""

    def __init__(self, attention: str, fp8: Optional[Dict[nn.Module, Fp8Product]], sage=None, compiled: bool = False):
        self.attention_name, self.fp8, self._sage, self.compiled = attention, fp8, sage, compiled

    @classmethod
    def build(
        cls, model, attention: str = "auto", fp8_matmuls: bool = False, compile_encoder: bool = False
    ) -> Optional["SpatialKernels"]:
        if attention == "auto" and not fp8_matmuls and not compile_encoder:
            return None
        device, dtype = model.device, model.dtype
        sage = check_runnable(attention, fp8_matmuls, compile_encoder, device, dtype, model.config)
        fp8 = None
        if fp8_matmuls:
            rowwise = fp8_rowwise_supported(device)
            fp8 = {}
            for blk in model.image_encoder.blocks:
                for layer in (blk.attn.qkv, blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2):
                    fp8[layer] = Fp8Product.prepare(layer, device, dtype, rowwise)
        return cls(attention, fp8, sage, compile_encoder)

    def block(self, blk: nn.Module, x: torch.Tensor, rot, rows=None) -> torch.Tensor:
        if self.compiled:
            return compiled_block()(blk, x, rot, rows, self)
        return super().block(blk, x, rot, rows)

    def linear(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        prepared = None if self.fp8 is None else self.fp8.get(layer)
        return super().linear(layer, x) if prepared is None else prepared(x)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self._sage is not None:
            # (sageattn subtracts the keys' mean in place: it gets a copy, ours stay as computed)
            return self._sage(q, k.clone(), v, tensor_layout="HND", is_causal=False)
        return super().attention(q, k, v)

    def encode(self, model, *args, **kwargs) -> torch.Tensor:
        """``model.encode_image`` under these kernels (and the chosen SDPA kernel, if one was)."""
        with sdpa_scope(self.attention_name):
            return model.encode_image(*args, kernels=self, **kwargs)


def check_runnable(attention: str, fp8_matmuls: bool, compile_encoder: bool, device, dtype, config):
    """Every check of a mode that the device, dtype and the checkpoint's attention head size decide
    (front ends call it before loading weights); returns SageAttention's function when it is chosen."""
    check_mode(attention, fp8_matmuls, compile_encoder)
    device = torch.device(device)
    sage = None
    if attention == "sage":
        sage = load_sage(device, dtype)
    elif attention != "auto":
        check_sdpa_backend(attention, device, dtype, config.image_encoder.width // config.image_encoder.heads)
    if fp8_matmuls:
        check_fp8_device(device)
    if compile_encoder:
        check_compile(device)
    return sage


def check_compile(device: torch.device) -> None:
    """Refuse, before sampling, a torch.compile that cannot build kernels for ``device``: Inductor
    needs Triton for CUDA and a C++ compiler for the CPU."""
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            raise InputError(
                "compiling the encoder on CUDA needs Triton, which is not installed in this Python "
                "(pip install triton; on Windows: triton-windows). Turn compilation off."
            )
    elif device.type == "cpu":
        compilers = [os.environ.get("CXX", ""), "c++", "g++", "clang++", "cl"]
        if not any(c and shutil.which(c) for c in compilers):
            raise InputError(
                "compiling the encoder on the CPU needs a C++ compiler (g++, clang++ or MSVC's cl) on the "
                "PATH, or CXX set to one. Turn compilation off."
            )
    else:
        raise InputError(f"compiling the encoder runs on CUDA and the CPU, not on {device.type}. Turn compilation off.")


def _run_block(blk, x, rot, rows, kernels):
    # The SDPA kernel is chosen inside the compiled function: a choice made outside is baked into
    # the first graph and never checked again.
    with sdpa_scope(kernels.attention_name):
        return blk(x, rot, rows=rows, kernels=kernels)[0]


@functools.lru_cache(maxsize=None)
def compiled_block():
    """``_run_block`` through torch.compile, built once per process: every block of a model shares
    its graphs (the weights are inputs, not constants), and every size is symbolic (the token
    counts change at every set step), so a model compiles about two graphs once. PyTorch keeps 8
    per function by default: a process that compiles more than ~4 model configurations runs the
    later ones eagerly (same results), with PyTorch's recompile-limit warning."""
    return torch.compile(_run_block, dynamic=True)


def sdpa_scope(name: str):
    if name not in _BACKENDS:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel  # (PyTorch >= 2.3)

    return sdpa_kernel([getattr(SDPBackend, _BACKENDS[name])])


def check_sdpa_backend(name: str, device: torch.device, dtype: torch.dtype, head_dim: int) -> None:
    """Refuse, before sampling, an SDPA kernel that cannot take this device, dtype and head size
    (PyTorch would fail at the first set step)."""
    q = torch.zeros(1, 1, 16, head_dim, device=device, dtype=dtype)
    try:
        with sdpa_scope(name):
            F.scaled_dot_product_attention(q, q, q)
    except (RuntimeError, ImportError) as exc:
        reason = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"attention = {name!r} cannot run here ({device.type}, {str(dtype).replace('torch.', '')}, "
            f"head size {head_dim}): {reason}. Choose 'auto' (PyTorch picks a kernel that can)."
        ) from None


def load_sage(device: torch.device, dtype: torch.dtype):
    """SageAttention's ``sageattn``, imported now (never unless chosen), or a clear error."""
    try:
        module = importlib.import_module("sageattention")
    except ImportError as exc:
        raise InputError(
            f"attention = 'sage' needs the sageattention package, which is not importable here ({exc}). "
            "Install it into this Python (pip install sageattention) or choose 'auto'."
        ) from None
    fn = getattr(module, "sageattn", None)
    if fn is None:
        raise InputError("the installed sageattention package has no sageattn function; update it or choose 'auto'.")
    if device.type != "cuda":
        raise InputError(
            f"attention = 'sage' (SageAttention) runs on CUDA GPUs only; this model is on {device.type}. Choose 'auto'."
        )
    if dtype not in (torch.float16, torch.bfloat16):
        raise InputError(
            f"attention = 'sage' needs the model in float16 or bfloat16, not {str(dtype).replace('torch.', '')}."
        )
    return fn

"""The spatial encoder's speed modes as front ends name them (no torch import: the CLI builds its
parser from these). What each mode does is in nova/spatial_kernels.py."""

from __future__ import annotations

from .errors import InputError

EXACT_ATTENTION = ("auto", "flash", "cudnn", "efficient", "math")
LOSSY_ATTENTION = ("sage",)
ATTENTION_CHOICES = EXACT_ATTENTION + LOSSY_ATTENTION


def check_attention(name: str) -> str:
    if name not in ATTENTION_CHOICES:
        raise InputError(f"attention = {name!r}; expected one of {', '.join(ATTENTION_CHOICES)} "
                         "(auto lets PyTorch choose; sage needs the sageattention package and changes the latents).")
    return name


def check_mode(attention: str, fp8_matmuls: bool, compile_encoder: bool) -> None:
    check_attention(attention)
    if compile_encoder and (fp8_matmuls or attention in LOSSY_ATTENTION):
        raise InputError("compiling the encoder works with the exact modes only (attention auto, flash, cudnn, efficient, "
                         "math); turn off fp8 matmuls and SageAttention, or compilation.")


def add_speed_arguments(parser) -> None:
    """--attention, --fp8-matmuls and --compile (generate and batch)."""
    parser.add_argument("--attention", choices=ATTENTION_CHOICES, default="auto",
                        help="the spatial encoder's attention kernel: auto (PyTorch picks), flash, cudnn, efficient, math "
                             "(same latents up to rounding), or sage (SageAttention if installed; CUDA; other latents)")
    parser.add_argument("--fp8-matmuls", action="store_true",
                        help="the spatial encoder's linear layers as fp8 products (Ada/Hopper GPUs; faster, other latents)")
    parser.add_argument("--compile", action="store_true", dest="compile_encoder",
                        help="the spatial encoder's blocks through torch.compile (same latents up to rounding; the first "
                             "set steps wait for the compilation; not with --fp8-matmuls or --attention sage)")

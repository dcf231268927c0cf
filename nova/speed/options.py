"""The spatial encoder's speed modes as front ends name them (no torch import: the CLI builds its
parser from these). What each mode does is in nova/speed/spatial_kernels.py."""

from __future__ import annotations

from ..errors import InputError

EXACT_ATTENTION = ("auto", "flash", "cudnn", "efficient", "math")
LOSSY_ATTENTION = ("sage",)
ATTENTION_CHOICES = EXACT_ATTENTION + LOSSY_ATTENTION


def check_attention(name: str) -> str:
    if name not in ATTENTION_CHOICES:
        raise InputError(
            f"attention = {name!r}; expected one of {', '.join(ATTENTION_CHOICES)} "
            "(auto lets PyTorch choose; sage needs the sageattention package and changes the latents)."
        )
    return name


def check_mode(attention: str, fp8_matmuls: bool, compile_encoder: bool) -> None:
    check_attention(attention)
    if compile_encoder and (fp8_matmuls or attention in LOSSY_ATTENTION):
        raise InputError(
            "compiling the encoder works with the exact modes only (attention auto, flash, cudnn, efficient, "
            "math); turn off fp8 matmuls and SageAttention, or compilation."
        )


# Which modes users are offered (the NOVA Speed Mode node, the CLI, the README): only those that a GPU
# run showed faster than the default path. The rest stay in the engine, reachable through Accel, so
# bench/gpu_check.py can measure them again after a change; each has a plausible way to become faster
# (fp8 and SageAttention with fused quantization, compiled blocks with static shapes, a Triton head
# with fewer launches). On an H200, 2026-12-04 (bench/results/gpu-check-h200.md), every mode was slower
# than the default, and 'cudnn' is the kernel 'auto' already picks: none is offered.
OFFERED_ATTENTION = ("auto",)
OFFER_FP8_MATMULS = False
OFFER_COMPILE = False
EVIDENCE = "bench/results/gpu-check-h200.md (H200, 2026-12-04)"


def check_offered(attention: str, fp8_matmuls: bool, compile_encoder: bool) -> None:
    """Refuse a mode that no GPU run has shown faster than the default (front ends call this)."""
    refused = []
    if attention not in OFFERED_ATTENTION:
        refused.append(f"attention = {attention!r}")
    if fp8_matmuls and not OFFER_FP8_MATMULS:
        refused.append("fp8 matmuls")
    if compile_encoder and not OFFER_COMPILE:
        refused.append("compiled blocks")
    if refused:
        raise InputError(
            f"{' and '.join(refused)} is not offered: measured on a GPU it made NOVA slower than the default "
            f"path ({EVIDENCE}). Leave the speed mode at its default (attention auto, no fp8, no compile); "
            "the default path is the fastest measured."
        )


def add_speed_arguments(parser) -> None:
    """--attention, --fp8-matmuls and --compile (generate and batch). Kept so that existing command lines
    still parse; hidden from --help while no mode beyond the default is offered (check_offered)."""
    import argparse

    def shown(text: str) -> str:
        return text if len(OFFERED_ATTENTION) > 1 or OFFER_FP8_MATMULS or OFFER_COMPILE else argparse.SUPPRESS

    parser.add_argument(
        "--attention",
        choices=ATTENTION_CHOICES,
        default="auto",
        help=shown("the spatial encoder's attention kernel (" + ", ".join(OFFERED_ATTENTION) + ")"),
    )
    parser.add_argument(
        "--fp8-matmuls", action="store_true", help=shown("the spatial encoder's linears as fp8 products")
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        dest="compile_encoder",
        help=shown("the spatial encoder's blocks through torch.compile"),
    )

"""Which device and dtype to run on: the machine's best device when none is named, a named one
checked against what this machine has, and the dtype a device runs natively."""

from __future__ import annotations

import torch

from .errors import InputError


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def check_device(device) -> torch.device:
    """A device string or object that exists on this machine, else an InputError saying which do."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device = {device!r} is not a device name; use cpu, cuda, cuda:N or mps.") from exc
    available = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (["mps"] if _mps_available() else [])
    if dev.type not in available:
        raise InputError(
            f"device = {device!r}: {dev.type} is not available on this machine; available: {', '.join(available)}."
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device = {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    return dev


def auto_dtype(device) -> torch.dtype:
    """bf16 where the device runs it natively (CUDA with bf16 support), else fp32. fp16 is never
    chosen: NOVA overflows in fp16 on some prompts."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32

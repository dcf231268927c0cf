"""Loaders for the transformer and the scheduler of a checkpoint folder."""

from __future__ import annotations

import os

import torch
from torch import nn

from .config import NovaConfig, load_config, read_json
from .errors import ConfigError
from .loading import load_module, weight_files
from .models.transformer import NovaTransformer

SCHEDULERS = ("DDPMScheduler", "FlowMatchEulerDiscreteScheduler")


def load_transformer(folder: str, device="cpu", dtype=torch.float32, ops=nn) -> NovaTransformer:
    """Load ``<checkpoint>/transformer`` (or a folder laid out like it)."""
    config = load_config(os.path.join(folder, "config.json"))
    files = weight_files(folder, "diffusion_pytorch_model")
    return load_module(lambda: NovaTransformer(config, ops=ops), files, folder, device, dtype)


def build_transformer(config: NovaConfig, device="cpu", dtype=torch.float32, ops=nn) -> NovaTransformer:
    """A transformer with freshly initialised weights (tests, tiny checkpoints, benchmarks)."""
    with torch.device(device):
        model = NovaTransformer(config, ops=ops)
    return model.to(dtype).eval().requires_grad_(False)


def load_scheduler(folder: str):
    """The diffusers scheduler named in ``scheduler_config.json`` (DDPM or flow-matching Euler)."""
    path = os.path.join(folder, "scheduler_config.json")
    config = read_json(path)
    name = config.get("_class_name")
    if name not in SCHEDULERS:
        raise ConfigError(f"{path}: _class_name = {name!r}; NOVA checkpoints use one of {list(SCHEDULERS)}.")
    import diffusers

    return getattr(diffusers, name).from_config(config)

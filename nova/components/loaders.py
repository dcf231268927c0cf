"""Loaders for the transformer and the scheduler of a checkpoint folder."""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import ConfigError
from ..models.transformer import NovaTransformer
from .config import NovaConfig, load_config, read_json
from .loading import load_module, weight_files

SCHEDULERS = ("DDPMScheduler", "FlowMatchEulerDiscreteScheduler")


def load_transformer(folder: str, device="cpu", dtype=torch.float32, ops=nn) -> NovaTransformer:
    """Load ``<checkpoint>/transformer`` (or a folder laid out like it)."""
    config = load_config(os.path.join(folder, "config.json"))
    files = weight_files(folder, "diffusion_pytorch_model")
    depths = [
        ("video_encoder.blocks", config.video_encoder.depth, f"arch[0] {config.arch_names[0]!r}: depth"),
        ("image_encoder.blocks", config.image_encoder.depth, f"arch[1] {config.arch_names[1]!r}: depth"),
        ("image_decoder.blocks", config.diffusion_head.depth, f"arch[2] {config.arch_names[2]!r}: depth"),
    ]
    return load_module(
        lambda: NovaTransformer(config, ops=ops),
        files,
        folder,
        device,
        dtype,
        config_path=os.path.join(folder, "config.json"),
        depths=depths,
    )


def build_transformer(config: NovaConfig, device="cpu", dtype=torch.float32, ops=nn) -> NovaTransformer:
    """A transformer with freshly initialised weights (tests, tiny checkpoints, benchmarks)."""
    with torch.device(device):
        model = NovaTransformer(config, ops=ops)
    return model.to(dtype).eval().requires_grad_(False)


_INT, _NUM, _STR, _BOOL = "an integer", "a number", "a string", "true or false"
_SCHEDULER_KEYS = {
    "num_train_timesteps": _INT,
    "beta_start": _NUM,
    "beta_end": _NUM,
    "beta_schedule": _STR,
    "prediction_type": _STR,
    "variance_type": _STR,
    "timestep_spacing": _STR,
    "steps_offset": _INT,
    "clip_sample": _BOOL,
    "clip_sample_range": _NUM,
    "thresholding": _BOOL,
    "rescale_betas_zero_snr": _BOOL,
    "shift": _NUM,
    "use_dynamic_shifting": _BOOL,
    "base_shift": _NUM,
    "max_shift": _NUM,
}


def _has_type(value, kind: str) -> bool:
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _STR:
        return isinstance(value, str)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_scheduler(folder: str):
    """The diffusers scheduler named in ``scheduler_config.json`` (DDPM or flow-matching Euler)."""
    path = os.path.join(folder, "scheduler_config.json")
    config = read_json(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(config).__name__}.")
    name = config.get("_class_name")
    if name not in SCHEDULERS:
        raise ConfigError(f"{path}: _class_name = {name!r}; NOVA checkpoints use one of {list(SCHEDULERS)}.")
    for key, kind in _SCHEDULER_KEYS.items():
        if config.get(key) is not None and not _has_type(config[key], kind):
            raise ConfigError(f"{path}: key {key!r} = {config[key]!r}; expected {kind}.")
    import diffusers

    try:  # build and set up once, so a bad value fails here and not in the middle of a run
        scheduler = getattr(diffusers, name).from_config(config)
        scheduler.set_timesteps(2)
    except (
        TypeError,
        ValueError,
        KeyError,
        AttributeError,
        NotImplementedError,
        ZeroDivisionError,
        RuntimeError,
    ) as exc:
        raise ConfigError(f"{path}: the scheduler config is not usable ({type(exc).__name__}: {exc}).") from exc
    return scheduler  # (every run sets its own timesteps first)

"""What flows between NOVA nodes: loaded models (wrapped for the host's memory manager) and the
conversions between ComfyUI LATENT dicts (raw VAE space) and the transformer's scaled latents."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch

from ..nova.config import NovaConfig
from ..nova.errors import InputError


@dataclasses.dataclass(frozen=True)
class NovaModel:
    """NOVA_MODEL: the transformer (inside ``patcher``) and the checkpoint's scheduler template."""

    patcher: Any
    scheduler: Any
    config: NovaConfig
    name: str
    latent_scale: float  # scaling_factor of the checkpoint's VAE: transformer latents = raw * scale
    latent_shift: float = 0.0
    latent_format: str = "sd15"  # latent2rgb preview factors

    @property
    def transformer(self):
        return self.patcher.model.module

    def to_model_space(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw.float() - self.latent_shift) * self.latent_scale

    def to_raw(self, scaled: torch.Tensor) -> torch.Tensor:
        return scaled.float() / self.latent_scale + self.latent_shift


@dataclasses.dataclass(frozen=True)
class NovaTextEncoder:
    """NOVA_TEXT_ENCODER: Phi-2 (inside ``patcher``) and its tokenizer."""

    patcher: Any
    tokenizer: Any
    name: str


@dataclasses.dataclass(frozen=True)
class NovaVaeHandle:
    """NOVA_VAE: the autoencoder (inside ``patcher``) and its interface object."""

    patcher: Any
    vae: Any  # nova.vae.NovaVAE
    name: str


def latent_samples(latent: Optional[dict], model: NovaModel) -> Optional[torch.Tensor]:
    """A LATENT dict -> scaled transformer latents [B, C, T, h, w], checked against the model."""
    if latent is None:
        return None
    if not isinstance(latent, dict) or "samples" not in latent:
        raise InputError("latents must be a ComfyUI LATENT (a dict with 'samples').")
    samples = latent["samples"]
    samples = samples.unsqueeze(2) if samples.dim() == 4 else samples
    cfg = model.config
    expected = (cfg.image_dim,) + tuple(cfg.latent_size)
    if samples.dim() != 5 or (samples.shape[1],) + tuple(samples.shape[3:]) != expected:
        got = list(samples.shape)
        raise InputError(
            f"latents of shape {got} do not fit checkpoint '{model.name}', which needs [B, {expected[0]}, T, "
            f"{expected[1]}, {expected[2]}] ({cfg.image_size[1]}x{cfg.image_size[0]} pixels). Were they made by "
            "another checkpoint or an image of another size? Encode with NOVA VAE Encode (it crops/resizes)."
        )
    return model.to_model_space(samples)


def make_latent(scaled: torch.Tensor, model: NovaModel, device, fps: float) -> dict:
    """Scaled transformer latents -> a LATENT dict in raw VAE space on ``device``."""
    return {"samples": model.to_raw(scaled).to(device), "nova_fps": float(fps)}


def match_batch(prefix: Optional[torch.Tensor], batch: int) -> Optional[torch.Tensor]:
    """Given latents for a prompt batch: one video serves every prompt, else the batches must match."""
    if prefix is None or prefix.shape[0] == batch:
        return prefix
    if prefix.shape[0] != 1:
        raise InputError(f"latents have batch {prefix.shape[0]} but the prompt batch is {batch}.")
    return prefix.expand(batch, -1, -1, -1, -1)

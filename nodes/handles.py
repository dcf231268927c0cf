"""What flows between NOVA nodes: loaded models (wrapped for the host's memory manager) and the
conversions between ComfyUI LATENT dicts (raw VAE space) and the transformer's scaled latents."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch

from ..nova.components.config import NovaConfig
from ..nova.errors import InputError


@dataclasses.dataclass(frozen=True)
class NovaModel:
    """NOVA_MODEL: the transformer (inside ``patcher``), the checkpoint's scheduler template and
    the host that manages it."""

    patcher: Any
    scheduler: Any
    config: NovaConfig
    name: str
    host: Any  # nodes.host.Host
    latent_scale: float  # scaling_factor of the checkpoint's VAE: transformer latents = raw * scale
    latent_shift: float = 0.0
    latent_format: str = "sd15"  # latent2rgb preview factors
    latent_space: str = ""  # nova.components.vae.latent_space_id of the checkpoint's VAE (LATENT "nova_latent_format")
    accel: Any = None  # nova.sampling.fast.Accel from NOVA Speed Mode (None: the default fast path)

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
    host: Any


@dataclasses.dataclass(frozen=True)
class NovaVaeHandle:
    """NOVA_VAE: the autoencoder (inside ``patcher``) and its interface object."""

    patcher: Any
    vae: Any  # nova.components.vae.NovaVAE
    name: str
    host: Any

    @property
    def latent_space(self) -> str:
        return self.vae.latent_space


LATENT_SPACE_KEY = "nova_latent_format"


def check_latent_space(latent: dict, expected: str, what: str) -> None:
    """A LATENT marked with another VAE's latent space is refused; an unmarked one (a core node may
    drop the key) passes on to the shape checks."""
    found = latent.get(LATENT_SPACE_KEY)
    if found is not None and expected and found != expected:
        raise InputError(
            f"these latents are in the latent space of {found!r}, but {what} uses {expected!r}: they come "
            "from another VAE (an image checkpoint's latents into a video model, or the reverse). Encode with "
            "the VAE of the same checkpoint."
        )


def latent_tensor(latent, what: str = "latents") -> torch.Tensor:
    """The ``samples`` of a LATENT dict as [B, C, T, h, w] (a 4-D image latent gets T = 1)."""
    if not isinstance(latent, dict) or "samples" not in latent:
        raise InputError(f"{what} must be a ComfyUI LATENT (a dict with 'samples'), got {type(latent).__name__}.")
    samples = latent["samples"]
    if not isinstance(samples, torch.Tensor) or not samples.is_floating_point():
        raise InputError(
            f"{what}['samples'] must be a float tensor, got {getattr(samples, 'dtype', type(samples).__name__)}."
        )
    samples = samples.unsqueeze(2) if samples.dim() == 4 else samples
    if samples.dim() != 5 or samples.shape[0] < 1 or samples.shape[2] < 1:
        raise InputError(f"{what} have shape {list(samples.shape)}; expected [B, C, T, h, w] with B >= 1 and T >= 1.")
    return samples


def latent_samples(latent: Optional[dict], model: NovaModel) -> Optional[torch.Tensor]:
    """A LATENT dict -> scaled transformer latents [B, C, T, h, w], checked against the model."""
    if latent is None:
        return None
    samples = latent_tensor(latent)
    check_latent_space(latent, model.latent_space, f"checkpoint '{model.name}'")
    cfg = model.config
    expected = (cfg.image_dim,) + tuple(cfg.latent_size)
    if (samples.shape[1],) + tuple(samples.shape[3:]) != expected:
        got = list(samples.shape)
        raise InputError(
            f"latents of shape {got} do not fit checkpoint '{model.name}', which needs [B, {expected[0]}, T, "
            f"{expected[1]}, {expected[2]}] ({cfg.image_size[1]}x{cfg.image_size[0]} pixels). Were they made by "
            "another checkpoint or an image of another size? Encode with NOVA VAE Encode (it crops/resizes)."
        )
    return model.to_model_space(samples)


def make_latent(scaled: torch.Tensor, model: NovaModel, device, fps: float) -> dict:
    """Scaled transformer latents -> a LATENT dict in raw VAE space on ``device``."""
    return {"samples": model.to_raw(scaled).to(device), "nova_fps": float(fps), LATENT_SPACE_KEY: model.latent_space}

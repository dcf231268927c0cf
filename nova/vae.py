"""The checkpoint's autoencoder behind one interface: diffusers ``AutoencoderKL`` for image
checkpoints, :class:`AutoencoderKLOpenSora` for the video checkpoint."""

from __future__ import annotations

import os
from typing import Iterator, Optional

import torch

from .config import read_json
from .errors import ConfigError
from .loading import load_module, weight_files
from .models.vae_opensora import AutoencoderKLOpenSora


class NovaVAE:
    def __init__(self, model, config: dict):
        self.model, self.config = model, dict(config)
        self.temporal = isinstance(model, AutoencoderKLOpenSora)
        self.scaling_factor = float(self.config.get("scaling_factor") or 1.0)
        self.shift_factor = float(self.config.get("shift_factor") or 0.0)
        self.spatial_ratio = 2 ** (len(self.config.get("block_out_channels", [0] * 4)) - 1)
        self.temporal_ratio = model.temporal_ratio if self.temporal else 1
        self.latent_channels = int(self.config.get("latent_channels", 4))

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def dtype(self):
        return next(self.model.parameters()).dtype

    def scale(self, z):
        return (z - self.shift_factor) * self.scaling_factor

    def unscale(self, z):
        return z / self.scaling_factor + self.shift_factor

    @torch.no_grad()
    def moments(self, pixels: torch.Tensor):
        """Posterior (mean, std) of pixels in [-1, 1]: [B, 3, H, W] or [B, 3, T, H, W]."""
        x = pixels.to(device=self.device, dtype=self.dtype)
        if self.temporal:
            z = self.model.encode_moments(x)
        else:
            frames = x.dim() == 5
            flat = x.transpose(1, 2).flatten(0, 1) if frames else x
            z = self.model.encode(flat).latent_dist.parameters
            if frames:
                z = z.view(x.shape[0], x.shape[2], *z.shape[1:]).transpose(1, 2)
        mean, logvar = z.float().chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0).mul(0.5).exp()

    def encode(self, pixels: torch.Tensor, generator: Optional[torch.Generator] = None, sample: bool = True):
        """Scaled latents. ``sample=True`` draws from the posterior with ``generator`` (official I2V)."""
        mean, std = self.moments(pixels)
        if not sample:
            return self.scale(mean)
        gen_device = generator.device if generator is not None else mean.device
        noise = torch.randn(mean.shape, generator=generator, device=gen_device, dtype=mean.dtype).to(mean.device)
        return self.scale(noise * std + mean)

    @torch.no_grad()
    def decode_chunks(self, latents: torch.Tensor, raw: bool = False, tile_latents: Optional[int] = None) -> Iterator[torch.Tensor]:
        """Scaled latents [B, C, T, h, w] (``raw=True``: unscaled VAE latents) -> pixel chunks
        [B, 3, t, H, W] in [-1, 1], in temporal tiles so memory stays bounded whatever T."""
        z = latents.to(device=self.device, dtype=torch.float32)
        z = (z if raw else self.unscale(z)).to(self.dtype)
        if self.temporal:
            yield from self.model.decode_tiles(z, tile_latents)
            return
        for t in range(z.shape[2]):
            yield self.model.decode(z[:, :, t]).sample.unsqueeze(2)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [B, C, T, h, w] -> pixels [B, 3, T', H, W], one batch item at a time."""
        out = [torch.cat(list(self.decode_chunks(latents[i : i + 1])), dim=2) for i in range(latents.shape[0])]
        return torch.cat(out)


def load_vae(folder: str, device="cpu", dtype=torch.float32) -> NovaVAE:
    config_path = os.path.join(folder, "config.json")
    config = read_json(config_path)
    name = config.get("_class_name")
    files = weight_files(folder, "diffusion_pytorch_model")
    if name == "AutoencoderKLOpenSora":
        model = load_module(lambda: AutoencoderKLOpenSora(config), files, folder, device, dtype)
    elif name == "AutoencoderKL":
        from diffusers import AutoencoderKL

        model = load_module(lambda: AutoencoderKL.from_config(config), files, folder, device, dtype)
    else:
        raise ConfigError(
            f"{config_path}: _class_name = {name!r}; expected 'AutoencoderKLOpenSora' (video) or 'AutoencoderKL' (image)."
        )
    return NovaVAE(model, config)

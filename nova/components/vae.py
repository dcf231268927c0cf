"""The checkpoint's autoencoder behind one interface: diffusers ``AutoencoderKL`` for image
checkpoints, :class:`AutoencoderKLOpenSora` for the video checkpoint."""

from __future__ import annotations

import logging
import os
from typing import Iterator, Optional

import torch

from ..errors import ConfigError
from ..io.frames import frames_kept
from ..models.vae_opensora import AutoencoderKLOpenSora, temporal_tiles
from .config import read_json
from .loading import HoldsModel, load_module, weight_files

log = logging.getLogger("nova")

VIDEO_VAE, IMAGE_VAE = "AutoencoderKLOpenSora", "AutoencoderKL"


def latent_space_id(config: dict) -> str:
    """Names the latent space a VAE config encodes to (class and scaling): what a LATENT carries as
    ``nova_latent_format`` so latents of one VAE are not fed to a model trained on another's."""
    scale = float(config.get("scaling_factor") or 1.0)
    shift = float(config.get("shift_factor") or 0.0)
    name = f"{config.get('_class_name')}/{int(config.get('latent_channels', 4))}ch/x{scale:g}"
    return name + (f"{shift:+g}" if shift else "")


def check_vae_config(config, path: str) -> None:
    """The keys our code reads, with the types it needs (a wrong type fails here, naming the file)."""
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(config).__name__}.")
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    checks = {
        "scaling_factor": lambda v: v is None or (number(v) and v > 0),
        "shift_factor": lambda v: v is None or number(v),
        "latent_channels": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
        "in_channels": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
        "out_channels": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
        "block_out_channels": lambda v: (
            isinstance(v, list) and v and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in v)
        ),
        "layers_per_block": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
        "norm_num_groups": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
        "sample_size": lambda v: isinstance(v, (int, list)) and not isinstance(v, bool),
    }
    for key, ok in checks.items():
        if key in config and not ok(config[key]):
            raise ConfigError(f"{path}: key {key!r} = {config[key]!r} has the wrong type or value.")


class NovaVAE(HoldsModel):
    def __init__(self, model, config: dict):
        self.model, self.config = model, dict(config)
        self.temporal = isinstance(model, AutoencoderKLOpenSora)
        self.scaling_factor = float(self.config.get("scaling_factor") or 1.0)
        self.shift_factor = float(self.config.get("shift_factor") or 0.0)
        self.block_channels = list(self.config.get("block_out_channels", [128, 256, 512, 512]))
        self.spatial_ratio = 2 ** (len(self.block_channels) - 1)
        self.temporal_ratio = model.temporal_ratio if self.temporal else 1
        self.latent_channels = int(self.config.get("latent_channels", 4))
        self.latent_space = latent_space_id(self.config)

    def decode_memory_bytes(self, h: int, w: int, tile_latents: int) -> int:
        """Peak activation bytes of decoding one temporal tile of [h, w] latents: the full-resolution
        layers dominate (the first block's channels at every pixel of every frame of the tile, about
        four such tensors alive at once)."""
        frames = 1 + self.temporal_ratio * (max(1, tile_latents) - 1)
        pixels = h * w * self.spatial_ratio**2
        return int(4 * frames * pixels * self.block_channels[0] * self._bytes())

    def encode_memory_bytes(self, frames: int, height: int, width: int) -> int:
        """Peak activation bytes of encoding ``frames`` frames of height x width pixels (the same
        full-resolution bound)."""
        return int(4 * max(1, frames) * height * width * self.block_channels[0] * self._bytes())

    def _bytes(self) -> int:
        return torch.finfo(self.dtype).bits // 8

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

    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frames [N, 3, H, W] in [-1, 1] -> posterior means in raw VAE space: a video VAE takes
        them as one clip [1, C, T, h, w] (its first 1 + 4k frames; the rest are dropped with a
        warning), an image VAE each frame on its own [N, C, 1, h, w]."""
        if not self.temporal:
            return self.moments(pixels)[0].unsqueeze(2)
        n = pixels.shape[0]
        keep = frames_kept(n, self.temporal_ratio)
        if keep != n:
            log.warning(
                "NOVA VAE: %d frames -> using the first %d (the 3D VAE needs 1 + %dk).", n, keep, self.temporal_ratio
            )
        return self.moments(pixels[:keep].movedim(0, 1).unsqueeze(0))[0]

    def encode(self, pixels: torch.Tensor, generator: Optional[torch.Generator] = None, sample: bool = True):
        """Scaled latents. ``sample=True`` draws from the posterior with ``generator`` (official I2V)."""
        mean, std = self.moments(pixels)
        if not sample:
            return self.scale(mean)
        gen_device = generator.device if generator is not None else mean.device
        noise = torch.randn(mean.shape, generator=generator, device=gen_device, dtype=mean.dtype).to(mean.device)
        return self.scale(noise * std + mean)

    @torch.no_grad()
    def decode_chunk_count(self, latent_frames: int, tile_latents: int) -> int:
        """How many pieces :meth:`decode_chunks` yields for one sample (progress bars count them)."""
        return len(temporal_tiles(latent_frames, tile_latents)) if self.temporal else latent_frames

    def decode_chunks(
        self, latents: torch.Tensor, raw: bool = False, tile_latents: Optional[int] = None
    ) -> Iterator[torch.Tensor]:
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
    check_vae_config(config, config_path)
    name = config.get("_class_name")
    if name == VIDEO_VAE:
        build = lambda: AutoencoderKLOpenSora(config)  # noqa: E731
    elif name == IMAGE_VAE:
        from diffusers import AutoencoderKL

        build = lambda: AutoencoderKL.from_config(config)  # noqa: E731
    else:
        raise ConfigError(
            f"{config_path}: _class_name = {name!r}; expected 'AutoencoderKLOpenSora' (video) or 'AutoencoderKL' "
            "(image)."
        )
    files = weight_files(folder, "diffusion_pytorch_model")
    depths = [
        (prefix, len(config[key]) if key.endswith("types") else config[key], what)
        for key, prefix, what in (
            ("down_block_types", "encoder.down_blocks", "the length of down_block_types"),
            ("up_block_types", "decoder.up_blocks", "the length of up_block_types"),
            ("layers_per_block", "encoder.down_blocks.0.resnets", "layers_per_block"),
        )
        if key in config and (isinstance(config[key], list) or not key.endswith("types"))
    ]
    model = load_module(build, files, folder, device, dtype, config_path=config_path, depths=depths)
    return NovaVAE(model, config)

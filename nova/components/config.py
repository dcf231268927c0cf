"""Transformer config: parse and validate ``transformer/config.json`` of an official checkpoint.

The official configs name each sub-network by an architecture string:
``vit_d{depth}w{width}`` for the video and image encoders, ``mlp_d{depth}w{width}`` for the
diffusion head. Heads follow the official table (768 -> 12, 1024 -> 16, 1536 -> 16), any other
width uses ``width // 64``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Optional, Tuple

from ..errors import ConfigError

_OFFICIAL_HEADS = {768: 12, 1024: 16, 1536: 16}
_ARCH_RE = {"vit": re.compile(r"^vit_d(\d+)w(\d+)$"), "mlp": re.compile(r"^mlp_d(\d+)w(\d+)$")}
# 4x the largest official frame (1024 x 1024 pixels, 4096 tokens): a config claiming more is refused
# before any weight is read.
MAX_IMAGE_TOKENS = 16384
_REQUIRED = ("image_dim", "image_size", "image_stride", "image_base_size", "video_base_size", "arch")
_KNOWN = set(_REQUIRED) | {"text_token_dim", "text_token_len", "video_mixer_rank", "rotary_pos_embed"}


@dataclasses.dataclass(frozen=True)
class BlockArch:
    depth: int
    width: int
    heads: int = 0


def parse_arch(name, kind: str, where: str) -> BlockArch:
    match = _ARCH_RE[kind].match(str(name))
    if not match:
        raise ConfigError(
            f"{where}: unknown architecture name {name!r}; expected '{kind}_d<depth>w<width>' "
            f"(for example {'vit_d16w1024' if kind == 'vit' else 'mlp_d3w1280'})."
        )
    depth, width = int(match.group(1)), int(match.group(2))
    if depth < 1 or width < 1:
        raise ConfigError(f"{where}: architecture {name!r} needs depth and width >= 1.")
    if kind == "mlp":
        return BlockArch(depth, width)
    heads = _OFFICIAL_HEADS.get(width, width // 64)
    if heads < 1 or width % heads:
        raise ConfigError(
            f"{where}: architecture {name!r}: width {width} cannot be split into attention heads "
            f"(heads = width // 64 = {heads}); use a width that is a multiple of 64."
        )
    return BlockArch(depth, width, heads)


@dataclasses.dataclass(frozen=True)
class NovaConfig:
    """The transformer config, validated, with derived sizes."""

    image_dim: int
    image_size: Tuple[int, int]  # pixels (H, W)
    image_stride: int
    image_base_size: Tuple[int, int]  # image-encoder token grid
    video_base_size: Tuple[int, int, int]  # (time span, video token grid h, w)
    video_encoder: BlockArch
    image_encoder: BlockArch
    diffusion_head: BlockArch
    text_token_dim: Optional[int] = None
    text_token_len: int = 256
    video_mixer_rank: Optional[int] = None
    rotary_pos_embed: bool = False
    arch_names: Tuple[str, str, str] = ("", "", "")

    @property
    def latent_size(self) -> Tuple[int, int]:
        return self.image_size[0] // self.image_stride, self.image_size[1] // self.image_stride

    @property
    def patch_size(self) -> int:
        return 15 // self.image_stride + 1

    @property
    def video_patch_size(self) -> int:
        return 2 * self.patch_size

    @property
    def num_image_tokens(self) -> int:
        return self.image_base_size[0] * self.image_base_size[1]

    @property
    def is_video_model(self) -> bool:
        return self.video_base_size[0] > 1

    @property
    def has_mixer(self) -> bool:
        return bool(self.video_mixer_rank)

    def to_dict(self) -> dict:
        """The config in the official JSON form."""
        out = {
            "image_dim": self.image_dim,
            "image_size": list(self.image_size),
            "image_stride": self.image_stride,
            "image_base_size": list(self.image_base_size),
            "video_base_size": list(self.video_base_size),
            "arch": list(self.arch_names),
            "text_token_len": self.text_token_len,
        }
        if self.text_token_dim:
            out["text_token_dim"] = self.text_token_dim
        if self.video_mixer_rank is not None:
            out["video_mixer_rank"] = self.video_mixer_rank
        if self.rotary_pos_embed:
            out["rotary_pos_embed"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict, where: str = "transformer/config.json") -> "NovaConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}.")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise ConfigError(f"{where}: missing key(s) {missing}; a NOVA transformer config needs {list(_REQUIRED)}.")

        def ints(key, n):
            value = data[key]
            value = [value] * n if isinstance(value, int) and n == 2 and key == "image_size" else value
            if (
                not isinstance(value, (list, tuple))
                or len(value) != n
                or not all(isinstance(v, int) and v > 0 for v in value)
            ):
                raise ConfigError(f"{where}: key {key!r} = {data[key]!r}; expected {n} positive integers.")
            return tuple(value)

        def positive_int(key, default=None):
            value = data.get(key, default)
            if value is None:
                return None
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{where}: key {key!r} = {value!r}; expected a positive integer.")
            return value

        arch = data["arch"]
        if not isinstance(arch, (list, tuple)) or len(arch) != 3:
            raise ConfigError(
                f"{where}: key 'arch' = {arch!r}; expected [video encoder, image encoder, diffusion head]."
            )
        rank = data.get("video_mixer_rank")
        if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool)):
            raise ConfigError(f"{where}: key 'video_mixer_rank' = {rank!r}; expected an integer.")
        cfg = cls(
            image_dim=positive_int("image_dim"),
            image_size=ints("image_size", 2),
            image_stride=positive_int("image_stride"),
            image_base_size=ints("image_base_size", 2),
            video_base_size=ints("video_base_size", 3),
            video_encoder=parse_arch(arch[0], "vit", f"{where} arch[0]"),
            image_encoder=parse_arch(arch[1], "vit", f"{where} arch[1]"),
            diffusion_head=parse_arch(arch[2], "mlp", f"{where} arch[2]"),
            text_token_dim=positive_int("text_token_dim"),
            text_token_len=positive_int("text_token_len", 256),
            video_mixer_rank=rank,
            rotary_pos_embed=bool(data.get("rotary_pos_embed", False)),
            arch_names=tuple(str(a) for a in arch),
        )
        cfg._check_sizes(where)
        return cfg

    def _check_sizes(self, where: str):
        if self.text_token_dim is None:
            raise ConfigError(
                f"{where}: key 'text_token_dim' is missing; class-conditional NOVA models are not supported."
            )
        if self.text_token_len > 512:
            raise ConfigError(
                f"{where}: 'text_token_len' = {self.text_token_len}; at most 512 text tokens are supported."
            )
        for axis, px in zip("HW", self.image_size):
            if px % self.image_stride:
                raise ConfigError(
                    f"{where}: image_size {axis}={px} is not divisible by image_stride={self.image_stride}."
                )
        lh, lw = self.latent_size
        tokens = (lh // self.patch_size) * (lw // self.patch_size)
        if tokens > MAX_IMAGE_TOKENS:
            h, w = self.image_size
            raise ConfigError(
                f"{where}: image_size {w}x{h} makes {tokens} image tokens per frame; at most {MAX_IMAGE_TOKENS} are "
                "accepted (2048x2048 pixels; the official checkpoints use at most 4096, 1024x1024). The spatial "
                "encoder attends over every token of a frame, so such a size would run out of memory or time."
            )
        for name, patch in (("image encoder", self.patch_size), ("video encoder", self.video_patch_size)):
            if lh % patch or lw % patch:
                raise ConfigError(
                    f"{where}: latent size {lh}x{lw} (image_size / image_stride) is not divisible by the "
                    f"{name} patch size {patch}."
                )
        if self.image_base_size != (lh // self.patch_size, lw // self.patch_size):
            raise ConfigError(
                f"{where}: image_base_size {list(self.image_base_size)} does not match the image token grid "
                f"{[lh // self.patch_size, lw // self.patch_size]} (image_size / image_stride / patch size)."
            )
        video_grid = (lh // self.video_patch_size, lw // self.video_patch_size)
        if tuple(self.video_base_size[1:]) != video_grid:
            raise ConfigError(
                f"{where}: video_base_size[1:] {list(self.video_base_size[1:])} does not match the video token "
                f"grid {list(video_grid)}."
            )
        if self.video_encoder.width != self.image_encoder.width:
            raise ConfigError(
                f"{where}: the video encoder width ({self.video_encoder.width}) must equal the image encoder "
                f"width ({self.image_encoder.width})."
            )
        width = self.image_encoder.width
        if width % 4:
            raise ConfigError(f"{where}: encoder width {width} must be divisible by 4 (sin-cos position embedding).")


def read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConfigError(f"missing file {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}).") from exc


def load_config(path: str) -> NovaConfig:
    """Read and validate a ``transformer/config.json``."""
    return NovaConfig.from_dict(read_json(path), where=path)

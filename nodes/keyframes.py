"""NOVA Keyframes: pictures pinned at video frames, for AR Frame Step and Generate (the rule of
which frames can be exact, and what the sampler does: nova/sampling/keyframes.py)."""

from __future__ import annotations

import dataclasses
import re
from typing import List, Optional, Sequence

import torch

from ..nova.errors import InputError
from ..nova.io.pixels import check_images
from ..nova.sampling.keyframes import DEFAULT_APPROACH, DEFAULT_STRENGTH, Keyframe, latent_index
from .compat import io
from .handles import LATENT_SPACE_KEY, NovaModel, check_latent_space
from .types import NovaKeyframesType, NovaVaeType
from .vae import RESIZE_MODES, encode_images

MAX_APPROACH = 64


@dataclasses.dataclass(frozen=True)
class KeyframeSpec:
    """A picture for video frame ``frame``: its raw VAE latents alone (for latent 0) and held still
    over 4 frames (for a later latent), each [1, C, 1, h, w]."""

    frame: int
    alone: torch.Tensor
    still: torch.Tensor
    approach: int
    strength: float
    latent_space: str


def parse_frames(text: str, count: int) -> List[int]:
    """``"0, 32"`` / ``"-1"`` -> video frame indices, one per picture."""
    parts = [p for p in re.split(r"[,\s]+", str(text).strip()) if p]
    try:
        frames = [int(p) for p in parts]
    except ValueError:
        raise InputError(
            f"frames = {text!r}; expected video frame indices separated by commas, e.g. '32' or "
            "'0, 16, 32' (-1 = the last frame)."
        ) from None
    if len(frames) != count:
        raise InputError(
            f"frames = {text!r} names {len(frames)} frame(s) for {count} picture(s); give one frame per "
            "picture, in the order of the images."
        )
    return frames


class NovaKeyframes(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NOVAKeyframes",
            display_name="NOVA Keyframes",
            category="NOVA",
            description=(
                "Pictures pinned at video frames (an end frame, or images at chosen times) for NOVA AR "
                "Frame Step and NOVA Generate: the latent of each is the picture, and the frames before it "
                "approach it."
            ),
            inputs=[
                NovaVaeType.Input("vae"),
                io.Image.Input(
                    "images", tooltip="One picture per keyframe (a batch of images, in the order of frames)."
                ),
                io.String.Input(
                    "frames",
                    default="-1",
                    tooltip=(
                        "Video frame of each picture, comma separated: 0 or a multiple of 4 (the "
                        "VAE packs 4 frames per latent), -1 = the last frame of the video. "
                        "E.g. '0, 32'."
                    ),
                ),
                io.Int.Input(
                    "approach",
                    default=DEFAULT_APPROACH,
                    min=0,
                    max=MAX_APPROACH,
                    tooltip="Latent frames (4 video frames each) before each keyframe that move toward it.",
                ),
                io.Float.Input(
                    "strength",
                    default=DEFAULT_STRENGTH,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip=(
                        "How strongly they do: the m-th of the approach frames has strength x m / "
                        "(approach + 1) of its tokens fixed to the keyframe's. 0 = only the pinned "
                        "frame."
                    ),
                ),
                io.Int.Input(
                    "width", default=768, min=64, max=4096, step=8, tooltip="The checkpoint's width (osp480: 768)."
                ),
                io.Int.Input(
                    "height", default=480, min=64, max=4096, step=8, tooltip="The checkpoint's height (osp480: 480)."
                ),
                io.Combo.Input(
                    "resize",
                    options=RESIZE_MODES,
                    default="crop",
                    tooltip="crop: center-crop to the aspect ratio, then resize (as NOVA VAE Encode).",
                ),
                NovaKeyframesType.Input("previous", optional=True, tooltip="More keyframes to add these to."),
            ],
            outputs=[NovaKeyframesType.Output(display_name="keyframes")],
        )

    @classmethod
    def execute(
        cls, vae, images, frames, approach, strength, width=768, height=480, resize="crop", previous=None
    ) -> io.NodeOutput:
        if not vae.vae.temporal:
            raise InputError(
                "keyframes pin pictures at times of a video; this is an image checkpoint's VAE. Use a "
                "video checkpoint (for an image, use NOVA Generate's start_image with denoise)."
            )
        if resize not in RESIZE_MODES:
            raise InputError(f"resize '{resize}' is not one of {RESIZE_MODES}.")
        if previous is not None and not isinstance(previous, tuple):
            raise InputError(f"previous is a {type(previous).__name__}; it must come from NOVA Keyframes.")
        images = check_images(images)
        numbers = parse_frames(frames, images.shape[0])
        ratio = vae.vae.temporal_ratio
        specs = []
        for picture, frame in zip(images, numbers):
            alone = encode_images(vae, picture[None], int(width), int(height), resize)
            still = encode_images(vae, picture[None].expand(1 + ratio, -1, -1, -1), int(width), int(height), resize)
            specs.append(
                KeyframeSpec(
                    frame,
                    alone["samples"],
                    still["samples"][:, :, -1:],
                    int(approach),
                    float(strength),
                    alone[LATENT_SPACE_KEY],
                )
            )
        return io.NodeOutput(tuple(previous or ()) + tuple(specs))


def engine_keyframes(specs: Optional[Sequence[KeyframeSpec]], model: NovaModel, num_latents: int) -> List[Keyframe]:
    """The keyframes of a NOVA Keyframes output for a video of ``num_latents`` latent frames."""
    if not specs:
        return []
    if not isinstance(specs, tuple) or not all(isinstance(s, KeyframeSpec) for s in specs):
        raise InputError("keyframes must come from NOVA Keyframes.")
    out = []
    for spec in specs:
        check_latent_space({LATENT_SPACE_KEY: spec.latent_space}, model.latent_space, f"checkpoint '{model.name}'")
        index = latent_index(spec.frame, num_latents)
        raw = spec.alone if index == 0 else spec.still
        out.append(Keyframe(index, model.to_model_space(raw)[:, :, 0], spec.approach, spec.strength))
    return out


def keyframes_input():
    return NovaKeyframesType.Input(
        "keyframes",
        optional=True,
        tooltip=(
            "Pictures pinned at video frames (NOVA Keyframes): each one's latent is the picture, the frames "
            "before it approach it. Frame indices count in the whole video, given frames included."
        ),
    )

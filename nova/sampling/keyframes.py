"""Keyframes: pictures pinned at chosen times of a video, which the frames before them approach.

Which video frames can be pinned exactly. The video VAE packs 4 video frames into each latent frame,
except the first latent, which holds frame 0 alone: latent 0 is video frame 0, latent k >= 1 is video
frames 4k - 3 ... 4k. A keyframe's latent is the encoding of the picture held still over a latent's
frames, so it decodes to the picture (up to the VAE round trip) at the frames of that latent. The
frame a keyframe names is exact when it is 0 or a multiple of 4 (frame 4k: latent k, the last of its
four frames); negative frames count from the end (-1 = the last frame, always exact). Other frames
are refused with the two nearest exact ones in the message (rounding silently would move the picture
by up to 2 frames, 1/6 s at 12 fps).

What the sampler does (:class:`nova.sampling.plan.GenerationPlan`'s ``keyframes``): the latent frame of a
keyframe is not sampled: it is the keyframe's latent, bit for bit, and later frames read it as
temporal context like any other frame. Each of the ``approach`` frames before it has a share of its
tokens fixed to the keyframe's (the first tokens of the video's random token order, as a loop fixes
tokens of the first frame): ``strength * m / (approach + 1)`` of them in the m-th of those frames, so
the share grows toward the keyframe, and the set-by-set sampler fills in the rest around them.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Integral, Real
from typing import List, Optional, Sequence

import torch

from ..errors import InputError

DEFAULT_APPROACH = 2
DEFAULT_STRENGTH = 0.5


@dataclasses.dataclass(frozen=True)
class Keyframe:
    """``latent`` [B or 1, C, h, w] (transformer scale) pinned at latent frame ``index``; the
    ``approach`` latent frames before it get ``strength`` * m / (approach + 1) of their tokens
    fixed to it (m = 1 ... approach, nearest last)."""

    index: int
    latent: torch.Tensor
    approach: int = DEFAULT_APPROACH
    strength: float = DEFAULT_STRENGTH


def latent_index(frame, num_latents: int, ratio: int = 4) -> int:
    """The latent frame holding video frame ``frame`` of a video of ``num_latents`` latents, for
    frames a keyframe can pin exactly (0, multiples of ``ratio``, negative from the end)."""
    if isinstance(frame, bool) or not isinstance(frame, Integral):
        raise InputError(
            f"keyframe frame = {frame!r}; expected an integer video frame index (0, 4, 8, ...; -1 = the last)."
        )
    num_frames = 1 + ratio * (num_latents - 1)
    f = int(frame) + num_frames if frame < 0 else int(frame)
    if not 0 <= f < num_frames:
        raise InputError(
            f"keyframe frame {frame} is beyond the video: it has {num_frames} frames "
            f"(0 ... {num_frames - 1}, or -1 for the last); make the video longer or pick an earlier "
            "frame."
        )
    if f % ratio:
        low, high = ratio * (f // ratio), ratio * (f // ratio + 1)
        nearest = f"{low} or {high}" if high < num_frames else f"{low}"
        raise InputError(
            f"keyframe frame {frame} cannot be pinned exactly: the VAE packs {ratio} video frames into "
            f"each latent frame, so only frame 0 and multiples of {ratio} can be; use {nearest}."
        )
    return f // ratio


def check_keyframes(keyframes: Optional[Sequence[Keyframe]], cfg, batch: int, first: int, end: int) -> List[Keyframe]:
    """Keyframes checked against the checkpoint and the video: latent frames in [first, end) (the
    frames the run generates), one keyframe per latent, latents of the checkpoint's size."""
    keyframes = list(keyframes or ())
    if not keyframes:
        return []
    if not cfg.is_video_model:
        raise InputError(
            "keyframes pin pictures at times of a video; this is an image checkpoint (one frame). "
            "Use a video checkpoint, or start_image / denoise for an image."
        )
    expected = (cfg.image_dim,) + tuple(cfg.latent_size)
    seen = {}
    out = []
    for i, kf in enumerate(keyframes):
        if not isinstance(kf, Keyframe):
            raise InputError(f"keyframe {i} is a {type(kf).__name__}; expected nova.sampling.keyframes.Keyframe.")
        if isinstance(kf.index, bool) or not isinstance(kf.index, Integral):
            raise InputError(f"keyframe {i} index = {kf.index!r}; expected an integer latent frame index.")
        if not first <= kf.index < end:
            where = (
                "inside the given latents (they are kept as they are)"
                if kf.index < first
                else "beyond the end of the video"
            )
            raise InputError(
                f"keyframe {i} is at latent frame {kf.index}, {where}; the generated frames are latents "
                f"{first} ... {end - 1}."
            )
        if kf.index in seen:
            raise InputError(
                f"keyframes {seen[kf.index]} and {i} are both at latent frame {kf.index} (video frames "
                "of one latent); keep one of them, or move one by 4 video frames."
            )
        seen[kf.index] = i
        lat = kf.latent
        if not isinstance(lat, torch.Tensor) or not lat.is_floating_point():
            raise InputError(
                f"keyframe {i} latent is not a float tensor; encode the picture with the checkpoint's VAE."
            )
        if lat.dim() == 5 and lat.shape[2] == 1:
            lat = lat[:, :, 0]
        if lat.dim() != 4 or tuple(lat.shape[1:]) != expected or lat.shape[0] not in (1, batch):
            raise InputError(
                f"keyframe {i} latent has shape {list(lat.shape)}; this checkpoint needs [1 or {batch}, {expected[0]}, "
                f"{expected[1]}, {expected[2]}] (a {cfg.image_size[1]}x{cfg.image_size[0]} picture: crop or resize it "
                "to that aspect first, as VAE Encode does)."
            )
        if not torch.isfinite(lat).all():
            raise InputError(f"keyframe {i} latent contains NaN/Inf: re-encode the picture.")
        if isinstance(kf.approach, bool) or not isinstance(kf.approach, Integral) or kf.approach < 0:
            raise InputError(
                f"keyframe {i} approach = {kf.approach!r}; expected an integer >= 0 (latent frames before it)."
            )
        s = kf.strength
        if isinstance(s, bool) or not isinstance(s, Real) or not 0 <= s <= 1 or math.isnan(s):
            raise InputError(f"keyframe {i} strength = {s!r}; expected a number in [0, 1] (0: no approach).")
        out.append(
            dataclasses.replace(
                kf,
                index=int(kf.index),
                latent=lat.expand(batch, -1, -1, -1),
                approach=int(kf.approach),
                strength=float(s),
            )
        )
    return sorted(out, key=lambda k: k.index)


def approached(keyframes: Sequence[Keyframe], t: int):
    """(keyframe, tokens share) for latent frame ``t`` when it is in a keyframe's approach (the
    next keyframe after it wins), else None."""
    for kf in keyframes:
        if kf.index > t:
            m = kf.approach - (kf.index - t) + 1  # 1 ... approach, nearest last
            if m >= 1 and kf.strength > 0:
                return kf, kf.strength * m / (kf.approach + 1)
            return None
    return None

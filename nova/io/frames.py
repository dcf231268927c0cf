"""Frame/latent count arithmetic of the 3D VAE (4x temporal compression, first frame alone)."""

from __future__ import annotations

from ..errors import InputError

MAX_LATENT_FRAMES = 4096  # the longest generation: 4 video frames each, about 23 minutes at 12 fps


def frames_for_latents(num_latents: int, ratio: int = 4) -> int:
    return 1 + ratio * (num_latents - 1) if num_latents > 0 else 0


def frames_kept(num_frames: int, ratio: int = 4) -> int:
    """The leading frames of a clip of ``num_frames`` that the video VAE encodes (1 + ratio*k);
    the rest are dropped."""
    return 1 + ratio * ((num_frames - 1) // ratio) if num_frames > 0 else 0


def latents_for_frames(num_frames: int, ratio: int = 4) -> int:
    if not isinstance(num_frames, int) or num_frames < 1 or (num_frames - 1) % ratio:
        raise InputError(f"frames = {num_frames!r}; the video VAE needs 1 + {ratio}k frames (1, 5, 9, 17, 33, ...).")
    return (num_frames - 1) // ratio + 1


def max_video_frames(ratio: int = 4) -> int:
    """The most video frames a clip may have: the longest generation, :data:`MAX_LATENT_FRAMES`."""
    return frames_for_latents(MAX_LATENT_FRAMES, ratio)

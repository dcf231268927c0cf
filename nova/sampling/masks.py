"""Masks for zero-shot inpainting and outpainting: which tokens of given frames are regenerated,
the outpainting canvas, and the feathered blend of decoded frames with their source.

NOVA predicts a frame as sets of tokens around the ones already known, so any region can be
regenerated without training: the tokens outside the mask are fixed to the given latents and the
rest are predicted in NOVA's set order (:class:`nova.sampling.plan.GenerationPlan`, ``prefix_mask``).

Convention (ComfyUI's): mask value 1 = regenerate, 0 = keep.

The pixel -> token rule (:func:`token_mask`):

1. Frames. A mask has 1 frame (used for every frame), one per latent frame, or one per video frame
   (``1 + 4(T - 1)`` for T latents of the video VAE; a mask as long as the clip the latents were
   encoded from may have up to 3 more, the frames encoding dropped; for a single latent frame only
   when the caller knows that clip's length, else a batch of masks for one image is refused rather
   than silently cut to its first mask). A latent frame takes the
   maximum over the video frames it encodes: latent 0 is frame 0, latent t is frames 4t-3 .. 4t.
2. Size. Any resolution: a mask whose aspect ratio differs from the checkpoint's is center-cropped
   to it, as NOVA VAE Encode ('crop'), the CLI and ``NovaPipeline`` crop images; for latents
   encoded with resize 'stretch' it is stretched (not cropped) like its frames were. It must keep at
   least one pixel per token in each direction (a token is ``8 * patch`` = 16 pixels square).
3. A token is regenerated if any mask pixel it covers (partly covered pixels included) is above
   ``threshold`` (default 0.5, so antialiased brush edges do not count).
4. ``grow`` then widens the regenerated region by that many tokens (8-neighbourhood).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import InputError
from ..io.frames import frames_for_latents, frames_kept

DEFAULT_THRESHOLD = 0.5
FILLS = ("edge", "gray", "black")
RESIZE_MODES = ("crop", "stretch", "none")  # how the frames were fitted to the checkpoint's size
# Beyond these nothing changes any more (64 tokens = 1024 px, past every checkpoint's frame), while
# each step costs a pass over the frames: a bound keeps a typo from running for hours.
MAX_GROW = 64  # tokens
MAX_FEATHER = 256  # pixels


def check_grow(grow, name: str = "mask grow") -> int:
    if isinstance(grow, bool) or not isinstance(grow, (int, np.integer)) or not 0 <= grow <= MAX_GROW:
        raise InputError(
            f"{name} = {grow!r}; expected an integer in [0, {MAX_GROW}] (tokens of 16 pixels; "
            f"{MAX_GROW} already covers any frame)."
        )
    return int(grow)


def check_feather(feather, name: str = "feather") -> int:
    if isinstance(feather, bool) or not isinstance(feather, (int, np.integer)) or not 0 <= feather <= MAX_FEATHER:
        raise InputError(f"{name} = {feather!r}; expected an integer in [0, {MAX_FEATHER}] (pixels).")
    return int(feather)


def as_mask_frames(mask, name: str = "mask") -> torch.Tensor:
    """A mask as given (torch/numpy, [H, W], [M, H, W], ComfyUI's noise_mask [M, 1, H, W], uint8 or
    0..1 floats, or a list of frames) -> float32 [M, H, W] in 0..1 on the CPU. Never modifies it."""
    if isinstance(mask, (list, tuple)):
        if not mask:
            raise InputError(f"{name} has no frames.")
        frames = [as_mask_frames(m, name) for m in mask]
        if len({tuple(f.shape[1:]) for f in frames}) > 1:
            raise InputError(f"{name}: its frames have different sizes; give frames of one size.")
        return torch.cat(frames)
    if isinstance(mask, np.ndarray):
        if mask.dtype == np.uint8:
            mask = mask.astype(np.float32) / 255.0
        elif not np.issubdtype(mask.dtype, np.number):
            raise InputError(f"{name} has dtype {mask.dtype}; expected numbers (uint8 0..255 or floats 0..1).")
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if not isinstance(mask, torch.Tensor):
        raise InputError(f"{name} is a {type(mask).__name__}; expected a tensor or array of 0..1 values.")
    m = mask.detach().to("cpu")
    m = m.float() / 255.0 if m.dtype == torch.uint8 else m.float()
    if m.dim() == 4 and m.shape[1] == 1:  # core SetLatentNoiseMask: [M, 1, H, W]
        m = m[:, 0]
    if m.dim() == 2:
        m = m[None]
    if m.dim() != 3 or min(m.shape) < 1:
        raise InputError(f"{name} has shape {list(mask.shape)}; expected [H, W], [frames, H, W] or [frames, 1, H, W].")
    if not torch.isfinite(m).all():
        raise InputError(f"{name} contains NaN or Inf values; a mask holds values from 0 (keep) to 1 (regenerate).")
    lo, hi = float(m.min()), float(m.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(f"{name} has values from {lo:g} to {hi:g}; expected 0 (keep) .. 1 (regenerate).")
    return m.clamp(0, 1)


def per_latent_frame(
    mask: torch.Tensor, latent_frames: int, ratio: int, name: str = "mask", clip_frames: Optional[int] = None
) -> torch.Tensor:
    """[M, H, W] -> [T, H, W] by rule 1 of the module docstring (``clip_frames``: the length of the
    clip the latents were encoded from, when known)."""
    m, frames = mask.shape[0], frames_for_latents(latent_frames, ratio)
    if m == latent_frames:
        return mask
    if m == 1:
        return mask.expand(latent_frames, -1, -1)
    if clip_frames is not None and m > clip_frames:
        raise InputError(
            f"{name} has {m} frames for a clip of {clip_frames}; give 1, {latent_frames} (one per latent "
            f"frame) or up to {clip_frames} (one per clip frame) mask frame(s)."
        )
    # A clip's mask: the frames VAE encoding dropped (1 + 4k kept) go too. One latent frame is also
    # what one image encodes to, so there the extra masks are dropped only for a clip that long.
    from_clip = latent_frames > 1 or (clip_frames is not None and m <= clip_frames)
    if frames_kept(m, ratio) == frames and from_clip:
        mask = mask[:frames]
        m = frames
    if m == frames:
        groups = [mask[:1]] + [mask[ratio * t - ratio + 1 : ratio * t + 1] for t in range(1, latent_frames)]
        return torch.stack([g.amax(dim=0) for g in groups])
    allowed = sorted({1, latent_frames, frames})
    hint = (
        " (one latent frame takes one mask; a batch of masks for one image is not cut to its first)"
        if frames == 1
        else ""
    )
    raise InputError(
        f"{name} has {m} frames; the latents have {latent_frames} latent frame(s) = {frames} video frame(s). "
        f"Give {' or '.join(map(str, allowed))} mask frame(s){hint}."
    )


def token_mask(
    mask,
    config,
    latent_frames: int,
    threshold: float = DEFAULT_THRESHOLD,
    grow: int = 0,
    ratio: Optional[int] = None,
    name: str = "mask",
    resize: str = "crop",
    clip_frames: Optional[int] = None,
) -> torch.Tensor:
    """Pixel mask (any resolution, 1 / per-latent / per-video frame) -> bool [T, L] (True =
    regenerate; L tokens in the transformer's row-major order). ``resize``: how the latents' frames
    were fitted ('stretch': the mask is stretched too, not cropped); ``clip_frames``: the length of
    the clip they were encoded from, when known (rule 1). See the module docstring."""
    if resize not in RESIZE_MODES:
        raise InputError(f"resize '{resize}' is not one of {list(RESIZE_MODES)}.")
    if not 0 <= float(threshold) < 1:
        raise InputError(f"mask threshold = {threshold!r}; expected a value in [0, 1).")
    check_grow(grow)
    from ..io.images import center_crop_box  # the crop images get

    ratio = ratio if ratio is not None else (4 if config.is_video_model else 1)
    frames = per_latent_frame(as_mask_frames(mask, name), latent_frames, ratio, name, clip_frames)
    given = f"{frames.shape[2]}x{frames.shape[1]}"
    height, width = config.image_size
    gh, gw = config.image_base_size
    if resize != "stretch":
        top, bottom, left, right = center_crop_box(frames.shape[1], frames.shape[2], height, width)
        frames = frames[:, top:bottom, left:right]
    if frames.shape[1] < gh or frames.shape[2] < gw:
        fitted = "stretched" if resize == "stretch" else f"cropped to the {width}x{height} aspect ratio"
        raise InputError(
            f"{name} is {given} ({fitted}: {frames.shape[2]}x{frames.shape[1]}); "
            f"it cannot be mapped to the {gw}x{gh} token grid. Give at least {gw}x{gh} pixels: the latent size "
            f"{config.latent_size[1]}x{config.latent_size[0]} or the image size {width}x{height}."
        )
    coverage = F.adaptive_max_pool2d(frames[:, None], (gh, gw))
    regen = coverage > float(threshold)
    for _ in range(int(grow)):
        regen = F.max_pool2d(regen.float(), 3, stride=1, padding=1) > 0
    return regen.flatten(1)


def check_token_mask(regen: torch.Tensor, n_prefix: int, num_tokens: int) -> torch.Tensor:
    """The engine's token mask: bool [N, L] for the N given frames."""
    if not isinstance(regen, torch.Tensor) or regen.dtype != torch.bool or tuple(regen.shape) != (n_prefix, num_tokens):
        got = list(regen.shape) if isinstance(regen, torch.Tensor) else type(regen).__name__
        raise InputError(
            f"prefix_mask must be a bool tensor [{n_prefix}, {num_tokens}] (one row of tokens per given latent "
            f"frame; make it with nova.sampling.masks.token_mask), got {got}."
        )
    return regen.cpu()


def known_first(order: torch.Tensor, regenerate: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """Reorder the token order [B, L, 1] so the kept tokens come first; the regenerated ones keep
    their relative (random) order. Returns (order, number of kept tokens) for ``sample_frame``."""
    flags = regenerate.to(order.device)[order[..., 0]].to(torch.uint8)  # [B, L], 0 = kept
    idx = torch.sort(flags, dim=1, stable=True).indices
    return order.gather(1, idx.unsqueeze(-1)), int((~regenerate).sum())


# -- pixels ------------------------------------------------------------------------------------


def pixel_region(regen: torch.Tensor, config, ratio: Optional[int] = None) -> torch.Tensor:
    """Token mask [T, L] -> float [F, H, W] (1 where a pixel's token is regenerated), F the video
    frames of T latents (a latent's tokens cover all the video frames it encodes)."""
    ratio = ratio if ratio is not None else (4 if config.is_video_model else 1)
    return grid_region(regen.view(-1, *config.image_base_size), tuple(config.image_size), ratio)


def grid_region(grid: torch.Tensor, size: Tuple[int, int], ratio: int) -> torch.Tensor:
    """Token mask as a grid [T, gh, gw] -> float [F, H, W] pixels (see :func:`pixel_region`)."""
    return _latent_pixels(grid, size)[latent_of_frames(grid.shape[0], ratio)]


def latent_of_frames(latent_frames: int, ratio: int) -> torch.Tensor:
    """For each video frame of ``latent_frames`` latents, the latent that encodes it."""
    frames = torch.arange(frames_for_latents(latent_frames, ratio))
    return (frames + ratio - 1) // ratio


def _latent_pixels(grid: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    return F.interpolate(grid.float()[:, None], size=size, mode="nearest")[:, 0]


def grid_feather_weights(grid: torch.Tensor, size: Tuple[int, int], ratio: int, radius: int) -> torch.Tensor:
    """``feather_weights(grid_region(grid, size, ratio), radius)``, computed once per distinct token
    region instead of once per video frame (the frames of a latent, and often all latents, share one
    region; the erosions cost radius full-resolution passes each)."""
    regions, which = torch.unique(grid.flatten(1), dim=0, return_inverse=True)
    weights = feather_weights(_latent_pixels(regions.view(-1, *grid.shape[1:]), size), radius)
    return weights[which[latent_of_frames(grid.shape[0], ratio)]]


def feather_weights(region: torch.Tensor, radius: int) -> torch.Tensor:
    """Weight of the generated pixels: 0 outside ``region`` [F, H, W] (the regenerated tokens'
    pixels, :func:`pixel_region`: the mask rounded out to 16-px cells, after ``grow``; not the pixel
    mask), rising inside it over ``radius`` pixels from its edge to 1 (the image border is no edge)."""
    check_feather(radius)
    inside = (region > 0.5).float()[:, None]
    if radius == 0:
        return inside[:, 0]
    total = torch.zeros_like(inside)
    for _ in range(radius + 1):
        total += inside
        inside = -F.max_pool2d(-inside, 3, stride=1, padding=1)  # erosion; max_pool pads with -inf
    return (total / (radius + 1))[:, 0]


def blend(result: torch.Tensor, source: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``lerp(source, result, weights)``: exactly the source where weights are 0, exactly the
    result where they are 1 (``weights`` broadcast against the frames)."""
    weights = weights.to(device=result.device, dtype=result.dtype)
    return torch.lerp(source.to(device=result.device, dtype=result.dtype), result, weights)


def feather_frames(
    frames: torch.Tensor,
    grid: torch.Tensor,
    source: torch.Tensor,
    radius: int,
    ratio: int,
    resize: str = "crop",
    samples: int = 1,
) -> torch.Tensor:
    """Decoded frames [samples * frames, H, W, 3] in 0..1 blended with the frames they were repainted
    from, ``source`` [N, H', W', C] in 0..1 (fitted to H x W with ``resize`` as they were for
    encoding), at the edge of the repainted tokens ``grid`` [latents, h, w] (the first frames of
    each sample): outside the tokens exactly the source, inside rising to the result over
    ``radius`` pixels."""
    from ..io.pixels import fit_frames

    h, w = frames.shape[1:3]
    weights = grid_feather_weights(grid, (h, w), ratio, int(radius))[..., None]  # [F, H, W, 1]
    f = weights.shape[0]
    if source.shape[0] < f:
        raise InputError(
            f"source has {source.shape[0]} frame(s); the repainted latents decode to {f}. Connect the "
            "frames that were encoded."
        )
    source = source[:f, :, :, :3]
    if tuple(source.shape[1:3]) != (h, w):
        source = ((fit_frames(source, w, h, resize) + 1) / 2).movedim(1, -1)
    source = source.to(frames)
    per_sample = frames.shape[0] // samples
    out = frames.clone()
    for start in range(0, frames.shape[0], per_sample):
        out[start : start + f] = blend(frames[start : start + f], source, weights)
    return out


# -- outpainting ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where the source sits on the canvas, in canvas pixels."""

    left: int
    top: int
    width: int
    height: int


def place(
    src_h: int, src_w: int, canvas_h: int, canvas_w: int, zoom: float = 1.0, x: float = 0.5, y: float = 0.5
) -> Placement:
    """Scale the source to fit inside the canvas (times ``zoom`` <= 1) and put it at (x, y):
    fractions of the free space on the left / above (0.5 = centered)."""
    if not (0 < zoom <= 1) or not (0 <= x <= 1) or not (0 <= y <= 1):
        raise InputError(f"zoom = {zoom}, x = {x}, y = {y}; expected 0 < zoom <= 1 and x, y in [0, 1].")
    scale = min(canvas_h / src_h, canvas_w / src_w) * zoom
    w, h = max(1, min(canvas_w, round(src_w * scale))), max(1, min(canvas_h, round(src_h * scale)))
    return Placement(round((canvas_w - w) * x), round((canvas_h - h) * y), w, h)


def outpaint_canvas(
    frames: torch.Tensor,
    canvas_h: int,
    canvas_w: int,
    zoom: float = 1.0,
    x: float = 0.5,
    y: float = 0.5,
    fill: str = "edge",
) -> Tuple[torch.Tensor, torch.Tensor, Placement]:
    """Frames [F, H, W, C] in 0..1 -> (canvas frames [F, canvas_h, canvas_w, C], mask [1, canvas_h,
    canvas_w] (1 = to generate), placement). ``fill`` is what the area to generate holds before
    generation: 'edge' repeats the border pixels (the VAE encoder then sees no hard edge next to
    the kept tokens), 'gray' or 'black'."""
    if fill not in FILLS:
        raise InputError(f"fill '{fill}' is not one of {list(FILLS)}.")
    if frames.dim() != 4 or frames.shape[0] < 1:
        raise InputError(f"image has shape {list(frames.shape)}; expected [frames, H, W, channels].")
    if canvas_h < 1 or canvas_w < 1:
        raise InputError(f"canvas {canvas_w}x{canvas_h}; expected a positive size.")
    p = place(frames.shape[1], frames.shape[2], canvas_h, canvas_w, zoom, x, y)
    x_chw = frames.movedim(-1, 1).float()
    if (p.height, p.width) != tuple(frames.shape[1:3]):
        x_chw = F.interpolate(
            x_chw, size=(p.height, p.width), mode="bilinear", align_corners=False, antialias=True
        ).clamp(0, 1)
    pad = (p.left, canvas_w - p.left - p.width, p.top, canvas_h - p.top - p.height)
    if fill == "edge":
        canvas = F.pad(x_chw, pad, mode="replicate")
    else:
        canvas = F.pad(x_chw, pad, mode="constant", value=0.5 if fill == "gray" else 0.0)
    mask = torch.ones(1, canvas_h, canvas_w)
    mask[:, p.top : p.top + p.height, p.left : p.left + p.width] = 0
    return canvas.movedim(1, -1).to(frames.dtype), mask, p


# -- NovaPipeline / CLI --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeatherBlend:
    """Blends decoded frames with their source: ``source`` [1, 3, F, H, W] pixels in [-1, 1],
    ``weights`` [F, H, W] from :func:`feather_weights`. Frames past F (generated after the given
    ones) pass unchanged."""

    source: torch.Tensor
    weights: torch.Tensor

    def __call__(self, pixels: torch.Tensor, start: int = 0) -> torch.Tensor:
        """``pixels`` [B, 3, t, H, W]: decoded frames ``start`` .. ``start + t`` of the video."""
        n = min(pixels.shape[2], self.weights.shape[0] - start)
        if n <= 0:
            return pixels
        out = pixels.clone()
        out[:, :, :n] = blend(pixels[:, :, :n], self.source[:, :, start : start + n], self.weights[start : start + n])
        return out


def mask_from_rgb(frames, name: str = "mask") -> torch.Tensor:
    """Decoded mask image/video frames (uint8 [H, W, 3] each, white = regenerate) -> [M, H, W]."""
    return as_mask_frames(np.stack([np.asarray(f, dtype=np.float32).mean(axis=-1) / 255.0 for f in frames]), name)


def masked_prefix(
    pipe,
    mask,
    image=None,
    video=None,
    latents=None,
    threshold: float = DEFAULT_THRESHOLD,
    grow: int = 0,
    feather: int = 0,
):
    """What ``NovaPipeline(mask=...)`` and ``--mask`` generate from: (prefix latents [1, C, N, h, w],
    token mask [N, L], a :class:`FeatherBlend` or None). The frames to repaint are an image (uint8
    HxWx3), a clip (uint8 frames) or latents; they are encoded to the posterior mean, so the seed
    draws what plain generation draws."""
    from ..io.images import fit_image
    from ..io.latents import as_prefix

    grow, feather = check_grow(grow), check_feather(feather)  # before any encoding
    given = [k for k, v in (("image", image), ("video", video), ("latents", latents)) if v is not None]
    if len(given) != 1:
        raise InputError(
            f"a mask repaints given frames: pass exactly one of image, video or latents (got {given or 'none'})."
        )
    if latents is None and pipe.vae is None:
        raise InputError("inpainting an image or clip needs the VAE; load the pipeline with load_vae=True.")
    source = None
    if latents is not None:
        prefix = as_prefix(latents)
    elif image is not None:
        h, w = pipe.config.image_size
        source = torch.from_numpy(np.array(fit_image(image, h, w))).float().sub(127.5).div(127.5).permute(2, 0, 1)[None]
        prefix = pipe.vae.encode(source, sample=False).unsqueeze(2)
        source = source.unsqueeze(2)
    else:
        prefix = pipe.encode_video(video)
        h, w = pipe.config.image_size
        kept = [fit_image(f, h, w) for f in list(video)[: frames_for_latents(prefix.shape[2], pipe.vae.temporal_ratio)]]
        source = torch.from_numpy(np.stack(kept)).float().sub(127.5).div(127.5).permute(3, 0, 1, 2)[None]
    clip_frames = None if video is None else len(video)
    regen = token_mask(mask, pipe.config, prefix.shape[2], threshold, grow, clip_frames=clip_frames)
    if not feather:
        return prefix, regen, None
    if source is None:
        source = pipe.decode_latents(prefix[:1])
    ratio = 4 if pipe.config.is_video_model else 1
    grid = regen.view(-1, *pipe.config.image_base_size)
    weights = grid_feather_weights(grid, tuple(pipe.config.image_size), ratio, feather)
    return prefix, regen, FeatherBlend(source, weights)

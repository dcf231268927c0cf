"""Masks in the nodes: NOVA AR Frame Step and NOVA Generate repaint the given frames under a mask
(core SetLatentNoiseMask's ``noise_mask``, LoadImage's alpha, the mask editor, core mask nodes),
and NOVA Outpaint Canvas places a picture or clip on the checkpoint's canvas with the mask of the
area to generate. The rules live in :mod:`nova.sampling.masks`; masks and latents are never modified.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch

from ..nova.errors import InputError
from ..nova.sampling import masks
from .compat import io
from .handles import NovaModel, latent_tensor

log = logging.getLogger("nova")
DEFAULT_THRESHOLD = masks.DEFAULT_THRESHOLD
# LATENT key set by a masked AR Frame Step: bool [N, gh, gw], the tokens of the first N frames it
# regenerated (NOVA VAE Decode's feather reads it). The noise_mask itself is not passed on: a
# chained step continues the video instead of repainting it again.
REPAINTED = "nova_repainted"
# LATENT key set by NOVA VAE Encode: its resize mode ('crop', 'stretch', 'none'), so masks and the
# feather's source are fitted to the latents' frames the way those frames were.
RESIZE = "nova_resize"
# LATENT key set by NOVA VAE Encode: how many frames it was given, so a noise_mask as long as that
# clip is accepted even where encoding kept a single latent frame (nova.sampling.masks rule 1).
ENCODED_FRAMES = "nova_encoded_frames"
MAX_GROW = masks.MAX_GROW
MAX_FEATHER = masks.MAX_FEATHER


def mask_inputs():
    """The mask rule's knobs (optional, so API workflows saved before them still run)."""
    return [
        io.Float.Input(
            "mask_threshold",
            default=masks.DEFAULT_THRESHOLD,
            min=0.0,
            max=0.99,
            step=0.01,
            optional=True,
            tooltip="With a mask: a token (16x16 pixels) is regenerated if any of its mask pixels is above this.",
        ),
        io.Int.Input(
            "mask_grow",
            default=0,
            min=0,
            max=MAX_GROW,
            optional=True,
            tooltip="With a mask: widen the regenerated region by this many tokens (16 pixels each).",
        ),
    ]


def token_mask(
    mask,
    model: NovaModel,
    latent_frames: int,
    threshold: float,
    grow: int,
    name: str,
    resize: str = "crop",
    clip_frames: Optional[int] = None,
) -> torch.Tensor:
    """A MASK / noise_mask (pixel or latent size, 1 or per-frame) -> bool [T, L] (True = regenerate)."""
    return masks.token_mask(
        mask,
        model.config,
        latent_frames,
        float(threshold),
        int(grow),
        name=name,
        resize=resize,
        clip_frames=clip_frames,
    )


def noise_mask_tokens(latent: Optional[dict], model: NovaModel, threshold: float, grow: int) -> Optional[torch.Tensor]:
    """The token mask of a LATENT's ``noise_mask`` (None without one)."""
    if latent is None:
        return None
    frames = latent_tensor(latent).shape[2]  # (a bare tensor or a dict without samples is named here)
    if latent.get("noise_mask") is None:
        return None
    return token_mask(
        latent["noise_mask"],
        model,
        frames,
        threshold,
        grow,
        "the latents' noise_mask",
        resize_of(latent),
        latent.get(ENCODED_FRAMES),
    )


def resize_of(latent: dict) -> str:
    """How a LATENT's frames were fitted to the checkpoint's size (NOVA VAE Encode's resize; 'crop'
    when unknown: the CLI, the pipeline and NOVA Generate crop)."""
    return latent.get(RESIZE) or "crop"


def keep_given_tokens(latent: dict, given: torch.Tensor, regen: torch.Tensor, model: NovaModel) -> dict:
    """Copy the kept tokens of the given raw latents [B, C, N, h, w] into the result, so they come
    back bit for bit (the engine works in scaled space; raw -> scaled -> raw may round), and note
    which tokens were regenerated (``REPAINTED``)."""
    cfg = model.config
    gh, gw = cfg.image_base_size
    p = cfg.patch_size
    keep = (~regen).view(-1, 1, gh, gw).repeat_interleave(p, 2).repeat_interleave(p, 3)  # [N, 1, h, w]
    keep = keep.transpose(0, 1).unsqueeze(0).to(latent["samples"].device)  # [1, 1, N, h, w]
    given = given.unsqueeze(2) if given.dim() == 4 else given
    out = latent["samples"].clone()
    n = given.shape[2]
    out[:, :, :n] = torch.where(keep, given.to(out), out[:, :, :n])
    return {**latent, "samples": out, REPAINTED: regen.view(-1, gh, gw).cpu()}


def carry_repainted(latent: dict, given: Optional[dict]) -> dict:
    """The given frames stay the output's first frames, so what the LATENT says about them carries
    over: the tokens an earlier step repainted (``REPAINTED``, for NOVA VAE Decode's feather; unless
    this step repainted) and how they were fitted (``RESIZE``)."""
    if given is None:
        return latent
    carried = {k: given[k] for k in (REPAINTED, RESIZE) if given.get(k) is not None and latent.get(k) is None}
    return {**latent, **carried} if carried else latent


def feather_decoded(images: torch.Tensor, latent: dict, source: torch.Tensor, radius: int, ratio: int) -> torch.Tensor:
    """Blend IMAGE frames decoded from a repainted LATENT ([B * frames, H, W, 3]) with the source
    frames (IMAGE, fitted to H x W as NOVA VAE Encode did: the LATENT's ``RESIZE``) at the mask edge:
    pixels outside the regenerated tokens (the mask rounded out to 16-px cells, after mask_grow) become
    the source's, the blend ramps up over ``radius`` pixels inside them (:func:`nova.sampling.masks.feather_weights`).
    Latents without a repainted area pass unchanged (with a warning when a feather was asked for)."""

    grid = latent.get(REPAINTED)
    if not radius:
        return images
    if grid is None:
        log.warning(
            "NOVA feather %d: these latents carry no repainted area (%s), so the plain decode is returned. "
            "Feather the output of an AR Frame Step that repainted under a noise_mask.",
            radius,
            REPAINTED,
        )
        return images
    return masks.feather_frames(images, grid, source, int(radius), ratio, resize_of(latent), latent["samples"].shape[0])


class NovaOutpaintCanvas(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NOVAOutpaintCanvas",
            display_name="NOVA Outpaint Canvas",
            category="NOVA",
            description=(
                "Places an image or clip on the checkpoint's canvas (scaled to fit, times zoom) and outputs "
                "the mask of the area around it. Encode the canvas, attach the mask with Set Latent Noise "
                "Mask and run AR Frame Step with latent_frames 0: NOVA generates the rest (a 4:3 clip "
                "becomes 768x480)."
            ),
            inputs=[
                io.Image.Input("image", tooltip="An image or video frames."),
                io.Int.Input(
                    "width",
                    default=768,
                    min=64,
                    max=4096,
                    step=8,
                    tooltip="The checkpoint's width (osp480: 768; sdxl1024: 1024).",
                ),
                io.Int.Input(
                    "height",
                    default=480,
                    min=64,
                    max=4096,
                    step=8,
                    tooltip="The checkpoint's height (osp480: 480; sdxl1024: 1024).",
                ),
                io.Float.Input(
                    "zoom",
                    default=1.0,
                    min=0.05,
                    max=1.0,
                    step=0.01,
                    tooltip="Size of the source: 1 = as large as fits; less leaves room on every side.",
                ),
                io.Float.Input(
                    "x",
                    default=0.5,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="Horizontal position: 0 = left edge, 0.5 = centered, 1 = right edge.",
                ),
                io.Float.Input(
                    "y",
                    default=0.5,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="Vertical position: 0 = top, 0.5 = centered, 1 = bottom.",
                ),
                io.Combo.Input(
                    "fill",
                    options=list(masks.FILLS),
                    default="edge",
                    tooltip=(
                        "What the area to generate holds before generation. edge: the border pixels repeated "
                        "(no hard edge for the VAE next to the kept tokens)."
                    ),
                ),
            ],
            outputs=[io.Image.Output(display_name="image"), io.Mask.Output(display_name="mask")],
        )

    @classmethod
    def execute(cls, image, width, height, zoom=1.0, x=0.5, y=0.5, fill="edge") -> io.NodeOutput:
        if not isinstance(image, torch.Tensor) or image.dim() != 4:
            raise InputError("image must be a ComfyUI IMAGE [frames, H, W, channels].")
        canvas, mask, _ = masks.outpaint_canvas(image, int(height), int(width), float(zoom), float(x), float(y), fill)
        return io.NodeOutput(canvas, mask)

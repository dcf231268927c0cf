"""Frames as the nodes hold them (IMAGE: [N, H, W, C] floats in 0..1) to the pixels a VAE encodes:
[N, 3, height, width] in [-1, 1], cropped or stretched to the checkpoint's size."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import InputError
from .images import center_crop_box


def pixels_to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """A VAE's pixels [B, 3, (T,) H, W] in [-1, 1] -> uint8 channels last, [B, (T,) H, W, 3],
    truncating after clamping as the official code does."""
    order = (0, 2, 3, 4, 1) if pixels.dim() == 5 else (0, 2, 3, 1)
    return pixels.permute(*order).mul(127.5).add(127.5).clamp(0, 255).to(torch.uint8).cpu().numpy()


def check_images(images) -> torch.Tensor:
    """A ComfyUI IMAGE [N, H, W, C] (or a list of same-sized images) with at least one frame."""
    if isinstance(images, (list, tuple)):
        items = [t.unsqueeze(0) if isinstance(t, torch.Tensor) and t.dim() == 3 else t for t in images]
        if not items or not all(isinstance(t, torch.Tensor) for t in items):
            raise InputError("image is an empty list or holds something other than IMAGE tensors.")
        sizes = sorted({tuple(t.shape[1:3]) for t in items})
        if len(sizes) > 1:
            shown = ", ".join(f"{w}x{h}" for h, w in sizes)
            raise InputError(f"image is a list of images of different sizes ({shown}); resize them to one size first.")
        images = torch.cat(items)
    if not isinstance(images, torch.Tensor):
        raise InputError(f"image is a {type(images).__name__}; expected a ComfyUI IMAGE tensor [frames, H, W, 3].")
    if images.dim() != 4 or images.shape[-1] < 3 or images.shape[1] < 1 or images.shape[2] < 1:
        raise InputError(f"image has shape {list(images.shape)}; expected a ComfyUI IMAGE [frames, H, W, 3].")
    if images.shape[0] < 1:
        raise InputError("image has 0 frames; connect an image or a clip with at least one frame.")
    return images


def fit_frames(images: torch.Tensor, width: int, height: int, mode: str) -> torch.Tensor:
    """IMAGE [N, H, W, C] in 0..1 -> [N, 3, height, width] in [-1, 1]. ``crop`` center-crops to the
    target aspect ratio then resizes (as the official demo), ``stretch`` resizes, ``none`` requires
    the exact size."""
    images = check_images(images)
    x = images[..., :3].movedim(-1, 1).float()
    h, w = x.shape[-2:]
    if (h, w) != (height, width):
        if mode == "none":
            raise InputError(f"image is {w}x{h}; this checkpoint needs {width}x{height}. Use resize mode 'crop'.")
        if mode == "crop":
            top, bottom, left, right = center_crop_box(h, w, height, width)
            x = x[..., top:bottom, left:right]
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0, 1) * 2 - 1

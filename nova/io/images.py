"""Input images to uint8 RGB by their real range, and the official demo's crop and resize.

Arrays and PIL images arrive in many forms: 8-bit, 16-bit (a 16-bit PNG), float in [0, 1] or in
[-1, 1], grayscale, with alpha. Each is converted by what its type can hold, never by guessing
from a max() that happens to be small, so a 16-bit image is not taken as 8-bit (all white) and a
[-1, 1] image is not clipped to its upper half.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

# PIL modes holding more than 8 bits per sample, with their full-scale value.
_WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}


def pil_to_array(image) -> np.ndarray:
    """A PIL image -> HxWx3 uint8 (16-bit and 32-bit integer modes scaled from 0..65535)."""
    if image.mode in _WIDE_MODES:
        arr = np.asarray(image).astype(np.float64)
        return to_rgb8(arr / _WIDE_MODES[image.mode], "image")
    if image.mode == "F":
        return to_rgb8(np.asarray(image), "image")
    return np.asarray(image.convert("RGB"))


def to_rgb8(image, name: str = "image") -> np.ndarray:
    """An HxW, HxWx1, HxWx3 or HxWx4 image -> HxWx3 uint8.

    uint8 as is; uint16 from 0..65535; other integers from 0..255 (refused when outside it);
    bool as black/white; floats from [0, 1], from [-1, 1] when they hold negative values, and
    from 0..255 when they exceed 1 (anything else is refused: its range is unknown)."""
    if hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image
        return pil_to_array(image)
    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().cpu().float().numpy() if image.is_floating_point() else image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(
            f"{name} has shape {list(arr.shape)}; expected an HxWx3 (RGB) array (HxW, HxWx1 or HxWx4 also work)."
        )
    arr = arr[..., :3]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return _from_unit(arr.astype(np.float64) / 65535.0)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise InputError(
                f"{name} is {arr.dtype} with values in [{lo}, {hi}]; expected 0..255 (or pass uint8/uint16)."
            )
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise InputError(f"{name} contains NaN/Inf; expected finite values in [0, 1] or [-1, 1].")
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0 and hi <= 1:
            return _from_unit(arr)
        if lo >= -1 and hi <= 1:
            return _from_unit((arr + 1) / 2)
        if lo >= 0 and hi <= 255:
            return _from_unit(arr / 255.0)
        raise InputError(
            f"{name} is {arr.dtype} with values in [{lo:g}, {hi:g}]; float images must be in [0, 1], [-1, 1] or 0..255."
        )
    raise InputError(f"{name} has dtype {arr.dtype}; expected uint8, uint16 or float pixels.")


def _from_unit(arr: np.ndarray) -> np.ndarray:
    return np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)


def center_crop_box(h: int, w: int, height: int, width: int):
    """(top, bottom, left, right) of the largest centered region of an h x w image with the
    aspect ratio of height x width (the official demo crops so before resizing)."""
    target = width / height
    if w / h > target:  # too wide: crop the sides
        new_w = max(1, round(h * target))
        return 0, h, (w - new_w) // 2, (w - new_w) // 2 + new_w
    new_h = max(1, round(w / target))
    return (h - new_h) // 2, (h - new_h) // 2 + new_h, 0, w


def fit_image(image, height: int, width: int, resize: bool = True, name: str = "image") -> np.ndarray:
    """Any image :func:`to_rgb8` takes -> height x width x 3 uint8: center-crop to the target
    aspect ratio and resize (as the official demo app does)."""
    from PIL import Image

    arr = to_rgb8(image, name)
    h, w = arr.shape[:2]
    if (h, w) == (height, width):
        return arr
    if not resize:
        raise InputError(f"{name} is {w}x{h}; this checkpoint needs exactly {width}x{height} (WxH).")
    top, bottom, left, right = center_crop_box(h, w, height, width)
    arr = np.ascontiguousarray(arr[top:bottom, left:right])
    return np.asarray(Image.fromarray(arr).resize((width, height), Image.BILINEAR))

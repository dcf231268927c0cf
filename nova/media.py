"""Writing frames to files: MP4 (H.264 via PyAV), animated WebP/GIF, PNG."""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Sequence

import numpy as np

from .errors import InputError


def write_video(frames: np.ndarray, path: str, fps: float = 12.0) -> str:
    """``frames``: [T, H, W, 3] uint8. The format follows the extension (.mp4, .webp, .gif, .png).
    Writes to a temporary name first, so a failed write leaves no half-written file."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be a [T, H, W, 3] uint8 array, got {frames.dtype} {list(frames.shape)}.")
    ext = os.path.splitext(path)[1].lower()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.part{ext}"
    try:
        if ext == ".mp4":
            _write_mp4(frames, tmp, fps)
        elif ext in (".webp", ".gif"):
            _write_animated(frames, tmp, fps)
        elif ext == ".png":
            if len(frames) != 1:
                raise InputError(f"{path}: a PNG holds one frame, got {len(frames)}; use .mp4, .webp or .gif.")
            from PIL import Image

            Image.fromarray(frames[0]).save(tmp, format="PNG")
        else:
            raise InputError(f"{path}: unsupported extension {ext!r}; use .mp4, .webp, .gif or .png.")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _write_mp4(frames: np.ndarray, path: str, fps: float) -> None:
    try:
        import av
    except ImportError as exc:
        raise InputError("writing .mp4 needs PyAV (pip install av); or write .webp/.gif instead.") from exc
    h, w = frames.shape[1:3]
    # H.264 with yuv420p needs even sizes; pad by repeating the last row/column.
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_animated(frames: np.ndarray, path: str, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    fmt = "WEBP" if path.lower().endswith(".webp") else "GIF"
    images[0].save(path, format=fmt, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)


def read_frames(path: str) -> Sequence[np.ndarray]:
    """Decode a video or image file to a list of [H, W, 3] uint8 frames."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
        from PIL import Image

        with Image.open(path) as im:
            return [np.asarray(im.convert("RGB"))]
    import av

    with av.open(path) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]

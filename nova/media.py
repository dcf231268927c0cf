"""Writing frames to files: MP4 (H.264 via PyAV), animated WebP/GIF, PNG.

:class:`VideoWriter` takes frames chunk by chunk (a long video is decoded and written in temporal
tiles, never held whole) and writes under a temporary name, renamed on success: a failed or
interrupted write leaves no half-written file.
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import List, Sequence

import numpy as np

from .errors import InputError

FORMATS = (".mp4", ".webp", ".gif", ".png")


class VideoWriter:
    def __init__(self, path: str, fps: float = 12.0):
        self.path, self.fps = path, float(fps)
        self.ext = os.path.splitext(path)[1].lower()
        if self.ext not in FORMATS:
            raise InputError(f"{path}: unsupported extension {self.ext!r}; use .mp4, .webp, .gif or .png.")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.tmp = f"{path}.part{self.ext}"
        self.count = 0
        self._container = self._stream = None
        self._buffer: List[np.ndarray] = []  # animated/PNG formats are written at close

    def write(self, frames: np.ndarray) -> None:
        """``frames``: [T, H, W, 3] uint8."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise InputError(f"frames must be a [T, H, W, 3] uint8 array, got {frames.dtype} {list(frames.shape)}.")
        self.count += len(frames)
        if self.ext != ".mp4":
            self._buffer.extend(frames)
            return
        import av

        if self._container is None:
            h, w = frames.shape[1:3]
            self._container = av.open(self.tmp, mode="w", format="mp4")
            self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1000))
            # H.264 with yuv420p needs even sizes: frames are padded by repeating the last row/column.
            self._stream.width, self._stream.height = w + w % 2, h + h % 2
            self._stream.pix_fmt, self._stream.options = "yuv420p", {"crf": "18"}
        ph, pw = self._stream.height, self._stream.width
        if frames.shape[1:3] != (ph, pw):
            frames = np.pad(frames, ((0, 0), (0, ph - frames.shape[1]), (0, pw - frames.shape[2]), (0, 0)), mode="edge")
        for frame in frames:
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                self._container.mux(packet)

    def close(self) -> str:
        if self.ext == ".mp4" and self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
        elif self.ext == ".png":
            if len(self._buffer) != 1:
                raise InputError(f"{self.path}: a PNG holds one frame, got {len(self._buffer)}; use .mp4, .webp or .gif.")
            from PIL import Image

            Image.fromarray(self._buffer[0]).save(self.tmp, format="PNG")
        elif self._buffer:
            from PIL import Image

            images = [Image.fromarray(f) for f in self._buffer]
            fmt = "WEBP" if self.ext == ".webp" else "GIF"
            images[0].save(self.tmp, format=fmt, save_all=True, append_images=images[1:], duration=int(1000 / self.fps), loop=0)
        if not os.path.exists(self.tmp):
            raise InputError(f"{self.path}: no frames were written.")
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
        if os.path.exists(self.tmp):
            os.remove(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def write_video(frames: np.ndarray, path: str, fps: float = 12.0) -> str:
    """``frames``: [T, H, W, 3] uint8; the format follows the extension."""
    with VideoWriter(path, fps) as writer:
        writer.write(frames)
    return path


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

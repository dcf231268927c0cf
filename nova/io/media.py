"""Reading input images and clips, and writing frames to files: MP4 (H.264 via PyAV), animated
WebP/GIF, PNG.

:class:`VideoWriter` takes frames chunk by chunk (a long video is decoded and written in temporal
tiles, never held whole) into a temporary file with a unique name beside the target, and moves it
over the target with ``os.replace`` only once the file is complete. Any failure, a failing close
(disk full, the target became a directory) or SIGTERM included, removes the temporary file and
leaves an existing target as it was.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import signal
import tempfile
import threading
from fractions import Fraction
from typing import List, Optional, Sequence

import numpy as np

from ..errors import InputError

FORMATS = (".mp4", ".webp", ".gif", ".png")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


# The frame rates the nodes' widgets offer, for every front end. Far outside them the files break:
# MP4 keeps the rate as a fraction with a denominator <= 1000 (below 1/1000 it became 0, and the
# muxer's default 24), GIF a frame time in 1/100 s up to 65535.
MIN_FPS, MAX_FPS = 1.0, 120.0
# Larger inputs are refused before decoding (they are resized to the checkpoint's size anyway).
MAX_INPUT_PIXELS = 8192 * 8192
# The decoded RGB frames of one clip, at most: a clip is held whole at its own size before it is
# resized, so a short file of many large frames (a 48 KB MP4 of 1200 frames at 720p: 3.3 GB) is
# refused from its header, and a decode that outgrows it (a header that lies) stops there.
# 2 GiB: 776 frames at 1280x720, 1941 at 768x480.
MAX_DECODED_BYTES = 2 << 30


def check_fps(fps) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise InputError(f"fps = {fps!r}; expected a finite number > 0 (NOVA was trained at 12).")
    if not MIN_FPS <= fps <= MAX_FPS:
        raise InputError(f"fps = {fps!r}; expected {MIN_FPS:g} .. {MAX_FPS:g} (NOVA was trained at 12).")
    return float(fps)


def check_output(path: str, frames: Optional[int] = None, fps: Optional[float] = None) -> str:
    """Everything about an output file that can be known before generating: the extension, that
    it is not a folder, that its folder is (or can be made) writable, that a PNG gets one frame,
    and the fps."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise InputError(f"{path}: unsupported extension {ext or '(none)'!r}; use .mp4, .webp, .gif or .png.")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder; give a file name ending in {ext}.")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise InputError(f"{path}: the file exists and is not writable.")
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InputError(f"{path}: {existing} is a file, so the folder {folder} cannot be made.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{path}: no permission to write in {existing}.")
    try:  # (os.access says yes to root everywhere, and /proc or a read-only mount refuse anyway)
        fd, probe = tempfile.mkstemp(prefix=".nova-write-check.", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise InputError(f"{path}: cannot write in {existing} ({exc.strerror or exc}).") from None
    if ext == ".png" and frames is not None and frames != 1:
        raise InputError(f"{path}: a PNG holds one frame, this makes {frames}; use .mp4, .webp or .gif.")
    if fps is not None:
        check_fps(fps)
    return path


# -- cleaning up on SIGTERM -------------------------------------------------------------------
_LIVE: set = set()  # temporary files of writers still open
_LOCK = threading.Lock()
_PREVIOUS_HANDLER = None


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM while a writer is open, so it can clean up."""


def _on_sigterm(signum, frame):
    raise Terminated(128 + signum)


def _register(tmp: str) -> None:
    """Track a temporary file; while any is open (and only in the main thread of a program that
    left SIGTERM at its default), SIGTERM raises :class:`Terminated` so writers abort cleanly."""
    global _PREVIOUS_HANDLER
    with _LOCK:
        _LIVE.add(tmp)
        if threading.current_thread() is threading.main_thread() and _PREVIOUS_HANDLER is None:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                _PREVIOUS_HANDLER = signal.signal(signal.SIGTERM, _on_sigterm)


def _unregister(tmp: str) -> None:
    global _PREVIOUS_HANDLER
    with _LOCK:
        _LIVE.discard(tmp)
        if not _LIVE and _PREVIOUS_HANDLER is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _PREVIOUS_HANDLER)
            _PREVIOUS_HANDLER = None


def _target_mode(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return 0o644


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# x264's AVX-512 routines read memory the encoder never wrote: on a CPU with AVX-512 the same frames
# gave other bytes (and pixels) from one write to the next. On such a CPU x264 gets the instruction
# sets below AVX-512 that the CPU reports (x264's name: the Linux cpuinfo flag), which encode about
# as fast and give the same bytes on every run (and the same as on AVX2-only CPUs).
X264_BELOW_AVX512 = {
    "MMX2": "mmxext", "SSE": "sse", "SSE2": "sse2", "SSE3": "pni", "SSSE3": "ssse3", "SSE4.1": "sse4_1",
    "SSE4.2": "sse4_2", "AVX": "avx", "FMA3": "fma", "BMI1": "bmi1", "BMI2": "bmi2", "AVX2": "avx2", "LZCNT": "abm",
}  # fmt: skip


@functools.lru_cache(maxsize=None)
def x264_asm() -> Optional[str]:
    """x264's ``asm`` list for this CPU: None (x264 detects it) unless the CPU has AVX-512."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:  # not Linux: torch reads the CPU's features (every AVX-512 CPU has the sets above)
        try:
            import torch

            avx512 = torch.backends.cpu.get_cpu_capability() == "AVX512"
        except Exception:  # an older torch: let x264 detect the CPU
            return None
        return ",".join(X264_BELOW_AVX512) if avx512 else None
    if "avx512f" not in flags:
        return None
    return ",".join(name for name, flag in X264_BELOW_AVX512.items() if flag in flags)


class VideoWriter:
    def __init__(self, path: str, fps: float = 12.0):
        check_output(path, fps=fps)
        self.path, self.fps = path, float(fps)
        self.ext = os.path.splitext(path)[1].lower()
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".part{self.ext}", dir=folder)
        except OSError as exc:
            raise InputError(f"{path}: cannot write in {folder} ({exc.strerror or exc}).") from exc
        os.close(fd)
        _register(self.tmp)
        self._frames = 0
        self._container = self._stream = None
        self._buffer: List[np.ndarray] = []  # animated/PNG formats are written at close

    def write(self, frames: np.ndarray) -> None:
        """``frames``: [T, H, W, 3] uint8. A failing write (disk full) removes the temp file."""
        try:
            self._write(frames)
        except OSError as exc:
            self.abort()
            raise InputError(
                f"{self.path}: could not write the file ({exc.strerror or exc}); nothing was written."
            ) from exc

    def _write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise InputError(f"frames must be a [T, H, W, 3] uint8 array, got {frames.dtype} {list(frames.shape)}.")
        self._frames += len(frames)
        if self.ext == ".png" and self._frames > 1:
            raise InputError(f"{self.path}: a PNG holds one frame, got {self._frames}; use .mp4, .webp or .gif.")
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
            # One encoder thread: x264's choices with several depend on how its threads are scheduled,
            # so the same frames gave other bytes (and pixels) on a busy machine.
            options = {"crf": "18", "threads": "1"}
            asm = x264_asm()
            if asm is not None:
                options["x264-params"] = f"asm={asm}"
            self._stream.pix_fmt, self._stream.options = "yuv420p", options
            self._stream.codec_context.thread_count = 1
        ph, pw = self._stream.height, self._stream.width
        if frames.shape[1:3] != (ph, pw):
            frames = np.pad(frames, ((0, 0), (0, ph - frames.shape[1]), (0, pw - frames.shape[2]), (0, 0)), mode="edge")
        for frame in frames:
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                self._container.mux(packet)

    def close(self) -> str:
        """Finish the file and move it over the target; on any failure nothing is left behind."""
        try:
            if not self._frames:
                raise InputError(f"{self.path}: no frames were written.")
            self._finish()
            os.chmod(self.tmp, _target_mode(self.path))  # mkstemp makes 0600; keep what the target had
            os.replace(self.tmp, self.path)
        except InputError:
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise InputError(
                f"{self.path}: could not write the file ({exc.strerror or exc}); nothing was written."
            ) from exc
        except BaseException:
            self.abort()
            raise
        _unregister(self.tmp)
        return self.path

    def _finish(self) -> None:
        if self.ext == ".mp4":
            container, self._container = self._container, None
            for packet in self._stream.encode():
                container.mux(packet)
            container.close()
            return
        from PIL import Image

        if self.ext == ".png":
            Image.fromarray(self._buffer[0]).save(self.tmp, format="PNG")
            return
        images = [Image.fromarray(f) for f in self._buffer]
        fmt = "WEBP" if self.ext == ".webp" else "GIF"
        images[0].save(
            self.tmp, format=fmt, save_all=True, append_images=images[1:], duration=int(1000 / self.fps), loop=0
        )

    def abort(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:
                pass
        _remove(self.tmp)
        _unregister(self.tmp)

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


def read_frames(
    path: str, name: str = "input", max_frames: Optional[int] = None, max_bytes: Optional[int] = None
) -> Sequence[np.ndarray]:
    """Decode a video or image file to a list of [H, W, 3] uint8 frames (16-bit images scaled from
    their full range), at most ``max_frames`` of them and at most ``max_bytes`` of them (default
    :data:`MAX_DECODED_BYTES`; refused beyond, from the header when it gives the frame count). The
    size is checked from the header before any decoding. Errors name the file and say what is wrong with it."""
    _check_readable(path, name)
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        frames = _read_image(path, name)
    else:
        frames = _read_video(path, name, max_frames, max_bytes)
    if not frames:
        raise InputError(f"{name} {path}: holds no frames.")
    return frames


@dataclasses.dataclass(frozen=True)
class MediaInfo:
    """What a file's header says: ``frames`` (an image: 1; a video: its frame count, or, counted
    up to a limit, that limit + 1 for a longer one), ``width`` and ``height``."""

    frames: int
    width: int
    height: int


def probe(path: str, name: str = "input", max_frames: Optional[int] = None) -> MediaInfo:
    """The frame count and size of an image or video file without decoding a frame. A video whose
    header has no frame count (Matroska/WebM, some GIFs) has its packets counted instead, up to
    ``max_frames`` + 1. The size is checked as :func:`read_frames` checks it."""
    _check_readable(path, name)
    if os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:  # reads the header only
                _check_size(im.size[0], im.size[1], path, name)
                return MediaInfo(1, im.size[0], im.size[1])
        except Image.DecompressionBombError as exc:
            raise InputError(f"{name} {path}: too large ({exc}); give at most {_max_size()} pixels.") from exc
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"{name} {path}: not a readable image ({type(exc).__name__}: {exc}).") from exc
    import av

    try:
        with av.open(path) as container:
            stream = _video_stream(container, path, name)
            width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
            frames = stream.frames or 0
            if frames <= 0:
                limit = None if max_frames is None else max_frames + 1
                packets = (p for p in container.demux(stream) if p.size)  # (the last is an empty flush packet)
                frames = sum(1 for _ in itertools.islice(packets, limit))
    except InputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{name} {path}: not a readable video ({type(exc).__name__}: {exc}).") from exc
    if frames < 1:
        raise InputError(f"{name} {path}: holds no frames.")
    return MediaInfo(frames, width, height)


def check_decoded_bytes(
    frames: int, width: int, height: int, path: str, name: str, more: bool = False, max_bytes: Optional[int] = None
) -> None:
    """Refuses a clip whose ``frames`` decoded frames of ``width`` x ``height`` (``more``: at least
    that many) would take more than ``max_bytes``, saying how many frames of that size fit."""
    max_bytes = MAX_DECODED_BYTES if max_bytes is None else max_bytes
    size = frames * width * height * 3
    if size > max_bytes:
        raise _too_many_bytes(frames, width, height, size, path, name, more, max_bytes)


def _too_many_bytes(
    frames: int, width: int, height: int, size: int, path: str, name: str, more: bool, max_bytes: int
) -> InputError:
    fit = max_bytes // max(1, width * height * 3)
    return InputError(
        f"{name} {path}: {frames}{' or more' if more else ''} frames of {width}x{height} decode to "
        f"{_bytes(size)}; at most {_bytes(max_bytes)} ({fit} frames of this size) are "
        "read. Give a shorter clip (cut it, e.g. `ffmpeg -i IN -frames:v N OUT`) or a smaller one; "
        "without a mask, frames also bounds what is read."
    )


def _bytes(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def _check_readable(path: str, name: str) -> None:
    if not os.path.exists(path):
        raise InputError(f"{name} {path}: no such file.")
    if os.path.isdir(path):
        raise InputError(f"{name} {path}: is a folder, not an image or video file.")
    if not os.access(path, os.R_OK):
        raise InputError(f"{name} {path}: no permission to read it.")


def _video_stream(container, path: str, name: str):
    if not container.streams.video:
        raise InputError(f"{name} {path}: has no video stream (audio only, or not a video).")
    stream = container.streams.video[0]
    _check_size(stream.codec_context.width or 0, stream.codec_context.height or 0, path, name)
    return stream


def _read_image(path: str, name: str) -> List[np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    from .images import pil_to_array

    try:
        with Image.open(path) as im:  # reads the header only
            _check_size(im.size[0], im.size[1], path, name)
            im.load()
            return [pil_to_array(im)]
    except Image.DecompressionBombError as exc:  # (PIL refuses the largest headers itself, at open)
        raise InputError(f"{name} {path}: too large ({exc}); give at most {_max_size()} pixels.") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{name} {path}: not a readable image ({type(exc).__name__}: {exc}).") from exc


def _max_size() -> str:
    side = int(math.isqrt(MAX_INPUT_PIXELS))
    return f"{side}x{side}"


def _check_size(width: int, height: int, path: str, name: str) -> None:
    if width * height > MAX_INPUT_PIXELS:
        raise InputError(
            f"{name} {path}: {width}x{height} pixels; give at most {_max_size()} "
            "(it is resized to the checkpoint's size anyway)."
        )


def _read_video(
    path: str, name: str, max_frames: Optional[int] = None, max_bytes: Optional[int] = None
) -> List[np.ndarray]:
    import av

    max_bytes = MAX_DECODED_BYTES if max_bytes is None else max_bytes
    try:
        with av.open(path) as container:
            stream = _video_stream(container, path, name)
            width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
            if stream.frames:  # refused from the header when it says how many frames there are
                count = stream.frames if max_frames is None else min(stream.frames, max_frames)
                check_decoded_bytes(count, width, height, path, name, max_bytes=max_bytes)
            frames, size = [], 0
            for frame in itertools.islice(container.decode(stream), max_frames):
                size += frame.width * frame.height * 3
                if size > max_bytes:  # (no count in the header, or one that lied)
                    raise _too_many_bytes(len(frames) + 1, frame.width, frame.height, size, path, name, True, max_bytes)
                frames.append(frame.to_ndarray(format="rgb24"))
            return frames
    except InputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{name} {path}: not a readable video ({type(exc).__name__}: {exc}).") from exc

"""Files are written whole or not at all: a unique temp name beside the target, removed on any
failure (a failing close, a full disk, SIGTERM), the old target left intact."""

import errno
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT

from nova.errors import InputError
from nova.io.media import VideoWriter, check_output, write_video

FRAMES = np.random.RandomState(0).randint(0, 255, (5, 32, 48, 3), dtype=np.uint8)


def _leftovers(folder):
    return sorted(glob.glob(os.path.join(str(folder), ".*part*")) + glob.glob(os.path.join(str(folder), "*part*")))


def test_writers_use_unique_temp_names_beside_the_target(tmp_path):
    target = str(tmp_path / "out.mp4")
    a, b = VideoWriter(target), VideoWriter(target)
    try:
        assert a.tmp != b.tmp and os.path.dirname(a.tmp) == os.path.dirname(b.tmp) == str(tmp_path)
    finally:
        a.abort(), b.abort()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("ext", [".mp4", ".gif", ".webp"])
def test_close_fails_because_the_target_became_a_folder(tmp_path, ext):
    target = tmp_path / f"out{ext}"
    writer = VideoWriter(str(target))
    writer.write(FRAMES)
    target.mkdir()
    (target / "keep").write_text("x")  # a non-empty folder: os.replace cannot take its place
    with pytest.raises(InputError, match=rf"out{ext}: could not write the file"):
        writer.close()
    assert _leftovers(tmp_path) == [] and (target / "keep").read_text() == "x"


@pytest.mark.parametrize("ext", [".mp4", ".webp", ".png"])
def test_full_disk_leaves_the_old_target_intact(tmp_path, monkeypatch, ext):
    target = tmp_path / f"out{ext}"
    target.write_bytes(b"the old video")
    frames = FRAMES[:1] if ext == ".png" else FRAMES

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if ext == ".mp4":
        import av

        real_open = av.open

        class FullDisk:  # the container PyAV opens, but every packet written hits a full disk
            def __init__(self, container):
                self._container = container

            def __getattr__(self, name):
                return getattr(self._container, name)

            mux = disk_full

        # (av's container types are immutable in PyAV 12, so the container is wrapped, not patched)
        monkeypatch.setattr(av, "open", lambda *a, **k: FullDisk(real_open(*a, **k)))
    else:
        from PIL import Image

        monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(InputError, match=rf"out{ext}: could not write the file \(No space left on device\)"):
        write_video(frames, str(target))
    assert target.read_bytes() == b"the old video" and _leftovers(tmp_path) == []


def test_a_complete_write_replaces_the_target(tmp_path):
    target = tmp_path / "out.gif"
    target.write_bytes(b"old")
    write_video(FRAMES, str(target))
    assert target.read_bytes()[:3] == b"GIF" and _leftovers(tmp_path) == []
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


SLOW_WRITER = """
import sys, time, numpy as np
sys.path.insert(0, {root!r})
from nova.io.media import VideoWriter
frames = np.random.RandomState(0).randint(0, 255, (4, 64, 96, 3), dtype=np.uint8)
with VideoWriter({target!r}, 12) as w:
    w.write(frames)
    print("writing", flush=True)
    while True:
        w.write(frames)
        time.sleep(0.01)
"""


def test_sigterm_during_a_write(tmp_path):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"the old video")
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER.format(root=ROOT, target=str(target))], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    assert len(_leftovers(tmp_path)) == 1  # the temp file exists while writing
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert _leftovers(tmp_path) == [] and target.read_bytes() == b"the old video"


@pytest.mark.parametrize(
    "path,kw,match",
    [
        ("out.avi", {}, r"out.avi: unsupported extension '.avi'"),
        ("out", {}, r"unsupported extension '\(none\)'"),
        ("out.png", dict(frames=9), r"out.png: a PNG holds one frame, this makes 9"),
        ("out.mp4", dict(fps=0), r"fps = 0; expected a finite number > 0"),
        ("out.mp4", dict(fps=float("nan")), r"fps = nan"),
    ],
)
def test_output_checks(tmp_path, path, kw, match):
    with pytest.raises(InputError, match=match):
        check_output(str(tmp_path / path), **kw)


def test_output_in_a_folder_that_cannot_exist(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="file.txt is a file"):
        check_output(str(tmp_path / "file.txt" / "out.mp4"))
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(InputError, match="dir.mp4: is a folder"):
        check_output(str(tmp_path / "dir.mp4"))


def test_fps_zero_is_refused_by_the_writer(tmp_path):
    with pytest.raises(InputError, match="fps = 0"):
        write_video(FRAMES, str(tmp_path / "out.mp4"), fps=0)
    assert not os.listdir(tmp_path)


def _busy(seconds):
    """One process per core spinning, so encoder threads are scheduled unevenly."""
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(os.cpu_count() or 2)]


@pytest.mark.parametrize("ext", [".mp4", ".webp", ".gif", ".png"])
def test_same_frames_same_bytes_on_a_busy_machine(tmp_path, ext):
    """The same frames give byte-identical files, while every core is busy (a multi-threaded
    encoder's output depends on how its threads happen to be scheduled)."""
    rng = np.random.default_rng(0)
    count = 1 if ext == ".png" else 9
    base = rng.integers(0, 256, (1, 36, 64, 3), dtype=np.uint8).repeat(4, axis=1).repeat(4, axis=2)
    frames = np.stack([np.roll(base[0], 5 * t, axis=1) for t in range(count)])
    frames = np.clip(frames.astype(np.int16) + rng.integers(-20, 21, frames.shape), 0, 255).astype(np.uint8)
    busy = _busy(20)
    try:
        digests = set()
        for i in range(10):  # (a thread-scheduled encoder differs within a few)
            path = tmp_path / f"v{i}{ext}"
            write_video(frames, str(path), fps=12.0)
            digests.add(path.read_bytes())
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert len(digests) == 1


def test_x264_leaves_out_avx512_only_where_it_is_and_never_fails(monkeypatch, tmp_path):
    """x264's asm list: None (its own detection) off x86-64, on CPUs without AVX-512 and where the
    CPU cannot be read; on AVX-512 CPUs the sets below it that the CPU reports."""
    import builtins
    import platform

    import torch

    from nova.io import media

    real_open = builtins.open

    def cpuinfo(text):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        monkeypatch.setattr(
            builtins, "open", lambda f, *a, **k: real_open(path if f == "/proc/cpuinfo" else f, *a, **k)
        )
        media.x264_asm.cache_clear()
        return media.x264_asm()

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert cpuinfo("flags\t\t: fpu sse sse2 avx avx2 fma bmi1 bmi2\n") is None
    assert cpuinfo("flags\t\t: sse sse2 pni avx avx2 avx512f\n") == "SSE,SSE2,SSE3,AVX,AVX2"

    def no_cpuinfo(f, *a, **k):
        if f == "/proc/cpuinfo":
            raise FileNotFoundError(f)
        return real_open(f, *a, **k)

    monkeypatch.setattr(builtins, "open", no_cpuinfo)
    monkeypatch.delattr(torch.backends.cpu, "get_cpu_capability")  # an older torch
    media.x264_asm.cache_clear()
    assert media.x264_asm() is None
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    media.x264_asm.cache_clear()
    assert media.x264_asm() is None
    media.x264_asm.cache_clear()

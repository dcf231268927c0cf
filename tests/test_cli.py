"""The CLI writes real files: a tiny random checkpoint, a playable MP4, a PNG."""

import os
import subprocess
import sys

import numpy as np
from conftest import ROOT


def _run(args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m", "nova", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_make_tiny_and_generate_video(tmp_path):
    r = _run(["make-tiny", "tiny"], tmp_path)
    assert r.returncode == 0, r.stderr
    for f in (
        "model_index.json",
        "transformer/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "tokenizer/tokenizer.json",
        "scheduler/scheduler_config.json",
    ):
        assert (tmp_path / "tiny" / f).is_file(), f
    r = _run(
        [
            "generate",
            "--model",
            "tiny",
            "--prompt",
            "a fox",
            "--frames",
            "9",
            "--steps",
            "6",
            "--diffusion-steps",
            "3",
            "--out",
            "fox.mp4",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    import av

    with av.open(str(tmp_path / "fox.mp4")) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(video=0))
    assert stream.codec_context.name == "h264" and len(frames) == 9
    assert frames[0].to_ndarray(format="rgb24").shape == (64, 96, 3)


def test_image_model_writes_png(tmp_path):
    assert _run(["make-tiny", "timg", "--preset", "image"], tmp_path).returncode == 0
    r = _run(
        [
            "generate",
            "--model",
            "timg",
            "--prompt",
            "a fox",
            "--steps",
            "4",
            "--diffusion-steps",
            "2",
            "--out",
            "fox.png",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    from PIL import Image

    with Image.open(tmp_path / "fox.png") as im:
        assert im.size == (64, 64)
        fast = np.asarray(im.convert("RGB"), dtype=np.int16)
    # --reference: the plain (official-order) path gives the same picture up to rounding
    r = _run(
        [
            "generate",
            "--model",
            "timg",
            "--prompt",
            "a fox",
            "--steps",
            "4",
            "--diffusion-steps",
            "2",
            "--reference",
            "--out",
            "ref.png",
        ],
        tmp_path,
    )
    assert r.returncode == 0 and "on the reference path" in r.stderr, r.stderr
    with Image.open(tmp_path / "ref.png") as im:
        assert np.abs(np.asarray(im.convert("RGB"), dtype=np.int16) - fast).max() <= 1


def test_cli_speed_modes_are_not_offered(tmp_path):
    """No mode beyond the default was faster on a GPU: the flags still parse (old command lines), are
    hidden from --help, and any non-default value is refused before the model loads."""
    r = _run(["generate", "--help"], tmp_path)
    assert r.returncode == 0 and "--fp8-matmuls" not in r.stdout and "--attention" not in r.stdout
    assert _run(["make-tiny", "timg", "--preset", "image"], tmp_path).returncode == 0
    base = ["generate", "--model", "timg", "--prompt", "a fox", "--steps", "4", "--diffusion-steps", "2"]
    assert _run([*base, "--attention", "auto", "--out", "ok.png"], tmp_path).returncode == 0
    for extra in (["--attention", "math"], ["--fp8-matmuls"], ["--compile"]):
        r = _run([*base, *extra, "--out", "x.png"], tmp_path)
        assert r.returncode == 2 and "is not offered: measured on a GPU" in r.stderr, r.stderr
        assert not (tmp_path / "x.png").exists()


def test_cli_reports_bad_frames(tmp_path):
    assert _run(["make-tiny", "tiny"], tmp_path).returncode == 0
    r = _run(["generate", "--model", "tiny", "--prompt", "a fox", "--frames", "10", "--out", "x.mp4"], tmp_path)
    assert r.returncode == 2 and "1 + 4k" in r.stderr and not (tmp_path / "x.mp4").exists()


# -- issue 11: every check before the model loads; one line, exit status 2 --------------------------
import pytest  # noqa: E402

from nova import __main__ as cli  # noqa: E402
from nova.errors import InputError  # noqa: E402


@pytest.fixture
def no_load(monkeypatch):
    """Fails the test if the CLI gets as far as loading weights."""
    from nova.pipeline import NovaPipeline

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was reported")

    monkeypatch.setattr(NovaPipeline, "from_pretrained", classmethod(loaded))


def _cli(args, capsys):
    rc = cli.main(["generate", *args])
    err = capsys.readouterr().err
    return rc, err


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    import av
    from PIL import Image

    folder = tmp_path_factory.mktemp("media")
    (folder / "junk.png").write_bytes(b"not an image" * 10)
    (folder / "junk.mp4").write_bytes(b"not a video" * 10)
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(folder / "ok.png")
    with av.open(str(folder / "sound.wav"), "w") as c:
        stream = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            c.mux(packet)
    (folder / "file.txt").write_text("x")
    (folder / "dir.mp4").mkdir()
    from nova.io.media import write_video

    write_video(np.zeros((9, 64, 96, 3), np.uint8), str(folder / "clip9.mp4"))
    write_video(np.full((12, 64, 96, 3), 255, np.uint8), str(folder / "mask12.mp4"))
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(folder / "tiny.png")
    (folder / "bomb.png").write_bytes(_png_header(20000, 20000))
    return folder


def _png_header(width, height):
    """A PNG whose header claims width x height pixels (and holds none)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "extra,out,match",
    [
        ([], "x.avi", "x.avi: unsupported extension '.avi'"),
        ([], "dir.mp4", "dir.mp4: is a folder"),
        ([], "file.txt/x.mp4", "file.txt is a file"),
        (["--frames", "9"], "x.png", "x.png: a PNG holds one frame, this makes 9"),
        (["--fps", "0"], "x.mp4", "fps = 0.0; expected a finite number > 0"),
        (["--fps", "-3"], "x.mp4", "fps = -3.0"),
        (["--motion-flow", "-1"], "x.mp4", "--motion-flow = -1.0"),
        (["--seed", str(2**64)], "x.mp4", "seed = 18446744073709551616"),
        (["--seed", "-1"], "x.mp4", "seed = -1"),
        (
            ["--device", "cuda"] if not __import__("torch").cuda.is_available() else ["--device", "cuda:99"],
            "x.mp4",
            "device = 'cuda",
        ),
        (["--device", "banana"], "x.mp4", "device = 'banana'"),
        (["--steps", "0"], "x.mp4", "num_inference_steps = 0"),
        (["--window", "1"], "x.mp4", "--window = 1"),
        (["--loop", "-2"], "x.mp4", "--loop = -2"),
        (["--frames", "10"], "x.mp4", "frames = 10; the video VAE needs 1 \\+ 4k"),
        (["--image", "missing.png"], "x.mp4", "--image .*missing.png: no such file"),
        (["--image", "junk.png"], "x.mp4", "--image .*junk.png: not a readable image"),
        (["--video", "junk.mp4"], "x.mp4", "--video .*junk.mp4: not a readable video"),
        (["--video", "sound.wav"], "x.mp4", "--video .*sound.wav: has no video stream"),
        (["--image", "ok.png", "--video", "ok.png"], "x.mp4", "either --image .* or --video"),
        (["--image", "ok.png", "--mask", "missing.png"], "x.mp4", "--mask .*missing.png: no such file"),
        (["--image", "ok.png", "--mask", "junk.png"], "x.mp4", "--mask .*junk.png: not a readable image"),
        (["--mask", "ok.png"], "x.mp4", "--mask repaints one --image or one --video"),
        (["--image", "ok.png", "--mask", "ok.png", "--mask-threshold", "1.5"], "x.mp4", "--mask-threshold = 1.5"),
        (["--image", "ok.png", "--mask", "ok.png", "--feather", "-1"], "x.mp4", "--feather = -1"),
        # review 7: a masked generation is one segment; these were silently ignored
        (
            ["--image", "ok.png", "--mask", "ok.png", "--loop", "2"],
            "x.mp4",
            "--mask with --window 0 / --blend 0 / --loop 2",
        ),
        (["--image", "ok.png", "--mask", "ok.png", "--window", "3"], "x.mp4", "--mask with --window 3 "),
        (["--image", "ok.png", "--mask", "ok.png", "--blend", "4"], "x.mp4", "--blend 4 "),
        # silently wrong before: 0 frames made 33, a tiny fps became 24 (MP4) or overflowed after the work (GIF)
        (["--frames", "0"], "x.mp4", "frames = 0; the video VAE needs 1 \\+ 4k"),
        (["--fps", "0.0004"], "x.mp4", r"fps = 0.0004; expected 1 .. 120"),
        (["--fps", "0.001"], "x.gif", r"fps = 0.001; expected 1 .. 120"),
        (["--fps", "1000"], "x.mp4", r"fps = 1000.0; expected 1 .. 120"),
        # absurd values that ran for hours, and inputs that were refused only after the weights loaded
        (
            ["--image", "ok.png", "--mask", "ok.png", "--mask-grow", "1000000000"],
            "x.mp4",
            r"--mask-grow = 1000000000; expected an integer in \[0, 64\]",
        ),
        (
            ["--image", "ok.png", "--mask", "ok.png", "--feather", "1000000000"],
            "x.mp4",
            r"--feather = 1000000000; expected an integer in \[0, 256\]",
        ),
        (
            ["--image", "ok.png", "--mask", "tiny.png"],
            "x.mp4",
            "tiny.png is 2x2 .* cannot be mapped to the .* token grid",
        ),
        (
            ["--video", "clip9.mp4", "--mask", "mask12.mp4"],
            "x.mp4",
            "mask12.mp4: has more frames than the 9 of --video",
        ),
        (
            ["--video", "clip9.mp4", "--frames", "5"],
            "x.mp4",
            r"--video has \d+ frames or more .* --frames 5 makes 2: nothing is left to generate",
        ),
        (
            ["--prompt", "b", "--prompt", "c", "--frames", "5"],
            "x.mp4",
            "3 prompt\\(s\\) need at least 3 new latent frames",
        ),
        (["--frames", "16385"], "x.mp4", r"--frames = 16385; at most 16381 \(4096 latent frames\)"),
        ([], "/proc/x.mp4", "/proc/x.mp4: cannot write in /proc"),
        (["--image", "bomb.png"], "x.mp4", "--image .*bomb.png: .*give at most 8192x8192 pixels"),
        (["--image", "ok.png", "--mask", "bomb.png"], "x.mp4", "--mask .*bomb.png: .*give at most 8192x8192 pixels"),
        # speed modes that no GPU run showed faster
        (["--fp8-matmuls", "--reference"], "x.mp4", "fp8 matmuls is not offered"),
        (["--attention", "sage"], "x.mp4", "attention = 'sage' is not offered"),
        (["--compile", "--fp8-matmuls"], "x.mp4", "fp8 matmuls and compiled blocks is not offered"),
        (["--attention", "efficient"], "x.mp4", "attention = 'efficient' is not offered"),
    ],
)
def test_cli_fails_before_loading_the_model(tiny_video, media, no_load, capsys, monkeypatch, extra, out, match):
    import re

    monkeypatch.chdir(media)
    rc, err = _cli(["--model", tiny_video, "--prompt", "a fox", *extra, "--out", out], capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(match, lines[0]), err
    assert not os.path.exists(media / "x.mp4")


def test_cli_mask_video_on_an_image_checkpoint(tiny_image, media, no_load, capsys, monkeypatch):
    """Review 1: --mask --video on an image checkpoint was let through and crashed in the VAE."""
    from nova.io.media import VideoWriter

    monkeypatch.chdir(media)
    with VideoWriter(str(media / "clip3.mp4"), 12.0) as writer:
        writer.write(np.zeros((3, 64, 64, 3), np.uint8))
    rc, err = _cli(
        ["--model", tiny_image, "--prompt", "a fox", "--video", "clip3.mp4", "--mask", "ok.png", "--out", "x.png"],
        capsys,
    )
    assert rc == 2 and "need a video checkpoint" in err and "nova-tiny-image is an image checkpoint" in err, err
    assert len(err.strip().splitlines()) == 1 and not os.path.exists(media / "x.png")


def test_cli_image_alone_on_an_image_checkpoint(tiny_image, media, no_load, capsys, monkeypatch):
    monkeypatch.chdir(media)
    rc, err = _cli(["--model", tiny_image, "--prompt", "a fox", "--image", "ok.png", "--out", "x.png"], capsys)
    assert rc == 2 and "--image on an image checkpoint leaves nothing to generate" in err and "add --mask" in err, err


def test_cli_permission_errors(tiny_video, media, no_load, capsys, monkeypatch):
    """Unreadable inputs and unwritable outputs (os.access is faked: tests may run as root)."""
    real_access = os.access
    denied = {str(media / "ok.png"), str(media)}
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: False if os.path.abspath(p) in denied else real_access(p, mode, **kw)
    )
    rc, err = _cli(
        ["--model", tiny_video, "--prompt", "a fox", "--image", str(media / "ok.png"), "--out", str(media / "x.mp4")],
        capsys,
    )
    assert rc == 2 and "no permission to write in" in err and str(media) in err
    denied.discard(str(media))
    rc, err = _cli(
        ["--model", tiny_video, "--prompt", "a fox", "--image", str(media / "ok.png"), "--out", "/tmp/nova-x.mp4"],
        capsys,
    )
    assert rc == 2 and "ok.png: no permission to read it" in err


def test_cli_missing_checkpoint_names_the_folder(tmp_path, capsys):
    rc, err = _cli(
        ["--model", str(tmp_path / "nowhere"), "--prompt", "a fox", "--out", str(tmp_path / "x.mp4")], capsys
    )
    assert rc == 2 and "nowhere: not a checkpoint folder" in err and len(err.strip().splitlines()) == 1


def test_cli_debug_shows_the_traceback(tiny_video, tmp_path, no_load):
    with pytest.raises(InputError, match="unsupported extension"):
        cli.main(["--debug", "generate", "--model", tiny_video, "--prompt", "a fox", "--out", str(tmp_path / "x.avi")])
    with pytest.raises(InputError, match="fps = 0"):
        cli.main(
            [
                "generate",
                "--debug",
                "--model",
                tiny_video,
                "--prompt",
                "a fox",
                "--fps",
                "0",
                "--out",
                str(tmp_path / "x.mp4"),
            ]
        )


def test_cli_dtype_defaults_to_auto():
    args = cli.build_parser().parse_args(["generate", "--model", "m", "--prompt", "p", "--out", "o.mp4"])
    assert args.dtype == "auto"
    from nova.devices import auto_dtype

    assert auto_dtype("cpu") == __import__("torch").float32


def test_cli_one_line_and_a_progress_bar_from_any_directory(tmp_path):
    """Run from another directory (as the installed ``nova`` script is): an error is one line on
    stderr with exit status 2; a run draws its progress bar on stderr and prints nothing else."""
    r = _run(["make-tiny", "tiny"], tmp_path)
    assert r.returncode == 0 and r.stdout == "" and "random weights" in r.stderr
    r = _run(["generate", "--model", "tiny", "--prompt", "a fox", "--out", "x.avi"], tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = _run(
        [
            "generate",
            "--model",
            "tiny",
            "--prompt",
            "a fox",
            "--frames",
            "5",
            "--steps",
            "3",
            "--diffusion-steps",
            "1",
            "--out",
            "fox.gif",
        ],
        tmp_path,
    )
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert "NOVA: frame 2/2 done, 6/6 set steps" in r.stderr and "ETA" in r.stderr and "Loading weights" not in r.stderr
    assert [line for line in r.stderr.splitlines() if not line.strip()] == []  # no blank lines


def test_make_tiny_refuses_a_folder_that_holds_anything(tiny_video, tmp_path, capsys):
    import hashlib

    weights = os.path.join(tiny_video, "transformer", "diffusion_pytorch_model.safetensors")
    with open(weights, "rb") as f:
        before = hashlib.sha256(f.read()).hexdigest()
    assert cli.main(["make-tiny", tiny_video, "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert f"error: {tiny_video}: exists and is not an empty folder" in err, err
    with open(weights, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == before
    (tmp_path / "empty").mkdir()
    assert cli.main(["make-tiny", str(tmp_path / "empty"), "--preset", "image"]) == 0


def test_more_steps_than_tokens_says_so(tiny_video, media, no_load, capsys, monkeypatch, caplog):
    """The tiny checkpoint's frames have 24 tokens: --steps 64 runs 24 set steps, and says so
    (before the weights load)."""
    import logging

    monkeypatch.chdir(media)
    with caplog.at_level(logging.WARNING, logger="nova"):
        with pytest.raises(AssertionError, match="the model was loaded"):
            _cli(["--model", tiny_video, "--prompt", "a fox", "--steps", "64", "--out", "x.mp4"], capsys)
        assert "--steps 64: a frame of this checkpoint has 24 tokens, so 24 set steps run per frame." in caplog.text
        caplog.clear()
        with pytest.raises(AssertionError, match="the model was loaded"):
            _cli(["--model", tiny_video, "--prompt", "a fox", "--steps", "24", "--out", "x.mp4"], capsys)
        assert "set steps run" not in caplog.text


def test_version_and_defaults_in_every_help(capsys):
    import argparse

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"nova {__import__('nova').__version__}"
    parser = cli.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            default = action.default
            unset = default is None or default is False or default == argparse.SUPPRESS
            hidden = action.help == argparse.SUPPRESS  # (options kept for old command lines, not offered)
            if hidden or not action.option_strings or action.required or unset:
                continue
            assert f"(default: {default})" in text, (name, action.dest)


def _long_clip(path, frames, size=(16, 16)):
    """A clip of ``frames`` black frames; a .mkv header holds no frame count (it is counted)."""
    import av

    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=12)
        stream.width, stream.height = size[1], size[0]
        stream.pix_fmt = "yuv420p"
        black = av.VideoFrame.from_ndarray(np.zeros((*size, 3), np.uint8), format="rgb24")
        for _ in range(frames):
            for packet in stream.encode(black):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return path


@pytest.fixture
def no_decode(monkeypatch):
    """Fails the test if a video file is decoded (its header must have been enough)."""
    import nova.io.media

    def decoded(path, *args, **kwargs):
        raise AssertionError(f"{path} was decoded before it was refused")

    monkeypatch.setattr(nova.io.media, "_read_video", decoded)


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_cli_masked_clip_longer_than_any_video_is_refused_from_its_header(
    tiny_video, media, no_load, no_decode, capsys, monkeypatch, ext
):
    """--video CLIP --mask MASK without --frames: the clip sets the length, so it was decoded whole
    (and 4100 latent frames went on to the weights). MP4 says its count; Matroska's is counted."""
    monkeypatch.chdir(media)
    _long_clip(media / f"long.{ext}", 16400)
    rc, err = _cli(
        ["--model", tiny_video, "--prompt", "a fox", "--video", f"long.{ext}", "--mask", "ok.png", "--out", "x.mp4"],
        capsys,
    )
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"--video long.{ext}: more than 16381 frames; NOVA makes at most 16381 (4096 latent frames)" in err, err
    assert not os.path.exists(media / "x.mp4")


def test_cli_clip_too_large_to_decode_is_refused_from_its_header(tiny_video, media, no_load, capsys, monkeypatch):
    """A short file of many large frames (1200 frames at 720p: 3.3 GB decoded) is refused before
    decoding; the limit is scaled down here so that the clip stays tiny."""
    import nova.io.media

    monkeypatch.chdir(media)
    _long_clip(media / "wide.mp4", 40, (64, 96))
    monkeypatch.setattr(nova.io.media, "MAX_DECODED_BYTES", 30 * 64 * 96 * 3, raising=False)
    real = nova.io.media._read_video
    decoded = []
    monkeypatch.setattr(
        nova.io.media, "_read_video", lambda path, *a, **kw: decoded.append(path) or real(path, *a, **kw)
    )
    rc, err = _cli(
        ["--model", tiny_video, "--prompt", "a fox", "--video", "wide.mp4", "--mask", "ok.png", "--out", "x.mp4"],
        capsys,
    )
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "--video wide.mp4: 40 frames of 96x64 decode to 0.7 MiB; at most 0.5 MiB (30 frames of this size)" in err, (
        err
    )
    assert "Give a shorter clip" in err and decoded == []


def test_decoding_stops_at_the_byte_limit_when_the_header_has_no_count(tmp_path, monkeypatch):
    import nova.io.media
    from nova.errors import InputError
    from nova.io.media import read_frames

    _long_clip(tmp_path / "wide.mkv", 40, (64, 96))
    monkeypatch.setattr(nova.io.media, "MAX_DECODED_BYTES", 30 * 64 * 96 * 3, raising=False)
    with pytest.raises(InputError, match=r"--video .*wide.mkv: 31 or more frames of 96x64 decode to 0.5 MiB; at most"):
        read_frames(str(tmp_path / "wide.mkv"), "--video")
    assert len(read_frames(str(tmp_path / "wide.mkv"), "--video", max_frames=30)) == 30


def test_cli_masked_clip_within_the_limits_is_read_whole(tiny_video, media, no_load, capsys, monkeypatch):
    """No --frames with a mask: the clip's length is kept (41 frames, not cut at the default 33)."""
    from nova import checks

    monkeypatch.chdir(media)
    _long_clip(media / "clip41.mkv", 41, (64, 96))
    seen = {}
    real = checks.check_mask
    monkeypatch.setattr(
        checks,
        "check_mask",
        lambda o, config, mask, clip_frames: (
            seen.setdefault("clip", clip_frames) and real(o, config, mask, clip_frames)
        ),
    )
    with pytest.raises(AssertionError, match="the model was loaded"):  # (every check passed)
        cli.main(
            [
                "generate",
                "--model",
                tiny_video,
                "--prompt",
                "a fox",
                "--video",
                "clip41.mkv",
                "--mask",
                "ok.png",
                "--out",
                "x.mp4",
            ]
        )
    assert seen == {"clip": 41}


def test_the_same_seed_gives_the_same_mp4_in_every_process(tiny_video, tmp_path):
    """`nova generate` run again with the same seed writes the same bytes, while every core is
    busy. (The frames were always the same; x264's AVX-512 routines read memory it never wrote, so
    on an AVX-512 CPU 4 runs gave 4 different files: nova/io/media.py leaves them out.)"""
    from test_media import _busy

    args = [
        "--model",
        tiny_video,
        "--prompt",
        "a fox",
        "--negative-prompt",
        "blur",
        "--frames",
        "9",
        "--seed",
        "4",
        "--steps",
        "4",
        "--diffusion-steps",
        "3",
        "--device",
        "cpu",
    ]
    busy = _busy(150)
    try:
        digests = set()
        for i in range(10):
            out = tmp_path / f"v{i}.mp4"
            r = subprocess.run(
                [sys.executable, "-m", "nova", "generate", *args, "--out", str(out)],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            assert r.returncode == 0, r.stderr
            digests.add(out.read_bytes())
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert len(digests) == 1

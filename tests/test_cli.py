"""The CLI writes real files: a tiny random checkpoint, a playable MP4, a PNG."""

import os
import subprocess
import sys

import numpy as np

from conftest import ROOT


def _run(args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "nova", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_make_tiny_and_generate_video(tmp_path):
    r = _run(["make-tiny", "tiny"], tmp_path)
    assert r.returncode == 0, r.stderr
    for f in ("model_index.json", "transformer/config.json", "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors", "tokenizer/tokenizer.json", "scheduler/scheduler_config.json"):
        assert (tmp_path / "tiny" / f).is_file(), f
    r = _run(["generate", "--model", "tiny", "--prompt", "a fox", "--frames", "9", "--steps", "6", "--diffusion-steps", "3", "--out", "fox.mp4"], tmp_path)
    assert r.returncode == 0, r.stderr
    import av

    with av.open(str(tmp_path / "fox.mp4")) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(video=0))
    assert stream.codec_context.name == "h264" and len(frames) == 9
    assert frames[0].to_ndarray(format="rgb24").shape == (64, 96, 3)


def test_image_model_writes_png(tmp_path):
    assert _run(["make-tiny", "timg", "--preset", "image"], tmp_path).returncode == 0
    r = _run(["generate", "--model", "timg", "--prompt", "a fox", "--steps", "4", "--diffusion-steps", "2", "--out", "fox.png"], tmp_path)
    assert r.returncode == 0, r.stderr
    from PIL import Image

    with Image.open(tmp_path / "fox.png") as im:
        assert im.size == (64, 64)
        fast = np.asarray(im.convert("RGB"), dtype=np.int16)
    # --reference: the plain (official-order) path gives the same picture up to rounding
    r = _run(["generate", "--model", "timg", "--prompt", "a fox", "--steps", "4", "--diffusion-steps", "2", "--reference", "--out", "ref.png"], tmp_path)
    assert r.returncode == 0 and "on the reference path" in r.stderr, r.stderr
    with Image.open(tmp_path / "ref.png") as im:
        assert np.abs(np.asarray(im.convert("RGB"), dtype=np.int16) - fast).max() <= 1


def test_cli_reports_bad_frames(tmp_path):
    assert _run(["make-tiny", "tiny"], tmp_path).returncode == 0
    r = _run(["generate", "--model", "tiny", "--prompt", "a fox", "--frames", "10", "--out", "x.mp4"], tmp_path)
    assert r.returncode == 2 and "1 + 4k" in r.stderr and not (tmp_path / "x.mp4").exists()

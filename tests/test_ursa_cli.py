"""`nova generate` recognises URSA checkpoints from model_index.json: an image equal to the official
one, a video extended with --video, and NOVA-only / URSA-only options refused with the reason."""

import os
import subprocess
import sys

import numpy as np
from conftest import GOLDEN, ROOT

GOLDEN_URSA = os.path.join(ROOT, "tests", "golden_ursa")
NEGATIVE = "worst quality, low quality, inconsistent motion, static, still, blurry, jittery, distorted, ugly"


def run_cli(args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m", "nova", "generate", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_image_is_the_official_one(tmp_path):
    from PIL import Image
    from safetensors.torch import load_file

    prompt = "The bear, calm and still, gazes upward as if lost in contemplation of the cosmos."
    r = run_cli(
        [
            "--model",
            os.path.join(GOLDEN_URSA, "t2i_tiny"),
            "--prompt",
            prompt,
            "--negative-prompt",
            NEGATIVE,
            "--width",
            "64",
            "--height",
            "48",
            "--steps",
            "8",
            "--cfg",
            "7",
            "--seed",
            "1",
            "--dtype",
            "fp32",
            "--device",
            "cpu",
            "--out",
            "bear.png",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "bear.png") as im:
        ours = np.asarray(im.convert("RGB")).astype(int)
    official = load_file(os.path.join(GOLDEN_URSA, "t2i_tiny", "expected.safetensors"))["t2i_seed1.frames"][0]
    assert np.abs(ours - official.numpy().astype(int)).max() <= 1


def test_video_then_extension(tmp_path):
    import av

    model = os.path.join(GOLDEN_URSA, "t2v_tiny")
    common = ["--model", model, "--width", "48", "--height", "32", "--frames", "9", "--device", "cpu"]
    r = run_cli([*common, "--prompt", "a bear", "--steps", "3", "--out", "a.mp4"], tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli(
        [
            *common,
            "--prompt",
            "the bear runs",
            "--steps",
            "2",
            "--video",
            "a.mp4",
            "--num-cond-frames",
            "5",
            "--out",
            "b.mp4",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    with av.open(str(tmp_path / "b.mp4")) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 9 + 4 and frames[0].to_ndarray(format="rgb24").shape == (32, 48, 3)


def test_options_of_the_other_family_are_refused(tmp_path):
    r = run_cli(
        ["--model", os.path.join(GOLDEN_URSA, "t2v_tiny"), "--prompt", "x", "--window", "3", "--out", "a.mp4"], tmp_path
    )
    assert r.returncode == 2 and "--window: NOVA options" in r.stderr
    r = run_cli(
        ["--model", os.path.join(GOLDEN, "t2v_tiny"), "--prompt", "x", "--width", "64", "--out", "a.mp4"], tmp_path
    )
    assert r.returncode == 2 and "--width: URSA options" in r.stderr
    r = run_cli(
        [
            "--model",
            os.path.join(GOLDEN_URSA, "t2v_tiny"),
            "--prompt",
            "x",
            "--frames",
            "6",
            "--width",
            "48",
            "--height",
            "32",
            "--out",
            "a.mp4",
        ],
        tmp_path,
    )
    assert r.returncode == 2 and "num_frames = 6" in r.stderr

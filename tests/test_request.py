"""The request front door (nova/request.py): one set of rules, one frame layout and one place a
plan is made, for the CLI, batch, NovaPipeline and the nodes."""

import numpy as np
import pytest
import torch
from conftest import ROOT

from nova.batch.items import OPTIONS
from nova.components.config import load_config
from nova.errors import InputError
from nova.request import GivenFrames, build_plan, read_request, split_frames
from nova.sampling.sampler import SamplerSettings, new_generator


def _options(**changes):
    options = {o.key: o.default for o in OPTIONS}
    options.update(steps=4, cfg=5.0, diffusion_steps=2)
    options.update(changes)
    return options


def _config(folder):
    return load_config(f"{folder}/transformer/config.json")


def _png(path, h=48, w=80, value=None):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if value is None else np.full((h, w, 3), value, np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def test_new_frames_are_split_evenly_over_the_prompts():
    assert split_frames(8, 3) == [3, 3, 2]
    assert split_frames(2, 2) == [1, 1]
    assert split_frames(5, 1) == [5]


def test_a_request_reads_its_frames_and_prompts(tiny_video, tmp_path):
    image = _png(tmp_path / "first.png")
    request = read_request(_options(frames=17, image=image), ["a fox", "a cat"], _config(tiny_video))
    assert request.latents == 5 and request.image.shape == (48, 80, 3) and request.clip is None
    given = GivenFrames(torch.zeros(1, 4, 1, 2, 2))
    assert request.frames_per_prompt(given) == [2, 2]


@pytest.mark.parametrize(
    "changes, key, message",
    [
        (dict(denoise=0.5), "denoise", " 0.5 re-samples given frames"),
        (dict(keyframe_approach=65), "keyframe_approach", r" = 65; expected an integer in \[0, 64\]"),
        (dict(keyframe_strength=1.5), "keyframe_strength", r" = 1.5; expected a number in \[0, 1\]"),
        (dict(keyframe="end.png@x"), "keyframe", " 'end.png@x'; expected IMAGE@FRAME"),
    ],
)
def test_the_rules_are_the_same_for_every_front_end(tiny_video, changes, key, message):
    """The CLI spells an option as a flag, a batch line as its key: the same rule, the same words."""
    from nova.checks import flag

    config = _config(tiny_video)
    with pytest.raises(InputError, match=flag(key) + message):
        read_request(_options(**changes), ["a fox"], config)
    with pytest.raises(InputError, match="^" + key + message):
        read_request(_options(**changes), ["a fox"], config, name=lambda k: k)


def test_an_image_checkpoint_refuses_what_only_video_does(tiny_image, tmp_path):
    key = _png(tmp_path / "k.png")
    with pytest.raises(InputError, match=r"2 prompts, --loop, --keyframe: need a video checkpoint \(ckpt is an image"):
        read_request(_options(loop=2, keyframe=[f"{key}@0"]), ["a", "b"], _config(tiny_image), checkpoint="ckpt")


def test_keyframes_are_checked_against_the_video_before_their_pictures_are_read(tiny_video, tmp_path):
    with pytest.raises(InputError, match="keyframe frame 40 is beyond the video: it has 9 frames"):
        read_request(
            _options(frames=9, keyframe=[str(tmp_path / "missing.png") + "@40"]), ["a fox"], _config(tiny_video)
        )
    key = _png(tmp_path / "k.png")
    request = read_request(_options(frames=9, keyframe=f"{key}@8"), ["a fox"], _config(tiny_video))
    assert [frame for _, frame in request.keyframes] == [8] and request.keyframes[0][0].shape == (48, 80, 3)


def test_a_header_only_request_keeps_no_pixels(tiny_video, tmp_path):
    """What a batch checks for every item before any work: the files' headers, nothing decoded kept."""
    image = _png(tmp_path / "first.png")
    request = read_request(_options(image=image), ["a fox"], _config(tiny_video), decode=False)
    assert request.latents == 9 and request.image is None and request.keyframes == ()


def test_a_result_shorter_than_what_it_is_given_is_refused(tiny_video_pipe):
    """NovaPipeline: max_latent_length under the given latents (nodes: tests/test_nodes.py); the
    rule is checks.check_fits for every front end."""
    pipe = tiny_video_pipe
    given = torch.zeros(1, pipe.config.image_dim, 3, *pipe.config.latent_size)
    with pytest.raises(
        InputError,
        match=r"max_latent_length makes 2 latent frame\(s\), fewer than the 3 of the given "
        "latents; raise max_latent_length",
    ):
        pipe(prompt="a fox", latents=given, max_latent_length=2, output_type="latent")


def test_every_plan_is_built_in_one_place():
    """nova/ and nodes/ make a GenerationPlan only in nova/request.py: build_plan."""
    import ast
    import os

    makers = []
    for package in ("nova", "nodes"):
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "GenerationPlan":
                        makers.append(os.path.relpath(path, ROOT))
    assert makers == [os.path.join("nova", "request.py")], makers


def test_build_plan_takes_a_window_blend_and_loop(tiny_video_pipe):
    pipe = tiny_video_pipe
    segments = [pipe.segment("a fox", 2, guided=False), pipe.segment("a cat", 2, guided=False)]
    settings = SamplerSettings(2, 2, 1.0)
    plan = build_plan(pipe, settings, segments, window=2, blend=1, loop=1)
    assert plan.run(new_generator(0)).shape[2] == 5  # 4 new + 1 looped back


API_STAGES = """
import sys
import torch
from nova import NovaPipeline
from nova.batch.items import OPTIONS
from nova.request import read_request
from nova.sampling.rng import new_generator
from nova.sampling.sampler import SamplerSettings

folder, first, out = sys.argv[1:4]
pipe = NovaPipeline.from_pretrained(folder, torch_dtype=torch.float32, device="cpu")
options = {o.key: o.default for o in OPTIONS} | {"frames": 9, "image": first, "steps": 4, "cfg": 5.0,
                                                  "diffusion_steps": 3}
request = read_request(options, ["a red fox runs through snow"], pipe.config)
generator = new_generator(0)
given = request.given_frames(pipe, generator)
segments = [pipe.segment(p, n) for p, n in zip(request.prompts, request.frames_per_prompt(given))]
plan = request.plan(pipe, SamplerSettings(4, 3, 5.0), segments, given)
pipe.save(plan.run(generator), out, fps=12, blend=given.blend)
"""


def test_the_readmes_stages_make_what_the_cli_makes(tiny_video, tmp_path):
    """README, "Without ComfyUI": the stages of nova/request.py by hand give `nova generate`'s file
    (both in a process of their own, with the same thread count)."""
    import os
    import subprocess
    import sys

    first = _png(tmp_path / "first.png")
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    api = subprocess.run(
        [sys.executable, "-c", API_STAGES, tiny_video, first, str(tmp_path / "api.mp4")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert api.returncode == 0, api.stderr
    cli = [
        "--model",
        tiny_video,
        "--prompt",
        "a red fox runs through snow",
        "--image",
        first,
        "--frames",
        "9",
        "--steps",
        "4",
        "--diffusion-steps",
        "3",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--dtype",
        "fp32",
    ]
    r = subprocess.run(
        [sys.executable, "-m", "nova", "generate", *cli, "--out", str(tmp_path / "cli.mp4")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "api.mp4").read_bytes() == (tmp_path / "cli.mp4").read_bytes()

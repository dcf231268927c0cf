"""Keyframes (nova/sampling/keyframes.py): latents pinned at latent frames of a video, approached by the frames
before them; the frame rule of the VAE's 4-frame stride; the front ends that take them."""

import os

import numpy as np
import pytest
import torch

from nova.errors import InputError
from nova.sampling.keyframes import Keyframe, latent_index
from nova.sampling.plan import GenerationPlan, Segment
from nova.sampling.sampler import SamplerSettings, new_generator

SETTINGS = SamplerSettings(num_inference_steps=6, num_diffusion_steps=4, guidance_scale=5.0)


def _run(pipe, frames, seed, **kw):
    seg = Segment(pipe.encode_prompt(["a red fox runs through snow"]), frames)
    return GenerationPlan(pipe.transformer, pipe.scheduler, SETTINGS, [seg], **kw).run(new_generator(seed))


@pytest.fixture(scope="module")
def video(golden_pipes):
    pipe = golden_pipes["t2v_tiny"]
    return pipe, _run(pipe, 1, 99)[:, :, 0]  # a latent to pin


def test_keyframe_latent_is_exact_and_context_for_later_frames(video):
    pipe, key = video
    out = _run(pipe, 5, 1, keyframes=[Keyframe(3, key, approach=2, strength=0.5)])
    assert out.shape[2] == 5 and torch.equal(out[:, :, 3], key)
    # a keyframe at latent 0 is a given first frame (image-to-video), draw for draw
    assert torch.equal(_run(pipe, 4, 1, keyframes=[Keyframe(0, key)]), _run(pipe, 3, 1, prefix=key[:, :, None]))


def test_frames_before_approach_it_as_the_knob_rises(video):
    pipe, key = video
    for seed in (1, 2):
        dist = []
        for strength in (0.0, 0.5, 1.0):
            out = _run(pipe, 5, seed, keyframes=[Keyframe(4, key, approach=3, strength=strength)])
            assert torch.equal(out[:, :, 4], key)
            dist.append([float((out[:, :, t] - key).norm()) for t in (2, 3)])
        for t in range(2):  # frames 2 and 3 come closer as the strength rises
            assert dist[0][t] > dist[1][t] > dist[2][t], dist
    # a longer approach reaches further back: frame 2 is free with approach 1, drawn toward the keyframe with 3
    for seed in (1, 2):
        near, far = (_run(pipe, 5, seed, keyframes=[Keyframe(4, key, approach=a, strength=1.0)]) for a in (1, 3))
        assert float((far[:, :, 2] - key).norm()) < float((near[:, :, 2] - key).norm())
    # approach 0 or strength 0: the frames before are sampled as without the approach
    free = _run(pipe, 5, 1, keyframes=[Keyframe(4, key, approach=0)])
    assert torch.equal(free[:, :, :4], _run(pipe, 5, 1, keyframes=[Keyframe(4, key, strength=0.0)])[:, :, :4])


def test_share_of_fixed_tokens(video):
    pipe, key = video
    n = pipe.config.num_image_tokens
    plan = GenerationPlan(
        pipe.transformer,
        pipe.scheduler,
        SETTINGS,
        [Segment(pipe.encode_prompt(["a fox"]), 6)],
        keyframes=[Keyframe(2, key, approach=1, strength=1.0), Keyframe(5, key, approach=2, strength=0.6)],
    )
    assert [plan.known_tokens(t) for t in range(6)] == [0, round(n / 2), 0, round(n * 0.2), round(n * 0.4), 0]
    assert [plan.samples(t) for t in range(6)] == [True, True, False, True, True, False]


@pytest.mark.parametrize("frame,latents,want", [(0, 9, 0), (4, 9, 1), (32, 9, 8), (-1, 9, 8), (-5, 9, 7), (-33, 9, 0)])
def test_latent_index_rule(frame, latents, want):
    assert latent_index(frame, latents) == want


@pytest.mark.parametrize(
    "frame,match",
    [
        (33, "keyframe frame 33 is beyond the video: it has 33 frames"),
        (-34, "keyframe frame -34 is beyond the video"),
        (6, "keyframe frame 6 cannot be pinned exactly: .* use 4 or 8"),
        (31, "use 28 or 32"),
        (1.5, "keyframe frame = 1.5; expected an integer"),
    ],
)
def test_latent_index_refuses(frame, match):
    with pytest.raises(InputError, match=match):
        latent_index(frame, 9)


def test_bad_keyframes_are_refused_before_sampling(golden_pipes, video, monkeypatch):
    import nova.sampling.frame_loop

    monkeypatch.setattr(nova.sampling.frame_loop, "sample_frame", lambda *a, **k: pytest.fail("sampled"))
    pipe, key = video
    cases = [
        (dict(keyframes=[Keyframe(5, key)]), "keyframe 0 is at latent frame 5, beyond the end of the video"),
        (dict(keyframes=[Keyframe(2, key), Keyframe(2, key)]), "keyframes 0 and 1 are both at latent frame 2"),
        (dict(keyframes=[Keyframe(1, key[:, :, :-1])]), r"keyframe 0 latent has shape .*crop or resize"),
        (dict(keyframes=[Keyframe(1, key * float("nan"))]), "contains NaN"),
        (dict(keyframes=[Keyframe(1, key, approach=-1)]), "approach = -1"),
        (dict(keyframes=[Keyframe(1, key, strength=1.5)]), "strength = 1.5"),
        (dict(keyframes=[Keyframe(0, key)], prefix=key[:, :, None]), "inside the given latents"),
    ]
    for kw, match in cases:
        with pytest.raises(InputError, match=match):
            _run(pipe, 5 if "prefix" not in kw else 4, 0, **kw)
    image_pipe = golden_pipes["t2i_tiny"]
    lat = torch.zeros(1, image_pipe.config.image_dim, *image_pipe.config.latent_size)
    with pytest.raises(InputError, match="this is an image checkpoint"):
        _run(image_pipe, 1, 0, keyframes=[Keyframe(0, lat)])


def _still(path, color, size=(64, 96)):
    from PIL import Image

    Image.fromarray(np.full((*size, 3), color, np.uint8)).save(path)
    return str(path)


def test_pipeline_keyframes(tiny_video_pipe, tmp_path):
    pipe = tiny_video_pipe
    from PIL import Image

    end = np.asarray(Image.open(_still(tmp_path / "end.png", (200, 30, 60))))
    kw = dict(max_latent_length=3, num_inference_steps=4, num_diffusion_steps=2, output_type="latent")
    out = pipe("a fox", keyframes=[(end, -1)], generator=new_generator(0), **kw).frames
    assert torch.equal(out[:, :, 2], pipe.encode_keyframe(end, 2)[:, :])
    # the still clip's second latent: four frames of the picture; latent 0 is the picture alone
    assert torch.equal(pipe.encode_keyframe(end, 2), pipe.encode_video([end] * 5)[:, :, 1])
    assert torch.equal(pipe.encode_keyframe(end, 0), pipe.encode_video([end])[:, :, 0])
    with pytest.raises(InputError, match="keyframe frame 6 cannot be pinned exactly"):
        pipe("a fox", keyframes=[(end, 6)], **kw)
    with pytest.raises(InputError, match="expected a list of \\(image, video frame index\\) pairs"):
        pipe("a fox", keyframes=[end], **kw)


def test_cli_keyframe(tiny_video, tmp_path, capsys, monkeypatch):
    from nova import __main__ as cli

    seen = []
    init = GenerationPlan.__init__
    monkeypatch.setattr(
        GenerationPlan, "__init__", lambda self, *a, **k: seen.append(k.get("keyframes")) or init(self, *a, **k)
    )
    end = _still(tmp_path / "end.png", (10, 200, 90))
    args = [
        "generate",
        "--model",
        tiny_video,
        "--prompt",
        "a fox",
        "--frames",
        "9",
        "--steps",
        "4",
        "--diffusion-steps",
        "2",
    ]
    assert cli.main([*args, "--keyframe", f"{end}@8", "--out", str(tmp_path / "k.mp4")]) == 0, capsys.readouterr().err
    assert [(k.index, k.approach, k.strength) for k in seen[0]] == [(2, 2, 0.5)]
    for extra, match in [
        (["--keyframe", f"{end}@6"], "cannot be pinned exactly"),
        (["--keyframe", f"{end}@12"], "beyond the video: it has 9 frames"),
        (["--keyframe", "end.png"], "expected IMAGE@FRAME"),
        (["--keyframe", f"{tmp_path / 'missing.png'}@4"], "missing.png: no such file"),
        (["--keyframe", f"{end}@4", "--keyframe-strength", "2"], "--keyframe-strength = 2.0"),
    ]:
        from nova import NovaPipeline

        with monkeypatch.context() as m:
            m.setattr(NovaPipeline, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("model loaded")))
            rc = cli.main([*args, *extra, "--out", str(tmp_path / "x.mp4")])
        err = capsys.readouterr().err
        assert rc == 2 and match in err, err


def test_batch_keyframes_per_item(tiny_video, tmp_path, monkeypatch):
    import json

    from nova.batch import manifest
    from nova.batch.items import OPTIONS
    from nova.batch.runner import BatchJob, run

    seen = []
    init = GenerationPlan.__init__
    monkeypatch.setattr(
        GenerationPlan, "__init__", lambda self, *a, **k: seen.append(k.get("keyframes")) or init(self, *a, **k)
    )
    _still(tmp_path / "end.png", (250, 250, 0))
    _still(tmp_path / "mid.png", (0, 0, 250))
    lines = [
        {"prompt": "a fox", "frames": 9, "keyframe": "end.png@-1", "keyframe_strength": 0.25},
        {"prompt": "a cat", "frames": 9, "keyframe": ["mid.png@4", "end.png@8"], "keyframe_approach": 1},
        {"prompt": "a dog", "frames": 9, "keyframe": "end.png@5"},
    ]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    options = {o.key: o.default for o in OPTIONS}
    options.update(steps=4, diffusion_steps=2)
    summary = run(BatchJob(tiny_video, str(tmp_path / "p.jsonl"), str(tmp_path / "out"), options=options, device="cpu"))
    assert summary.done == 2
    got = [[(k.index, k.approach, k.strength) for k in kfs] for kfs in seen]
    assert got == [[(2, 2, 0.25)], [(1, 1, 0.5), (2, 1, 0.5)]]
    assert "keyframe frame 5 cannot be pinned exactly" in summary.failed[(2, 0)]
    run_args = [r for r in manifest.read(os.path.join(tmp_path, "out", manifest.NAME)) if r["kind"] == "run"][0]["args"]
    assert not {"keyframe", "keyframe_approach", "keyframe_strength"} & set(run_args)  # unset: identity as before


def test_batch_flag_paths_are_made_absolute(tmp_path, monkeypatch):
    from nova.__main__ import build_parser
    from nova.batch.cli import job_from_args
    from nova.checks import keyframe_pairs

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(
        [
            "batch",
            "--model",
            "m",
            "--prompts",
            "p.txt",
            "--out",
            "o",
            "--keyframe",
            "a.png@0; sub/b.png@-1",
            "--keyframe-strength",
            "0.75",
        ]
    )
    job = job_from_args(args)
    assert keyframe_pairs(job.options["keyframe"]) == [
        (str(tmp_path / "a.png"), 0),
        (str(tmp_path / "sub" / "b.png"), -1),
    ]
    assert job.options["keyframe_strength"] == 0.75 and job.options["keyframe_approach"] == 2
    with pytest.raises(InputError, match="expected IMAGE@FRAME"):
        keyframe_pairs("a.png@x")

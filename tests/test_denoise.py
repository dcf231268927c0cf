"""Denoise strength (image-to-image, video-to-video): given frames re-sampled set by set, each token's
diffusion starting from the given token noised to the strength's level (nova.sampling.plan.GenerationPlan's
``denoise``), on a DDPM video checkpoint and a flow-matching image checkpoint."""

import math
import os

import pytest
import torch
from tolerances import assert_latents_close

from nova.errors import InputError
from nova.sampling.fast import Accel
from nova.sampling.plan import GenerationPlan, Segment
from nova.sampling.sampler import SamplerSettings, denoise_skip, new_generator, noise_to, prepare_scheduler

SETTINGS = SamplerSettings(num_inference_steps=6, num_diffusion_steps=8, guidance_scale=5.0)
CASES = (("t2v_tiny", 2), ("t2i_tiny", 1))  # (golden checkpoint, latent frames)
PER_STEP = Accel(step_graphs=False)


def _run(pipe, frames, seed, accel=None, settings=SETTINGS, **kw):
    seg = Segment(pipe.encode_prompt(["a red fox runs through snow"]), frames)
    return GenerationPlan(pipe.transformer, pipe.scheduler, settings, [seg], accel=accel, **kw).run(new_generator(seed))


@pytest.fixture(scope="module")
def given(golden_pipes):
    """Latents to start from, per checkpoint: a plain generation with another seed."""
    return {case: _run(golden_pipes[case], n, 123) for case, n in CASES}


@pytest.mark.parametrize("case,n", CASES)
@pytest.mark.parametrize("accel", [Accel(), PER_STEP, Accel.plain()], ids=["fast", "per_step", "plain"])
def test_denoise_0_returns_the_given_latents(golden_pipes, given, case, n, accel):
    pipe = golden_pipes[case]
    for denoise in (0.0, 0, 0.05):  # 0.05 of 8 steps rounds to no step at all
        assert torch.equal(_run(pipe, 0, 5, accel, prefix=given[case], denoise=denoise), given[case])


@pytest.mark.parametrize("case,n", CASES)
@pytest.mark.parametrize("accel", [Accel(), PER_STEP, Accel.plain()], ids=["fast", "per_step", "plain"])
def test_denoise_1_is_plain_generation(golden_pipes, given, case, n, accel):
    pipe = golden_pipes[case]
    plain = _run(pipe, n, 5, accel)
    assert torch.equal(_run(pipe, 0, 5, accel, prefix=given[case], denoise=1.0), plain)
    # and the frames after the re-sampled ones continue as in a plain video of the same length
    if n > 1:
        longer = _run(pipe, n + 1, 5, accel)
        assert torch.equal(_run(pipe, 1, 5, accel, prefix=given[case], denoise=1.0), longer)


@pytest.mark.parametrize("case,n", CASES)
def test_distance_to_the_given_latents_grows_with_denoise(golden_pipes, given, case, n):
    pipe, ref = golden_pipes[case], given[case]
    for seed in (0, 1, 2):
        dist = [float((_run(pipe, 0, seed, prefix=ref, denoise=d) - ref).norm()) for d in (0.25, 0.5, 0.75, 1.0)]
        assert dist[0] > 0
        assert all(a < b for a, b in zip(dist, dist[1:])), dist


@pytest.mark.parametrize("case,n", CASES)
def test_fast_paths_agree(golden_pipes, given, case, n):
    """The set-step runner and the per-step fast path give the same latents; the plain path within
    the golden tolerances."""
    pipe = golden_pipes[case]
    extra = 1 if n > 1 else 0  # a video continues after its re-sampled frames (full diffusion loops again)
    for denoise in (0.3, 0.6):
        fast, per_step, plain = (
            _run(pipe, extra, 3, accel, prefix=given[case], denoise=denoise)
            for accel in (Accel(), PER_STEP, Accel.plain())
        )
        torch.testing.assert_close(fast, per_step, rtol=0, atol=0)
        assert_latents_close(fast, plain, flow_matching=case == "t2i_tiny")


def test_video_runs_use_the_set_step_runner(golden_pipes, given, monkeypatch):
    from nova.sampling.set_step import StepBuffers

    calls = []
    original = StepBuffers.__call__
    monkeypatch.setattr(StepBuffers, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    plan = GenerationPlan(
        golden_pipes["t2v_tiny"].transformer,
        golden_pipes["t2v_tiny"].scheduler,
        SETTINGS,
        [Segment(golden_pipes["t2v_tiny"].encode_prompt(["a fox"]), 0)],
        prefix=given["t2v_tiny"],
        denoise=0.5,
    )
    plan.run(new_generator(0))
    assert len(calls) == plan.ticks == 2 * len(plan.counts)


@pytest.mark.parametrize("case,n", CASES)
def test_mask_keeps_outside_tokens(golden_pipes, given, case, n):
    pipe, ref = golden_pipes[case], given[case]
    cfg = pipe.config
    mask = torch.zeros(n, cfg.num_image_tokens, dtype=torch.bool)
    mask[:, : cfg.num_image_tokens // 2] = True
    out = _run(pipe, 0, 4, prefix=ref, prefix_mask=mask, denoise=0.5)
    p = cfg.patch_size
    from nova.models.embeddings import patchify

    for t in range(n):
        got, want = patchify(out[:, :, t], p), patchify(ref[:, :, t], p)
        assert torch.equal(got[:, ~mask[t]], want[:, ~mask[t]])
        assert not torch.equal(got[:, mask[t]], want[:, mask[t]])
    # denoise 1 with a mask is the repaint from pure noise that a mask alone asks for
    assert torch.equal(
        _run(pipe, 0, 4, prefix=ref, prefix_mask=mask, denoise=1.0), _run(pipe, 0, 4, prefix=ref, prefix_mask=mask)
    )


@pytest.mark.parametrize("kind", ["DDPMScheduler", "FlowMatchEulerDiscreteScheduler"])
def test_start_is_the_schedulers_own_noising(golden_pipes, kind):
    """The start of a skipped loop is the library's forward process at the first step kept."""
    pipe = golden_pipes["t2v_tiny" if kind == "DDPMScheduler" else "t2i_tiny"]
    sched = prepare_scheduler(pipe.scheduler, SETTINGS)
    assert type(sched).__name__ == kind
    given, noise = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    skip = denoise_skip(8, 0.5)
    assert skip == 4
    t = sched.timesteps[skip]
    if kind == "DDPMScheduler":
        a = float(sched.alphas_cumprod[t])
        want = math.sqrt(a) * given + math.sqrt(1 - a) * noise
    else:
        sigma = float(sched.sigmas[skip])
        want = sigma * noise + (1 - sigma) * given
    torch.testing.assert_close(noise_to(sched, given, noise, skip), want)


def test_skipped_steps_round_half_up():
    assert [denoise_skip(8, d) for d in (0, 0.0625, 0.1, 0.5, 0.99, 1)] == [8, 7, 7, 4, 0, 0]
    assert denoise_skip(25, 0.5) == 12  # 12.5 steps round up to 13 kept


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf"), True, "0.5", None])
def test_bad_denoise_is_refused_before_sampling(golden_pipes, given, bad, monkeypatch):
    import nova.sampling.frame_loop

    monkeypatch.setattr(nova.sampling.frame_loop, "sample_frame", lambda *a, **k: pytest.fail("sampled"))
    pipe = golden_pipes["t2v_tiny"]
    if bad is None:  # denoise with nothing to start from
        with pytest.raises(InputError, match="denoise = 0.5 needs given latents"):
            _run(pipe, 2, 0, denoise=0.5)
        return
    with pytest.raises(InputError, match=r"denoise = .*expected a number in \[0, 1\]"):
        _run(pipe, 0, 0, prefix=given["t2v_tiny"], denoise=bad)


# -- front ends: NovaPipeline(strength=), generate --denoise, batch denoise --------------------------


def _image(path, seed=1, size=(64, 64)):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return str(path)


def _read_rgb(path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_pipeline_strength_is_the_plans_denoise(golden_pipes):
    pipe = golden_pipes["t2i_tiny"]
    src = _run(pipe, 1, 11)
    kw = dict(num_inference_steps=6, num_diffusion_steps=8, output_type="latent")

    def call(strength, seed=2):
        return pipe(
            "a red fox runs through snow", latents=src, strength=strength, generator=new_generator(seed), **kw
        ).images

    assert torch.equal(call(0.0), src)
    plan = _run(pipe, 0, 2, prefix=src, denoise=0.4)
    torch.testing.assert_close(call(0.4), plan, rtol=0, atol=0)
    assert torch.equal(call(1.0), pipe("a red fox runs through snow", generator=new_generator(2), **kw).images)
    for bad, match in ((1.2, r"strength = 1.2; expected a number in \[0, 1\]"), (float("nan"), "strength = nan")):
        with pytest.raises(InputError, match=match):
            call(bad)
    with pytest.raises(InputError, match="strength = 0.5 re-samples given frames: pass image or latents"):
        pipe("a fox", strength=0.5, **kw)


@pytest.fixture
def plans_seen(monkeypatch):
    """The ``denoise`` of every GenerationPlan built (the CLI and batch build theirs inside)."""
    seen = []
    init = GenerationPlan.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("denoise"))
        init(self, *args, **kwargs)

    monkeypatch.setattr(GenerationPlan, "__init__", spy)
    return seen


def test_cli_denoise_image_to_image(tiny_image, tmp_path, plans_seen, capsys):
    from nova import __main__ as cli

    src = _image(tmp_path / "src.png")
    args = [
        "generate",
        "--model",
        tiny_image,
        "--prompt",
        "a fox",
        "--image",
        src,
        "--steps",
        "4",
        "--diffusion-steps",
        "4",
    ]
    assert cli.main([*args, "--denoise", "0.5", "--out", str(tmp_path / "half.png")]) == 0, capsys.readouterr().err
    assert plans_seen == [0.5] and _read_rgb(tmp_path / "half.png").shape == (64, 64, 3)
    # denoise 0: the image through the VAE only (the posterior sample of the seed), no sampling at all
    assert cli.main([*args, "--denoise", "0", "--out", str(tmp_path / "zero.png")]) == 0
    from nova import NovaPipeline

    pipe = NovaPipeline.from_pretrained(tiny_image, device="cpu")
    want = pipe(
        "a fox",
        image=_read_rgb(src),
        strength=0.0,
        num_inference_steps=4,
        num_diffusion_steps=4,
        generator=new_generator(0),
        output_type="np",
    ).images[0]
    assert (abs(_read_rgb(tmp_path / "zero.png").astype(int) - want.astype(int)) <= 1).all()


def test_cli_denoise_video_keeps_the_clip_length(tiny_video, tmp_path, plans_seen, capsys):
    import av
    import numpy as np

    from nova import __main__ as cli

    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as c:
        stream = c.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    out = tmp_path / "v2v.mp4"
    rc = cli.main(
        [
            "generate",
            "--model",
            tiny_video,
            "--prompt",
            "a fox",
            "--video",
            str(clip),
            "--denoise",
            "0.6",
            "--steps",
            "4",
            "--diffusion-steps",
            "4",
            "--out",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert plans_seen == [0.6]
    with av.open(str(out)) as c:
        assert len(list(c.decode(video=0))) == 5  # the clip's 5 frames (2 latents), no continuation


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--denoise", "1.5"], r"--denoise = 1.5; expected a number in \[0, 1\]"),
        (["--denoise", "nan"], "--denoise = nan"),
        (["--denoise", "0.5"], "--denoise 0.5 re-samples given frames: set --image or --video"),
    ],
)
def test_cli_bad_denoise_fails_before_loading(tiny_image, tmp_path, capsys, monkeypatch, extra, match):
    import re

    from nova import NovaPipeline
    from nova import __main__ as cli

    monkeypatch.setattr(NovaPipeline, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("model loaded")))
    rc = cli.main(["generate", "--model", tiny_image, "--prompt", "a fox", *extra, "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and re.search(match, err[0]), err


def test_batch_denoise_per_item(tiny_image, tmp_path, plans_seen):
    import json

    from nova.batch import manifest
    from nova.batch.items import OPTIONS
    from nova.batch.runner import BatchJob, run

    src = _image(tmp_path / "src.png")
    lines = [
        {"prompt": "a fox", "image": src, "denoise": 0.25},
        {"prompt": "a cat"},
        {"prompt": "a dog", "denoise": 0.5},
        {"prompt": "a cow", "image": src, "denoise": 2},
    ]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    options = {o.key: o.default for o in OPTIONS}
    options.update(steps=4, diffusion_steps=4)
    job = BatchJob(tiny_image, str(tmp_path / "p.jsonl"), str(tmp_path / "out"), options=options, device="cpu")
    summary = run(job)
    assert summary.done == 2 and sorted(plans_seen, key=str) == [0.25, None]
    failed = {item: error for (item, _), error in summary.failed.items()}
    assert "line 3: denoise 0.5 re-samples given frames: set image or video" in failed[2]
    assert "denoise = 2.0; expected a number in [0, 1]" in failed[3]
    records = [r for r in manifest.read(os.path.join(tmp_path, "out", manifest.NAME)) if r["kind"] == "run"]
    assert "denoise" not in records[0]["args"]  # unset: the identity of runs before the option stays the same

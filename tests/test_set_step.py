"""Whole set steps on fixed buffers (nova/sampling/set_step.py): the path that CUDA graphs replay, run here by
its eager twin. Same draws, same operations: on one machine the latents equal today's per-step fast
path exactly (same shapes, same kernels, same thread count in one process)."""

import dataclasses
import os

import pytest
import torch
from conftest import GOLDEN, golden_case, golden_runs
from tolerances import assert_latents_close

from nova.sampling.fast import Accel, FastPlan
from nova.sampling.sampler import Guidance, SamplerSettings, prepare_scheduler
from nova.sampling.set_step import GraphedSteps, StepBuffers, make_runner, pick_noise

PER_STEP = Accel(step_graphs=False)  # the fast path before set-step graphs (the comparison switch)


def _latents(pipe, case, run, accel, **extra):
    _, _, expected = golden_case(case)
    kw = {k: v for k, v in run.items() if k not in ("name", "seed", "image")}
    if run.get("image"):
        kw["image"] = expected[f"{run['name']}.image"].numpy()
    pipe.accel = accel
    try:
        out = pipe(**kw, **extra, generator=torch.Generator().manual_seed(run["seed"]), output_type="latent")
    finally:
        pipe.accel = Accel()
    return out.frames if out.frames is not None else out.images


@pytest.mark.parametrize("case,run", golden_runs())
def test_set_steps_equal_the_per_step_fast_path(golden_pipes, case, run):
    pipe = golden_pipes[case]
    new, old = _latents(pipe, case, run, Accel()), _latents(pipe, case, run, PER_STEP)
    torch.testing.assert_close(new, old, rtol=0, atol=0)
    _, _, expected = golden_case(case)
    assert_latents_close(new, expected[f"{run['name']}.latents"], flow_matching=case == "t2i_tiny")


def test_video_runs_use_the_buffers_and_single_frames_do_not(golden_pipes, monkeypatch):
    """The runner is built for runs of several frames (its shapes come round again), and every set
    step of them goes through it."""
    calls = []
    original = StepBuffers.__call__

    def counting(self, *inputs):
        calls.append(tuple(t.shape for t in inputs))
        return original(self, *inputs)

    monkeypatch.setattr(StepBuffers, "__call__", counting)
    case = "t2v_tiny"
    run = next(r for r in golden_case(case)[1]["runs"] if r["name"] == "t2v")
    _latents(golden_pipes[case], case, run, Accel())
    steps = run["num_inference_steps"]
    assert len(calls) == run["max_latent_length"] * steps
    assert len(set(calls)) == steps  # one buffer set (one graph on CUDA) per step of the schedule
    calls.clear()
    _latents(golden_pipes[case], case, dict(run, max_latent_length=1), Accel())
    assert calls == []


def test_buffers_are_reused_and_inputs_untouched():
    seen = []

    def step(a, b):
        seen.append((a.data_ptr(), b.data_ptr()))
        return a * 2 + b

    runner = StepBuffers(step)
    a, b = torch.arange(6.0).view(2, 3), torch.ones(2, 3)
    out1 = runner(a, b)
    out2 = runner(a + 1, b)
    assert seen[0] == seen[1]  # the same buffers for the same shapes
    torch.testing.assert_close(out2, (a + 1) * 2 + b)
    torch.testing.assert_close(out1, a * 2 + b)  # an earlier result is not overwritten by a later step
    runner(torch.zeros(1, 3), torch.zeros(1, 3))
    assert len(runner.buffers) == 2 and seen[2] != seen[0]
    torch.testing.assert_close(a, torch.arange(6.0).view(2, 3))


def test_pick_noise_equals_picking_on_the_device():
    gen = torch.Generator().manual_seed(0)
    full = [torch.randn(2, 4, 6, 8, generator=gen) for _ in range(3)]
    ids = torch.randperm(12, generator=gen)[:5].view(1, 5, 1).repeat(2, 1, 1)
    picked = pick_noise(full, ids, 2, torch.device("cpu"))
    assert picked.shape == (3, 2, 5, 16)
    from nova.models.embeddings import patchify

    for k, d in enumerate(full):
        torch.testing.assert_close(picked[k], patchify(d, 2).gather(1, ids.expand(-1, -1, 16)), rtol=0, atol=0)


def test_no_graphs_off_cuda_and_when_weights_are_not_on_the_gpu(golden_pipes):
    model = golden_pipes["t2v_tiny"].transformer
    assert not GraphedSteps.usable(model)  # CPU
    assert type(make_runner(model, lambda *a: None)) is StepBuffers  # the eager twin
    settings = SamplerSettings(4, 2)
    sched = prepare_scheduler(golden_pipes["t2v_tiny"].scheduler, settings)
    guidance = Guidance(settings)
    assert FastPlan.build(model, sched, Accel(), guidance, frames=3).runner is not None
    assert FastPlan.build(model, sched, Accel(), guidance, frames=1).runner is None
    assert FastPlan.build(model, sched, PER_STEP, guidance, frames=3).runner is None
    assert FastPlan.build(model, sched, Accel.plain(), guidance, frames=3).runner is None
    truncated = Guidance(dataclasses.replace(settings, guidance_trunc=0.5))
    assert FastPlan.build(model, sched, Accel(), truncated, frames=3).runner is not None


@pytest.mark.parametrize("name", ["rotary_video", "no_mixer_video", "negative_rank_mixer"])
def test_other_video_layouts_equal_the_per_step_path(name):
    """Rotary positions (the rotation tables enter the captured step), no mixer, rank -1 mixer."""
    import json

    from safetensors.torch import load_file

    from nova.components.loaders import load_scheduler, load_transformer
    from nova.pipeline import NovaPipeline

    folder = os.path.join(os.path.dirname(GOLDEN), "golden_extra", name)
    expected = load_file(os.path.join(folder, "expected.safetensors"))
    with open(os.path.join(folder, "case.json"), encoding="utf-8") as f:
        run = json.load(f)["runs"][0]
    pipe = NovaPipeline(
        load_transformer(os.path.join(folder, "transformer")), load_scheduler(os.path.join(folder, "scheduler"))
    )
    kw = {k: v for k, v in run.items() if k not in ("name", "seed")}
    outs = []
    for accel in (Accel(), PER_STEP):
        pipe.accel = accel
        out = pipe(
            prompt_embeds=[expected["prompt_embeds"]], generator=torch.Generator().manual_seed(run["seed"]), **kw
        )
        outs.append(out.frames)
    assert outs[0].shape[2] > 1  # a video: the set-step path ran
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)

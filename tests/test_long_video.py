"""Long video: windows, continuation, segments, blends and loops in nova.sampling.plan."""

import pytest
import torch

from nova.errors import InputError
from nova.sampling.frame_loop import TemporalCache, kv_cache_bytes
from nova.sampling.plan import GenerationPlan, Segment, segment_contexts, slot_positions
from nova.sampling.sampler import Guidance, SamplerSettings, build_context, new_generator

SETTINGS = SamplerSettings(num_inference_steps=3, num_diffusion_steps=2, guidance_scale=3.0)


@pytest.fixture(scope="module")
def setup(tiny_video_pipe):
    pipe = tiny_video_pipe

    def seg(prompt, frames, flow=5.0):
        return Segment(pipe.encode_prompt([prompt]), frames, None, flow, 12.0)

    return pipe, pipe.transformer, seg


def _run(pipe, segments, seed=0, **kw):
    return GenerationPlan(pipe.transformer, pipe.scheduler, SETTINGS, segments, **kw).run(new_generator(seed))


def test_window_as_long_as_video_is_the_one_shot_pipeline(setup):
    pipe, model, seg = setup
    one_shot = _run(pipe, [seg("a fox", 5)])
    for window in (5, 8):
        assert torch.equal(_run(pipe, [seg("a fox", 5)], window=window), one_shot)
    # sampled in inference mode, handed back as an ordinary tensor (callers may edit it in place)
    with torch.inference_mode(False):
        plain = _run(pipe, [seg("a fox", 5)])
        assert not plain.is_inference()
        plain.mul_(1.0)
    assert torch.equal(plain, one_shot)


def test_sliding_window_keeps_the_cache_flat(setup):
    pipe, model, seg = setup
    guidance = Guidance(SETTINGS)
    c = build_context(model, guidance, pipe.encode_prompt(["a fox"]), None, [5.0], [12.0])
    window = 3
    cache = TemporalCache(model, guidance, 1, slot_positions(model, window))
    frames, sizes = [], []
    for t in range(8):
        cache.context_for(frames, t, c, window)
        sizes.append(kv_cache_bytes(cache.state))
        frames.append(torch.randn(1, 4, 8, 12))
    assert sizes[:3] == sorted(sizes[:3]) and len(set(sizes[2:])) == 1  # grows to the window, then flat
    assert cache.inputs == [5, 6]
    out = _run(pipe, [seg("a fox", 8)], window=window)
    assert out.shape == (1, 4, 8, 8, 12) and torch.isfinite(out).all()


def test_prefill_then_generate_keeps_the_prefix(setup):
    pipe, model, seg = setup
    prefix = torch.randn(1, 4, 4, 8, 12, generator=torch.Generator().manual_seed(3))
    out = _run(pipe, [seg("a fox", 3)], prefix=prefix, window=3)
    assert out.shape[2] == 7 and torch.equal(out[:, :, :4], prefix)


def test_segments_switch_prompt_without_restarting(setup):
    pipe, model, seg = setup
    only_a = _run(pipe, [seg("a fox", 4)], window=3)
    a_then_b = _run(pipe, [seg("a fox", 2), seg("waves crash on a rocky beach", 2, flow=8.0)], window=3)
    assert torch.equal(a_then_b[:, :, :2], only_a[:, :, :2])  # causal: the past does not see the future
    assert not torch.equal(a_then_b[:, :, 2:], only_a[:, :, 2:])


def test_blend_interpolates_contexts():
    a, b = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    ctxs = segment_contexts([a, b], [2, 3], n_prefix=1, blend_frames=2)
    assert len(ctxs) == 6 and ctxs[0] is a and ctxs[2] is a
    assert [round(float(c.mean()), 4) for c in ctxs[3:]] == [0.3333, 0.6667, 1.0]


def test_loop_leads_back_to_the_first_frame(setup):
    pipe, model, seg = setup
    plan = GenerationPlan(pipe.transformer, pipe.scheduler, SETTINGS, [seg("a fox", 3)], window=3, loop_frames=2)
    # the loop frames fix part of their tokens: fewer set steps, and the ticks count them exactly
    assert plan.ticks == 3 * len(plan.counts) + len(plan.frame_counts(3)) + len(plan.frame_counts(4))
    ticks = []
    out = plan.run(new_generator(0), lambda p: ticks.append(p.tick))
    assert ticks == list(range(1, plan.ticks + 1))
    assert out.shape[2] == 5
    first = out[:, :, 0]
    same = [(out[:, :, t] == first).float().mean().item() for t in (3, 4)]
    assert 0.2 < same[0] < same[1] < 0.9  # a growing share of tokens is copied from the first frame


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(window=1), "window"),
        (dict(blend_frames=-1), "blend_frames"),
        (dict(loop_frames=-2), "loop_frames"),
        (dict(window=2.5), "window"),
    ],
)
def test_bad_long_video_arguments(setup, kw, match):
    pipe, model, seg = setup
    with pytest.raises(InputError, match=match):
        _run(pipe, [seg("a fox", 2)], **kw)


def test_segments_must_share_a_batch(setup):
    pipe, model, seg = setup
    two = Segment(pipe.encode_prompt(["a fox", "a cat"]), 2)
    with pytest.raises(InputError, match="segment 1 has 2 prompts, segment 0 has 1"):
        GenerationPlan(model, pipe.scheduler, SETTINGS, [seg("a fox", 2), two])


def test_a_run_takes_a_seed_a_generator_or_one_generator_per_sample(setup):
    """``run(seed=s)`` is ``run(new_generator(s))``; any sequence of generators (one per sample) is
    a random stream, not a seed; a generator and a seed together are refused."""
    from collections import deque

    pipe, model, seg = setup
    plan = GenerationPlan(model, pipe.scheduler, SETTINGS, [seg("a fox", 3)])
    by_generator = plan.run(new_generator(11))
    assert torch.equal(plan.run(seed=11), by_generator)
    assert torch.equal(plan.run(deque([new_generator(11)])), by_generator)
    assert not torch.equal(plan.run(seed=12), by_generator)
    with pytest.raises(InputError, match="a generator or a seed, not both"):
        plan.run(new_generator(11), seed=11)
    with pytest.raises(InputError, match=r"seed = True; expected an integer"):
        plan.run(seed=True)

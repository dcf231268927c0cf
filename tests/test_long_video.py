"""Long video: windows, continuation, segments, blends and loops in nova.video."""

import pytest
import torch

from nova.errors import InputError
from nova.sampling import Guidance, SamplerSettings, build_context, generate_latents, new_generator
from nova.video import Segment, _TemporalCache, generate_video, kv_cache_bytes, segment_contexts, slot_positions

SETTINGS = SamplerSettings(num_inference_steps=3, num_diffusion_steps=2, guidance_scale=3.0)


@pytest.fixture(scope="module")
def setup(tiny_video_pipe):
    pipe = tiny_video_pipe
    model = pipe.transformer
    guidance = Guidance(SETTINGS)

    def ctx(prompt, flow=5.0):
        return build_context(model, guidance, pipe.encode_prompt([prompt]), None, [flow], [12.0])

    return pipe, model, ctx


def _run(pipe, segments, seed=0, **kw):
    return generate_video(pipe.transformer, pipe.scheduler, segments, 1, SETTINGS, new_generator(seed), **kw)


def test_window_as_long_as_video_is_the_one_shot_pipeline(setup):
    pipe, model, ctx = setup
    c = ctx("a fox")
    one_shot = generate_latents(model, pipe.scheduler, c, 1, 5, SETTINGS, new_generator(0))
    for window in (None, 5, 8):
        assert torch.equal(_run(pipe, [Segment(c, 5)], window=window), one_shot)
    # sampled in inference mode, handed back as an ordinary tensor (callers may edit it in place)
    with torch.inference_mode(False):
        plain = generate_latents(model, pipe.scheduler, c, 1, 5, SETTINGS, new_generator(0))
        assert not plain.is_inference()
        plain.mul_(1.0)
    assert torch.equal(plain, one_shot)


def test_sliding_window_keeps_the_cache_flat(setup):
    pipe, model, ctx = setup
    c = ctx("a fox")
    guidance = Guidance(SETTINGS)
    window = 3
    cache = _TemporalCache(model, guidance, 1, slot_positions(model, window))
    frames, sizes = [], []
    for t in range(8):
        cache.context_for(frames, t, c, window)
        sizes.append(kv_cache_bytes(cache.state))
        frames.append(torch.randn(1, 4, 8, 12))
    assert sizes[:3] == sorted(sizes[:3]) and len(set(sizes[2:])) == 1  # grows to the window, then flat
    assert cache.inputs == [5, 6]
    out = _run(pipe, [Segment(c, 8)], window=window)
    assert out.shape == (1, 4, 8, 8, 12) and torch.isfinite(out).all()


def test_prefill_then_generate_keeps_the_prefix(setup):
    pipe, model, ctx = setup
    prefix = torch.randn(1, 4, 4, 8, 12, generator=torch.Generator().manual_seed(3))
    out = _run(pipe, [Segment(ctx("a fox"), 3)], prefix=prefix, window=3)
    assert out.shape[2] == 7 and torch.equal(out[:, :, :4], prefix)


def test_segments_switch_prompt_without_restarting(setup):
    pipe, model, ctx = setup
    a, b = ctx("a fox"), ctx("waves crash on a rocky beach", flow=8.0)
    only_a = _run(pipe, [Segment(a, 4)], window=3)
    a_then_b = _run(pipe, [Segment(a, 2), Segment(b, 2)], window=3)
    assert torch.equal(a_then_b[:, :, :2], only_a[:, :, :2])  # causal: the past does not see the future
    assert not torch.equal(a_then_b[:, :, 2:], only_a[:, :, 2:])


def test_blend_interpolates_contexts():
    a, b = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    ctxs = segment_contexts([Segment(a, 2), Segment(b, 3)], n_prefix=1, blend_frames=2)
    assert len(ctxs) == 6 and ctxs[0] is a and ctxs[2] is a
    assert [round(float(c.mean()), 4) for c in ctxs[3:]] == [0.3333, 0.6667, 1.0]


def test_loop_leads_back_to_the_first_frame(setup):
    pipe, model, ctx = setup
    out = _run(pipe, [Segment(ctx("a fox"), 3)], window=3, loop_frames=2)
    assert out.shape[2] == 5
    first = out[:, :, 0]
    same = [(out[:, :, t] == first).float().mean().item() for t in (3, 4)]
    assert 0.2 < same[0] < same[1] < 0.9  # a growing share of tokens is copied from the first frame


@pytest.mark.parametrize("kw,match", [(dict(window=1), "window"), (dict(blend_frames=-1), "blend_frames")])
def test_bad_long_video_arguments(setup, kw, match):
    pipe, model, ctx = setup
    with pytest.raises(InputError, match=match):
        _run(pipe, [Segment(ctx("a fox"), 2)], **kw)

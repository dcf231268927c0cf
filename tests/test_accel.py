"""Every speed-up keeps the latents: each Accel variant against the plain path on the golden cases
(within the golden tolerances; in practice they agree to ~1e-5)."""

import pytest
import torch
import torch.nn.functional as F
from conftest import golden_case, golden_runs
from tolerances import assert_latents_close

from nova.sampling.fast import Accel, HeadPlan, StepPlan, denoise_tokens
from nova.sampling.sampler import Guidance, SamplerSettings, prepare_scheduler

VARIANTS = {
    "all": Accel(),
    "token_loop_only": Accel(token_loop=True, fused_head=False, prune_last_block=False),
    "fused_head": Accel(token_loop=True, fused_head=True, prune_last_block=False),
    "prune_only": Accel(token_loop=False, fused_head=False, prune_last_block=True),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("case,run", golden_runs())
def test_accel_matches_plain(golden_pipes, case, run, variant):
    _, _, expected = golden_case(case)
    pipe = golden_pipes[case]
    kw = {k: v for k, v in run.items() if k not in ("name", "seed", "image")}
    if run.get("image"):
        kw["image"] = expected[f"{run['name']}.image"].numpy()
    outs = {}
    for name, accel in (("plain", Accel.plain()), (variant, VARIANTS[variant])):
        pipe.accel = accel
        out = pipe(**kw, generator=torch.Generator().manual_seed(run["seed"]), output_type="latent")
        outs[name] = out.frames if out.frames is not None else out.images
    pipe.accel = Accel()
    assert_latents_close(outs[variant], outs["plain"], flow_matching=case == "t2i_tiny")


@pytest.mark.parametrize("case", ["t2v_tiny", "t2i_tiny"])
def test_step_plan_is_the_library_step(golden_pipes, case):
    pipe = golden_pipes[case]
    settings = SamplerSettings(num_diffusion_steps=7)
    sched = prepare_scheduler(pipe.scheduler, settings)
    plan = StepPlan.build(sched)
    assert plan is not None and len(plan.coeffs) == 7
    assert plan.draws_noise == [case == "t2v_tiny" and float(t) > 0 for t in sched.timesteps]
    gen = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    for i, t in enumerate(sched.timesteps):
        g1, g2 = torch.Generator().manual_seed(i), torch.Generator().manual_seed(i)
        ref = sched.step(eps, t, x, generator=g1).prev_sample
        noise = torch.randn(x.shape, generator=g2) if plan.draws_noise[i] else None
        # folded constants: the library's formula up to float32 rounding
        torch.testing.assert_close(plan.step(i, eps, x, noise), ref, rtol=1e-5, atol=1e-5)


def test_padding_rows_do_not_change_real_tokens(golden_pipes):
    """What the CUDA-graph loop relies on: the head and steps are per token."""
    pipe = golden_pipes["t2v_tiny"]
    model = pipe.transformer
    settings = SamplerSettings(num_diffusion_steps=4)
    guidance = Guidance(settings)
    plan = StepPlan.build(prepare_scheduler(pipe.scheduler, settings))
    head = HeadPlan(model, plan.timesteps, fused=True)
    gen = torch.Generator().manual_seed(0)
    n, pad = 5, 16
    x = torch.randn(1, n, 16, generator=gen)
    cond = model.head_condition(torch.randn(2, n, model.image_encoder.dim, generator=gen))
    noise = [torch.randn(1, n, 16, generator=gen) if d else None for d in plan.draws_noise]
    ref = denoise_tokens(model, plan, head, cond, x, noise, guidance)
    padded = denoise_tokens(
        model,
        plan,
        head,
        F.pad(cond, (0, 0, 0, pad - n)),
        F.pad(x, (0, 0, 0, pad - n)),
        [None if t is None else F.pad(t, (0, 0, 0, pad - n)) for t in noise],
        guidance,
    )
    assert torch.allclose(padded[:, :n], ref, atol=1e-6, rtol=1e-5)


def test_head_modulations_in_chunks_match_one_product(golden_pipes):
    """Large batches compute the AdaLN modulations a few steps at a time (memory bound)."""
    pipe = golden_pipes["t2v_tiny"]
    model = pipe.transformer
    plan = StepPlan.build(prepare_scheduler(pipe.scheduler, SamplerSettings(num_diffusion_steps=5)))
    head = HeadPlan(model, plan.timesteps, fused=True)
    cond = model.head_condition(torch.randn(2, 3, model.image_encoder.dim, generator=torch.Generator().manual_seed(0)))
    whole = list(head.modulations(cond, passes=2))
    stepwise = list(head.modulations(cond, passes=2, budget=1))
    assert len(whole) == len(stepwise) == 5
    for a, b in zip(whole, stepwise):
        assert len(a) == 3 * len(model.image_decoder.blocks) + 2
        for x, y in zip(a, b):
            assert x.shape == (2, 3, model.image_decoder.head.weight.shape[1])
            assert torch.allclose(x, y, rtol=1e-6, atol=1e-6)

"""The Triton head under the Triton interpreter (run by tests/test_triton_head.py in a process
with TRITON_INTERPRET=1 set before triton is imported; not collected on its own).

Each kernel against its eager twin on random inputs, the whole head against the eager fused head,
and the sampler with ``Accel(triton_head=True)`` against the plain path on every golden case."""

import dataclasses
import os

import pytest
import torch
import torch.nn.functional as F
from conftest import golden_case, golden_runs
from tolerances import assert_latents_close

from nova.head import triton as triton_head
from nova.sampling.fast import Accel, HeadPlan, StepPlan
from nova.sampling.sampler import SamplerSettings, prepare_scheduler

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/test_triton_head.py"

D, P, R = 96, 2, 10  # the t2v_tiny head's width (not a power of two: the masks are exercised)


@pytest.fixture()
def kernels():
    class Stub:  # the TritonHead needs only the width and a device from the head
        width, out = D, (None, torch.zeros(1))

    return triton_head.TritonHead(Stub())


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def modulations(seed):
    """Three [P, R, D] column slices of one product, as HeadPlan.modulations yields them."""
    return rand(P, R, 3 * D, seed=seed).split(D, dim=-1)


@pytest.mark.parametrize("shared_x", [True, False])
def test_modulated_layer_norm(kernels, shared_x):
    x = rand(R, D, seed=1) if shared_x else rand(P, R, D, seed=1)
    scale, shift, _ = modulations(2)
    got = kernels.modulated_layer_norm(x, scale, shift)
    torch.testing.assert_close(got, torch.addcmul(shift, F.layer_norm(x, (D,), eps=1e-6), scale), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("silu", [True, False])
@pytest.mark.parametrize("rows,n_in,n_out", [(20, 96, 96), (5, 16, 96), (40, 96, 16)])
def test_linear(kernels, silu, rows, n_in, n_out):
    a, w, b = rand(rows, n_in, seed=3), rand(n_in, n_out, seed=4), rand(n_out, seed=5)
    want = torch.addmm(b, a, w)
    torch.testing.assert_close(kernels.linear(a, w, b, silu=silu), F.silu(want) if silu else want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shared_x", [True, False])
def test_norm_gate_residual(kernels, shared_x):
    x = rand(R, D, seed=6) if shared_x else rand(P, R, D, seed=6)
    h, (_, _, gate) = rand(P * R, D, seed=7), modulations(8)
    w, b = rand(D, seed=9), rand(D, seed=10)
    want = torch.addcmul(x, F.layer_norm(h, (D,), w, b, 1e-5).view(P, -1, D), gate)
    torch.testing.assert_close(kernels.norm_gate_residual(h, w, b, 1e-5, gate, x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("passes", [1, 2])
@pytest.mark.parametrize("std", [None, 0.3])
def test_guided_step(kernels, passes, std):
    pred, x, noise = rand(passes, 2, 7, 16, seed=11), rand(2, 7, 16, seed=12), rand(2, 7, 16, seed=13)
    a, b, scale = 1.02, -0.4, 5.0
    eps = torch.lerp(pred[1], pred[0], scale) if passes == 2 else pred[0]
    want = torch.add(x * a, eps, alpha=b)
    if std is not None:
        want = want.add_(noise, alpha=std)
    got = kernels.step(pred, x, noise if std is not None else None, (a, b, std), scale)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_whole_head_matches_the_eager_head(golden_pipes):
    model = golden_pipes["t2v_tiny"].transformer
    plan = StepPlan.build(prepare_scheduler(golden_pipes["t2v_tiny"].scheduler, SamplerSettings(num_diffusion_steps=3)))
    eager = HeadPlan(model, plan.timesteps, fused=True)
    fused = HeadPlan(model, plan.timesteps, fused=True, triton=True)
    assert eager.kernels is None and isinstance(fused.kernels, triton_head.TritonHead)
    n = 5
    cond = model.head_condition(rand(2, n, model.image_encoder.dim, seed=14))
    x = rand(1, n, 16, seed=15)
    for mods in eager.modulations(cond, passes=2):
        torch.testing.assert_close(fused(x, mods), eager(x, mods), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case,run", golden_runs())
def test_sampler_with_the_triton_head_matches_plain(golden_pipes, monkeypatch, case, run):
    _, _, expected = golden_case(case)
    pipe = golden_pipes[case]
    steps = []  # the Triton step really ran (no silent fallback to the eager head)
    real_step = triton_head.TritonHead.step
    monkeypatch.setattr(triton_head.TritonHead, "step", lambda self, *a: steps.append(1) or real_step(self, *a))
    kw = {k: v for k, v in run.items() if k not in ("name", "seed", "image")}
    if run.get("image"):
        kw["image"] = expected[f"{run['name']}.image"].numpy()
    outs = {}
    for name, accel in (("plain", Accel.plain()), ("triton", dataclasses.replace(Accel(), triton_head=True))):
        pipe.accel = accel
        out = pipe(**kw, generator=torch.Generator().manual_seed(run["seed"]), output_type="latent")
        outs[name] = out.frames if out.frames is not None else out.images
    pipe.accel = Accel()
    # the fast path (hence the Triton head) runs unless guidance renorm needs the library steps
    assert (len(steps) > 0) is (run.get("guidance_renorm", 1.0) >= 1)
    assert_latents_close(outs["triton"], outs["plain"], flow_matching=case == "t2i_tiny")

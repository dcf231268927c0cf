"""The spatial encoder's modes (nova/speed/spatial_kernels.py): the exact ones keep the golden latents,
the opt-in ones (fp8 matmuls, SageAttention) are routed where they claim and refused clearly where
they cannot run, and SageAttention is never imported unless chosen."""

import sys

import pytest
import torch
from conftest import golden_case, golden_runs
from tolerances import assert_latents_close

from nova.errors import InputError
from nova.sampling.fast import Accel, FastPlan
from nova.sampling.sampler import Guidance, SamplerSettings, prepare_scheduler
from nova.speed.spatial_kernels import Fp8Product, SpatialKernels, quantize_rows

ONE_RUN_PER_CASE = [p for p in golden_runs() if p.values[1]["name"] in ("t2v", "t2i")]


def _latents(pipe, case, run, accel):
    _, _, expected = golden_case(case)
    kw = {k: v for k, v in run.items() if k not in ("name", "seed", "image")}
    if run.get("image"):
        kw["image"] = expected[f"{run['name']}.image"].numpy()
    pipe.accel = accel
    try:
        out = pipe(**kw, generator=torch.Generator().manual_seed(run["seed"]), output_type="latent")
    finally:
        pipe.accel = Accel()
    return out.frames if out.frames is not None else out.images


@pytest.mark.parametrize("attention", ["math", "flash"])
@pytest.mark.parametrize("case,run", ONE_RUN_PER_CASE)
def test_exact_attention_kernels_keep_the_golden_latents(golden_pipes, case, run, attention):
    pipe = golden_pipes[case]
    _, _, expected = golden_case(case)
    out = _latents(pipe, case, run, Accel(attention=attention))
    assert_latents_close(out, expected[f"{run['name']}.latents"], flow_matching=case == "t2i_tiny")


def test_compiled_blocks_keep_the_golden_latents(golden_pipes):
    """torch.compile of the blocks (Inductor's C++ backend here): one case, since the first
    compilation takes ~30 s on two cores; the graphs are shared by every later call."""
    case, run = next(p.values for p in ONE_RUN_PER_CASE if p.values[0] == "t2i_tiny")
    _, _, expected = golden_case(case)
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # (so that this run compiles, whatever ran before)
    graphs = counters["stats"]["unique_graphs"]
    out = _latents(golden_pipes[case], case, run, Accel(compile_encoder=True))
    assert_latents_close(out, expected[f"{run['name']}.latents"], flow_matching=True)
    assert counters["stats"]["unique_graphs"] > graphs  # the blocks did run compiled


def test_compile_refused_where_it_cannot_build(golden_pipes, monkeypatch):
    import shutil

    model = golden_pipes["t2i_tiny"].transformer
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="needs a C\\+\\+ compiler .* Turn compilation off"):
        SpatialKernels.build(model, compile_encoder=True)
    from nova.speed.spatial_kernels import check_compile

    with pytest.raises(InputError, match="not on mps"):
        check_compile(torch.device("mps"))


@pytest.mark.parametrize("kw", [dict(fp8_matmuls=True), dict(attention="sage")])
def test_compile_only_with_exact_modes(kw):
    with pytest.raises(InputError, match="compiling the encoder works with the exact modes only"):
        Accel(compile_encoder=True, **kw)


def test_attention_kernel_that_cannot_run_is_refused_before_sampling(golden_pipes):
    model = golden_pipes["t2v_tiny"].transformer  # CPU, float32: no memory-efficient or cuDNN kernel
    with pytest.raises(InputError, match=r"attention = 'efficient' cannot run here \(cpu, float32.*Choose 'auto'"):
        SpatialKernels.build(model, attention="efficient")


def test_unknown_attention_lists_the_choices():
    with pytest.raises(
        InputError, match="attention = 'xformers'; expected one of auto, flash, cudnn, efficient, math, sage"
    ):
        Accel(attention="xformers")


def test_default_mode_builds_no_kernels_and_is_exact(golden_pipes):
    pipe = golden_pipes["t2v_tiny"]
    sched = prepare_scheduler(pipe.scheduler, SamplerSettings(4, 2))
    plan = FastPlan.build(pipe.transformer, sched, Accel(), Guidance(SamplerSettings(4, 2)))
    assert plan.encoder is None and Accel().exact
    assert not Accel(fp8_matmuls=True).exact and not Accel(attention="sage").exact
    assert Accel(attention="cudnn").exact
    assert Accel(attention="sage", fp8_matmuls=True).describe() == "attention sage, fp8 matmuls (changes the latents)"


# -- fp8 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [21, 1])  # (one row: the last block's single predicted token)
@pytest.mark.parametrize("rowwise", [True, False])
def test_fp8_linear_is_the_dequantized_product(rowwise, rows):
    """torch._scaled_mm with our scales computes (q_x * s_x) @ (q_w * s_w)^T + b in float32."""
    gen = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(64, 48)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(48, 64, generator=gen) * torch.linspace(0.01, 2, 48)[:, None])
    x = torch.randn(rows, 1, 64, generator=gen) * 3
    fp8 = Fp8Product.prepare(layer, "cpu", torch.float32, rowwise)
    out = fp8(x)
    qx, sx = quantize_rows(x.reshape(-1, 64), rowwise)
    qw, sw = quantize_rows(layer.weight.detach(), rowwise)
    ref = (qx.float() * sx) @ (qw.float() * sw).t() + layer.bias.detach()
    torch.testing.assert_close(out.reshape(-1, 48), ref, rtol=1e-5, atol=1e-5)
    exact = layer(x).detach()
    rel = float((out - exact).norm() / exact.norm())
    assert 1e-4 < rel < 0.08  # e4m3 has 3 mantissa bits: a few percent, never exact
    assert fp8.weight_t.dtype == torch.float8_e4m3fn and fp8.weight_t.shape == (64, 48)


def test_fp8_pad_rows_do_not_change_real_rows():
    layer = torch.nn.Linear(32, 16)
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(1))
    x[3:] *= 1000  # pad rows far larger than the real ones: a shared scale would crush the real rows
    fp8 = Fp8Product.prepare(layer, "cpu", torch.float32, rowwise=True)
    # What the code guarantees bit for bit: each real row's fp8 values and scale (elementwise ops).
    q_all, s_all = quantize_rows(x, rowwise=True)
    q_real, s_real = quantize_rows(x[:3], rowwise=True)
    assert torch.equal(q_all[:3].float(), q_real.float()) and torch.equal(s_all[:3], s_real)
    # The matmul itself may sum its K products in another order for another row count (AVX-512 kernels
    # do): a float32 sum of K terms is within K * eps32 * sum|terms| of any other order.
    a, b = q_real.float() * s_real, fp8.weight_t.float() * fp8.scale
    bound = 32 * torch.finfo(torch.float32).eps * (a.abs() @ b.abs())
    diff = (fp8(x)[:3] - fp8(x[:3])).abs()
    assert bool((diff <= bound).all()), f"max excess {float((diff - bound).max()):.3g}"
    # and far inside the change a shared (per-tensor) scale would make
    shared = Fp8Product.prepare(layer, "cpu", torch.float32, rowwise=False)
    assert float((shared(x)[:3] - fp8(x[:3])).abs().max()) > 100 * float(bound.max())


def test_fp8_mode_covers_every_block_linear_and_leaves_the_weights(golden_pipes):
    pipe = golden_pipes["t2v_tiny"]
    model = pipe.transformer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kernels = SpatialKernels.build(model, fp8_matmuls=True)
    blocks = model.image_encoder.blocks
    assert len(kernels.fp8) == 4 * len(blocks)
    assert all(layer in kernels.fp8 for b in blocks for layer in (b.attn.qkv, b.attn.proj, b.mlp.fc1, b.mlp.fc2))
    case, run = ONE_RUN_PER_CASE[0].values
    exact = _latents(pipe, case, run, Accel())
    lossy = _latents(pipe, case, run, Accel(fp8_matmuls=True))
    assert lossy.shape == exact.shape and torch.isfinite(lossy).all()
    assert float((lossy - exact).abs().mean() / exact.std()) > 1e-3  # it really ran in fp8
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fp8_refused_where_it_cannot_run(golden_pipes, monkeypatch):
    import nova.speed.spatial_kernels as sk

    monkeypatch.setattr(sk, "FP8", None)
    with pytest.raises(InputError, match="fp8 matmuls need PyTorch with float8"):
        SpatialKernels.build(golden_pipes["t2v_tiny"].transformer, fp8_matmuls=True)
    with pytest.raises(InputError, match="not on mps"):
        monkeypatch.setattr(sk, "FP8", torch.float8_e4m3fn)
        sk.check_fp8_device(torch.device("mps"))


# -- SageAttention ---------------------------------------------------------------------------
FAKE_SAGE = """
import torch.nn.functional as F
CALLS = []
def sageattn(q, k, v, tensor_layout="HND", is_causal=False):
    CALLS.append((tuple(q.shape), tensor_layout, is_causal))
    k -= k.mean(dim=2, keepdim=True)  # as the real one does (softmax does not change)
    return F.scaled_dot_product_attention(q, k, v)
"""


@pytest.fixture
def fake_sage(tmp_path, monkeypatch):
    """A stand-in ``sageattention`` on the import path (the real one needs CUDA)."""
    (tmp_path / "sageattention.py").write_text(FAKE_SAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sageattention", raising=False)
    yield tmp_path
    sys.modules.pop("sageattention", None)


def test_sage_is_never_imported_unless_chosen(golden_pipes, fake_sage):
    pipe = golden_pipes["t2v_tiny"]
    case, run = ONE_RUN_PER_CASE[0].values
    for accel in (Accel(), Accel(attention="math"), Accel(fp8_matmuls=True), Accel.plain()):
        _latents(pipe, case, run, accel)
    assert "sageattention" not in sys.modules


def test_sage_routes_every_spatial_attention(golden_pipes, fake_sage):
    import importlib

    sage = importlib.import_module("sageattention")
    model = golden_pipes["t2v_tiny"].transformer
    kernels = SpatialKernels("sage", None, sage=sage.sageattn)
    gen = torch.Generator().manual_seed(0)
    cfg = model.config
    tokens = torch.randn(2, cfg.num_image_tokens, model.image_encoder.dim, generator=gen)
    context = torch.randn(2, 5, model.image_encoder.dim, generator=gen)
    known = torch.arange(3).reshape(1, 3, 1).expand(2, -1, -1)
    out = kernels.encode(model, tokens, context, known)
    ref = model.encode_image(tokens, context, known)
    torch.testing.assert_close(out, ref)  # the stand-in computes SDPA: same features
    assert len(sage.CALLS) == len(model.image_encoder.blocks)
    assert all(layout == "HND" and not causal for _, layout, causal in sage.CALLS)


def test_sage_refused_on_cpu_and_when_missing(golden_pipes, fake_sage, monkeypatch):
    model = golden_pipes["t2v_tiny"].transformer
    with pytest.raises(InputError, match="runs on CUDA GPUs only; this model is on cpu"):
        SpatialKernels.build(model, attention="sage")
    monkeypatch.setitem(sys.modules, "sageattention", None)  # import fails as if not installed
    with pytest.raises(InputError, match=r"needs the sageattention package.*pip install sageattention"):
        SpatialKernels.build(model, attention="sage")

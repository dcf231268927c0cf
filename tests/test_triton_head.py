"""The Triton head (nova/head/triton.py): off by default, never imported unless asked for, eager
where Triton cannot run, and under the Triton interpreter the same numbers as the eager head
(tests/triton_cases.py, run in a process of its own: TRITON_INTERPRET must be set before triton
is imported, and must not leak into the other tests)."""

import dataclasses
import os
import subprocess
import sys

import pytest

from nova.sampling.fast import Accel, FastPlan, HeadPlan, StepPlan
from nova.sampling.sampler import Guidance, SamplerSettings, prepare_scheduler

HERE = os.path.dirname(os.path.abspath(__file__))


def test_triton_head_is_off_by_default():
    assert Accel().triton_head is False and Accel.plain().triton_head is False


def test_importing_nova_and_the_fast_path_does_not_import_triton():
    code = (
        "import sys, nova, nova.sampling.fast, nova.head.triton; assert 'triton' not in sys.modules, 'triton imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(HERE))


def test_without_cuda_or_the_interpreter_the_eager_head_runs(golden_pipes, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    pipe = golden_pipes["t2v_tiny"]
    settings = SamplerSettings(num_diffusion_steps=3)
    plan = StepPlan.build(prepare_scheduler(pipe.scheduler, settings))
    assert HeadPlan(pipe.transformer, plan.timesteps, fused=True, triton=True).kernels is None
    fast = FastPlan.build(
        pipe.transformer,
        prepare_scheduler(pipe.scheduler, settings),
        dataclasses.replace(Accel(), triton_head=True),
        Guidance(settings),
    )
    assert fast.head.fused and fast.head.kernels is None


def test_kernels_compile_for_a_hopper_gpu(tmp_path):
    """No GPU needed: Triton compiles to sm_90 machine code with its own ptxas."""
    pytest.importorskip("triton", reason="triton is in requirements-dev.txt (Linux); without it this cannot run")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # a real compile, not a cached one
    res = subprocess.run(
        [sys.executable, os.path.join(HERE, "triton_compile.py"), "bf16", "fp16", "fp32"],
        cwd=os.path.dirname(HERE),
        env={**env, "PYTHONPATH": os.path.dirname(HERE)},
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    assert "compiled 30 kernels for sm_90" in res.stdout, res.stdout


def test_kernels_and_golden_cases_under_the_triton_interpreter():
    pytest.importorskip("triton", reason="triton is in requirements-dev.txt (Linux); without it this cannot run")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rfEs",
            os.path.join(HERE, "triton_cases.py"),
        ],
        cwd=os.path.dirname(HERE),
        env=env,
        capture_output=True,
        text=True,
    )
    summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-2000:]
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    assert "skipped" not in summary and " passed" in summary, summary
    assert int(summary.split(" passed")[0].split()[-1]) == 22, summary  # 15 kernel and head checks, 7 golden runs

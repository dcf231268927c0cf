"""Lower precision on CPU: how much faster, and how far from the official outputs.

    python bench/precision.py [--rounds 5]

Recent x86 CPUs multiply bf16 matrices several times faster than float32 (AMX, AVX512-BF16).
For each way of using that, this script times the cpu-mid latents against float32 (alternating
rounds, same process) and reruns every golden case (``tests/golden``: outputs of the official
code) to compare the latents with the golden tolerances. Writes
``bench/results/cpu-precision.{json,md}``.

Modes:
- ``float32``: what the pack runs on CPU.
- ``bf16 math in the transformer MLPs``: the MLPs of both encoders (2/3 of their FLOPs) with
  float32 tensors but bf16 products, float32 sums (oneDNN's bf16 fp32-math mode).
- ``bf16 math in every matmul``: the same mode for the whole transformer.
- ``bf16 weights``: the transformer stored and run in bf16 (text encoder and VAE in float32).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the modules beside this script
from presets import PRESETS, PROMPT, ROOT, build  # noqa: E402

from nova.models.vit import MLP  # noqa: E402
from nova.sampling.fast import Accel  # noqa: E402
from nova.sampling.plan import GenerationPlan, Segment  # noqa: E402
from nova.sampling.sampler import SamplerSettings, new_generator  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests"))
from tolerances import assert_latents_close  # noqa: E402

GOLDEN = os.path.join(ROOT, "tests", "golden")
MODES = ("float32", "bf16 math in the transformer MLPs", "bf16 math in every matmul", "bf16 weights")


def bf16_math_available() -> bool:
    matmul = getattr(torch.backends.mkldnn, "matmul", None)
    return torch.backends.mkldnn.is_available() and hasattr(matmul, "fp32_precision")


@contextlib.contextmanager
def bf16_math():
    """float32 matmuls computed with bf16 products (oneDNN fp32-math mode), restored after."""
    matmul = torch.backends.mkldnn.matmul
    before = matmul.fp32_precision
    matmul.fp32_precision = "bf16"
    try:
        yield
    finally:
        matmul.fp32_precision = before


@contextlib.contextmanager
def bf16_math_in(model, module_type):
    """bf16 fp32-math only inside the ``module_type`` submodules of ``model`` (hooks, removed after)."""
    matmul = torch.backends.mkldnn.matmul
    before = matmul.fp32_precision

    def enter(module, args):
        matmul.fp32_precision = "bf16"

    def leave(module, args, output):
        matmul.fp32_precision = before

    handles = []
    for module in model.modules():
        if isinstance(module, module_type):
            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        matmul.fp32_precision = before


def mode_context(mode: str, model):
    if mode == "bf16 math in the transformer MLPs":
        return bf16_math_in(model, MLP)
    if mode == "bf16 math in every matmul":
        return bf16_math()
    return contextlib.nullcontext()


def golden_errors(mode: str) -> list:
    """Every golden run in ``mode``: max and mean |latents - official| over std, and whether the
    golden tolerances hold."""
    from safetensors.torch import load_file

    from nova import NovaPipeline

    rows = []
    for case in sorted(os.listdir(GOLDEN)):
        folder = os.path.join(GOLDEN, case)
        if not os.path.isfile(os.path.join(folder, "case.json")):
            continue
        with open(os.path.join(folder, "case.json"), encoding="utf-8") as f:
            runs = json.load(f)["runs"]
        expected = load_file(os.path.join(folder, "expected.safetensors"))
        dtype = torch.bfloat16 if mode == "bf16 weights" else torch.float32
        pipe = NovaPipeline.from_pretrained(
            folder, torch_dtype=dtype, device="cpu", text_encoder_dtype=torch.float32, vae_dtype=torch.float32
        )
        flow = "FlowMatch" in type(pipe.scheduler).__name__
        for run in runs:
            kwargs = {k: v for k, v in run.items() if k not in ("name", "seed", "image")}
            if run.get("image"):
                kwargs["image"] = expected[f"{run['name']}.image"].numpy()
            with mode_context(mode, pipe.transformer):
                out = pipe(**kwargs, generator=torch.Generator().manual_seed(run["seed"]), output_type="latent")
            latents = (out.frames if out.frames is not None else out.images).float()
            ref = expected[f"{run['name']}.latents"].float()
            diff = (latents - ref).abs() / ref.std()
            try:
                assert_latents_close(latents, ref, flow)
                within = True
            except AssertionError:
                within = False
            rows.append(
                {
                    "case": case,
                    "run": run["name"],
                    "tolerance": "flow (1e-3 max, 1e-4 mean)" if flow else "ddpm (2e-2 max, 1e-3 mean)",
                    "max_over_std": float(diff.max()),
                    "mean_over_std": float(diff.mean()),
                    "within": within,
                }
            )
    return rows


def cpu_mid_times(modes, rounds: int) -> dict:
    """cpu-mid latents (3 latents, 16/10 steps) in each mode, rounds alternating between modes;
    the diff is against the float32 latents."""
    model, text, _, sched = build(PRESETS["cpu-mid"], torch.device("cpu"))
    settings = SamplerSettings(16, 10, 5.0)
    embeds = text.encode([PROMPT], model.config.text_token_len)
    models = {m: copy.deepcopy(model).to(torch.bfloat16) if m == "bf16 weights" else model for m in modes}

    def sample(mode):
        with mode_context(mode, models[mode]):
            return (
                GenerationPlan(models[mode], sched, settings, [Segment(embeds, 3)], accel=Accel())
                .run(new_generator(0))
                .float()
            )

    ref = sample("float32")
    times, diffs = {m: [] for m in modes}, {}
    for mode in modes:
        out = sample(mode)  # warm-up, and the latents
        d = (out - ref).abs() / ref.std()
        diffs[mode] = {"max_over_std": float(d.max()), "mean_over_std": float(d.mean())}
    for _ in range(rounds):
        for mode in modes:
            t0 = time.perf_counter()
            sample(mode)
            times[mode].append(time.perf_counter() - t0)
    return {
        m: {"best": round(min(times[m]), 3), "median": round(statistics.median(times[m]), 3), **diffs[m]} for m in modes
    }


def markdown(report: dict) -> str:
    lines = [
        "# NOVA on CPU: lower precision against the golden tolerances",
        "",
        (
            f"- device: {report['device']} ({report['threads']} threads, torch {report['torch']}); bf16 units: "
            f"{report['bf16_units']}"
        ),
        f"- command: `{report['command']}`",
        "",
        "## Speed: cpu-mid latents (3 latents, 16/10 steps), rounds alternating between modes",
        "",
        "| mode | best s | median s | speed-up (best) | max diff vs float32 / std | mean diff vs float32 / std |",
        "|---|---|---|---|---|---|",
    ]
    base = report["cpu_mid"].get("float32", {}).get("best")
    for mode, v in report["cpu_mid"].items():
        lines.append(
            f"| {mode} | {v['best']} | {v['median']} | {base / v['best']:.2f}x | {v['max_over_std']:.2e} | "
            f"{v['mean_over_std']:.2e} |"
        )
    lines += [
        "",
        "## Parity: every golden case against the official outputs",
        "",
        "| mode | case | run | tolerance | max diff / std | mean diff / std | within |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, rows in report["golden"].items():
        for r in rows:
            lines.append(
                f"| {mode} | {r['case']} | {r['run']} | {r['tolerance']} | {r['max_over_std']:.2e} | "
                f"{r['mean_over_std']:.2e} | {'yes' if r['within'] else '**no**'} |"
            )
    lines += ["", "A mode can stand in for float32 only if every golden run stays within the tolerances."]
    for mode, rows in report["golden"].items():
        failed = sum(not r["within"] for r in rows)
        lines.append(
            f"- {mode}: {len(rows) - failed} of {len(rows)} runs within"
            + ("." if not failed else f"; {failed} outside.")
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-speed", action="store_true", help="golden parity only")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = parser.parse_args(argv)
    modes = [m for m in MODES if "math" not in m or bf16_math_available()]
    flags = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    units = [u for u in ("amx_bf16", "avx512_bf16") if u in flags] or ["none found"]
    report = {
        "device": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "bf16_units": ", ".join(units),
        "command": "bench/precision.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    with torch.inference_mode():
        report["cpu_mid"] = {} if args.skip_speed else cpu_mid_times(modes, args.rounds)
        report["golden"] = {mode: golden_errors(mode) for mode in modes}
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "cpu-precision")
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()

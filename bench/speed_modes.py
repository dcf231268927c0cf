"""How much each spatial-encoder mode (nova/speed/spatial_kernels.py) changes the latents, and how fast
it is, against the default mode — beside the chaos floor: how much the default itself moves when
one weight is nudged by one float32 ulp (a DDPM sampler with random weights can amplify any
rounding difference; a mode's difference means little unless it is well above that floor).

    python bench/speed_modes.py                          # CPU: golden cases + cpu-mid model
    python bench/speed_modes.py --preset gpu-osp480      # on a GPU (bench/gpu_check.py times every mode)

Writes speed-modes-<device kind>.json/.md to --out (bench/results/).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import peak_bytes, reset_peak, timed  # noqa: E402
from presets import PRESETS, PROMPT, ROOT, build  # noqa: E402

from nova.errors import InputError  # noqa: E402
from nova.head import triton as triton_head  # noqa: E402
from nova.sampling.fast import Accel  # noqa: E402
from nova.sampling.plan import GenerationPlan, Segment  # noqa: E402
from nova.sampling.sampler import SamplerSettings, new_generator  # noqa: E402
from nova.speed import spatial_kernels  # noqa: E402

GOLDEN = os.path.join(ROOT, "tests", "golden")


@contextlib.contextmanager
def tensorwise_fp8():
    """fp8 with one scale per tensor (what Ada GPUs get) on a device that has row-wise scales."""
    original = spatial_kernels.fp8_rowwise_supported
    spatial_kernels.fp8_rowwise_supported = lambda device: False
    try:
        yield
    finally:
        spatial_kernels.fp8_rowwise_supported = original


@contextlib.contextmanager
def nudged(model):
    """One weight of the spatial encoder moved by about one float32 ulp (the chaos floor)."""
    w = model.image_encoder.norm.weight
    saved = w.detach().clone()
    with torch.no_grad():
        w.mul_(1 + 1e-7 if w.dtype == torch.float32 else 1 + 2**-7)
    try:
        yield
    finally:
        with torch.no_grad():
            w.copy_(saved)


def modes(model, combos: bool = True):
    """(label, Accel, context) of every mode to measure on this model's device (on CUDA with
    Triton, also with the Triton head: the fastest combinations); the modes that cannot run here
    are reported with the reason instead."""
    device, dtype = model.device, model.dtype
    rowwise = spatial_kernels.fp8_rowwise_supported(device)
    none = contextlib.nullcontext
    candidates = [
        (f"attention {name}", Accel(attention=name), none) for name in ("flash", "cudnn", "efficient", "math")
    ]
    candidates += [
        ("compiled blocks (torch.compile)", Accel(compile_encoder=True), none),  # (compiles in the warm-up run)
        (f"fp8 matmuls ({'row-wise' if rowwise else 'per-tensor'} scales)", Accel(fp8_matmuls=True), none),
        *([("fp8 matmuls (per-tensor scales, as on Ada)", Accel(fp8_matmuls=True), tensorwise_fp8)] if rowwise else []),
        ("SageAttention", Accel(attention="sage"), none),
        ("SageAttention + fp8 matmuls", Accel(attention="sage", fp8_matmuls=True), none),
    ]
    if combos and device.type == "cuda" and triton_head.usable(device):
        candidates += [
            (f"Triton head + {label}", dataclasses.replace(accel, triton_head=True), scope)
            for label, accel, scope in [("default kernels", Accel(), none), *candidates]
            if not label.startswith("attention ") and "as on Ada" not in label
        ]
    out, skipped = [], {}
    for label, accel, scope in candidates:
        try:
            spatial_kernels.check_runnable(
                accel.attention, accel.fp8_matmuls, accel.compile_encoder, device, dtype, model.config
            )
            out.append((label, accel, scope))
        except InputError as exc:  # (the reason goes into the report)
            skipped[label] = str(exc)
    return out, skipped


def diff(out: torch.Tensor, ref: torch.Tensor) -> dict:
    d = (out.float() - ref.float()).abs()
    std = ref.float().std()
    return {"max_over_std": float(d.max() / std), "mean_over_std": float(d.mean() / std)}


def measure(model, sample, device, repeat: int, combos: bool = True, fresh_compile: bool = True) -> dict:
    """Every mode against the default (and the default's chaos floor) for one sampling function;
    ``fresh_compile``: compile anew (a new model), so that the warm-up time includes it."""
    sample(Accel(), 1)  # warm-up
    reset_peak(device)
    t_ref, ref = timed(lambda: sample(Accel(), None), device, repeat=repeat)
    rows = {
        "default": {
            "seconds": round(t_ref, 3),
            "peak_gb": round(peak_bytes(device) / 2**30, 2),
            "max_over_std": 0.0,
            "mean_over_std": 0.0,
        }
    }
    with nudged(model):
        rows["default, one weight nudged by 1 ulp (chaos floor)"] = diff(sample(Accel(), None), ref)
    found, skipped = modes(model, combos)
    for label, accel, scope in found:
        if accel.compile_encoder and fresh_compile:  # the time of a first compilation is reported, and
            torch._dynamo.reset()  # the process's recompile limit is not reached by the models measured before
        try:  # (one failing mode must not cost the other rows of a one-shot GPU run)
            with scope():
                t_first, _ = timed(lambda: sample(accel, 1), device)  # warm-up (and compilation)
                reset_peak(device)
                dt, out = timed(lambda: sample(accel, None), device, repeat=repeat)
        except Exception as exc:  # noqa: BLE001 (reported as the mode's result)
            skipped[label] = f"failed: {type(exc).__name__}: {str(exc).strip()[:300]}"
            print(label, skipped[label], flush=True)
            continue
        rows[label] = {
            "seconds": round(dt, 3),
            "warm_up_seconds": round(t_first, 2),
            "speedup": round(t_ref / dt, 2),
            "peak_gb": round(peak_bytes(device) / 2**30, 2),
            **diff(out, ref),
        }
        print(label, rows[label], flush=True)
    return {"rows": rows, "not_run": skipped}


def golden(device) -> dict:
    """Every run of the golden cases (tests/golden: tiny official-layout checkpoints)."""
    from safetensors.torch import load_file

    from nova.pipeline import NovaPipeline

    results = {}
    for case in ("t2v_tiny", "t2i_tiny"):
        folder = os.path.join(GOLDEN, case)
        with open(os.path.join(folder, "case.json"), encoding="utf-8") as f:
            runs = json.load(f)["runs"]
        expected = load_file(os.path.join(folder, "expected.safetensors"))
        pipe = NovaPipeline.from_pretrained(folder, torch_dtype=torch.float32, device=device)
        for run in runs:
            kw = {k: v for k, v in run.items() if k not in ("name", "seed", "image")}
            if run.get("image"):
                kw["image"] = expected[f"{run['name']}.image"].numpy()

            def sample(accel, _n, kw=kw, run=run):
                pipe.accel = accel
                out = pipe(**kw, generator=torch.Generator().manual_seed(run["seed"]), output_type="latent")
                return out.frames if out.frames is not None else out.images

            print(f"golden {case}/{run['name']}", flush=True)
            first = run is runs[0]  # (a case's runs share its model and compiled graphs)
            results[f"{case}/{run['name']}"] = measure(
                pipe.transformer, sample, device, repeat=1, combos=False, fresh_compile=first
            )
        pipe.accel = Accel()
    return results


def preset_model(name: str, device, steps, repeat: int) -> dict:
    preset = PRESETS[name]
    model, text, _vae, sched = build(preset, device)
    embeds = text.encode([PROMPT], model.config.text_token_len)
    latents = preset.latents if model.config.is_video_model else 1
    settings = SamplerSettings(*(steps or preset.steps), 5.0)

    def sample(accel, n):
        plan = GenerationPlan(model, sched, settings, [Segment(embeds, n or latents)], accel=accel)
        return plan.run(new_generator(0))

    print(f"preset {name}", flush=True)
    steps = [settings.num_inference_steps, settings.num_diffusion_steps]
    return {"preset": name, "latents": latents, "steps": steps, **measure(model, sample, device, repeat)}


def markdown(report: dict) -> str:
    lines = [
        f"# Speed modes of the spatial encoder: difference from the default, and time ({report['device']})",
        "",
        f"Command: `{report['command']}`",
        "",
        (
            "Differences are max and mean |mode - default| over the default latents' std (the golden tolerances' "
            "measure: 2e-2 / 1e-3 for DDPM runs, 1e-3 / 1e-4 for flow matching). The chaos floor row is the default "
            "with one weight (the spatial encoder's final LayerNorm scale) nudged by one float32 ulp: a mode's "
            "difference near that floor is rounding amplified by the sampler, not the mode."
        ),
        "",
    ]
    not_run = {}
    sections = [(f"golden {k}", v, False) for k, v in report.get("golden", {}).items()]
    if "preset" in report:
        p = report["preset"]
        sections.append(
            (f"{p['preset']} (random weights, {p['latents']} latents, {p['steps'][0]}/{p['steps'][1]} steps)", p, True)
        )
    for title, section, timed_rows in sections:
        # (the tiny golden runs take milliseconds: their times are noise, only their differences count)
        head = "| mode | max / std | mean / std |" + (
            " seconds | speed-up | peak GB | warm-up s (1 latent, with compilation) |" if timed_rows else ""
        )
        lines += [f"## {title}", "", head, "|" + "---|" * (head.count("|") - 1)]
        for label, row in section["rows"].items():
            line = f"| {label} | {row['max_over_std']:.3g} | {row['mean_over_std']:.3g} |"
            if timed_rows:
                cells = ("seconds", "speedup", "peak_gb", "warm_up_seconds")
                line += "".join(f" {row.get(cell, '')} |" for cell in cells)
            lines.append(line)
        not_run.update(section["not_run"])
        lines.append("")
    if not_run:
        lines += ["## Not run on this machine, or failed", ""] + [f"- {k}: {v}" for k, v in not_run.items()] + [""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--preset", default="cpu-mid", choices=sorted(PRESETS))
    ap.add_argument(
        "--steps", type=int, nargs=2, default=None, help="set steps, diffusion steps (default: the preset's)"
    )
    ap.add_argument("--no-golden", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    report = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.processor() or 'x86_64'}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "command": "python " + " ".join(sys.argv),
    }
    with torch.inference_mode():
        if not args.no_golden:
            report["golden"] = golden(device)
        report["preset"] = preset_model(args.preset, device, args.steps, args.repeat)
    os.makedirs(args.out, exist_ok=True)
    kind = "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device).split()[-1].lower()
    base = os.path.join(args.out, f"speed-modes-{kind}")
    with open(base + ".json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    with open(base + ".md", "w", encoding="utf-8") as f:
        f.write(markdown(report))
    print("wrote", base + ".md")


if __name__ == "__main__":
    main()

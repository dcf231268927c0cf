"""NOVA speed and memory benchmark: random weights at real sizes, nothing to download.

    python bench/bench.py --preset cpu-mid                 # 2-core CPU, mid-size model
    python bench/bench.py --preset gpu-osp480 [--demo]     # 33 x 480 x 768, 64/25 (and 128/100), bf16
    python bench/bench.py --preset gpu-sdxl1024            # 1024 x 1024 text-to-image, 64/25, bf16
    python bench/bench.py --preset gpu-osp480 --official /path/to/NOVA   # + the official pipeline
    python bench/bench.py --checkpoint BAAI/nova-d48w1024-osp480         # real weights (or a local folder)

Reports, per stage (text encode, temporal step, spatial encoder per set step, diffusion head,
VAE decode): time, FLOPs (counted by torch's FlopCounterMode on one frame), achieved TFLOP/s
against the device's measured matmul peak, and peak memory; the end-to-end time of each speed-up
(``Accel``) against the plain path and, if given, the official pipeline; and the long-video memory
at a fixed window. Writes JSON and Markdown to bench/results/.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the modules beside this script
from floor import kernel_floor  # noqa: E402
from measure import StageFlops, StageTimer, matmul_peak, peak_bytes, reset_peak, timed  # noqa: E402
from official import head_to_head, official_runner  # noqa: E402
from presets import PRESETS, PROMPT, ROOT, build, load  # noqa: E402
from report import markdown  # noqa: E402

from nova.head import triton as triton_head  # noqa: E402  (imports triton only when used)
from nova.sampling.fast import Accel, FastPlan  # noqa: E402
from nova.sampling.plan import GenerationPlan, Segment  # noqa: E402
from nova.sampling.sampler import SamplerSettings, new_generator  # noqa: E402


def generate(model, sched, embeds, n, settings, accel=None, window=None):
    """Latents of one ``n``-latent video from ``embeds`` with seed 0 (the plan every front end runs)."""
    return GenerationPlan(model, sched, settings, [Segment(embeds, n)], window=window, accel=accel).run(
        new_generator(0)
    )


def run(args) -> dict:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preset = PRESETS[args.preset]
    dtype, latents, (steps, dsteps) = preset.dtype, preset.latents, preset.steps
    if args.checkpoint:
        model, text, vae, sched = load(args.checkpoint, device, dtype)
    else:
        model, text, vae, sched = build(preset, device)
    if not model.config.is_video_model:
        latents = 1
    if args.latents:
        latents = args.latents
    if args.steps:
        steps, dsteps = args.steps
    report = {
        "preset": args.preset,
        "checkpoint": args.checkpoint or "random weights",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dtype": str(dtype).replace("torch.", ""),
        "video_model": model.config.is_video_model,
        "latents": latents,
        "frames": 1 + 4 * (latents - 1),
        "steps": [steps, dsteps],
        "command": " ".join(sys.argv),
    }
    report["matmul_peak_tflops"] = round(matmul_peak(device, dtype), 2)
    settings = SamplerSettings(steps, dsteps, 5.0)

    # text encode, then offload Phi-2 (as the ComfyUI node does)
    reset_peak(device)
    t_text, embeds = timed(lambda: text.encode([PROMPT], model.config.text_token_len), device, repeat=2)
    report["text_encode"] = {"seconds": round(t_text, 4), "peak_gb": round(peak_bytes(device) / 2**30, 2)}
    text.model.to("cpu")
    if device.type == "cuda":
        torch.cuda.empty_cache()

    def sample(accel, n=latents, s=settings):
        return generate(model, sched, embeds, n, s, accel)

    report["end_to_end"], outs = end_to_end(model, sched, settings, embeds, sample, device, args)
    floors = {}
    if args.floor or not args.quick:  # what the fast path would take if only its matmuls and attention cost time
        label = "fast, no CUDA graphs" if device.type == "cuda" else "fast"  # graph replays hide their kernels
        floors[label] = kernel_floor(lambda: sample(Accel(cuda_graphs=False)), device)
        print("kernel floor", floors, flush=True)

    vae_runs = report["vae_decode_tiles"] = vae_decode(vae, outs["fast"][:1], device)
    stages = {}
    if not args.quick:
        print("stage breakdown...", flush=True)
        stages = stage_breakdown(model, sample, device, latents, report["matmul_peak_tflops"])
        official_tiles = next(iter(vae_runs.values()))
        stages["VAE decode"] = {
            "seconds": official_tiles["seconds"],
            "calls": 1,
            "gflop": None,
            "tflops": None,
            "of_peak": None,
            "peak_gb": official_tiles["peak_gb"],
        }
        stages["text encode"] = {
            "seconds": report["text_encode"]["seconds"],
            "calls": 1,
            "gflop": None,
            "tflops": None,
            "of_peak": None,
            "peak_gb": report["text_encode"]["peak_gb"],
        }
        report["stages"] = stages
    print("stages", json.dumps(stages), flush=True)
    if args.demo and not args.quick:  # the official demo's 128/100 setting, fast path (and the Triton head)
        demo = SamplerSettings(128, 100, 7.0)
        dt, _ = timed(lambda: generate(model, sched, embeds, latents, demo, Accel()), device)
        report["demo_128_100_seconds"] = round(dt, 2)
        if triton_head.usable(device) and device.type == "cuda":  # the exact modes that may be faster (issue 15)
            for key, accel in (
                ("triton_head", Accel(triton_head=True)),
                ("triton_head_compiled", Accel(triton_head=True, compile_encoder=True)),
            ):
                try:
                    generate(
                        model, sched, embeds, 1, demo, accel
                    )  # warm-up: Triton and Inductor compile, graph capture
                    dt, _ = timed(lambda: generate(model, sched, embeds, latents, demo, accel), device)
                    report[f"demo_128_100_{key}_seconds"] = round(dt, 2)
                except Exception as exc:  # noqa: BLE001 (a one-shot GPU run keeps going)
                    report[f"demo_128_100_{key}_failed"] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"

    print("demo", report.get("demo_128_100_seconds"), flush=True)
    if args.official:
        run_official = official_runner(args.official, model, text, embeds, sched, device, latents, settings)
        h2h = head_to_head(run_official, lambda: sample(Accel()), device, args.rounds)
        report["official"] = {"seconds": h2h["official_best"], "peak_gb": h2h["official_peak_gb"]}
        report["head_to_head"] = h2h
        print("head to head", h2h, flush=True)
        if floors:
            floors["official"] = kernel_floor(run_official, device)
    if floors:
        report["kernel_floor"] = floors

    if args.long and model.config.is_video_model:
        report["long_video"] = long_video_memory(model, sched, embeds, device, args.window, args)
    elif args.long:
        print("long: skipped, an image model makes one latent frame", flush=True)
    return report


def end_to_end(model, sched, settings, embeds, sample, device, args):
    """Latents end to end: the plain path, the fast path and each fast-path switch off in turn
    (all against the plain path), and on CPU what bf16 weights would give."""
    variants = {"plain": Accel.plain(), "fast": Accel()}
    if not args.quick:
        if device.type == "cuda":
            variants["fast, no CUDA graphs"] = Accel(cuda_graphs=False)
        if triton_head.usable(device):  # (off by default until these rows show it faster, same latents)
            variants["fast + Triton head"] = dataclasses.replace(Accel(), triton_head=True)
            if device.type == "cuda":
                variants["fast + Triton head, no CUDA graphs"] = Accel(cuda_graphs=False, triton_head=True)
                variants["fast + Triton head + compiled blocks"] = Accel(triton_head=True, compile_encoder=True)
        variants.update(
            {
                "fast, last block on all rows": dataclasses.replace(Accel(), prune_last_block=False),
                "fast, head as modules": dataclasses.replace(
                    Accel(), fused_head=False
                ),  # (CUDA graphs need the fused head)
                "fast, library scheduler steps": dataclasses.replace(Accel(), token_loop=False, fused_head=False),
            }
        )
    e2e, outs = {}, {}
    for name, accel in variants.items():
        try:  # (an optional variant that fails must not cost the rest of a one-shot GPU run)
            sample(accel, n=1)  # warm-up (kernels, graph capture of the first frame's buckets)
            reset_peak(device)
            dt, outs[name] = timed(lambda: sample(accel), device, repeat=args.repeat)
        except Exception as exc:  # noqa: BLE001 (reported in its row)
            if name in ("plain", "fast"):
                raise
            e2e[name] = {"failed": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
            print(name, e2e[name], flush=True)
            continue
        e2e[name] = {
            "seconds": round(dt, 3),
            "peak_gb": round(peak_bytes(device) / 2**30, 2),
            **diff_vs(outs[name], outs["plain"]),
        }
        print(name, e2e[name], flush=True)
    if device.type == "cpu" and model.dtype == torch.float32 and not args.quick:
        # what a CPU user gets from bf16 weights (AMX on recent x86): faster, but not the same latents
        low = copy.deepcopy(model).to(torch.bfloat16)
        n = outs["plain"].shape[2]
        run_low = lambda: generate(low, sched, embeds, n, settings, Accel())  # noqa: E731
        run_low()
        dt, out = timed(run_low, device, repeat=args.repeat)
        e2e["fast, bf16 weights (other latents)"] = {
            "seconds": round(dt, 3),
            "peak_gb": round(peak_bytes(device) / 2**30, 2),
            **diff_vs(out, outs["plain"]),
        }
    return e2e, outs


def vae_decode(vae, latents, device) -> dict:
    """Decode time and peak memory, fp32 and bf16 (the video VAE also in 5- and 3-latent tiles);
    the first entry is the official way."""
    runs = {}
    for vdtype in (torch.float32, torch.bfloat16):
        vae.model.to(vdtype)
        for tile in (5, 3) if vae.temporal else (None,):
            if device.type == "cuda":
                torch.cuda.empty_cache()
            reset_peak(device)
            dt, _ = timed(lambda: [None for _ in vae.decode_chunks(latents, tile_latents=tile)], device)
            label = str(vdtype)[6:] + (f", tiles of {tile} latents" if tile else "")
            runs[label] = {"seconds": round(dt, 3), "peak_gb": round(peak_bytes(device) / 2**30, 2)}
            print("vae", label, runs[label], flush=True)
    vae.model.to(torch.float32)
    return runs


def stage_breakdown(model, sample, device, latents: int, peak_tflops: float) -> dict:
    """Time, calls and peak memory of each stage (an instrumented run of the fast path without
    graphs), and its FLOPs (counted on one frame, times the frames)."""
    timer = StageTimer(device)
    timer.wrap(model, "encode_frame", "temporal step")
    timer.wrap(model, "encode_image", "spatial encoder")
    timer.wrap(FastPlan, "denoise", "diffusion head loop")
    try:
        timed(lambda: sample(Accel(cuda_graphs=False)), device)
    finally:
        timer.restore()
    stages = {}
    for stage, owner, attr in (
        ("temporal step", model, "encode_frame"),
        ("spatial encoder", model, "encode_image"),
        ("diffusion head loop", FastPlan, "denoise"),
    ):
        counter = StageFlops(owner, attr)
        with counter:
            sample(Accel(cuda_graphs=False), n=1)
        flops = counter.flops * latents  # (the temporal step grows a little per frame)
        secs = timer.time.get(stage, 0.0)
        tflops = flops / secs / 1e12 if secs else 0.0
        stages[stage] = {
            "seconds": round(secs, 3),
            "calls": timer.calls.get(stage, 0),
            "gflop": round(flops / 1e9, 1),
            "tflops": round(tflops, 3),
            "of_peak": f"{100 * tflops / peak_tflops:.1f}%",
        }
        if stage in timer.peak:
            stages[stage]["peak_gb"] = round(timer.peak[stage] / 2**30, 2)
    return stages


def diff_vs(out: torch.Tensor, ref: torch.Tensor) -> dict:
    """max and mean |out - ref| over std(ref): the golden tolerances' measures."""
    d = (out.float() - ref).abs()
    return {
        "max_diff_vs_plain_over_std": float(d.max() / ref.std()),
        "mean_diff_vs_plain_over_std": float(d.mean() / ref.std()),
    }


def long_video_memory(model, sched, embeds, device, window, args) -> dict:
    """Peak memory of 9, 33 and 65 latent frames at a fixed window (few steps: memory does not
    depend on them). On CPU each length runs in a fresh process (peak RSS is per process)."""
    from nova.sampling import frame_loop as video_mod

    settings = SamplerSettings(4, 2, 5.0)
    out = {"window": window}
    kv_peak = [0]
    original = video_mod.TemporalCache.context_for

    def tracked(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        kv_peak[0] = max(kv_peak[0], video_mod.kv_cache_bytes(self.state))
        return result

    video_mod.TemporalCache.context_for = tracked
    try:
        for n in (9, 33, 65):
            for w in (window, None):
                kv_peak[0] = 0
                row = {}
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    reset_peak(device)
                    base = torch.cuda.memory_allocated(device)
                    dt, _ = timed(lambda: generate(model, sched, embeds, n, settings, window=w), device)
                    row = {
                        "peak_gb_above_weights": round((peak_bytes(device) - base) / 2**30, 3),
                        "seconds": round(dt, 2),
                    }
                else:
                    generate(model, sched, embeds, n, settings, window=w)
                    row = _cpu_long_run(n, w, args) if w is not None else {}
                row["kv_cache_mb"] = round(kv_peak[0] / 2**20, 2)
                out[f"{n}" if w else f"{n} (no window)"] = row
                print("long", n, w, row, flush=True)
    finally:
        video_mod.TemporalCache.context_for = original
    return out


def _cpu_long_run(n: int, window: int, args) -> dict:
    import subprocess

    models = (
        "presets.load(%r, cpu, torch.float32)" % args.checkpoint
        if args.checkpoint
        else "presets.build(presets.PRESETS[%r], cpu)" % args.preset
    )
    code = (
        "import sys, torch, resource; sys.argv=['x']; sys.path.insert(0, %r); import presets; "
        "from nova.sampling.sampler import *; from nova.sampling.plan import *; cpu = torch.device('cpu'); "
        "m, t, v, s = %s; st = SamplerSettings(4, 2, 5.0); "
        "e = t.encode([presets.PROMPT], m.config.text_token_len); "
        "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        "GenerationPlan(m, s, st, [Segment(e, %d)], window=%d).run(new_generator(0)); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, r0 * 1024)"
    ) % (os.path.dirname(os.path.abspath(__file__)), models, n, window)
    with torch.inference_mode():
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak, before = map(int, res.stdout.split()[-2:])
    return {"peak_rss_gb": round(peak / 2**30, 3), "rss_growth_gb": round((peak - before) / 2**30, 3)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-mid")
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="a NOVA checkpoint (local folder in the hub layout, or hub id) instead of random weights",
    )
    parser.add_argument("--latents", type=int, default=None)
    parser.add_argument(
        "--steps",
        type=int,
        nargs=2,
        default=None,
        metavar=("SET", "DIFFUSION"),
        help="override the preset's steps (dry runs)",
    )
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="alternating official/fast rounds (with --official)")
    parser.add_argument("--demo", action="store_true", help="also time the official demo's 128/100 setting")
    parser.add_argument(
        "--official", default=None, help="path of an official NOVA checkout (diffnext) to time as baseline"
    )
    parser.add_argument("--long", action="store_true", help="long-video memory at 9/33/65 latents")
    parser.add_argument("--quick", action="store_true", help="end to end, VAE decode, official and long video only")
    parser.add_argument("--floor", action="store_true", help="the kernel floor even with --quick")
    parser.add_argument("--window", type=int, default=9)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = parser.parse_args(argv)
    with torch.inference_mode():
        report = run(args)
    os.makedirs(args.out, exist_ok=True)
    name = args.preset
    if args.checkpoint:  # a checkpoint's report does not replace the random-weight one
        name += "-" + os.path.basename(os.path.normpath(args.checkpoint))
    stem = os.path.join(args.out, name)
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

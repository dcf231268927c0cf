"""A torch.profiler summary of one video on the fast path, as Markdown (issue 15, item 1; not named
profile.py: that would shadow the standard library's profile module, which cProfile imports).

    python bench/profile_run.py --preset gpu-osp480                 # CUDA graphs on (the default path)
    python bench/profile_run.py --preset gpu-osp480 --no-graphs     # every kernel of the head visible
    python bench/profile_run.py --preset gpu-osp480 --triton-head   # the Triton head (nova/head/triton.py)
    python bench/profile_run.py --checkpoint tests/golden/t2v_tiny --steps 2 2   # CPU smoke run

Writes bench/results/profile-<preset>.md and .json: time by stage (temporal step, spatial encoder,
diffusion head loop; wall time of the marked ranges), the top kernels by device time (CPU: the top
ops by self time), kernel launches per set step, and on CUDA the idle gaps of the GPU (time between
one kernel's end and the next one's start, over the profiled run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from presets import PRESETS, PROMPT, ROOT, build, load  # noqa: E402

from bench import generate  # noqa: E402
from nova.sampling.fast import Accel, FastPlan  # noqa: E402
from nova.sampling.sampler import SamplerSettings  # noqa: E402

STAGES = (
    ("temporal step", "model", "encode_frame"),
    ("spatial encoder", "model", "encode_image"),
    ("diffusion head loop", "fast", "denoise"),
)


def _mark_stages(model):
    """Wraps each stage's function in a record_function range; returns the undo."""
    undo = []
    for label, kind, attr in STAGES:
        owner = model if kind == "model" else FastPlan
        original = getattr(owner, attr)

        def marked(*args, _f=original, _label=label, **kwargs):
            with record_function("stage: " + _label):
                return _f(*args, **kwargs)

        setattr(owner, attr, marked)
        undo.append((owner, attr, original, kind == "model"))
    return lambda: [delattr(o, a) if inst else setattr(o, a, f) for o, a, f, inst in undo]


def _top_level_op(e) -> bool:
    """An aten op not called from inside another aten op."""
    parent = e.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return False
        parent = parent.cpu_parent
    return e.name.startswith("aten::")


def summarize(prof, device: torch.device, set_steps: int, top: int = 20) -> dict:
    """Stage times, top kernels, launches per set step and idle gaps from a finished profile."""
    events = prof.events()
    on_gpu = device.type == "cuda"
    stages = {}
    for e in events:
        if e.name.startswith("stage: "):
            row = stages.setdefault(e.name[7:], {"ms": 0.0, "calls": 0})
            row["ms"] += (e.time_range.end - e.time_range.start) / 1000
            row["calls"] += 1
    kernels = [e for e in events if on_gpu and e.device_type == torch.autograd.DeviceType.CUDA]
    table = []
    for avg in prof.key_averages():
        ms = (avg.self_device_time_total if on_gpu else avg.self_cpu_time_total) / 1000
        if ms > 0 and not avg.key.startswith("stage: ") and (not on_gpu or avg.self_device_time_total > 0):
            table.append({"name": avg.key[:90], "ms": round(ms, 3), "calls": avg.count})
    table.sort(key=lambda r: -r["ms"])
    if on_gpu:
        launches = len(kernels)
        graph_launches = sum(1 for e in events if e.name == "cudaGraphLaunch")
    else:  # CPU: every top-level aten op is a "launch"
        launches = sum(1 for e in events if _top_level_op(e))
        graph_launches = 0
    out = {
        "device": device.type,
        "set_steps": set_steps,
        "stages": {k: {"ms": round(v["ms"], 2), "calls": v["calls"]} for k, v in stages.items()},
        "top": table[:top],
        "launches": launches,
        "launches_per_set_step": round(launches / max(set_steps, 1), 1),
        "cuda_graph_launches": graph_launches,
    }
    if kernels:
        spans = sorted((e.time_range.start, e.time_range.end) for e in kernels)
        wall = spans[-1][1] - spans[0][0]
        gaps, end = [], spans[0][1]
        for start, stop in spans[1:]:
            if start > end:
                gaps.append(start - end)
            end = max(end, stop)
        busy = wall - sum(gaps)
        out["gpu"] = {
            "wall_ms": round(wall / 1000, 2),
            "busy_ms": round(busy / 1000, 2),
            "idle_ms": round(sum(gaps) / 1000, 2),
            "idle_share": round(sum(gaps) / max(wall, 1), 3),
            "gaps_over_50us": sum(1 for g in gaps if g > 50),
            "largest_gaps_ms": [round(g / 1000, 3) for g in sorted(gaps)[-5:][::-1]],
        }
    return out


def markdown(s: dict, meta: dict) -> str:
    lines = [
        f"# NOVA profile: {meta['preset']}",
        "",
        f"- device: {meta['device_name']} (torch {meta['torch']})",
        f"- path: {meta['path']}; {meta['latents']} latents, {meta['steps'][0]}/{meta['steps'][1]} steps, batch 1",
        f"- command: `{meta['command']}`",
        "",
        "## Time by stage (wall time of the marked ranges)",
        "",
        "| stage | ms | calls | ms per call |",
        "|---|---|---|---|",
    ]
    for name, v in s["stages"].items():
        lines.append(f"| {name} | {v['ms']} | {v['calls']} | {v['ms'] / max(v['calls'], 1):.3f} |")
    what = "kernels by device time" if s["device"] == "cuda" else "ops by self CPU time"
    lines += ["", f"## Top {what}", "", "| name | ms | calls |", "|---|---|---|"]
    lines += [f"| `{r['name']}` | {r['ms']} | {r['calls']} |" for r in s["top"]]
    lines += [
        "",
        "## Launches",
        "",
        (
            f"- {'kernels' if s['device'] == 'cuda' else 'top-level ops'}: {s['launches']} "
            f"({s['launches_per_set_step']} per set step, {s['set_steps']} set steps)"
        ),
    ]
    if s["device"] == "cuda":
        lines.append(f"- CUDA graph replays: {s['cuda_graph_launches']}")
    if "gpu" in s:
        g = s["gpu"]
        lines += [
            "",
            "## GPU idle gaps",
            "",
            (
                f"- span of the kernels: {g['wall_ms']} ms; busy {g['busy_ms']} ms; idle {g['idle_ms']} ms "
                f"({100 * g['idle_share']:.1f}%)"
            ),
            f"- gaps over 50 us: {g['gaps_over_50us']}; largest (ms): {g['largest_gaps_ms']}",
        ]
    else:
        lines += ["", "GPU idle gaps: not applicable (no GPU in this run)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-mid")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--latents", type=int, default=None)
    parser.add_argument("--steps", type=int, nargs=2, default=None, metavar=("SET", "DIFFUSION"))
    parser.add_argument("--no-graphs", action="store_true", help="the fast path without CUDA graphs")
    parser.add_argument("--triton-head", action="store_true", help="the Triton head (Accel.triton_head)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preset = PRESETS[args.preset]
    with torch.inference_mode():
        model, text, _, sched = (
            load(args.checkpoint, device, preset.dtype) if args.checkpoint else build(preset, device)
        )
        latents = args.latents or (preset.latents if model.config.is_video_model else 1)
        steps = args.steps or preset.steps
        embeds = text.encode([PROMPT], model.config.text_token_len)
        accel = dataclasses.replace(Accel(), cuda_graphs=not args.no_graphs, triton_head=args.triton_head)
        settings = SamplerSettings(steps[0], steps[1], 5.0)
        generate(model, sched, embeds, latents, settings, accel)  # warm-up: kernels compiled, graphs captured
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        undo = _mark_stages(model)
        try:
            with profile(activities=activities) as prof:
                generate(model, sched, embeds, latents, settings, accel)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
        finally:
            undo()
    summary = summarize(prof, device, set_steps=steps[0] * latents)
    path = (
        "fast"
        + (", no CUDA graphs" if args.no_graphs or device.type != "cuda" else ", CUDA graphs")
        + (", Triton head" if args.triton_head else "")
    )
    meta = {
        "preset": args.preset if not args.checkpoint else os.path.basename(os.path.normpath(args.checkpoint)),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "path": path,
        "latents": latents,
        "steps": list(steps),
        "command": " ".join(["python bench/profile_run.py"] + (argv or sys.argv[1:])),
    }
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(
        args.out,
        "profile-" + meta["preset"] + ("-nographs" if args.no_graphs else "") + ("-triton" if args.triton_head else ""),
    )
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump({**meta, **summary}, f, indent=2)
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(markdown(summary, meta))
    print(markdown(summary, meta))
    return {**meta, **summary}


if __name__ == "__main__":
    main()

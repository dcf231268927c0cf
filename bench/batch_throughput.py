"""Throughput of `python -m nova batch` (videos per hour) by batch size.

    python bench/batch_throughput.py                                   # CPU, cpu-mid sizes, batch 1/2/4
    python bench/batch_throughput.py --checkpoint PATH --dtype bf16 --frames 33 --steps 64 25 --sizes 1 2 4 8

Each batch size runs the real runner (nova.batch.runner.run) in a fresh process on its own output
folder, so peak memory is per batch size (CUDA: most allocated; CPU: the process's peak RSS).
Throughput is counted two ways: from the manifest's per-output seconds (sampling share + decode
+ write: the steady state of a long run) and from the wall time of the whole process's run
(model load and the prompt encoding included). Without --checkpoint a random checkpoint of the
cpu-mid sizes is written (nova.components.tiny 'mid': 256 wide, 4 + 8 layers, 128 x 192, 9 frames).
Writes bench/results/batch-<label>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PROMPTS = [
    "A majestic red fox trots through fresh snow in a quiet pine forest at golden hour.",
    "Waves crash on a rocky beach under a stormy sky.",
    "A hot air balloon drifts over green hills at dawn.",
    "A city street at night with neon lights reflected in puddles.",
    "Many spotted jellyfish pulsating under water.",
    "A shiba inu wearing a beret paints at an easel.",
    "Niagara falls at sunset, seen from a boat.",
    "A cat, a dog and a bird sit on a wooden fence.",
]


def child(args) -> dict:
    """One batch size, in this process: run the job, report time, throughput and peak memory."""
    import torch

    from nova.batch import manifest
    from nova.batch.items import OPTIONS
    from nova.batch.runner import BatchJob, run

    options = {o.key: o.default for o in OPTIONS}
    options.update(frames=args.frames, steps=args.steps[0], diffusion_steps=args.steps[1])
    job = BatchJob(
        args.checkpoint,
        args.prompt_file,
        args.out,
        samples=1,
        batch_size=args.child,
        dtype=args.dtype,
        device=args.device,
        options=options,
    )
    t0 = time.perf_counter()
    summary = run(job)
    wall = time.perf_counter() - t0
    done = [r for r in manifest.read(os.path.join(args.out, manifest.NAME)) if r["kind"] == "done"]
    production = sum(r["seconds"] for r in done)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "batch_size": args.child,
        "threads": torch.get_num_threads(),
        "videos": summary.done,
        "failed": len(summary.failed),
        "wall_s": round(wall, 2),
        "production_s": round(production, 2),
        "per_video_s": round(production / max(len(done), 1), 3),
        "videos_per_hour": round(3600 * len(done) / production, 1) if production else None,
        "videos_per_hour_wall": round(3600 * len(done) / wall, 1),
        "peak_gb": round(peak / 2**30, 2),
        "peak_kind": "CUDA allocated" if cuda else "process RSS",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="a checkpoint folder (default: random cpu-mid weights)")
    p.add_argument("--label", default="cpu-mid")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--prompts", type=int, default=8, help="videos per batch size (one sample per prompt)")
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--steps", type=int, nargs=2, default=[16, 10], help="set steps, diffusion steps")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads per process (default: torch's)")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--prompt-file", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return
    work = tempfile.mkdtemp(prefix="nova-batch-bench-")
    if args.checkpoint is None:
        from nova.components.tiny import make_tiny

        args.checkpoint = make_tiny(os.path.join(work, "mid"), preset="mid")
    prompt_file = os.path.join(work, "prompts.txt")
    with open(prompt_file, "w", encoding="utf-8") as f:
        f.write(
            "".join(
                PROMPTS[i % len(PROMPTS)] + (f" ({i})" if i >= len(PROMPTS) else "") + "\n" for i in range(args.prompts)
            )
        )
    rows = []
    for size in args.sizes:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            str(size),
            "--checkpoint",
            args.checkpoint,
            "--prompt-file",
            prompt_file,
            "--out",
            os.path.join(work, f"b{size}"),
            "--frames",
            str(args.frames),
            "--steps",
            *map(str, args.steps),
            "--dtype",
            args.dtype,
        ] + (["--device", args.device] if args.device else [])
        env = dict(os.environ, PYTHONPATH=ROOT, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"batch size {size} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(line[7:]))
        print(rows[-1], flush=True)
    import torch

    report = {
        "label": args.label,
        "checkpoint": "random cpu-mid weights (nova.components.tiny 'mid')"
        if "nova-batch-bench-" in args.checkpoint
        else args.checkpoint,
        "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "cpu": platform.processor() or platform.machine(),
        "threads": rows[0]["threads"],
        "torch": torch.__version__,
        "dtype": args.dtype,
        "frames": args.frames,
        "steps": args.steps,
        "videos_per_size": args.prompts,
        "load_average": os.getloadavg()[0],
        "command": " ".join(["bench/batch_throughput.py"] + sys.argv[1:]),
        "rows": rows,
    }
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    stem = os.path.join(ROOT, "bench", "results", f"batch-{args.label}")
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(markdown(report))
    print(f"wrote {stem}.json and .md")


def markdown(r: dict) -> str:
    base = r["rows"][0]["videos_per_hour"] or 1
    lines = [
        f"# `nova batch` throughput: {r['label']}",
        "",
        f"- weights: {r['checkpoint']}",
        (
            f"- device: {r['device']} ({r['cpu']}, torch {r['torch']}, {r['threads']} threads), {r['dtype']}; "
            f"load average at the end {r['load_average']:.1f} (a shared machine)"
        ),
        (
            f"- videos: {r['frames']} frames, {r['steps'][0]} set steps x {r['steps'][1]} diffusion steps, cfg 5; "
            f"{r['videos_per_size']} prompts x 1 sample per batch size, each size in a fresh process"
        ),
        f"- command: `{r['command']}`",
        "",
        (
            "| batch size | videos | s per video (manifest) | videos/hour | vs batch 1 | videos/hour incl. load | wall "
            "s | "
            "peak GB |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        vph = row["videos_per_hour"] or 0
        lines.append(
            f"| {row['batch_size']} | {row['videos']} | {row['per_video_s']} | {vph} | {vph / base:.2f}x | "
            f"{row['videos_per_hour_wall']} | {row['wall_s']} | {row['peak_gb']} ({row['peak_kind']}) |"
        )
    lines += [
        "",
        (
            "s per video: the manifest's seconds (the video's share of its batch's sampling, plus its own "
            "decode and write), i.e. the steady state of a long run; 'incl. load' divides by the whole run "
            "(model load and Phi-2 encoding of the prompts included)."
        ),
        "",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

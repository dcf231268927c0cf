"""The benchmark report as Markdown (the JSON holds the same numbers)."""

from __future__ import annotations

import json


def markdown(r: dict) -> str:
    lines = [
        f"# NOVA benchmark: {r['preset']}",
        "",
        f"- weights: {r.get('checkpoint', 'random weights')}",
        (
            f"- device: {r['device']} (torch {r['torch']}, {r['threads']} threads); measured matmul peak "
            f"{r['matmul_peak_tflops']} TFLOP/s ({r['dtype']})"
        ),
        (
            f"- video: {r['latents']} latents = {r['frames']} frames"
            if r.get("video_model", True)
            else "- image: 1 latent"
        )
        + f", {r['steps'][0]} set steps x {r['steps'][1]} diffusion steps, batch 1, cfg 5",
        f"- command: `{r['command']}`",
        "",
        "## End to end (latents, text encoder excluded)",
        "",
        "| path | seconds | peak GB | max abs diff vs plain / std | mean abs diff vs plain / std |",
        "|---|---|---|---|---|",
    ]
    for name, v in r["end_to_end"].items():
        if "failed" in v:
            lines.append(f"| {name} | failed: {v['failed']} | | | |")
            continue
        mean = v.get("mean_diff_vs_plain_over_std")
        lines.append(
            f"| {name} | {v['seconds']} | {v['peak_gb']} | {v['max_diff_vs_plain_over_std']:.2e} | "
            f"{'-' if mean is None else f'{mean:.2e}'} |"
        )
    if "official" in r:
        o, h = r["official"], r["head_to_head"]
        lines.append(f"| official pipeline (diffnext) | {o['seconds']} | {o['peak_gb']} | (its own random stream) | |")
        lines += [
            "",
            f"Official pipeline against the fast path, timed alternately ({h['rounds']} rounds, same process):",
            "",
            "| | official | fast | speed-up |",
            "|---|---|---|---|",
            f"| best | {h['official_best']} s | {h['fast_best']} s | **{h['speedup_best']:.2f}x** |",
            f"| median | {h['official_median']} s | {h['fast_median']} s | **{h['speedup_median']:.2f}x** |",
            "",
            f"Rounds: official {h['official_seconds']}, fast {h['fast_seconds']}.",
        ]
    if r.get("kernel_floor"):
        lines += [
            "",
            "## Kernel floor",
            "",
            (
                "Every matrix product and attention call of one run, each replayed alone with hot caches "
                "(`bench/floor.py`);"
            ),
            "measured: the same run's best time just before and after the replays.",
            "The gap to the measured time is elementwise ops, op dispatch and cache misses.",
            "",
            "| path | floor s | measured s | floor / measured | floor by op (s) |",
            "|---|---|---|---|---|",
        ]
        for name, v in r["kernel_floor"].items():
            ops = ", ".join(f"{k} {t}" for k, t in v["by_op"].items())
            lines.append(
                f"| {name} | {v['seconds']} | {v['measured_seconds']} | "
                f"{100 * v['seconds'] / v['measured_seconds']:.0f}% | {ops} |"
            )
    if "demo_128_100_seconds" in r:
        lines += ["", f"Official demo setting (128/100, cfg 7), fast path: {r['demo_128_100_seconds']} s."]
        for key, words in (
            ("triton_head", "With the Triton head"),
            ("triton_head_compiled", "With the Triton head and compiled blocks"),
        ):
            if f"demo_128_100_{key}_seconds" in r:
                lines[-1] += f" {words}: {r[f'demo_128_100_{key}_seconds']} s."
            elif f"demo_128_100_{key}_failed" in r:
                lines[-1] += f" {words}: failed ({r[f'demo_128_100_{key}_failed']})."
    if r.get("stages"):
        lines += [
            "",
            "## Stages (instrumented run, fast path without CUDA graphs)",
            "",
            (
                "Peak memory: on CUDA the most allocated while the stage ran, weights included; on CPU only the "
                "process's "
                "high-water mark is known, for whole runs (text encode, VAE decode)."
            ),
            "",
            "| stage | seconds | calls | ms per call | GFLOP | TFLOP/s | of peak | peak GB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for stage, v in r["stages"].items():
            lines.append(
                f"| {stage} | {v['seconds']} | {v['calls']} | {1000 * v['seconds'] / max(v['calls'], 1):.2f} | "
                f"{v['gflop'] if v['gflop'] is not None else '-'} | {v['tflops'] if v['tflops'] is not None else '-'} "
                "| "
                f"{v['of_peak'] or '-'} | {v.get('peak_gb', '-')} |"
            )
    lines += [
        "",
        (
            f"Text encoder: {r['text_encode']['seconds']} s, peak memory {r['text_encode']['peak_gb']} GB (offloaded "
            "after "
            "encoding)."
        ),
        "",
        f"## VAE decode of {r['latents']} latents",
        "",
        "| VAE dtype, tiles | seconds | peak GB |",
        "|---|---|---|",
    ]
    for name, v in r["vae_decode_tiles"].items():
        lines.append(f"| {name} | {v['seconds']} | {v['peak_gb']} |")
    if "long_video" in r:
        lv = r["long_video"]
        lines += [
            "",
            f"## Long video memory (window {lv['window']} latents)",
            "",
            "| latent frames | peak |",
            "|---|---|",
        ]
        for n in ("9", "33", "65", "9 (no window)", "33 (no window)", "65 (no window)"):
            if n in lv:
                lines.append(f"| {n} | {json.dumps(lv[n])} |")
    return "\n".join(lines) + "\n"

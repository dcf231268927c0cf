"""Every GPU figure of the fast path in one run that fits one GPU lease (about 8 minutes on an H200).

What to copy beside the code on a GPU machine without network (paths relative to the checkout):

    .whl/       wheels that the machine lacks, e.g. diffusers-0.42.1, importlib_metadata-8.5.0 and
                zipp (pure Python), and sageattention-1.0.6 for the SageAttention row:
                pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \\
                    diffusers==0.42.1 importlib_metadata==8.5.0 zipp sageattention==1.0.6
    .official/  the official NOVA code's ``diffnext/`` folder (github.com/baaivision/NOVA), for
                the official pipeline's rows; without it those rows say so

The one command (installs the wheels into /tmp/site, then runs every item):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl; \\
    PYTHONPATH=/tmp/site python3 bench/gpu_check.py --deadline 480 --out "$OUT"

    python bench/gpu_check.py --smoke      # the same items end to end on the CPU, tiny sizes (a minute)

Items, in order (each is skipped, with the reason, when its estimate would pass ``--deadline``):
  1. default: 33 x 480 x 768 at 64/25, bf16, batch 1, random weights at the osp480 size, text
     encoder excluded; the default path (set steps as CUDA graphs) and the per-step path before
     it (``Accel(step_graphs=False)``) timed alternately, 2 rounds
  2. the official demo setting, 128/100 at cfg 7
  3. a profile of one latent frame on the default path: time by stage, kernels per set step,
     GPU idle between kernels
  4. every speed mode on top of the default, its time and its latents against the default's
  5. the official pipeline (``.official``) and the default timed alternately, 2 rounds
  6. the same profile on the per-step path
  7. sdxl1024 text-to-image at 64/25 against the official pipeline (1 round)
  8. the modes measured far slower before (``LAST_MODES``: attention math), when time is left
Results are written after every item to ``<out>/gpu-check.json`` and ``gpu-check.md``, so a run
cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import matmul_peak, peak_bytes, reset_peak, sync, timed  # noqa: E402
from presets import MID, OSP480, ROOT, SDXL1024  # noqa: E402

from nova.components.config import NovaConfig  # noqa: E402
from nova.components.text_encoder import PromptEmbeds  # noqa: E402
from nova.sampling.fast import Accel  # noqa: E402
from nova.sampling.plan import GenerationPlan, Segment  # noqa: E402
from nova.sampling.sampler import SamplerSettings, new_generator  # noqa: E402

DEFAULT = Accel()
PER_STEP = Accel(step_graphs=False)
MODES = {  # every spatial-encoder and head mode, on top of the default path
    "triton_head": Accel(triton_head=True),
    "attention flash": Accel(attention="flash"),
    "attention cudnn": Accel(attention="cudnn"),
    "attention efficient": Accel(attention="efficient"),
    "fp8_matmuls": Accel(fp8_matmuls=True),
    "attention sage": Accel(attention="sage"),
    "compile_encoder": Accel(compile_encoder=True),
    "triton_head + compile_encoder": Accel(triton_head=True, compile_encoder=True),
}
LAST_MODES = {"attention math": Accel(attention="math")}  # 3x slower on an H200: timed when time is left


def random_model(config: dict, device, dtype):
    """Random weights at a real size, scaled so the post-norm blocks stay in range."""
    from nova.components.loaders import build_transformer

    torch.manual_seed(0)
    model = build_transformer(NovaConfig.from_dict(config), device=device, dtype=dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5) if p.dim() > 1 else None
        for t in (model.mask_embed.bos_token, model.mask_embed.mask_token, model.text_embed.weight):
            t.normal_(std=0.02)
    return model


def random_embeds(model, device) -> PromptEmbeds:
    cfg = model.config
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(1, cfg.text_token_len, cfg.text_token_dim, generator=gen) * 0.5
    return PromptEmbeds(feats.to(device), [min(40, cfg.text_token_len)], [False])


class Check:
    """The run's report, written after every item."""

    def __init__(self, out: str, deadline: float, meta: dict, only=()):
        self.out, self.deadline, self.start, self.only = out, deadline, time.monotonic(), only
        self.report = {**meta, "items": {}}
        os.makedirs(out, exist_ok=True)

    def left(self) -> float:
        return self.deadline - (time.monotonic() - self.start)

    def item(self, name: str, estimate: float, fn):
        if self.only and not any(name.startswith(k) for k in self.only):
            return
        if self.left() < estimate:
            self.report["items"][name] = {"skipped": f"needs about {estimate:.0f} s, {self.left():.0f} s left"}
        else:
            t0 = time.monotonic()
            try:
                self.report["items"][name] = fn()
            except Exception as exc:  # noqa: BLE001 (a one-shot GPU run keeps going)
                traceback.print_exc()
                self.report["items"][name] = {"failed": f"{type(exc).__name__}: {str(exc).strip()[:400]}"}
            self.report["items"][name]["item_seconds"] = round(time.monotonic() - t0, 1)
        print(f"== {name}: {json.dumps(self.report['items'][name])[:600]}", flush=True)
        self.write()

    def write(self):
        self.report["elapsed_seconds"] = round(time.monotonic() - self.start, 1)
        with open(os.path.join(self.out, "gpu-check.json"), "w", encoding="utf-8") as f:
            json.dump(self.report, f, indent=2)
        with open(os.path.join(self.out, "gpu-check.md"), "w", encoding="utf-8") as f:
            f.write(markdown(self.report))


def generate(model, sched, embeds, latents, settings, accel):
    plan = GenerationPlan(model, sched, settings, [Segment(embeds, latents)], accel=accel)
    return plan.run(new_generator(0))


def difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return round(float((a.float() - b.float()).abs().max() / b.float().std()), 5)


def alternate(runs: dict, device, rounds: int) -> dict:
    """Each path timed in turn, ``rounds`` times, in one process (a machine's drift hits all)."""
    times = {name: [] for name in runs}
    outs = {}
    for _ in range(rounds):
        for name, fn in runs.items():
            reset_peak(device)
            dt, outs[name] = timed(fn, device)
            times[name].append(round(dt, 3))
    return {
        "seconds": times,
        "best": {k: min(v) for k, v in times.items()},
        "peak_gb": round(peak_bytes(device) / 2**30, 2),
    }, outs


def profile_frame(model, sched, embeds, settings, accel, device) -> dict:
    """A short video under torch.profiler: stage times, kernels per set step, GPU idle between
    kernels. On the default path the video has 2 latents (the first frame captures the graphs, the
    second replays them); the per-step path profiles one. (The model is warm from earlier items.)"""
    from profile_run import _mark_stages, summarize
    from torch.profiler import ProfilerActivity, profile

    latents = 2 if accel.step_graphs else 1
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    undo = _mark_stages(model)
    try:
        with profile(activities=activities) as prof:
            generate(model, sched, embeds, latents, settings, accel)
            sync(device)
    finally:
        undo()
    out = summarize(prof, device, set_steps=settings.num_inference_steps * latents, top=12)
    out["latents"] = latents
    return out


def official_pair(model, embeds, sched, device, latents, settings, rounds):
    """The official pipeline (``.official``) and our default path, alternately."""
    from official import official_runner

    path = os.path.join(ROOT, ".official")
    if not os.path.isdir(os.path.join(path, "diffnext")):
        return {"failed": f"no official checkout at {path}/diffnext"}
    tok = _tokenizer_stub()
    run_official = official_runner(path, model, tok, embeds, sched, device, latents, settings)
    res, _ = alternate(
        {"official": run_official, "default": lambda: generate(model, sched, embeds, latents, settings, DEFAULT)},
        device,
        rounds,
    )
    res["speedup_best"] = round(res["best"]["official"] / res["best"]["default"], 2)
    return res


def _tokenizer_stub():
    import tempfile
    from types import SimpleNamespace

    from nova.components.text_encoder import load_tokenizer
    from nova.components.tiny import write_tokenizer

    folder = tempfile.mkdtemp()
    write_tokenizer(folder)
    return SimpleNamespace(tokenizer=load_tokenizer(folder))


def run(args) -> dict:
    import diffusers
    from presets import DDPM, FLOW

    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    video_cfg, image_cfg = (MID, {**MID, "video_base_size": [1, 4, 6]}) if args.smoke else (OSP480, SDXL1024)
    latents, steps, demo_steps = (3, (6, 4), (8, 6)) if args.smoke else (9, (64, 25), (128, 100))
    rounds = 1 if args.smoke else args.rounds
    meta = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu"),
        "torch": torch.__version__,
        "dtype": str(dtype).replace("torch.", ""),
        "latents": latents,
        "steps": list(steps),
        "date": time.strftime("%Y-%m-%d"),
        "smoke": args.smoke,
        "command": "python bench/gpu_check.py " + " ".join(sys.argv[1:]),
    }
    try:
        import triton

        meta["triton"] = triton.__version__
    except ImportError:
        meta["triton"] = None
    only = tuple(k.strip() for k in args.only.split(",") if k.strip()) if args.only else ()
    check = Check(args.out, args.deadline, meta, only)
    check.report["matmul_peak_tflops"] = round(matmul_peak(device, dtype), 1)
    ddpm = diffusers.DDPMScheduler.from_config(DDPM)
    with torch.inference_mode():
        model = random_model(video_cfg, device, dtype)
        embeds = random_embeds(model, device)
        settings = SamplerSettings(*steps, 5.0)
        generate(model, ddpm, embeds, 1, settings, DEFAULT)  # warm-up: library handles, kernels
        state = {}

        def default_vs_per_step():
            res, outs = alternate(
                {
                    "default": lambda: generate(model, ddpm, embeds, latents, settings, DEFAULT),
                    "per-step path (before)": lambda: generate(model, ddpm, embeds, latents, settings, PER_STEP),
                },
                device,
                rounds,
            )
            state["default"] = outs["default"]
            res["latents_max_diff_over_std"] = difference(outs["per-step path (before)"], outs["default"])
            res["ratio_default_over_before"] = round(res["best"]["default"] / res["best"]["per-step path (before)"], 3)
            return res

        check.item("default vs per-step path", 40 if not args.smoke else 5, default_vs_per_step)
        base = check.report["items"].get("default vs per-step path", {}).get("best", {}).get("default", 10.0)
        demo = SamplerSettings(*demo_steps, 7.0)
        check.item(
            "128/100 (cfg 7)",
            6 * base,
            lambda: {
                "seconds": round(timed(lambda: generate(model, ddpm, embeds, latents, demo, DEFAULT), device)[0], 3)
            },
        )

        def profile(accel):
            return lambda: profile_frame(model, ddpm, embeds, settings, accel, device)

        check.item("profile: default", 25 if not args.smoke else 5, profile(DEFAULT))

        def mode_item(name, accel):
            def mode():
                generate(model, ddpm, embeds, 1, settings, accel)  # warm-up: compile, autotune
                dt, out = timed(lambda: generate(model, ddpm, embeds, latents, settings, accel), device)
                dt_default, _ = timed(lambda: generate(model, ddpm, embeds, latents, settings, DEFAULT), device)
                res = {
                    "seconds": round(dt, 3),
                    "default_seconds": round(dt_default, 3),
                    "ratio": round(dt / dt_default, 3),
                }
                if "default" in state:
                    res["latents_max_diff_over_std"] = difference(out, state["default"])
                return res

            check.item("mode: " + name, 3 * base + (30 if "compile" in name else 5), mode)

        for name, accel in MODES.items():
            mode_item(name, accel)
        check.item(
            "official vs default (osp480)",
            10 * base,
            lambda: official_pair(model, embeds, ddpm, device, latents, settings, rounds),
        )
        check.item("profile: per-step path", 25 if not args.smoke else 5, profile(PER_STEP))
        flow = diffusers.FlowMatchEulerDiscreteScheduler.from_config(FLOW)

        def sdxl():  # (the video model stays loaded: it is small beside the GPU's memory)
            image_model = random_model(image_cfg, device, dtype)
            image_embeds = random_embeds(image_model, device)
            generate(image_model, flow, image_embeds, 1, settings, DEFAULT)
            return official_pair(image_model, image_embeds, flow, device, 1, settings, 1)

        check.item("sdxl1024: official vs default", 8 * base, sdxl)
        for name, accel in LAST_MODES.items():
            mode_item(name, accel)
    check.write()
    return check.report


def markdown(r: dict) -> str:
    lines = [
        f"# NOVA GPU check ({r['date']})",
        "",
        (
            f"- device: {r['device']}; torch {r['torch']}; triton {r.get('triton')}; {r['dtype']}; matmul peak "
            f"{r.get('matmul_peak_tflops')} TFLOP/s"
        ),
        (
            f"- video: {r['latents']} latents, {r['steps'][0]}/{r['steps'][1]} steps, "
            "batch 1, cfg 5, random weights at the real size, text encoder excluded"
        ),
        f"- command: `{r['command']}`; {r.get('elapsed_seconds')} s in all",
        "",
    ]
    items = r["items"]
    main = items.get("default vs per-step path", {})
    if "best" in main:
        lines += [
            "## Default path against the per-step path before it (alternately, same process)",
            "",
            "| path | seconds (rounds) | best |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {v} | {main['best'][k]} |" for k, v in main["seconds"].items()]
        lines += [
            "",
            (
                f"Default / before: **{main['ratio_default_over_before']}**; latents max |diff| / std: "
                f"{main['latents_max_diff_over_std']}."
            ),
            "",
        ]
    modes = {k[6:]: v for k, v in items.items() if k.startswith("mode: ")}
    if modes:
        lines += [
            "## Speed modes on top of the default (each timed beside a default run)",
            "",
            "| mode | seconds | default seconds | ratio | latents max diff / std |",
            "|---|---|---|---|---|",
        ]
        for k, v in modes.items():
            if "seconds" in v:
                lines.append(
                    f"| {k} | {v['seconds']} | {v['default_seconds']} | {v['ratio']} | "
                    f"{v.get('latents_max_diff_over_std')} |"
                )
            else:
                lines.append(f"| {k} | {v.get('failed') or v.get('skipped')} | | | |")
        lines.append("")
    for name, v in items.items():
        if name.startswith("mode: ") or name == "default vs per-step path":
            continue
        lines += [f"## {name}", "", "```", json.dumps(v, indent=1)[:3000], "```", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadline", type=float, default=480, help="seconds; items that would pass it are skipped")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (checks the script end to end)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the timed pairs")
    parser.add_argument(
        "--only",
        default="",
        help=(
            "comma-separated item names (their beginnings) to run, e.g. "
            "'default,128/100,sdxl1024'; the rest are left out"
        ),
    )
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --smoke for the CPU check of this script")
    return run(args)


if __name__ == "__main__":
    main()

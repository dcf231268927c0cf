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
import contextlib
import dataclasses
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from typing import Tuple

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nova.config import NovaConfig  # noqa: E402
from floor import kernel_floor  # noqa: E402
from nova.fast import Accel, FastPlan  # noqa: E402
from nova.models.vae_opensora import AutoencoderKLOpenSora  # noqa: E402
from nova.sampling import Guidance, SamplerSettings, build_context, generate_latents, new_generator  # noqa: E402
from nova.text_encoder import TextEncoder  # noqa: E402
from nova.vae import NovaVAE  # noqa: E402
from nova.video import Segment, generate_video  # noqa: E402

OSP480 = {
    "image_dim": 4, "image_size": [480, 768], "image_stride": 8, "text_token_dim": 2560, "text_token_len": 256,
    "video_mixer_rank": 24, "video_base_size": [16, 15, 24], "image_base_size": [30, 48],
    "arch": ["vit_d16w1024", "vit_d32w1024", "mlp_d3w1280"],
}
PHI2 = dict(vocab_size=51200, hidden_size=2560, intermediate_size=10240, num_hidden_layers=32, num_attention_heads=32,
            partial_rotary_factor=0.4, max_position_embeddings=2048, hidden_act="gelu_new")
OSP_VAE = {
    "_class_name": "AutoencoderKLOpenSora", "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
    "down_block_types": ["DownEncoderBlock2D"] * 2 + ["DownEncoderBlock3D"] * 2, "up_block_types": ["UpDecoderBlock3D"] * 4,
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "norm_num_groups": 32, "scaling_factor": 0.18215,
}
MID = {
    "image_dim": 4, "image_size": [128, 192], "image_stride": 8, "text_token_dim": 128, "text_token_len": 64,
    "video_base_size": [16, 4, 6], "image_base_size": [8, 12], "video_mixer_rank": 24,
    "arch": ["vit_d4w256", "vit_d8w256", "mlp_d3w256"],
}
MID_PHI = dict(vocab_size=300, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
               partial_rotary_factor=0.4, max_position_embeddings=512, hidden_act="gelu_new")
MID_VAE = {**OSP_VAE, "block_out_channels": [32, 32, 64, 64], "layers_per_block": 1}
SDXL1024 = {  # nova-d48w1024-sdxl1024 (text-to-image, 1024 x 1024)
    "image_dim": 4, "image_size": 1024, "image_stride": 8, "text_token_dim": 2560, "text_token_len": 256,
    "video_base_size": [1, 32, 32], "image_base_size": [64, 64], "arch": ["vit_d16w1024", "vit_d32w1024", "mlp_d6w1024"],
}
SDXL_VAE = {
    "_class_name": "AutoencoderKL", "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4, "in_channels": 3,
    "out_channels": 3, "latent_channels": 4, "norm_num_groups": 32, "scaling_factor": 0.13025, "sample_size": 1024,
}
DDPM = {"_class_name": "DDPMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000, "prediction_type": "epsilon", "timestep_spacing": "trailing", "variance_type": "fixed_small",
        "clip_sample": False}
FLOW = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0}


@dataclasses.dataclass(frozen=True)
class Preset:
    transformer: dict
    phi: dict
    vae: dict
    scheduler: dict
    dtype: torch.dtype
    latents: int
    steps: Tuple[int, int]  # set steps, diffusion steps


PRESETS = {
    "cpu-mid": Preset(MID, MID_PHI, MID_VAE, DDPM, torch.float32, 3, (16, 10)),  # 2-core CPU
    "gpu-osp480": Preset(OSP480, PHI2, OSP_VAE, DDPM, torch.bfloat16, 9, (64, 25)),  # 33 x 480 x 768 video
    "gpu-sdxl1024": Preset(SDXL1024, PHI2, SDXL_VAE, FLOW, torch.bfloat16, 1, (64, 25)),  # 1024 x 1024 image
}
PROMPT = "A majestic red fox trots through fresh snow in a quiet pine forest at golden hour."


# -- measuring ----------------------------------------------------------------------------------
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # process high-water mark


def timed(fn, device, repeat=1):
    best, out = None, None
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, out


def matmul_peak(device, dtype) -> float:
    """The device's achievable matmul rate (TFLOP/s), the yardstick for 'achieved'."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    reps = 10 if device.type == "cuda" else 3
    dt, _ = timed(lambda: [a @ b for _ in range(reps)], device)
    return 2 * n**3 * reps / dt / 1e12


class StageTimer:
    """Wraps stage functions with synchronized timers (used in a separate, instrumented run)."""

    def __init__(self, device):
        self.device, self.time, self.calls = device, {}, {}
        self.peak = {}  # CUDA only: the most memory allocated while the stage ran (weights included)
        self._undo = []

    def wrap(self, owner, attr, stage):
        original = getattr(owner, attr)

        def wrapper(*args, **kwargs):
            sync(self.device)
            reset_peak(self.device)
            t0 = time.perf_counter()
            out = original(*args, **kwargs)
            sync(self.device)
            self.time[stage] = self.time.get(stage, 0.0) + time.perf_counter() - t0
            self.calls[stage] = self.calls.get(stage, 0) + 1
            if self.device.type == "cuda":
                self.peak[stage] = max(self.peak.get(stage, 0), peak_bytes(self.device))
            return out

        setattr(owner, attr, wrapper)
        self._undo.append((owner, attr, original))

    def restore(self):
        for owner, attr, original in reversed(self._undo):
            if owner.__dict__.get(attr) is not None and isinstance(owner, torch.nn.Module):
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)
        self._undo.clear()


# -- models -------------------------------------------------------------------------------------
def build(preset: Preset, device: torch.device):
    """Random weights at the preset's sizes: transformer, text encoder, VAE, scheduler."""
    import diffusers
    from transformers import PhiConfig, PhiModel

    from nova.components import build_transformer
    from nova.text_encoder import load_tokenizer
    from nova.tiny import write_tokenizer

    dtype = preset.dtype
    torch.manual_seed(0)
    model = build_transformer(NovaConfig.from_dict(preset.transformer), device=device, dtype=dtype)
    for p in model.parameters():  # post-norm blocks: keep random activations in range
        p.mul_(0.5) if p.dim() > 1 else None
    model.mask_embed.bos_token.normal_(std=0.02)
    model.mask_embed.mask_token.normal_(std=0.02)
    model.text_embed.weight.normal_(std=0.02)
    with torch.device(device):
        phi = PhiModel(PhiConfig(**preset.phi)).to(dtype).eval().requires_grad_(False)
    tok_dir = tempfile.mkdtemp()
    write_tokenizer(tok_dir)
    text = TextEncoder(phi, load_tokenizer(tok_dir))
    with torch.device(device):
        if preset.vae["_class_name"] == "AutoencoderKLOpenSora":
            vae_model = AutoencoderKLOpenSora(preset.vae)
        else:
            vae_model = diffusers.AutoencoderKL.from_config(preset.vae)
    vae = NovaVAE(vae_model.eval().requires_grad_(False), preset.vae)
    sched = getattr(diffusers, preset.scheduler["_class_name"]).from_config(preset.scheduler)
    return model, text, vae, sched


def load(checkpoint: str, device: torch.device, dtype: torch.dtype):
    """A real checkpoint (a local folder in the hub layout, or a hub id) instead of random weights."""
    from nova.pipeline import NovaPipeline

    pipe = NovaPipeline.from_pretrained(checkpoint, torch_dtype=dtype, device=device)
    return pipe.transformer, pipe.text_encoder, pipe.vae, pipe.scheduler


# -- the benchmark ------------------------------------------------------------------------------
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
        "preset": args.preset, "checkpoint": args.checkpoint or "random weights", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "dtype": str(dtype).replace("torch.", ""),
        "video_model": model.config.is_video_model, "latents": latents, "frames": 1 + 4 * (latents - 1), "steps": [steps, dsteps], "command": " ".join(sys.argv),
    }
    report["matmul_peak_tflops"] = round(matmul_peak(device, dtype), 2)
    settings = SamplerSettings(steps, dsteps, 5.0)
    guidance = Guidance(settings)

    # text encode, then offload Phi-2 (as the ComfyUI node does)
    reset_peak(device)
    t_text, embeds = timed(lambda: text.encode([PROMPT], model.config.text_token_len), device, repeat=2)
    report["text_encode"] = {"seconds": round(t_text, 4), "peak_gb": round(peak_bytes(device) / 2**30, 2)}
    text.model.to("cpu")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    ctx = build_context(model, guidance, embeds, None, [5.0], [12.0])

    def sample(accel, n=latents, s=settings):
        return generate_latents(model, sched, ctx, 1, n, s, new_generator(0), accel=accel)

    # end to end (latents), each speed-up against the plain path
    variants = {"plain": Accel.plain(), "fast": Accel(), "fast, no CUDA graphs": Accel(cuda_graphs=False)}
    if device.type != "cuda":
        variants.pop("fast, no CUDA graphs")
    if not args.quick:  # each switch of the fast path off in turn
        variants.update({
            "fast, last block on all rows": dataclasses.replace(Accel(), prune_last_block=False),
            "fast, head as modules": dataclasses.replace(Accel(), fused_head=False),  # (CUDA graphs need the fused head)
            "fast, library scheduler steps": dataclasses.replace(Accel(), token_loop=False, fused_head=False),
        })
    if args.quick:
        variants = {"plain": Accel.plain(), "fast": Accel()}
    e2e, outs = {}, {}
    for name, accel in variants.items():
        sample(accel, n=1)  # warm-up (kernels, graph capture of the first frame's buckets)
        reset_peak(device)
        dt, outs[name] = timed(lambda: sample(accel), device, repeat=args.repeat)
        e2e[name] = {"seconds": round(dt, 3), "peak_gb": round(peak_bytes(device) / 2**30, 2)}
        ref = outs["plain"]
        e2e[name]["max_diff_vs_plain_over_std"] = float(((outs[name] - ref).abs().max() / ref.std()).item())
        print(name, e2e[name], flush=True)
    report["end_to_end"] = e2e
    floors = {}
    if args.floor or not args.quick:  # what the fast path would take if only its matmuls and attention cost time
        floors["fast"] = kernel_floor(lambda: sample(Accel(cuda_graphs=False)), device)
        floors["fast"]["measured_seconds"] = e2e["fast"]["seconds"]
        print("kernel floor", floors, flush=True)

    vae_runs = {}  # the first entry is the official way (fp32; the video VAE in 5-latent tiles)
    for vdtype in (torch.float32, torch.bfloat16):
        vae.model.to(vdtype)
        for tile in (5, 3) if vae.temporal else (None,):
            if device.type == "cuda":
                torch.cuda.empty_cache()
            reset_peak(device)
            dt, _ = timed(lambda: [None for _ in vae.decode_chunks(outs["fast"][:1], tile_latents=tile)], device)
            label = str(vdtype)[6:] + (f", tiles of {tile} latents" if tile else "")
            vae_runs[label] = {"seconds": round(dt, 3), "peak_gb": round(peak_bytes(device) / 2**30, 2)}
            print("vae", label, vae_runs[label], flush=True)
    vae.model.to(torch.float32)
    report["vae_decode_tiles"] = vae_runs
    stages = {}
    if not args.quick:
        print("stage breakdown...", flush=True)
        # stage breakdown (instrumented run of the fast path without graphs) and FLOPs of one frame
        timer = StageTimer(device)
        timer.wrap(model, "encode_frame", "temporal step")
        timer.wrap(model, "encode_image", "spatial encoder")
        timer.wrap(FastPlan, "denoise", "diffusion head loop")
        try:
            timed(lambda: sample(Accel(cuda_graphs=False)), device)
        finally:
            timer.restore()
        flops = {}
        for stage, owner, attr in (("temporal step", model, "encode_frame"), ("spatial encoder", model, "encode_image"),
                                   ("diffusion head loop", FastPlan, "denoise")):
            counter = StageFlops(owner, attr)
            with counter:
                sample(Accel(cuda_graphs=False), n=1)
            flops[stage] = counter.flops * latents  # per frame x frames (the temporal step grows a little per frame)
        peak = report["matmul_peak_tflops"]
        for stage in ("temporal step", "spatial encoder", "diffusion head loop"):
            secs = timer.time.get(stage, 0.0)
            tflops = flops[stage] / secs / 1e12 if secs else 0.0
            stages[stage] = {"seconds": round(secs, 3), "calls": timer.calls.get(stage, 0), "gflop": round(flops[stage] / 1e9, 1),
                             "tflops": round(tflops, 3), "of_peak": f"{100 * tflops / peak:.1f}%"}
            if stage in timer.peak:
                stages[stage]["peak_gb"] = round(timer.peak[stage] / 2**30, 2)
        official_tiles = next(iter(vae_runs.values()))
        stages["VAE decode"] = {"seconds": official_tiles["seconds"], "calls": 1, "gflop": None, "tflops": None, "of_peak": None,
                                "peak_gb": official_tiles["peak_gb"]}
        stages["text encode"] = {"seconds": report["text_encode"]["seconds"], "calls": 1, "gflop": None, "tflops": None, "of_peak": None,
                                 "peak_gb": report["text_encode"]["peak_gb"]}
        report["stages"] = stages
    print("stages", json.dumps(stages), flush=True)
    if args.demo and not args.quick:  # the official demo's 128/100 setting, fast path only
        demo = SamplerSettings(128, 100, 7.0)
        dt, _ = timed(lambda: generate_latents(model, sched, ctx, 1, latents, demo, new_generator(0), accel=Accel()), device)
        report["demo_128_100_seconds"] = round(dt, 2)

    print("demo", report.get("demo_128_100_seconds"), flush=True)
    if args.official:
        run_official = official_runner(args.official, model, text, embeds, sched, device, latents, settings)
        h2h = head_to_head(run_official, lambda: sample(Accel()), device, args.rounds)
        report["official"] = {"seconds": h2h["official_best"], "peak_gb": h2h["official_peak_gb"]}
        report["head_to_head"] = h2h
        print("head to head", h2h, flush=True)
        if floors:
            floors["official"] = kernel_floor(run_official, device)
            floors["official"]["measured_seconds"] = h2h["official_best"]
            floors["fast"]["measured_seconds"] = h2h["fast_best"]  # same rounds as the official's
    if floors:
        report["kernel_floor"] = floors

    if args.long and model.config.is_video_model:
        report["long_video"] = long_video_memory(model, sched, ctx, device, args.window, args)
    elif args.long:
        print("long: skipped, an image model makes one latent frame", flush=True)
    return report


class StageFlops:
    """FlopCounterMode active only inside one function (or everywhere when owner is None)."""

    def __init__(self, owner, attr):
        from torch.utils.flop_counter import FlopCounterMode

        self.owner, self.attr, self.flops = owner, attr, 0
        self.mode = FlopCounterMode(display=False)

    def __enter__(self):
        if self.owner is None:
            self.mode.__enter__()
            return self
        original = getattr(self.owner, self.attr)
        self.original = original
        outer = self

        def counted(*args, **kwargs):
            with outer.mode:  # entering resets the mode's counts: accumulate per call
                out = original(*args, **kwargs)
            outer.flops += outer.mode.get_total_flops()
            return out

        setattr(self.owner, self.attr, counted)
        return self

    def __exit__(self, *exc):
        if self.owner is None:
            self.mode.__exit__(*exc)
            self.flops = self.mode.get_total_flops()
        elif isinstance(self.owner, torch.nn.Module):
            delattr(self.owner, self.attr)
        else:
            setattr(self.owner, self.attr, self.original)
        return False


def long_video_memory(model, sched, ctx, device, window, args) -> dict:
    """Peak memory of 9, 33 and 65 latent frames at a fixed window (few steps: memory does not
    depend on them). On CPU each length runs in a fresh process (peak RSS is per process)."""
    from nova import video as video_mod

    settings = SamplerSettings(4, 2, 5.0)
    out = {"window": window}
    kv_peak = [0]
    original = video_mod._TemporalCache.context_for

    def tracked(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        kv_peak[0] = max(kv_peak[0], video_mod.kv_cache_bytes(self.state))
        return result

    video_mod._TemporalCache.context_for = tracked
    try:
        for n in (9, 33, 65):
            for w in (window, None):
                kv_peak[0] = 0
                row = {}
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    reset_peak(device)
                    base = torch.cuda.memory_allocated(device)
                    dt, _ = timed(lambda: generate_video(model, sched, [Segment(ctx, n)], 1, settings, new_generator(0), window=w), device)
                    row = {"peak_gb_above_weights": round((peak_bytes(device) - base) / 2**30, 3), "seconds": round(dt, 2)}
                else:
                    generate_video(model, sched, [Segment(ctx, n)], 1, settings, new_generator(0), window=w)
                    row = _cpu_long_run(n, w, args) if w is not None else {}
                row["kv_cache_mb"] = round(kv_peak[0] / 2**20, 2)
                out[f"{n}" if w else f"{n} (no window)"] = row
                print("long", n, w, row, flush=True)
    finally:
        video_mod._TemporalCache.context_for = original
    return out


def _cpu_long_run(n: int, window: int, args) -> dict:
    import subprocess

    models = "bench.load(%r, cpu, torch.float32)" % args.checkpoint if args.checkpoint else "bench.build(bench.PRESETS[%r], cpu)" % args.preset
    code = (
        "import sys, torch, resource; sys.argv=['x']; sys.path.insert(0, %r); import bench; "
        "from nova.sampling import *; from nova.video import *; cpu = torch.device('cpu'); "
        "m, t, v, s = %s; st = SamplerSettings(4, 2, 5.0); g = Guidance(st); "
        "e = t.encode([bench.PROMPT], m.config.text_token_len); c = build_context(m, g, e, None, [5.0], [12.0]); "
        "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        "generate_video(m, s, [Segment(c, %d)], 1, st, new_generator(0), window=%d); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, r0 * 1024)"
    ) % (os.path.dirname(os.path.abspath(__file__)), models, n, window)
    with torch.inference_mode():
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak, before = map(int, res.stdout.split()[-2:])
    return {"peak_rss_gb": round(peak / 2**30, 3), "rss_growth_gb": round((peak - before) / 2**30, 3)}


def official_runner(path, model, text, embeds, sched, device, latents, settings):
    """The official diffnext pipeline with the same weights (same state-dict keys), warmed up."""
    sys.path.insert(0, path)
    from diffnext.models.transformers import transformer_nova as tn  # type: ignore
    from diffnext.pipelines.nova.pipeline_nova import NOVAPipeline  # type: ignore

    cfg = model.config
    names = cfg.arch_names
    for registry, name, arch, factory in ((tn.VIDEO_ENCODERS, names[0], cfg.video_encoder, tn.video_encoder),
                                          (tn.IMAGE_ENCODERS, names[1], cfg.image_encoder, tn.image_encoder)):
        with contextlib.suppress(Exception):
            registry.register(name, depth=arch.depth, embed_dim=arch.width, num_heads=arch.heads)(factory)
    with contextlib.suppress(Exception):
        tn.IMAGE_DECODERS.register(names[2], depth=cfg.diffusion_head.depth, embed_dim=cfg.diffusion_head.width)(tn.image_decoder)
    official = tn.NOVATransformer3DModel(**cfg.to_dict())
    official.load_state_dict(model.state_dict())
    official = official.to(device=device, dtype=model.dtype).eval()
    pipe = NOVAPipeline(transformer=official, scheduler=sched, vae=None, text_encoder=None, tokenizer=text.tokenizer)
    emb = [embeds.features[0, : embeds.lengths[0]].to(device)]
    gen_device = device if device.type == "cuda" else torch.device("cpu")
    kw = dict(prompt_embeds=emb, max_latent_length=latents, num_inference_steps=settings.num_inference_steps,
              num_diffusion_steps=settings.num_diffusion_steps, guidance_scale=settings.guidance_scale,
              output_type="latent", disable_progress_bar=True)
    pipe(**{**kw, "max_latent_length": 1}, generator=torch.Generator(gen_device).manual_seed(0))

    def run_official():
        return pipe(**kw, generator=torch.Generator(gen_device).manual_seed(0))

    return run_official


def head_to_head(official, ours, device, rounds: int) -> dict:
    """The official pipeline and our fast path timed alternately in the same process, so a
    machine's drift (shared CPUs, clocks) hits both alike; best and median of each."""
    t_off, t_ours, peak = [], [], None
    for _ in range(max(1, rounds)):
        reset_peak(device)
        t_off.append(timed(official, device)[0])
        peak = peak_bytes(device) if peak is None else peak
        t_ours.append(timed(ours, device)[0])
    best = (min(t_off), min(t_ours))
    med = (statistics.median(t_off), statistics.median(t_ours))
    return {"rounds": len(t_off), "official_seconds": [round(t, 3) for t in t_off], "fast_seconds": [round(t, 3) for t in t_ours],
            "official_best": round(best[0], 3), "fast_best": round(best[1], 3), "official_median": round(med[0], 3),
            "fast_median": round(med[1], 3), "speedup_best": round(best[0] / best[1], 2), "speedup_median": round(med[0] / med[1], 2),
            "official_peak_gb": round(peak / 2**30, 2)}


# -- report -------------------------------------------------------------------------------------
def markdown(r: dict) -> str:
    lines = [f"# NOVA benchmark: {r['preset']}", "",
             f"- weights: {r.get('checkpoint', 'random weights')}",
             f"- device: {r['device']} (torch {r['torch']}, {r['threads']} threads); measured matmul peak {r['matmul_peak_tflops']} TFLOP/s ({r['dtype']})",
             (f"- video: {r['latents']} latents = {r['frames']} frames" if r.get("video_model", True) else "- image: 1 latent")
             + f", {r['steps'][0]} set steps x {r['steps'][1]} diffusion steps, batch 1, cfg 5",
             f"- command: `{r['command']}`", "", "## End to end (latents, text encoder excluded)", "",
             "| path | seconds | peak GB | max abs diff vs plain / std |", "|---|---|---|---|"]
    for name, v in r["end_to_end"].items():
        lines.append(f"| {name} | {v['seconds']} | {v['peak_gb']} | {v['max_diff_vs_plain_over_std']:.2e} |")
    if "official" in r:
        o, h = r["official"], r["head_to_head"]
        lines.append(f"| official pipeline (diffnext) | {o['seconds']} | {o['peak_gb']} | (its own random stream) |")
        lines += ["", f"Official pipeline against the fast path, timed alternately ({h['rounds']} rounds, same process):",
                  "", "| | official | fast | speed-up |", "|---|---|---|---|",
                  f"| best | {h['official_best']} s | {h['fast_best']} s | **{h['speedup_best']:.2f}x** |",
                  f"| median | {h['official_median']} s | {h['fast_median']} s | **{h['speedup_median']:.2f}x** |",
                  "", f"Rounds: official {h['official_seconds']}, fast {h['fast_seconds']}."]
    if r.get("kernel_floor"):
        lines += ["", "## Kernel floor", "",
                  "Every matrix product and attention call of one run, each replayed alone with hot caches (`bench/floor.py`).",
                  "The gap to the measured time is elementwise ops, op dispatch and cache misses.", "",
                  "| path | floor s | measured s | floor / measured | floor by op (s) |", "|---|---|---|---|---|"]
        for name, v in r["kernel_floor"].items():
            ops = ", ".join(f"{k} {t}" for k, t in v["by_op"].items())
            lines.append(f"| {name} | {v['seconds']} | {v['measured_seconds']} | {100 * v['seconds'] / v['measured_seconds']:.0f}% | {ops} |")
    if "demo_128_100_seconds" in r:
        lines += ["", f"Official demo setting (128/100, cfg 7), fast path: {r['demo_128_100_seconds']} s."]
    if r.get("stages"):
        lines += ["", "## Stages (instrumented run, fast path without CUDA graphs)", "",
                  "Peak memory: on CUDA the most allocated while the stage ran, weights included; on CPU only the process's "
                  "high-water mark is known, for whole runs (text encode, VAE decode).", "",
                  "| stage | seconds | calls | ms per call | GFLOP | TFLOP/s | of peak | peak GB |", "|---|---|---|---|---|---|---|---|"]
        for stage, v in r["stages"].items():
            lines.append(f"| {stage} | {v['seconds']} | {v['calls']} | {1000 * v['seconds'] / max(v['calls'], 1):.2f} | "
                         f"{v['gflop'] if v['gflop'] is not None else '-'} | {v['tflops'] if v['tflops'] is not None else '-'} | "
                         f"{v['of_peak'] or '-'} | {v.get('peak_gb', '-')} |")
    lines += ["", f"Text encoder: {r['text_encode']['seconds']} s, peak memory {r['text_encode']['peak_gb']} GB (offloaded after encoding).",
              "", f"## VAE decode of {r['latents']} latents", "", "| VAE dtype, tiles | seconds | peak GB |", "|---|---|---|"]
    for name, v in r["vae_decode_tiles"].items():
        lines.append(f"| {name} | {v['seconds']} | {v['peak_gb']} |")
    if "long_video" in r:
        lv = r["long_video"]
        lines += ["", f"## Long video memory (window {lv['window']} latents)", "", "| latent frames | peak |", "|---|---|"]
        for n in ("9", "33", "65", "9 (no window)", "33 (no window)", "65 (no window)"):
            if n in lv:
                lines.append(f"| {n} | {json.dumps(lv[n])} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-mid")
    parser.add_argument("--device", default=None)
    parser.add_argument("--checkpoint", default=None, help="a NOVA checkpoint (local folder in the hub layout, or hub id) instead of random weights")
    parser.add_argument("--latents", type=int, default=None)
    parser.add_argument("--steps", type=int, nargs=2, default=None, metavar=("SET", "DIFFUSION"), help="override the preset's steps (dry runs)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="alternating official/fast rounds (with --official)")
    parser.add_argument("--demo", action="store_true", help="also time the official demo's 128/100 setting")
    parser.add_argument("--official", default=None, help="path of an official NOVA checkout (diffnext) to time as baseline")
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

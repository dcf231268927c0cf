"""The official NOVA pipeline (diffnext) with our weights, timed against ours in alternation."""

from __future__ import annotations

import contextlib
import statistics
import sys

import torch
from measure import peak_bytes, reset_peak, timed


def official_runner(path, model, text, embeds, sched, device, latents, settings):
    """The official diffnext pipeline with the same weights (same state-dict keys), warmed up."""
    sys.path.insert(0, path)
    from diffnext.models.transformers import transformer_nova as tn  # type: ignore
    from diffnext.pipelines.nova.pipeline_nova import NOVAPipeline  # type: ignore

    cfg = model.config
    names = cfg.arch_names
    for registry, name, arch, factory in (
        (tn.VIDEO_ENCODERS, names[0], cfg.video_encoder, tn.video_encoder),
        (tn.IMAGE_ENCODERS, names[1], cfg.image_encoder, tn.image_encoder),
    ):
        with contextlib.suppress(Exception):
            registry.register(name, depth=arch.depth, embed_dim=arch.width, num_heads=arch.heads)(factory)
    with contextlib.suppress(Exception):
        tn.IMAGE_DECODERS.register(names[2], depth=cfg.diffusion_head.depth, embed_dim=cfg.diffusion_head.width)(
            tn.image_decoder
        )
    official = tn.NOVATransformer3DModel(**cfg.to_dict())
    official.load_state_dict(model.state_dict())
    official = official.to(device=device, dtype=model.dtype).eval()
    pipe = NOVAPipeline(transformer=official, scheduler=sched, vae=None, text_encoder=None, tokenizer=text.tokenizer)
    emb = [embeds.features[0, : embeds.lengths[0]].to(device)]
    gen_device = device if device.type == "cuda" else torch.device("cpu")
    kw = dict(
        prompt_embeds=emb,
        max_latent_length=latents,
        num_inference_steps=settings.num_inference_steps,
        num_diffusion_steps=settings.num_diffusion_steps,
        guidance_scale=settings.guidance_scale,
        output_type="latent",
        disable_progress_bar=True,
    )
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
    return {
        "rounds": len(t_off),
        "official_seconds": [round(t, 3) for t in t_off],
        "fast_seconds": [round(t, 3) for t in t_ours],
        "official_best": round(best[0], 3),
        "fast_best": round(best[1], 3),
        "official_median": round(med[0], 3),
        "fast_median": round(med[1], 3),
        "speedup_best": round(best[0] / best[1], 2),
        "speedup_median": round(med[0] / med[1], 2),
        "official_peak_gb": round(peak / 2**30, 2),
    }

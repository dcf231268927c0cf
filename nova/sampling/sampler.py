"""NOVA inference stages: the sampler settings and guidance, one temporal-encoder step, and the
set-by-set spatial sampler of one frame (the loop over a plan's frames is
:mod:`nova.sampling.frame_loop`).

All state is explicit: :class:`TemporalState` carries the video encoder's K/V cache and the
first frame's features between frames, the token order is an argument, and the scheduler is a
private copy per call. Nothing is stored on the model, so one loaded model can serve any number
of concurrent or cached graph evaluations.

Random numbers are drawn exactly where and in the order the official implementation draws
them (token order once per video at the first sampled frame, full-latent Gaussian noise per set
step, the DDPM variance noise inside ``scheduler.step``), always on the generator's device in
float32, so a seed reproduces the official output. Given frames re-sampled at a denoise strength below 1 draw
in the same order: a set step's full-latent Gaussian (the noise the given tokens are noised with),
then the variance noise of the diffusion steps it runs, none for the steps it skips.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..models.embeddings import patchify, unpatchify
from ..models.vit import KV
from .fast import FastPlan, draw_step_noise
from .rng import MAX_SEED, Generators, check_seed, draw_per_sample, draw_token_order, new_generator  # noqa: F401
from .set_step import pick_noise, scatter_tokens


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """Set-by-set sampler settings (official ``NOVAPipeline.__call__`` defaults)."""

    num_inference_steps: int = 64
    num_diffusion_steps: int = 25
    guidance_scale: float = 5.0
    guidance_trunc: float = 0.0
    guidance_renorm: float = 1.0
    image_guidance_scale: float = 0.0
    flow_shift: Optional[float] = None

    def __post_init__(self):
        checks = [
            ("num_inference_steps", self.num_inference_steps, 1, 1024),
            ("num_diffusion_steps", self.num_diffusion_steps, 1, 1000),
        ]
        for name, value, lo, hi in checks:
            if not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
                raise InputError(f"{name} = {value!r}; expected an integer in [{lo}, {hi}].")
        for name in ("guidance_scale", "guidance_trunc", "guidance_renorm", "image_guidance_scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"{name} = {value!r}; expected a finite number >= 0.")
        if self.guidance_renorm > 1 or self.guidance_renorm == 0:
            raise InputError(f"guidance_renorm = {self.guidance_renorm}; expected (0, 1] (1 disables renormalization).")
        if self.flow_shift is not None and not (self.flow_shift > 0 and math.isfinite(self.flow_shift)):
            raise InputError(f"flow_shift = {self.flow_shift!r}; expected a positive number or None.")


def mask_schedule(num_steps: int, num_tokens: int) -> List[int]:
    """Tokens predicted at each set step (cosine schedule); steps predicting nothing are dropped."""
    ratios = np.cos(0.5 * np.pi * np.arange(num_steps + 1) / num_steps)
    lengths = np.round(ratios * num_tokens).astype("int64")
    return [int(n) for n in lengths[:-1] - lengths[1:] if n > 0]


class Guidance:
    """Classifier-free guidance over 1, 2 or 3 stacked passes.

    Pass order: (text, video context), (null text, video context) and, with image guidance, the
    second pass becomes (null text, BOS instead of video context) and a third (null text, video
    context) is added, as in the official ``GuidanceScaler``.
    """

    def __init__(self, settings: SamplerSettings):
        self.scale = float(settings.guidance_scale)
        self.trunc = float(settings.guidance_trunc)
        self.renorm = float(settings.guidance_renorm)
        self.image_scale = float(settings.image_guidance_scale) if self.scale > 1 else 0.0

    @property
    def passes(self) -> int:
        if self.scale <= 1:
            return 1
        return 3 if self.image_scale > 0 else 2

    def text_batches(self, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        if self.passes == 1:
            return cond
        return torch.cat([cond, uncond] + ([uncond] if self.passes == 3 else []))

    def expand(self, x: torch.Tensor, padding: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.passes == 1:
            return x
        parts = [x] * self.passes
        if self.passes == 3 and padding is not None:
            parts[1] = padding.expand_as(x)
        return torch.cat(parts)

    def truncates_at(self, timestep) -> bool:
        return self.passes > 1 and self.trunc > 0 and float(timestep) < self.trunc

    def _renorm(self, x, cond):
        if self.renorm >= 1:
            return x
        dims = tuple(range(1, x.dim()))
        ratio = cond.norm(dim=dims, keepdim=True) / x.norm(dim=dims, keepdim=True)
        return x * ratio.clamp(self.renorm, 1)

    def combine(self, pred: torch.Tensor, passes: int) -> torch.Tensor:
        if passes == 1:
            return pred
        if passes == 3:
            cond, uncond, imgcond = pred.chunk(3)
            x = self._renorm(uncond + (cond - imgcond) * self.scale, cond)
            return x + (imgcond - uncond) * self.image_scale
        cond, uncond = pred.chunk(2)
        return self._renorm(uncond + (cond - uncond) * self.scale, cond)


@dataclasses.dataclass(frozen=True)
class TemporalState:
    """What the temporal encoder remembers: per-block K/V of every frame so far (the text
    context included) and the first frame's features (anchor of the video mixer)."""

    kv: Optional[List[KV]] = None
    first: Optional[torch.Tensor] = None
    frames: int = 0


@dataclasses.dataclass(frozen=True)
class Progress:
    frame: int  # index of the frame being sampled
    num_frames: int
    step: int  # set step just finished (1-based)
    num_steps: int
    latent: torch.Tensor  # [B, C, h, w] partially sampled frame (do not modify)
    tick: int = 0  # set steps done in the whole run (1-based)
    ticks: int = 0  # set steps of the whole run (GenerationPlan.ticks)


ProgressCallback = Callable[[Progress], None]


def prepare_scheduler(template, settings: SamplerSettings):
    """A private copy of the checkpoint's scheduler, set up for this run (the template is never
    mutated: ComfyUI caches the loaded model and shares it between graphs)."""
    sched = copy.deepcopy(template)
    if settings.flow_shift is not None:
        if not hasattr(sched, "set_shift"):
            raise InputError(
                f"flow_shift={settings.flow_shift} only applies to flow-matching checkpoints; this checkpoint "
                f"uses {type(sched).__name__}. Leave flow_shift unset."
            )
        sched.set_shift(settings.flow_shift)
    sched.set_timesteps(settings.num_diffusion_steps)
    return sched


def temporal_step(
    model,
    state: TemporalState,
    prev_latent: Optional[torch.Tensor],
    context: torch.Tensor,
    guidance: Guidance,
    time_pos: float,
    batch: int,
):
    """Run the video encoder on one frame. Returns (spatial context for the next frame, new state).

    ``prev_latent`` is the latest frame ([B, C, h, w]) or None for the first step (BOS input).
    ``context`` (text + motion tokens, all guidance passes) enters on the first step only.
    """
    tokens = model.frame_tokens(prev_latent, batch, time_pos)
    tokens = guidance.expand(tokens, padding=model.bos_token())
    first_step = state.kv is None
    ctx = context if first_step else None
    feats, kv = model.encode_frame(tokens, ctx, state.kv, state.frames)
    if first_step:
        return feats, TemporalState(kv, feats, state.frames + 1)
    return model.mix(state.first, feats), TemporalState(kv, state.first, state.frames + 1)


def check_denoise(value, name: str = "denoise") -> float:
    """A denoise strength: a finite number in [0, 1] (0 keeps the given latents, 1 samples from
    pure noise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 <= value <= 1:
        raise InputError(
            f"{name} = {value!r}; expected a number in [0, 1] (0 keeps the given latents, 1 ignores them)."
        )
    return float(value)


def denoise_skip(num_diffusion_steps: int, denoise: float) -> int:
    """Diffusion steps skipped at strength ``denoise``: the head runs the last
    ``floor(num_diffusion_steps * denoise + 0.5)`` steps (SDEdit / img2img strength, rounded half up)."""
    return num_diffusion_steps - int(math.floor(num_diffusion_steps * check_denoise(denoise) + 0.5))


def noise_to(sched, given: torch.Tensor, noise: torch.Tensor, skip: int) -> torch.Tensor:
    """``given`` noised to the level of the scheduler's step ``skip`` by the scheduler's own forward
    process (DDPM ``add_noise``, flow matching ``scale_noise``). Elementwise, so the tokens of a full
    latent and the same tokens picked out get the same values."""
    t = sched.timesteps[skip : skip + 1]
    if hasattr(sched, "scale_noise"):
        sched.set_timesteps(len(sched.timesteps))  # (scale_noise reads the step counter: start from a fresh one)
        sched.set_begin_index(skip)
        return sched.scale_noise(given, t, noise)
    return sched.add_noise(given, noise, t)


def _denoise(model, sched, z_pred, x, pred_ids, guidance: Guidance, generator, skip: int = 0):
    """Diffusion loop of one set step (the plain path). ``z_pred`` [P*B, n, D] are the spatial
    features of the ``pred_ids`` tokens; ``x`` is the full noise latent [B, C, h, w] in float32
    (the scheduler steps and draws over the full latent, as the official code does), or with
    ``skip`` > 0 the latent noised to step ``skip``, from which the remaining steps run."""
    p, c = model.config.patch_size, model.config.image_dim
    grid = model.config.image_base_size
    passes = guidance.passes
    ids_x = pred_ids.expand(-1, -1, p * p * c)
    cond = model.head_condition(z_pred)
    sched.set_timesteps(len(sched.timesteps))  # resets the step counter of stateful schedulers
    if skip:
        sched.set_begin_index(skip) if hasattr(sched, "set_begin_index") else None
    for t in sched.timesteps[skip:]:
        if passes > 1 and guidance.truncates_at(t):
            passes, cond = 1, cond[: x.shape[0]]
        tokens = patchify(x, p)
        picked = tokens.gather(1, ids_x).repeat(passes, 1, 1)
        timestep = torch.as_tensor(t, device=x.device).expand(picked.shape[0])
        out = model.head(picked, timestep, cond).float()
        full = tokens.repeat(passes, 1, 1).scatter(1, ids_x.repeat(passes, 1, 1), out)
        pred = unpatchify(guidance.combine(full, passes), p, c, grid)
        x = sched.step(pred, t, x, generator=generator).prev_sample
    return x


def sample_frame(
    model,
    context: torch.Tensor,
    order: torch.Tensor,
    counts: Sequence[int],
    guidance: Guidance,
    sched,
    generator: torch.Generator,
    on_step: Optional[Callable[[int, torch.Tensor], None]] = None,
    known: Optional[torch.Tensor] = None,
    num_known: int = 0,
    fast: Optional[FastPlan] = None,
    reference: Optional[torch.Tensor] = None,
    skip: int = 0,
) -> torch.Tensor:
    """Sample one latent frame set by set. ``context`` is the video encoder output for this frame
    (all guidance passes), ``order`` the token order [B, L, 1]. Returns [B, C, h, w] float32.

    ``known`` [B, C, h, w] with ``num_known`` > 0 fixes the first ``num_known`` tokens of ``order``
    to its values (token-level inpainting; loops use it); ``counts`` then covers the rest.

    ``reference`` [B, C, h, w] with ``skip`` > 0 (denoise strength < 1): the diffusion head starts
    every predicted token from the reference's token noised to the scheduler's step ``skip`` (with
    the set step's full-latent Gaussian draw as the noise) and runs the remaining steps only, drawing
    the variance noise of those steps only. ``fast`` must then be ``FastPlan.skipping(skip)``'s."""
    fast = fast or FastPlan.build(model, sched, None, guidance).skipping(model, guidance, skip)
    if skip and reference is None:
        raise InputError("skipping diffusion steps needs the reference latent the tokens start from.")
    if skip and fast.steps is not None and len(fast.steps.timesteps) != len(sched.timesteps) - skip:
        raise ValueError("the fast plan does not skip the same diffusion steps (use FastPlan.skipping).")
    ref = None if not skip else reference.to(device=model.device, dtype=torch.float32)
    x, unknown, known_ids, mask_pos = _start_frame(model, order, guidance, known, num_known)
    if fast.runner is not None:  # the same steps on fixed buffers (nova/sampling/set_step.py)
        return _sample_frame_steps(
            model,
            context,
            order,
            counts,
            guidance,
            generator,
            on_step,
            fast,
            x,
            unknown,
            known_ids,
            mask_pos,
            (sched, ref, skip),
        )
    for step, n in enumerate(counts):
        tokens = model.image_tokens(x, unknown)  # (before this set's tokens are marked known)
        pred_ids = order[:, mask_pos : mask_pos + n]
        mask_pos += n
        pred_mask = torch.zeros_like(unknown).scatter_(1, pred_ids, 1)
        unknown = unknown * (1 - pred_mask)
        pass_ids = pred_ids.repeat(guidance.passes, 1, 1)
        z_pred = _encode_set(model, fast, guidance.expand(tokens), context, known_ids, pass_ids)
        known_ids = torch.cat([known_ids, pass_ids], dim=1)
        noise = draw_per_sample(
            generator, x.shape[0], lambda g, k: torch.empty((k, *x.shape[1:]), device=g.device).normal_(generator=g)
        ).to(model.device)
        x = _sample_set(model, sched, fast, guidance, generator, x, z_pred, noise, pred_ids, pred_mask, ref, skip)
        if on_step is not None:
            on_step(step, x)
    return x


def _start_frame(model, order, guidance: Guidance, known, num_known: int):
    """A frame before its first set step: (latent x [B, C, h, w], unknown-token mask [B, L, 1], the
    known token ids of every guidance pass, how far into ``order`` the known tokens reach); with
    ``num_known``, the first tokens of ``order`` already hold ``known``'s values."""
    cfg, device = model.config, model.device
    batch, num_tokens = order.shape[0], order.shape[1]
    x = torch.zeros(batch, cfg.image_dim, *cfg.latent_size, device=device)
    unknown = torch.ones(batch, num_tokens, 1, device=device)
    known_ids = torch.empty(batch * guidance.passes, 0, 1, dtype=torch.long, device=device)
    if not num_known:
        return x, unknown, known_ids, 0
    fixed = torch.zeros_like(unknown).scatter_(1, order[:, :num_known], 1)
    p = cfg.patch_size
    x = x + unpatchify(patchify(known.to(device).float(), p) * fixed, p, cfg.image_dim, cfg.image_base_size)
    return x, unknown * (1 - fixed), order[:, :num_known].repeat(guidance.passes, 1, 1), num_known


def _encode_set(model, fast: FastPlan, tokens, context, known_ids, pass_ids) -> torch.Tensor:
    """The spatial encoder's output at this set's tokens, for every guidance pass."""
    if fast.prune_last_block:  # the last block computes only the rows that are read
        return fast.encode_image(model, tokens, context, known_ids, out_ids=pass_ids)
    z = fast.encode_image(model, tokens, context, known_ids)
    return z.gather(1, pass_ids.expand(-1, -1, z.shape[-1]))


def _sample_set(
    model, sched, fast: FastPlan, guidance: Guidance, generator, x, z_pred, noise, pred_ids, pred_mask, ref, skip: int
) -> torch.Tensor:
    """The diffusion head samples this set's tokens from ``noise`` (the set step's full-latent draw;
    with ``ref``, the reference noised to step ``skip``) and returns ``x`` with them in place: the
    plan's folded steps on the set's tokens when it has them, else the scheduler step by step on
    the full latent (the official way)."""
    cfg = model.config
    p = cfg.patch_size
    if fast.steps is None:
        start = noise if ref is None else noise_to(sched, ref, noise, skip)
        sample = _denoise(model, sched, z_pred, start, pred_ids, guidance, generator, skip)
        return x + unpatchify(patchify(sample, p) * pred_mask, p, cfg.image_dim, cfg.image_base_size)
    ids = pred_ids.expand(-1, -1, p * p * cfg.image_dim)

    def pick(full):  # the set's tokens of a full-latent tensor
        return patchify(full.to(model.device), p).gather(1, ids)

    step_noise = [None if d is None else pick(d) for d in draw_step_noise(fast.steps, x.shape, generator)]
    cond = model.head_condition(z_pred)
    start = pick(noise) if ref is None else noise_to(sched, pick(ref), pick(noise), skip)
    sample = fast.denoise(model, cond, start, step_noise, guidance)
    return unpatchify(patchify(x, p).scatter(1, ids, sample), p, cfg.image_dim, cfg.image_base_size)


def _sample_frame_steps(
    model, context, order, counts, guidance, generator, on_step, fast, x, unknown, known_ids, mask_pos, start_from
):
    """:func:`sample_frame`'s set steps through the plan's set-step runner (nova/sampling/set_step.py): the
    same draws in the same order, the same operations, no wait for the GPU between set steps.
    ``start_from``: (scheduler, reference or None, skip), see :func:`sample_frame`."""
    batch, device, p = order.shape[0], model.device, model.config.patch_size
    sched, ref, skip = start_from
    draw_device = generator.device if isinstance(generator, torch.Generator) else generator[0].device
    order_drawn = order.to(draw_device)  # (once per frame: the noise is picked where it is drawn)
    for step, n in enumerate(counts):
        pred_ids = order[:, mask_pos : mask_pos + n]
        noise = draw_per_sample(
            generator, batch, lambda g, k: torch.empty((k, *x.shape[1:]), device=g.device).normal_(generator=g)
        )
        drawn = [noise] + [d for d in draw_step_noise(fast.steps, x.shape, generator) if d is not None]
        picked = pick_noise(drawn, order_drawn[:, mask_pos : mask_pos + n], p, device).unbind(0)
        mask_pos += n
        cond = fast.runner(x, unknown, context, known_ids, pred_ids)
        rest = iter(picked[1:])
        step_noise = [next(rest) if d else None for d in fast.steps.draws_noise]
        start = picked[0]
        if ref is not None:
            ref_tokens = patchify(ref, p).gather(1, pred_ids.expand(-1, -1, start.shape[-1]))
            start = noise_to(sched, ref_tokens, start, skip)
        x = scatter_tokens(x, pred_ids, fast.denoise(model, cond, start, step_noise, guidance), model.config)
        unknown = unknown * (1 - torch.zeros_like(unknown).scatter_(1, pred_ids, 1))
        known_ids = torch.cat([known_ids, pred_ids.repeat(guidance.passes, 1, 1)], dim=1)
        if on_step is not None:
            on_step(step, x)
    return x


def build_context(model, guidance: Guidance, positive, negative=None, flow=(5.0,), fps=(12.0,)) -> torch.Tensor:
    """Context tokens for every guidance pass from prompt embeddings.

    ``positive``/``negative`` are :class:`nova.components.text_encoder.PromptEmbeds`; a missing negative is the
    learned null embedding (the official default, same as the empty prompt). ``flow``/``fps`` hold
    one value per sample.
    """
    batch = len(positive)
    cond = model.text_features(positive.features, positive.lengths)
    uncond = None
    if guidance.passes > 1:
        if negative is None:
            uncond = model.null_text_features(batch)
        else:
            if len(negative) not in (1, batch):
                raise InputError(f"negative conditioning has {len(negative)} prompts for {batch}; use 1 or {batch}.")
            uncond = model.text_features(negative.features, negative.lengths)
            uncond = uncond.expand(batch, -1, -1) if len(negative) == 1 else uncond
    flow, fps = list(flow), list(fps)
    return model.context_tokens(guidance.text_batches(cond, uncond), flow * guidance.passes, fps * guidance.passes)

"""A plan's run: the loop over its latent frames.

For each frame, the video encoder's step over the frames in the temporal window (kept in a
:class:`TemporalCache`) gives the spatial context; a frame the plan gives or pins is taken as it
is, any other is sampled set by set (:func:`nova.sampling.sampler.sample_frame`). The random stream
is drawn in the official order: the token order once, at the first sampled frame, then each set
step's noise.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from ..errors import NumericalError
from .masks import known_first
from .rng import Generators, draw_token_order, new_generator
from .sampler import Guidance, Progress, ProgressCallback, TemporalState, sample_frame, temporal_step


class TemporalCache:
    """The video encoder's cache for the frames currently in the window (local to one run)."""

    def __init__(self, model, guidance: Guidance, batch: int, positions: Sequence[float]):
        self.model, self.guidance, self.batch, self.positions = model, guidance, batch, positions
        self.state: Optional[TemporalState] = None
        self.context = None
        self.inputs: List[int] = []  # frame indices read by slots 1..
        self._anchor_of: Optional[tuple] = None  # (context, the first slot's output and state) for the last context

    def _anchor(self, context):
        if self._anchor_of is None or self._anchor_of[0] is not context:
            step = temporal_step(
                self.model, TemporalState(), None, context, self.guidance, self.positions[0], self.batch
            )
            self._anchor_of = (context, step)
        return self._anchor_of[1]

    def context_for(self, frames: List[torch.Tensor], t: int, context, window: Optional[int]) -> torch.Tensor:
        """Spatial context for frame ``t`` given the frames so far."""
        keep = t if window is None else min(t, window - 1)
        wanted = list(range(t - keep, t))
        same_context = context is self.context
        if same_context and self.state is not None and wanted[:-1] == self.inputs and wanted and wanted[-1] == t - 1:
            out, self.state = temporal_step(
                self.model, self.state, frames[t - 1], context, self.guidance, self.positions[len(wanted)], self.batch
            )
            self.inputs = wanted
            return out
        self.state = None  # release the old window before building the new one (flat peak memory)
        out, state = self._anchor(context)
        for slot, frame in enumerate(wanted, start=1):
            out, state = temporal_step(
                self.model, state, frames[frame], context, self.guidance, self.positions[slot], self.batch
            )
        self.state, self.context, self.inputs = state, context, wanted
        return out


def kv_cache_bytes(state: Optional[TemporalState]) -> int:
    if state is None or state.kv is None:
        return 0
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in state.kv)


def run_frames(plan, random: Union[None, int, Generators], callback: Optional[ProgressCallback]) -> torch.Tensor:
    """Generate what ``plan`` (a :class:`nova.sampling.plan.GenerationPlan`) describes, frame by
    frame: the temporal context of each frame, then :func:`sample_frame` for the frames it samples.
    ``random`` is the random stream: a generator (or one per sample), else the seed of a new CPU
    generator (None: a random seed). Returns [B, C, T, h, w] float32 latents (transformer scale)."""
    generator = random
    if random is None or isinstance(random, (int, np.integer)):  # a seed (a bool is refused there)
        generator = new_generator(random)
    model = plan.model
    contexts = plan.frame_contexts()
    fast = plan.fast_plan()
    cache = TemporalCache(model, plan.guidance, plan.batch, plan.time_positions)
    window = None if plan.slots == plan.total else plan.window
    frames: List[torch.Tensor] = []
    order = None
    done = [0]
    # inference mode: no autograd bookkeeping per op (the ops are many and small); the stacked
    # result below is made outside it, so callers get an ordinary tensor.
    with torch.inference_mode():
        for t in range(plan.total):
            spatial_ctx = cache.context_for(frames, t, contexts[t], window)
            given = plan.given_frame(t)
            if given is not None:
                frames.append(given.to(device=model.device, dtype=torch.float32))
                continue
            if order is None:
                order = draw_token_order(generator, plan.batch, model.config.num_image_tokens, model.device)
            counts, known, frame_order = plan.frame_counts(t), plan.known_tokens(t), order
            if t < plan.n_prefix and plan.prefix_mask is not None:  # keep the unmasked tokens, predict the rest
                frame_order, known = known_first(order, plan.prefix_mask[t])

            def on_step(step, latent, _t=t, _n=len(counts)):
                done[0] += 1
                if callback is not None:
                    callback(Progress(_t, plan.total, step + 1, _n, latent, done[0], plan.ticks))

            reference, skip, frame_fast = None, 0, fast
            if t < plan.n_prefix and plan.skip:  # a given frame re-sampled at denoise < 1
                reference, skip, frame_fast = plan.prefix[:, :, t], plan.skip, plan.given_frame_plan()
            x = sample_frame(
                model,
                spatial_ctx,
                frame_order,
                counts,
                plan.guidance,
                plan.scheduler,
                generator,
                on_step,
                plan.known_target(t, frames) if known else None,
                known,
                frame_fast,
                reference,
                skip,
            )
            if not torch.isfinite(x).all():
                raise NumericalError(
                    f"NaN/Inf arose while sampling latent frame {t} in {dtype_name(model.dtype)}. "
                    + nan_advice(model.dtype)
                )
            frames.append(x)
    return torch.stack(frames, dim=2)


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}.get(
        dtype, str(dtype).replace("torch.", "")
    )


def nan_advice(dtype: torch.dtype) -> str:
    """What to try when sampling in ``dtype`` made NaN/Inf."""
    if dtype == torch.float16:
        return "fp16 overflowed: run the transformer in bf16 or fp32 (dtype 'bf16'/'fp32'), or lower guidance_scale."
    return "The weights may be damaged (re-download the checkpoint), or lower guidance_scale."

"""Videos of any length: segments with their own prompt and motion, a sliding temporal window with
flat memory, continuation from given frames, and loops.

Temporal context. The video encoder reads "slots": slot 0 is BOS with the segment's context
(text + motion tokens), slot s > 0 reads latent frame s - 1; the output of the last slot is the
spatial context of the frame being generated. Slot s sits at time position ``arange(S) * 16 / S``
of an S-slot video, S = the video length, or the window when the video is longer: then only
slot 0 (the anchor: context tokens and the BOS step, whose features are also the video mixer's
reference) and the last ``window - 1`` frames are kept, and every slot stays at a position the
model was trained on. A window at least as long as the video is exactly the official pipeline.

When the context changes (a new segment, a blend step) or the window slides, the cache is rebuilt
from the kept frames: ``window`` video-encoder passes of one frame each, a few percent of the
frame's set-by-set sampling.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

import torch

from .errors import InputError
from .fast import Accel, FastPlan
from .masks import check_token_mask, known_first
from .sampling import (
    Guidance,
    Progress,
    ProgressCallback,
    SamplerSettings,
    TemporalState,
    draw_token_order,
    mask_schedule,
    prepare_scheduler,
    sample_frame,
    temporal_step,
)


@dataclasses.dataclass(frozen=True)
class Segment:
    """``frames`` latent frames generated under ``context`` (all guidance passes: [P*B, Lc, D])."""

    context: torch.Tensor
    frames: int


def segment_contexts(segments: Sequence[Segment], n_prefix: int, blend_frames: int) -> List[torch.Tensor]:
    """The context of every frame. Prefix frames read the first segment's context; the first
    ``blend_frames`` frames of a later segment interpolate from the previous segment's context."""
    out = [segments[0].context] * n_prefix
    for i, seg in enumerate(segments):
        for j in range(seg.frames):
            ctx = seg.context
            if i > 0 and j < blend_frames:
                a = (j + 1) / (blend_frames + 1)
                ctx = torch.lerp(segments[i - 1].context, seg.context, a)
            out.append(ctx)
    return out


def slot_positions(model, num_slots: int) -> List[float]:
    if model.config.rotary_pos_embed:
        return [float(i) for i in range(num_slots)]
    return model.video_pos_embed.positions(num_slots).tolist()


class _TemporalCache:
    """The video encoder's cache for the frames currently in the window (local to one call)."""

    def __init__(self, model, guidance: Guidance, batch: int, positions: Sequence[float]):
        self.model, self.guidance, self.batch, self.positions = model, guidance, batch, positions
        self.state: Optional[TemporalState] = None
        self.context = None
        self.inputs: List[int] = []  # frame indices read by slots 1..
        self._anchors: Dict[int, tuple] = {}

    def _anchor(self, context):
        key = id(context)
        if key not in self._anchors:
            self._anchors = {key: temporal_step(self.model, TemporalState(), None, context, self.guidance, self.positions[0], self.batch)}
        return self._anchors[key]

    def context_for(self, frames: List[torch.Tensor], t: int, context, window: Optional[int]) -> torch.Tensor:
        """Spatial context for frame ``t`` given the frames so far."""
        keep = t if window is None else min(t, window - 1)
        wanted = list(range(t - keep, t))
        same_context = context is self.context
        if same_context and self.state is not None and wanted[:-1] == self.inputs and wanted and wanted[-1] == t - 1:
            out, self.state = temporal_step(self.model, self.state, frames[t - 1], context, self.guidance, self.positions[len(wanted)], self.batch)
            self.inputs = wanted
            return out
        self.state = None  # release the old window before building the new one (flat peak memory)
        out, state = self._anchor(context)
        for slot, frame in enumerate(wanted, start=1):
            out, state = temporal_step(self.model, state, frames[frame], context, self.guidance, self.positions[slot], self.batch)
        self.state, self.context, self.inputs = state, context, wanted
        return out


def generate_video(
    model,
    scheduler,
    segments: Sequence[Segment],
    batch: int,
    settings: SamplerSettings,
    generator: torch.Generator,
    prefix: Optional[torch.Tensor] = None,
    window: Optional[int] = None,
    blend_frames: int = 0,
    loop_frames: int = 0,
    time_positions: Optional[Sequence[float]] = None,
    callback: Optional[ProgressCallback] = None,
    accel: Optional[Accel] = None,
    prefix_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Generate a video of ``sum(segment.frames)`` new latent frames after ``prefix`` (optional,
    [B, C, N, h, w], returned unchanged), then ``loop_frames`` frames that lead back to the first
    frame. Returns [B, C, T, h, w] float32 latents (transformer scale).

    ``prefix_mask`` (bool [N, L], :func:`nova.masks.token_mask`) repaints the prefix: its True
    tokens are regenerated, the others kept exactly (inpainting / outpainting)."""
    cfg = model.config
    if not segments:
        raise InputError("at least one segment is needed.")
    if window is not None and window < 2:
        raise InputError(f"window = {window}; use at least 2 latent frames (or none for the whole video).")
    if blend_frames < 0 or loop_frames < 0:
        raise InputError("blend_frames and loop_frames must be >= 0.")
    n_prefix = 0 if prefix is None else prefix.shape[2]
    if prefix_mask is not None:
        prefix_mask = check_token_mask(prefix_mask, n_prefix, cfg.num_image_tokens)
    contexts = segment_contexts(segments, n_prefix, blend_frames)
    total = len(contexts) + loop_frames
    if total < 1:
        raise InputError("nothing to generate: no prefix frames and no segment frames.")
    if loop_frames and len(contexts) < 1:
        raise InputError("a loop needs frames to loop.")
    contexts += [contexts[-1]] * loop_frames
    slots = total if window is None or window >= total else window
    if time_positions is None:
        time_positions = slot_positions(model, slots)
    guidance = Guidance(settings)
    sched = prepare_scheduler(scheduler, settings)
    counts = mask_schedule(settings.num_inference_steps, cfg.num_image_tokens)
    fast = FastPlan.build(model, sched, accel, guidance)
    cache = _TemporalCache(model, guidance, batch, time_positions)
    frames: List[torch.Tensor] = []
    order = None
    effective_window = None if slots == total else window
    # inference mode: no autograd bookkeeping per op (the ops are many and small); the stacked
    # result below is made outside it, so callers get an ordinary tensor.
    with torch.inference_mode():
        for t in range(total):
            spatial_ctx = cache.context_for(frames, t, contexts[t], effective_window)
            if t < n_prefix and (prefix_mask is None or not prefix_mask[t].any()):
                frames.append(prefix[:, :, t].to(device=model.device, dtype=torch.float32))
                continue
            if order is None:
                order = draw_token_order(generator, batch, cfg.num_image_tokens, model.device)
            num_known, target, frame_counts, frame_order = 0, None, counts, order
            if t < n_prefix:  # a masked given frame: keep its unmasked tokens, predict the rest
                frame_order, num_known = known_first(order, prefix_mask[t])
                target = prefix[:, :, t]
                frame_counts = mask_schedule(settings.num_inference_steps, cfg.num_image_tokens - num_known)
            elif t >= total - loop_frames:
                j = t - (total - loop_frames) + 1  # 1..loop_frames
                num_known = round(cfg.num_image_tokens * j / (loop_frames + 1))
                target = frames[0]
                frame_counts = mask_schedule(settings.num_inference_steps, cfg.num_image_tokens - num_known)

            def on_step(step, latent, _t=t, _n=len(frame_counts)):
                if callback is not None:
                    callback(Progress(_t, total, step + 1, _n, latent))

            frames.append(sample_frame(model, spatial_ctx, frame_order, frame_counts, guidance, sched, generator, on_step, target, num_known, fast))
    return torch.stack(frames, dim=2)


def kv_cache_bytes(state: Optional[TemporalState]) -> int:
    if state is None or state.kv is None:
        return 0
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in state.kv)

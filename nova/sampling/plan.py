"""One generation, planned and checked before any work starts.

:class:`GenerationPlan` is what every front end builds (``NovaPipeline.__call__``, the CLI, NOVA
Generate, AR Frame Step, NOVA Long Video): from the sampler settings, the conditioning (one or more
:class:`Segment`) and the inputs (prefilled latents, window, blends, loop) it validates everything
at construction and owns what a run needs: the guidance, the mask schedule, a private copy of the
scheduler, the fast-path plan, the number of progress ticks and a memory estimate. ``run`` then
generates (the frame loop is :func:`nova.sampling.frame_loop.run_frames`). Nothing is stored on the
model: one loaded model serves any number of plans at once.

Videos of any length: segments with their own prompt and motion, a sliding temporal window with
flat memory, continuation from given frames, and loops.

Temporal context. The video encoder reads "slots": slot 0 is BOS with the segment's context
(text + motion tokens), slot s > 0 reads latent frame s - 1; the output of the last slot is the
spatial context of the frame being generated. Slot s sits at time position ``arange(S) * 16 / S``
of an S-slot video, S = the video length, or the window when the video is longer: then only
slot 0 (the anchor: context tokens and the BOS step, whose features are also the video mixer's
reference) and the last ``window - 1`` frames are kept, and every slot stays at a position the
model was trained on. A window at least as long as the video is exactly the official pipeline.

When the context changes (a new segment, a blend step) or the window slides, the run's cache is rebuilt
from the kept frames: ``window`` video-encoder passes of one frame each, a few percent of the
frame's set-by-set sampling.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Integral, Real
from typing import List, Optional, Sequence, Union

import torch

from ..components.text_encoder import PromptEmbeds
from ..errors import InputError, NumericalError
from ..io.frames import MAX_LATENT_FRAMES  # (the longest generation; defined with the frame arithmetic)
from .fast import Accel, FastPlan
from .frame_loop import dtype_name, kv_cache_bytes, nan_advice, run_frames  # noqa: F401 (kv_cache_bytes: its old home)
from .keyframes import Keyframe, approached, check_keyframes
from .masks import check_token_mask
from .rng import Generators
from .sampler import (
    Guidance,
    ProgressCallback,
    SamplerSettings,
    build_context,
    check_denoise,
    denoise_skip,
    mask_schedule,
    prepare_scheduler,
)


def segment_contexts(
    contexts: Sequence[torch.Tensor], frames: Sequence[int], n_prefix: int, blend_frames: int
) -> List[torch.Tensor]:
    """The context of every frame, from each segment's context and length. Prefix frames read the
    first segment's context; the first ``blend_frames`` frames of a later segment interpolate from
    the previous segment's context."""
    out = [contexts[0]] * n_prefix
    for i, (ctx_i, n) in enumerate(zip(contexts, frames)):
        for j in range(n):
            ctx = ctx_i
            if i > 0 and j < blend_frames:
                a = (j + 1) / (blend_frames + 1)
                ctx = torch.lerp(contexts[i - 1], ctx_i, a)
            out.append(ctx)
    return out


def slot_positions(model, num_slots: int) -> List[float]:
    if model.config.rotary_pos_embed:
        return [float(i) for i in range(num_slots)]
    return model.video_pos_embed.positions(num_slots).tolist()


@dataclasses.dataclass(frozen=True)
class Segment:
    """``frames`` new latent frames generated under one conditioning. ``negative`` None is the
    learned null embedding (the official default); ``motion_flow`` and ``fps`` are one value or one
    per prompt."""

    positive: PromptEmbeds
    frames: int
    negative: Optional[PromptEmbeds] = None
    motion_flow: Union[float, Sequence[float]] = 5.0
    fps: Union[float, Sequence[float]] = 12.0


def per_sample(value, batch: int, name: str, low: float, low_ok: bool) -> List[float]:
    """One number or one per prompt -> a finite value per prompt, checked against its lower bound."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * batch
    if len(values) == 1:
        values = values * batch
    if len(values) != batch:
        raise InputError(f"{name} has {len(values)} values for {batch} prompts; pass one or {batch}.")
    bound = f">= {low:g}" if low_ok else f"> {low:g}"
    for v in values:
        if (
            isinstance(v, bool)
            or not isinstance(v, Real)
            or not math.isfinite(v)
            or v < low
            or (v == low and not low_ok)
        ):
            raise InputError(f"{name} = {v!r}; expected a finite number {bound}.")
    return [float(v) for v in values]


def check_embeds(embeds, name: str, text_dim: int) -> PromptEmbeds:
    if not isinstance(embeds, PromptEmbeds):
        raise InputError(f"{name} is a {type(embeds).__name__}; expected PromptEmbeds (from a text encoder).")
    feats = embeds.features
    if feats.dim() != 3 or feats.shape[0] < 1 or feats.shape[-1] != text_dim:
        raise InputError(
            f"{name} features have shape {list(feats.shape)}; this checkpoint needs [batch, tokens, {text_dim}] (Phi-2 "
            "features)."
        )
    if len(embeds.lengths) != feats.shape[0]:
        raise InputError(
            f"{name} has {feats.shape[0]} prompts but {len(embeds.lengths)} lengths; each prompt needs its length."
        )
    if feats.is_floating_point() and not torch.isfinite(feats).all():
        raise InputError(f"{name} features contain NaN/Inf (the inputs, before NOVA ran): re-encode the prompt.")
    return embeds


class GenerationPlan:
    """One generation: ``segments`` one after another, after the optional ``prefix`` latents
    ([B, C, N, h, w], transformer scale, returned unchanged, except the tokens ``prefix_mask``
    (bool [N, L], :func:`nova.sampling.masks.token_mask`) marks: those are regenerated, for inpainting and
    outpainting), then ``loop_frames`` frames that lead back to the first frame. Every argument is
    checked here, before anything runs.

    ``denoise`` (a strength in [0, 1], or None) re-samples the prefix instead of keeping it (every
    token, or only the tokens ``prefix_mask`` marks): each given frame is sampled set by set as a
    new one, with the frames sampled so far as its temporal context, but the diffusion head starts
    each predicted token from the given token noised to the level of the scheduler's step
    ``skip = S - floor(S * denoise + 0.5)`` (S = num_diffusion_steps) and runs the remaining steps
    (SDEdit). 1 samples from pure noise (plain generation, with a mask: the repaint of None); a
    strength that leaves no step (0) keeps the given frames exactly.

    ``keyframes`` (:class:`nova.sampling.keyframes.Keyframe`) pin latents at frames the run generates: such a
    frame is the keyframe's latent exactly, and the frames before it approach it (nova/sampling/keyframes.py)."""

    def __init__(
        self,
        model,
        scheduler,
        settings: SamplerSettings,
        segments: Sequence[Segment],
        prefix: Optional[torch.Tensor] = None,
        window: Optional[int] = None,
        blend_frames: int = 0,
        loop_frames: int = 0,
        accel: Optional[Accel] = None,
        time_positions: Optional[Sequence[float]] = None,
        prefix_mask: Optional[torch.Tensor] = None,
        denoise: Optional[float] = None,
        keyframes: Optional[Sequence[Keyframe]] = None,
    ):
        if not isinstance(settings, SamplerSettings):
            raise InputError(
                f"sampler settings are a {type(settings).__name__}; expected SamplerSettings (NOVA Set Sampler)."
            )
        cfg = model.config
        self.model, self.settings, self.accel = model, settings, accel
        self.segments = self._check_segments(segments, cfg)
        self.batch = len(self.segments[0].positive)
        self.prefix = self._check_prefix(prefix, cfg)
        self.n_prefix = 0 if self.prefix is None else self.prefix.shape[2]
        self.prefix_mask = None
        if prefix_mask is not None:
            self.prefix_mask = check_token_mask(prefix_mask, self.n_prefix, cfg.num_image_tokens)
        self.denoise = None if denoise is None else check_denoise(denoise)
        if self.denoise is not None and self.prefix is None:
            raise InputError(
                f"denoise = {denoise} needs given latents to start from (an encoded image or clip); "
                "connect latents, or leave denoise at 1 / unset."
            )
        # diffusion steps the given frames skip (None: they are kept, or repainted from pure noise)
        self.skip = None if self.denoise is None else denoise_skip(settings.num_diffusion_steps, self.denoise)
        self.window = _count("window", window, 2, allow_none=True) if window else None
        self.blend_frames = _count("blend_frames", blend_frames, 0)
        self.loop_frames = _count("loop_frames", loop_frames, 0)
        self.new_frames = sum(s.frames for s in self.segments)
        self.total = self.n_prefix + self.new_frames + self.loop_frames
        self.keyframes = check_keyframes(keyframes, cfg, self.batch, self.n_prefix, self.n_prefix + self.new_frames)
        self._pinned = {kf.index: kf for kf in self.keyframes}
        if self.total < 1:
            raise InputError("nothing to generate: no prefilled frames and 0 new frames.")
        if self.loop_frames and self.n_prefix + self.new_frames < 1:
            raise InputError("a loop needs frames to loop back to.")
        if self.total > MAX_LATENT_FRAMES:
            raise InputError(f"{self.total} latent frames requested; at most {MAX_LATENT_FRAMES}.")
        if not cfg.is_video_model and self.total != 1:
            raise InputError(
                f"{self.total} latent frames requested, but this is an image checkpoint (video_base_size[0] = "
                f"{cfg.video_base_size[0]}): it generates exactly one frame."
            )
        self.slots = self.total if self.window is None or self.window >= self.total else self.window
        if time_positions is not None and len(time_positions) < self.slots:
            raise InputError(f"time_positions has {len(time_positions)} values; this video needs {self.slots}.")
        self.time_positions = list(time_positions) if time_positions is not None else slot_positions(model, self.slots)
        # What every front end used to recompute:
        self.guidance = Guidance(settings)
        self.scheduler = prepare_scheduler(scheduler, settings)  # a private copy: the template is shared
        self.counts = mask_schedule(settings.num_inference_steps, cfg.num_image_tokens)
        self.ticks = sum(len(self.frame_counts(t)) for t in range(self.total) if self.samples(t))
        self._fast: Optional[FastPlan] = None
        self._fast_skip: Optional[FastPlan] = None

    # -- checks -----------------------------------------------------------------------------
    @staticmethod
    def _check_segments(segments, cfg) -> List[Segment]:
        segments = list(segments or ())
        if not segments:
            raise InputError("at least one segment (a prompt and a length) is needed.")
        batch = None
        for i, seg in enumerate(segments):
            if not isinstance(seg, Segment):
                raise InputError(f"segment {i} is a {type(seg).__name__}; expected nova.sampling.plan.Segment.")
            where = f"segment {i} " if len(segments) > 1 else ""
            pos = check_embeds(seg.positive, f"{where}positive conditioning", cfg.text_token_dim)
            batch = len(pos) if batch is None else batch
            if len(pos) != batch:
                raise InputError(
                    f"{where}has {len(pos)} prompts, segment 0 has {batch}; all segments need the same batch."
                )
            if seg.negative is not None:
                neg = check_embeds(seg.negative, f"{where}negative conditioning", cfg.text_token_dim)
                if len(neg) not in (1, batch):
                    raise InputError(
                        f"{where}negative conditioning has {len(neg)} prompts for {batch} positive ones; pass 1 or "
                        f"{batch}."
                    )
            _count(f"{where}frames", seg.frames, 0)
            flows = per_sample(seg.motion_flow, batch, f"{where}motion_flow", 0.0, True)
            fpss = per_sample(seg.fps, batch, f"{where}fps", 0.0, False)
            segments[i] = dataclasses.replace(seg, frames=int(seg.frames), motion_flow=flows, fps=fpss)
        return segments

    def _check_prefix(self, prefix, cfg) -> Optional[torch.Tensor]:
        if prefix is None:
            return None
        if not isinstance(prefix, torch.Tensor):
            raise InputError(f"prefilled latents are a {type(prefix).__name__}; expected a tensor [B, C, N, h, w].")
        expected = (cfg.image_dim,) + tuple(cfg.latent_size)
        if prefix.dim() != 5 or (prefix.shape[1],) + tuple(prefix.shape[3:]) != expected or prefix.shape[0] < 1:
            raise InputError(
                f"prefilled latents have shape {list(prefix.shape)}; this checkpoint needs [B, {expected[0]}, N, "
                f"{expected[1]}, {expected[2]}] (latents of a {cfg.image_size[1]}x{cfg.image_size[0]} video)."
            )
        if not prefix.is_floating_point():
            raise InputError(f"prefilled latents have dtype {prefix.dtype}; expected floating point latents.")
        if prefix.shape[0] not in (1, self.batch):
            raise InputError(
                f"prefilled latents have batch {prefix.shape[0]} but the prompt batch is {self.batch}; pass 1 or "
                f"{self.batch}."
            )
        if not torch.isfinite(prefix).all():
            raise InputError(
                "prefilled latents contain NaN/Inf (the inputs, before NOVA ran): re-encode the image or clip."
            )
        return prefix.expand(self.batch, -1, -1, -1, -1) if prefix.shape[0] != self.batch else prefix

    # -- what the plan owns --------------------------------------------------------------------
    def samples(self, t: int) -> bool:
        """Whether frame ``t`` is sampled (a new frame, or a given one with tokens to repaint)."""
        if t >= self.n_prefix:
            return t not in self._pinned
        if self.skip is not None:
            if self.skip >= self.settings.num_diffusion_steps:  # no step left: the given frame as it is
                return False
            return self.prefix_mask is None or bool(self.prefix_mask[t].any())
        return self.prefix_mask is not None and bool(self.prefix_mask[t].any())

    def frame_counts(self, t: int) -> List[int]:
        """Tokens predicted at each set step of frame ``t`` (loop frames and repainted given frames
        have some tokens fixed)."""
        known = self.known_tokens(t)
        if not known:
            return self.counts
        return mask_schedule(self.settings.num_inference_steps, self.model.config.num_image_tokens - known)

    def known_tokens(self, t: int) -> int:
        """Tokens of frame ``t`` that are kept: the unmasked ones of a repainted given frame, those
        a loop frame copies from the first frame; 0 for other frames."""
        if t < self.n_prefix:
            return 0 if self.prefix_mask is None else int((~self.prefix_mask[t]).sum())
        first_loop = self.total - self.loop_frames
        if t < first_loop:
            near = approached(self.keyframes, t)
            return 0 if near is None else round(self.model.config.num_image_tokens * near[1])
        j = t - first_loop + 1  # 1..loop_frames
        return round(self.model.config.num_image_tokens * j / (self.loop_frames + 1))

    def fast_plan(self) -> FastPlan:
        """The fast path's prepared state (built once, on first use: it reads the weights where
        the host put them)."""
        if self._fast is None:
            sampled = sum(self.samples(t) for t in range(self.total))
            self._fast = FastPlan.build(self.model, self.scheduler, self.accel, self.guidance, frames=sampled)
        return self._fast

    def given_frame_plan(self) -> FastPlan:
        """The fast plan of the re-sampled given frames (their diffusion loops skip steps)."""
        if self._fast_skip is None:
            self._fast_skip = self.fast_plan().skipping(self.model, self.guidance, self.skip or 0)
        return self._fast_skip

    @property
    def rows(self) -> int:
        """Batch rows through the transformer (every guidance pass of every prompt)."""
        return self.guidance.passes * self.batch

    def memory_bytes(self) -> int:
        """Bytes sampling needs beyond the weights (what a host should keep free), from the config:
        the spatial encoder's activations for one set step (every token of the context, the video
        tokens and the image tokens; a block holds q, k, v, the attention output, the 4x MLP hidden
        and residuals: about 16 widths per token) plus the temporal K/V cache of the frames kept (and
        the fp8 copy of the spatial encoder's linear weights in that mode: 12 width^2 bytes a block)."""
        cfg = self.model.config
        width, size = cfg.image_encoder.width, torch.finfo(self.model.dtype).bits // 8
        video_tokens = cfg.video_base_size[1] * cfg.video_base_size[2]
        context_tokens = cfg.text_token_len + 2
        activations = self.rows * (context_tokens + video_tokens + cfg.num_image_tokens) * width * size * 16
        kv_cache = 2 * cfg.video_encoder.depth * self.rows * (self.slots * video_tokens + context_tokens) * width * size
        fp8_weights = 0
        if self.accel is not None and self.accel.fp8_matmuls:  # the spatial encoder's linears, 1 byte a weight
            fp8_weights = cfg.image_encoder.depth * 12 * width * width
        return int(activations + kv_cache + fp8_weights)

    # -- what the run reads ----------------------------------------------------------------------
    def frame_contexts(self) -> List[torch.Tensor]:
        """The context of every frame (prefix, segments with their blends, loop), all guidance passes."""
        lengths = [s.frames for s in self.segments]
        contexts = segment_contexts(self.contexts(), lengths, self.n_prefix, self.blend_frames)
        return contexts + [contexts[-1]] * self.loop_frames

    def given_frame(self, t: int) -> Optional[torch.Tensor]:
        """The latent frame ``t`` is taken as it is (a keyframe, or a given frame not sampled), else None."""
        if t in self._pinned:
            return self._pinned[t].latent
        if not self.samples(t):
            return self.prefix[:, :, t]
        return None

    def known_target(self, t: int, frames: Sequence[torch.Tensor]) -> torch.Tensor:
        """The latents whose tokens frame ``t`` keeps, for a frame that keeps some (``known_tokens``):
        the given frame, the keyframe it approaches, or for a loop frame the first frame (``frames``:
        those made so far)."""
        near = approached(self.keyframes, t) if self.n_prefix <= t < self.total - self.loop_frames else None
        if near is not None:
            return near[0].latent
        return self.prefix[:, :, t] if t < self.n_prefix else frames[0]

    def contexts(self) -> List[torch.Tensor]:
        """Context tokens of each segment, all guidance passes: [P*B, Lc, D]."""
        out = []
        for i, seg in enumerate(self.segments):
            ctx = build_context(self.model, self.guidance, seg.positive, seg.negative, seg.motion_flow, seg.fps)
            if not torch.isfinite(ctx).all():
                raise NumericalError(
                    f"NaN/Inf arose in the text features of segment {i} (projected in "
                    f"{dtype_name(self.model.dtype)}). " + nan_advice(self.model.dtype)
                )
            out.append(ctx)
        return out

    def run(
        self,
        generator: Optional[Generators] = None,
        callback: Optional[ProgressCallback] = None,
        *,
        seed: Optional[int] = None,
    ) -> torch.Tensor:
        """Generate. Returns [B, C, T, h, w] float32 latents (transformer scale), the prefix first.
        The random stream is ``generator`` (one, or one per sample), else a new CPU generator from
        ``seed`` (a random one when both are None); :func:`nova.sampling.frame_loop.run_frames` runs it."""
        if generator is not None and seed is not None:
            raise InputError("pass a generator or a seed, not both.")
        return run_frames(self, seed if generator is None else generator, callback)


def _count(name: str, value, low: int, allow_none: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise InputError(
            f"{name} = {value!r}; expected an integer >= {low}"
            + (" (or none for the whole video)." if allow_none else ".")
        )
    return int(value)

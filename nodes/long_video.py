"""Long video nodes: NOVA Segment (a prompt, motion and length) and NOVA Long Video (segments ->
one video with a sliding temporal window, optional blends between prompts and a loop)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from ..nova.errors import InputError
from ..nova.request import GivenFrames, build_plan
from ..nova.sampling.plan import Segment
from .compat import io
from .handles import latent_samples, make_latent
from .inputs import fps_input, motion_flow_input
from .keyframes import engine_keyframes, keyframes_input
from .masks import DEFAULT_THRESHOLD, carry_repainted, keep_given_tokens, mask_inputs, noise_mask_tokens
from .sampling import MAX_LATENTS, SEED_TIP, UI_MAX_SEED, denoise_input, engine_denoise, require_sampler, run_plan
from .text import conditioning_embeds
from .types import NovaModelType, NovaSamplerType, NovaSegmentsType


@dataclasses.dataclass(frozen=True)
class SegmentSpec:
    positive: Any
    negative: Optional[Any]
    frames: int
    motion_flow: float
    fps: float


class NovaSegment(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NOVASegment",
            display_name="NOVA Segment",
            category="NOVA/long video",
            description=(
                "One segment of a long video: its prompt, motion and length. Chain segments through 'previous'."
            ),
            inputs=[
                io.Conditioning.Input("positive"),
                io.Int.Input(
                    "latent_frames",
                    default=30,
                    min=1,
                    max=MAX_LATENTS,
                    tooltip="Latent frames of this segment (4 video frames each; 30 = 10 s at 12 fps).",
                ),
                motion_flow_input("Amount of motion in this segment (official default 5)."),
                fps_input("Frame rate this segment is conditioned on (trained at 12)."),
                io.Conditioning.Input(
                    "negative", optional=True, tooltip="Unconnected: the learned null embedding (official default)."
                ),
                NovaSegmentsType.Input("previous", optional=True, tooltip="Segments that come before this one."),
            ],
            outputs=[NovaSegmentsType.Output(display_name="segments")],
        )

    @classmethod
    def execute(cls, positive, latent_frames, motion_flow, fps, negative=None, previous=None) -> io.NodeOutput:
        spec = SegmentSpec(positive, negative, int(latent_frames), float(motion_flow), float(fps))
        return io.NodeOutput(tuple(previous or ()) + (spec,))


class NovaLongVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NOVALongVideo",
            display_name="NOVA Long Video",
            category="NOVA/long video",
            description=(
                "Generates the segments one after another without restarting: the temporal context slides "
                "over the last 'window' latents (memory stays flat), prompts switch or blend between segments, "
                "and 'loop_frames' frames can lead back to the first frame."
            ),
            inputs=[
                NovaModelType.Input("model"),
                NovaSamplerType.Input("sampler"),
                NovaSegmentsType.Input("segments"),
                io.Int.Input("seed", default=0, min=0, max=UI_MAX_SEED, control_after_generate=True, tooltip=SEED_TIP),
                io.Int.Input(
                    "window",
                    default=9,
                    min=0,
                    max=MAX_LATENTS,
                    tooltip=(
                        "Latent frames of temporal context (9 = the training length). 0 = the whole video "
                        "(official; memory grows)."
                    ),
                ),
                io.Int.Input(
                    "blend_frames",
                    default=0,
                    min=0,
                    max=64,
                    tooltip=(
                        "Frames over which each new segment's prompt fades in from the previous one (0 = switch at "
                        "once)."
                    ),
                ),
                io.Int.Input(
                    "loop_frames",
                    default=0,
                    min=0,
                    max=64,
                    tooltip=(
                        "Extra frames at the end that lead back to the first frame, for a seamless loop (0 = no loop)."
                    ),
                ),
                io.Latent.Input(
                    "latents",
                    optional=True,
                    tooltip=(
                        "A video to continue (its frames are kept unchanged; with a noise_mask, "
                        "its white area is first repainted under the first segment's prompt)."
                    ),
                ),
                *mask_inputs(),
                denoise_input(),
                keyframes_input(),
            ],
            outputs=[io.Latent.Output(display_name="latents")],
        )

    @classmethod
    def execute(
        cls,
        model,
        sampler,
        segments,
        seed,
        window=9,
        blend_frames=0,
        loop_frames=0,
        latents=None,
        mask_threshold=DEFAULT_THRESHOLD,
        mask_grow=0,
        denoise=1.0,
        keyframes=None,
    ) -> io.NodeOutput:
        require_sampler(sampler)
        strength = engine_denoise(denoise)
        if not segments:
            raise InputError("segments are empty; connect NOVA Segment.")
        if not model.config.is_video_model:
            raise InputError(f"'{model.name}' is an image checkpoint; long videos need a video checkpoint.")
        text_dim = model.config.text_token_dim
        plan_segments = []
        for i, s in enumerate(segments):
            if not isinstance(s, SegmentSpec):
                raise InputError(f"segment {i} is a {type(s).__name__}; connect NOVA Segment nodes.")
            negative = (
                None if s.negative is None else conditioning_embeds(s.negative, text_dim, f"segment {i} negative")
            )
            plan_segments.append(
                Segment(
                    conditioning_embeds(s.positive, text_dim, f"segment {i} positive"),
                    s.frames,
                    negative,
                    s.motion_flow,
                    s.fps,
                )
            )
        regen = noise_mask_tokens(latents, model, mask_threshold, mask_grow)
        prefix = latent_samples(latents, model)
        # keyframe frames count in the video without its loop (-1: the last frame before the loop)
        length = (0 if prefix is None else prefix.shape[2]) + sum(int(s.frames) for s in plan_segments)
        pinned = engine_keyframes(keyframes, model, length)
        given = GivenFrames(prefix, regen, keyframes=pinned)
        plan = build_plan(
            model,
            sampler,
            plan_segments,
            given,
            denoise=strength,
            window=int(window),
            blend=int(blend_frames),
            loop=int(loop_frames),
        )
        scaled = run_plan(model, plan, seed)
        latent = make_latent(scaled, model, model.host.intermediate_device(), segments[-1].fps)
        if regen is not None:
            latent = keep_given_tokens(latent, latents["samples"], regen, model)
        return io.NodeOutput(carry_repainted(latent, latents))

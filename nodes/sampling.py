"""Sampling nodes: NOVA Set Sampler (settings), NOVA AR Frame Step, NOVA Generate.

Time positions and seeds in a chain of AR Frame Steps: every step re-reads the frames it is
given (prefilling the temporal context from them, exactly as if they had just been generated),
gives the new frames the official time positions of a video as long as the result
(``arange(T) * 16 / T``), and samples with its own seed. A one-step chain equals NOVA Generate.
"""

from __future__ import annotations

from typing import Optional

from ..nova.checks import check_fits
from ..nova.errors import InputError
from ..nova.io.frames import latents_for_frames
from ..nova.request import GivenFrames, build_plan
from ..nova.sampling.plan import GenerationPlan, Segment
from ..nova.sampling.sampler import SamplerSettings, check_denoise
from .compat import io
from .handles import NovaModel, check_latent_space, latent_samples, make_latent
from .inputs import fps_input, motion_flow_input
from .keyframes import engine_keyframes, keyframes_input
from .masks import (
    DEFAULT_THRESHOLD,
    MAX_FEATHER,
    carry_repainted,
    feather_decoded,
    keep_given_tokens,
    mask_inputs,
    noise_mask_tokens,
    token_mask,
)
from .text import conditioning_embeds
from .types import NovaModelType, NovaSamplerType, NovaVaeType

MAX_LATENTS = 256
# The seed widgets' range. Only the low 32 bits of a seed change the result on the CPU generator (as in the
# official code); the engine itself accepts up to nova.sampling.sampler.MAX_SEED (2**64 - 1).
UI_MAX_SEED = 2**32 - 1
SEED_TIP = (
    "Random seed, drawn on the CPU generator as the official pipeline does. Only 32 bits matter there "
    "(seed and seed + 2**32 give the same video), so the range stops at 2**32 - 1."
)
# The official T2V demo's settings (scripts/app_nova_t2v.py); NovaPipeline keeps the call defaults 64/25/5.
DEMO_SETTINGS = SamplerSettings(num_inference_steps=128, num_diffusion_steps=100, guidance_scale=7.0)


class NovaSetSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        d = DEMO_SETTINGS
        return io.Schema(
            node_id="NOVASetSampler",
            display_name="NOVA Set Sampler",
            category="NOVA",
            description=(
                "Settings of the set-by-set spatial sampler. Defaults: the official T2V demo (128/100, cfg 7); "
                "the pipeline defaults 64/25/5 are several times faster."
            ),
            inputs=[
                io.Int.Input(
                    "ar_steps",
                    default=d.num_inference_steps,
                    min=1,
                    max=1024,
                    tooltip="Set-by-set steps per frame (num_inference_steps).",
                ),
                io.Int.Input(
                    "diffusion_steps",
                    default=d.num_diffusion_steps,
                    min=1,
                    max=1000,
                    tooltip="Denoising steps of the diffusion head per set.",
                ),
                io.Float.Input(
                    "cfg",
                    default=d.guidance_scale,
                    min=0.0,
                    max=30.0,
                    step=0.1,
                    tooltip="Classifier-free guidance scale (<= 1 disables guidance).",
                ),
                io.Float.Input(
                    "guidance_trunc",
                    default=d.guidance_trunc,
                    min=0.0,
                    max=1000.0,
                    step=0.01,
                    tooltip="Drop guidance for diffusion timesteps below this value (0 = never).",
                ),
                io.Float.Input(
                    "guidance_renorm",
                    default=d.guidance_renorm,
                    min=0.01,
                    max=1.0,
                    step=0.01,
                    tooltip=(
                        "Renormalize guided predictions to at least this fraction of the conditional norm (1 = off)."
                    ),
                ),
                io.Float.Input(
                    "image_guidance",
                    default=d.image_guidance_scale,
                    min=0.0,
                    max=30.0,
                    step=0.1,
                    tooltip="Extra guidance towards the video context (a third pass; 0 = off).",
                ),
                io.Float.Input(
                    "flow_shift",
                    default=0.0,
                    min=0.0,
                    max=100.0,
                    step=0.1,
                    tooltip="Timestep shift for flow-matching checkpoints (0 = the checkpoint's own).",
                ),
            ],
            outputs=[NovaSamplerType.Output(display_name="sampler")],
        )

    @classmethod
    def execute(
        cls, ar_steps, diffusion_steps, cfg, guidance_trunc=0.0, guidance_renorm=1.0, image_guidance=0.0, flow_shift=0.0
    ) -> io.NodeOutput:
        return io.NodeOutput(
            SamplerSettings(
                int(ar_steps),
                int(diffusion_steps),
                float(cfg),
                float(guidance_trunc),
                float(guidance_renorm),
                float(image_guidance),
                float(flow_shift) or None,
            )
        )


def _frame_inputs():
    return [
        io.Int.Input("seed", default=0, min=0, max=UI_MAX_SEED, control_after_generate=True, tooltip=SEED_TIP),
        motion_flow_input("Amount of motion (video checkpoints; official default 5)."),
        fps_input("Frame rate the model conditions on and the video plays at (trained at 12)."),
    ]


def denoise_input():
    """The denoise strength (optional and last, so workflows saved before it keep their widget order)."""
    return io.Float.Input(
        "denoise",
        default=1.0,
        min=0.0,
        max=1.0,
        step=0.01,
        optional=True,
        tooltip=(
            "Below 1: re-sample the given frames instead of keeping them (image-to-image, video-to-video; only "
            "under the mask with one). Each token's diffusion starts from the given token noised to this level "
            "and runs the last round(diffusion_steps x denoise) steps (as SDEdit / KSampler denoise). 0 = keep "
            "them as they are; 1 = keep and continue them (with a mask: repaint from pure noise)."
        ),
    )


def engine_denoise(denoise) -> Optional[float]:
    """The widget's value as the engine's ``denoise``: 1 is the node's old behaviour (None), checked."""
    value = check_denoise(denoise)
    return None if value >= 1.0 else value


def require_sampler(sampler) -> None:
    if not isinstance(sampler, SamplerSettings):
        raise InputError(f"sampler is a {type(sampler).__name__}; it must come from NOVA Set Sampler.")


def plan_frames(
    model: NovaModel,
    positive,
    negative,
    sampler,
    add: int,
    motion_flow: float,
    fps: float,
    prefix_latent=None,
    prefix_mask=None,
    denoise=None,
    keyframes=None,
) -> GenerationPlan:
    """The plan for ``add`` new latent frames after the (optional) given ones, first repainting the
    tokens of the given frames that ``prefix_mask`` marks (nodes/masks.py); checks everything."""
    require_sampler(sampler)
    cfg = model.config
    prefix = latent_samples(prefix_latent, model)
    pos = conditioning_embeds(positive, cfg.text_token_dim, "positive")
    neg = None if negative is None else conditioning_embeds(negative, cfg.text_token_dim, "negative")
    segment = Segment(pos, int(add), neg, float(motion_flow), float(fps))
    given = GivenFrames(prefix, prefix_mask, keyframes=keyframes)
    return build_plan(model, sampler, [segment], given, denoise=denoise)


def run_plan(model: NovaModel, plan: GenerationPlan, seed: int):
    """Load the model for the plan's memory, then run it from ``seed`` (on a CPU generator, as the
    official code draws), ticking the host's progress bar once per set step with a preview of the frame being sampled
    (and, in ComfyUI, Cancel)."""
    host = model.host
    host.load(model.patcher, plan.memory_bytes())
    progress = host.progress(max(1, plan.ticks))
    return plan.run(seed=seed, callback=lambda p: progress.update(p.tick, p.latent, model.latent_format))


class NovaARFrameStep(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NOVAARFrameStep",
            display_name="NOVA AR Frame Step",
            category="NOVA",
            description=(
                "Frame-by-frame autoregressive step: continues the given latents (none: starts a new "
                "video) with latent_frames new frames. Chain steps to extend a video or change the prompt. "
                "Latents with a noise_mask (Set Latent Noise Mask) are repainted under the mask first "
                "(inpainting, outpainting; latent_frames 0 = only repaint)."
            ),
            inputs=[
                NovaModelType.Input("model"),
                io.Conditioning.Input("positive"),
                NovaSamplerType.Input("sampler"),
                io.Int.Input(
                    "latent_frames",
                    default=9,
                    min=0,
                    max=MAX_LATENTS,
                    tooltip=(
                        "Latent frames to add (each is 4 video frames; the first latent of a video is 1 frame). "
                        "0: only repaint the given latents under their noise_mask."
                    ),
                ),
                *_frame_inputs(),
                io.Conditioning.Input(
                    "negative", optional=True, tooltip="Unconnected: the learned null embedding (official default)."
                ),
                io.Latent.Input(
                    "latents",
                    optional=True,
                    tooltip=(
                        "Frames to continue from: a previous step, an encoded image (image-to-video) or an encoded "
                        "clip. "
                        "With a noise_mask (pixel or latent size, one or one per frame), its white area is regenerated."
                    ),
                ),
                *mask_inputs(),
                denoise_input(),
                keyframes_input(),
            ],
            outputs=[
                io.Latent.Output(display_name="latents", tooltip="All frames: the given ones followed by the new ones.")
            ],
        )

    @classmethod
    def execute(
        cls,
        model,
        positive,
        sampler,
        latent_frames,
        seed,
        motion_flow,
        fps,
        negative=None,
        latents=None,
        mask_threshold=DEFAULT_THRESHOLD,
        mask_grow=0,
        denoise=1.0,
        keyframes=None,
    ) -> io.NodeOutput:
        strength = engine_denoise(denoise)
        regen = noise_mask_tokens(latents, model, mask_threshold, mask_grow)
        given = 0 if latents is None else latent_samples(latents, model).shape[2]
        pinned = engine_keyframes(keyframes, model, given + int(latent_frames))
        plan = plan_frames(
            model, positive, negative, sampler, latent_frames, motion_flow, fps, latents, regen, strength, pinned
        )
        latent = make_latent(run_plan(model, plan, seed), model, model.host.intermediate_device(), fps)
        if regen is not None:  # the mask is used up: a chained step continues, it does not repaint again
            latent = keep_given_tokens(latent, latents["samples"], regen, model)
        latent = carry_repainted(latent, latents)
        return io.NodeOutput(latent)


class NovaGenerate(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NOVAGenerate",
            display_name="NOVA Generate",
            category="NOVA",
            description=(
                "Text-to-video, image-to-video (connect start_image) or text-to-image (frames = 1) in one "
                "node: VAE Encode -> AR Frame Step -> VAE Decode. With a mask, start_image (an image or a "
                "clip) is repainted under it (inpainting, outpainting), then continued up to frames."
            ),
            inputs=[
                NovaModelType.Input("model"),
                NovaVaeType.Input("vae"),
                io.Conditioning.Input("positive"),
                NovaSamplerType.Input("sampler"),
                io.Int.Input(
                    "frames",
                    default=33,
                    min=1,
                    max=1 + 4 * (MAX_LATENTS - 1),
                    step=4,
                    tooltip="Video frames, 1 + 4k (33 = 9 latents; 1 = an image).",
                ),
                *_frame_inputs(),
                io.Conditioning.Input(
                    "negative", optional=True, tooltip="Unconnected: the learned null embedding (official default)."
                ),
                io.Image.Input(
                    "start_image",
                    optional=True,
                    tooltip="First frame for image-to-video; center-cropped and resized to the checkpoint's size.",
                ),
                io.Mask.Input(
                    "mask",
                    optional=True,
                    tooltip=(
                        "Area of start_image to regenerate (white; e.g. LoadImage's alpha from the mask "
                        "editor). One mask or one per frame; start_image is then used whole (an image or a 1 + 4k "
                        "clip)."
                    ),
                ),
                *mask_inputs(),
                io.Int.Input(
                    "feather",
                    default=0,
                    min=0,
                    max=MAX_FEATHER,
                    optional=True,
                    tooltip=(
                        "With a mask: blend the result into start_image over this many pixels inside the edge of "
                        "the "
                        "regenerated tokens (the mask rounded out to 16-px cells, after mask_grow); pixels outside "
                        "those tokens are then start_image's exactly. 0 = the plain decode."
                    ),
                ),
                denoise_input(),
                keyframes_input(),
            ],
            outputs=[
                io.Image.Output(display_name="frames"),
                io.Float.Output(display_name="fps"),
                io.Latent.Output(display_name="latents"),
            ],
        )

    @classmethod
    def execute(
        cls,
        model,
        vae,
        positive,
        sampler,
        frames,
        seed,
        motion_flow,
        fps,
        negative=None,
        start_image=None,
        mask=None,
        mask_threshold=DEFAULT_THRESHOLD,
        mask_grow=0,
        feather=0,
        denoise=1.0,
        keyframes=None,
    ) -> io.NodeOutput:
        from ..nova.io.pixels import check_images
        from .vae import decode_latent, encode_images

        strength = engine_denoise(denoise)
        if strength is not None and start_image is None:
            raise InputError(
                f"denoise = {denoise} re-samples start_image: connect start_image (an image or a 1 + 4k "
                "clip), or set denoise to 1."
            )
        total = latents_for_frames(int(frames)) if model.config.is_video_model else int(frames)
        check_latent_space({"nova_latent_format": vae.latent_space}, model.latent_space, f"checkpoint '{model.name}'")
        if mask is not None and start_image is None:
            raise InputError("mask needs start_image: the image or clip whose masked area is regenerated.")
        # Everything is checked on a plan before the start image is encoded (the same plan, with no
        # given frame standing in for the encoded ones).
        # a clip to repaint or re-sample, not a first frame
        whole = (mask is not None or strength is not None) and model.config.is_video_model
        image = None if start_image is None else check_images(start_image)
        image = image if image is None or whole else image[:1]
        pinned = engine_keyframes(keyframes, model, total)
        plan_frames(model, positive, negative, sampler, total, motion_flow, fps, keyframes=pinned)
        prefix = regen = None
        if image is not None:
            h, w = model.config.image_size
            prefix = encode_images(vae, image, w, h, "crop")
        n_prefix = 0 if prefix is None else prefix["samples"].shape[2]
        if mask is not None:
            regen = token_mask(mask, model, n_prefix, mask_threshold, mask_grow, "mask", clip_frames=image.shape[0])
        check_fits(total, n_prefix, "frames", "start_image")
        plan = plan_frames(
            model, positive, negative, sampler, total - n_prefix, motion_flow, fps, prefix, regen, strength, pinned
        )
        if plan.ticks == 0 and strength is None:
            raise InputError(
                f"nothing to generate: start_image already gives all {frames} frame(s) and no mask marks "
                "an area to repaint. Connect a mask, or raise frames to continue start_image."
            )
        latent = make_latent(run_plan(model, plan, seed), model, model.host.intermediate_device(), fps)
        if regen is not None:
            latent = keep_given_tokens(latent, prefix["samples"], regen, model)
        images = decode_latent(vae, latent)
        if regen is not None and feather:
            images = feather_decoded(images, latent, start_image, int(feather), vae.vae.temporal_ratio)
        return io.NodeOutput(images, float(fps), latent)

"""URSA nodes: a checkpoint loader and one generate node (text-to-video, image-to-video, video extension,
text-to-image) giving native ``IMAGE`` frames for core ``CreateVideo`` / ``SaveVideo``.

The engine is :mod:`nova.ursa`; these nodes add ComfyUI's model management (the transformer and the VQ
tokenizer are ModelPatchers, loaded to the GPU only while they run), the progress bar (which also makes
Cancel work) and the conversions between ``IMAGE`` tensors and uint8 frames.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import torch

from ..nova.errors import CheckpointError, InputError
from ..nova.sampling.rng import check_seed
from ..nova.ursa.config import URSA_PIPELINE, check_ursa_folder, read_family
from . import folders
from .compat import io
from .host import DTYPE_CHOICES, default_host
from .types import UrsaModelType

OFFICIAL_URSA = {
    "URSA-0.6B-FSQ320": "BAAI/URSA-0.6B-FSQ320",
    "URSA-1.7B-FSQ320": "BAAI/URSA-1.7B-FSQ320",
    "URSA-0.6B-IBQ1024": "BAAI/URSA-0.6B-IBQ1024",
    "URSA-1.7B-IBQ1024": "BAAI/URSA-1.7B-IBQ1024",
}
DEFAULT_CHECKPOINT = "URSA-1.7B-FSQ320"
# The negative prompt of the official examples.
OFFICIAL_NEGATIVE = "worst quality, low quality, inconsistent motion, static, still, blurry, jittery, distorted, ugly"
URSA_LAYOUT = (
    "model_index.json (_class_name URSAPipeline), transformer/{config.json, diffusion_pytorch_model.safetensors}, "
    "vae/{config.json, diffusion_pytorch_model.safetensors}, scheduler/{scheduler_config.json, scheduler_model.pth}, "
    "tokenizer/{tokenizer.json, tokenizer_config.json, vocab.json, merges.txt}"
)


@dataclasses.dataclass(frozen=True)
class UrsaModel:
    """URSA_MODEL: transformer and VQ tokenizer (inside their patchers), sampler, text tokenizer, host."""

    transformer_patcher: Any
    vae_patcher: Any
    scheduler: Any  # nova.ursa.scheduler.KineticOptimalScheduler (on the CPU; moved per run)
    tokenizer: Any
    name: str
    host: Any

    @property
    def is_video_model(self) -> bool:
        return self.vae_patcher.model.module.config.video


def find_ursa_checkpoints(host) -> dict:
    """name -> folder of every URSA checkpoint under models/ursa and models/diffusers."""
    found = {}
    for root in host.folder_paths("ursa") + host.folder_paths("diffusers"):
        for name, path in folders._subdirs(root):
            if os.path.isfile(os.path.join(path, "model_index.json")):
                try:
                    if read_family(path) == URSA_PIPELINE:
                        found.setdefault(name, path)
                except CheckpointError:
                    continue  # an unreadable model_index.json: not offered
    return found


def locate_ursa(name: str, host, download: bool) -> str:
    found = find_ursa_checkpoints(host)
    if name in found:
        return found[name]
    searched = host.folder_paths("ursa") + host.folder_paths("diffusers")
    if name in OFFICIAL_URSA and download:
        return folders.download_repo(OFFICIAL_URSA[name], name, host, "ursa", URSA_LAYOUT)
    if name in OFFICIAL_URSA:
        raise CheckpointError(
            f"URSA checkpoint '{name}' is not installed. Put the folder of Hugging Face repo "
            f"{OFFICIAL_URSA[name]} into one of {searched or ['models/ursa']} (it must hold {URSA_LAYOUT}), "
            "or set download to true."
        )
    raise CheckpointError(
        f"URSA checkpoint '{name}' not found; looked in {searched}. Available: {sorted(found) or 'none'}."
    )


class UrsaCheckpointLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        found = find_ursa_checkpoints(default_host())
        return io.Schema(
            node_id="URSACheckpointLoader",
            display_name="URSA Checkpoint Loader",
            category="NOVA/URSA",
            description=(
                "Loads an URSA checkpoint (transformer, VQ tokenizer, sampler, text tokenizer) in the "
                "official Hugging Face layout. FSQ320 checkpoints make videos, IBQ1024 ones images."
            ),
            inputs=[
                io.Combo.Input(
                    "ckpt_name",
                    options=sorted(set(found) | set(OFFICIAL_URSA)),
                    default=DEFAULT_CHECKPOINT,
                    tooltip="URSA checkpoint folder under models/ursa or models/diffusers.",
                ),
                io.Combo.Input(
                    "dtype",
                    options=DTYPE_CHOICES,
                    default="auto",
                    tooltip=(
                        "Weight/compute dtype. auto = bf16 where supported, else fp32. Only fp32 on "
                        "the CPU reproduces the official ids exactly."
                    ),
                ),
                io.Boolean.Input(
                    "download",
                    default=False,
                    tooltip="Download the official checkpoint into models/ursa/<name> when it is missing.",
                ),
            ],
            outputs=[UrsaModelType.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, ckpt_name):
        if ckpt_name not in set(find_ursa_checkpoints(default_host())) | set(OFFICIAL_URSA):
            return f"URSA checkpoint '{ckpt_name}' is not in models/ursa or models/diffusers. Refresh the page."
        return True

    @classmethod
    def execute(cls, ckpt_name, dtype="auto", download=False) -> io.NodeOutput:
        from ..nova.ursa.loading import (
            check_components,
            load_scheduler,
            load_text_tokenizer,
            load_transformer,
            load_vq_tokenizer,
        )

        host = default_host()
        if dtype not in DTYPE_CHOICES:
            raise CheckpointError(f"dtype '{dtype}' is not one of {DTYPE_CHOICES}.")
        folder = locate_ursa(ckpt_name, host, download)
        check_ursa_folder(folder)
        load_device, offload_device = host.devices("transformer")
        transformer = load_transformer(
            os.path.join(folder, "transformer"), offload_device, host.pick_dtype(dtype, "transformer", load_device)
        )
        scheduler = load_scheduler(os.path.join(folder, "scheduler"))
        check_components(transformer, scheduler, folder)
        vae_load, vae_offload = host.devices("vae")
        vae = load_vq_tokenizer(os.path.join(folder, "vae"), vae_offload, host.pick_dtype(dtype, "vae", vae_load))
        model = UrsaModel(
            host.wrap(transformer, "transformer"),
            host.wrap(vae, "vae"),
            scheduler,
            load_text_tokenizer(os.path.join(folder, "tokenizer")),
            ckpt_name,
            host,
        )
        return io.NodeOutput(model)


def sampling_memory(model: UrsaModel, frames: int, height: int, width: int, guidance: float) -> int:
    """Bytes the sampling loop needs beyond the weights: the logits over the codebook of every token
    (twice with guidance) and the sampler's buffers of the same size, about four fp32 copies."""
    config = model.vae_patcher.model.module.config
    tokens = ((int(frames) - 1) // config.temporal_stride + 1) * (int(height) // config.spatial_stride)
    tokens *= int(width) // config.spatial_stride
    rows = 2 if guidance > 1 else 1
    return 4 * rows * tokens * model.scheduler.codebook_size * 4


def token_preview(model: UrsaModel, ids: torch.Tensor):
    """A cheap picture of the current tokens of the first clip's first latent frame, one pixel per token
    scaled up: FSQ codes show their first three digits (8 levels each) as RGB, VQ codes the first three
    dimensions of their codebook vector. Decoding with the tokenizer at every step would cost too much."""
    from PIL import Image

    grid = ids[0, 0].long().cpu()  # [h, w]
    vae = model.vae_patcher.model.module
    if vae.config.video:
        rgb = torch.stack([grid % 8, grid // 8 % 8, grid // 64 % 8], dim=-1).float() / 7
    else:
        vectors = vae.quantizer.embedding.weight.detach()[:, :3].float().cpu()
        low, high = vectors.min(0).values, vectors.max(0).values
        rgb = (vectors[grid] - low) / (high - low).clamp_min(1e-6)
    pixels = rgb.mul(255).round().clamp(0, 255).to(torch.uint8).numpy()
    scale = max(1, 256 // max(grid.shape))
    return Image.fromarray(pixels).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)


def image_to_uint8(image: torch.Tensor, name: str) -> np.ndarray:
    """ComfyUI IMAGE [N, H, W, 3] floats in 0..1 -> uint8 [N, H, W, 3]."""
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[-1] != 3:
        shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(f"{name} is {shape}; expected an IMAGE [frames, height, width, 3] (RGB).")
    return image.float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()


class UrsaGenerate(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="URSAGenerate",
            display_name="URSA Generate",
            category="NOVA/URSA",
            description=(
                "Text-to-video, image-to-video (connect image), video extension (connect video: the result "
                "continues it) or text-to-image (frames = 1, or an IBQ checkpoint) with URSA."
            ),
            inputs=[
                UrsaModelType.Input("model"),
                io.String.Input("prompt", multiline=True, default="", tooltip="What to generate."),
                io.String.Input(
                    "negative_prompt",
                    multiline=True,
                    default=OFFICIAL_NEGATIVE,
                    tooltip="What to avoid (the official examples' negative prompt by default).",
                ),
                io.Float.Input(
                    "motion",
                    default=9.0,
                    min=0.0,
                    max=20.0,
                    step=0.5,
                    tooltip=(
                        "Motion strength, sent as the official 'motion=<value>, ' prompt prefix "
                        "on video checkpoints when frames > 1 (9 for text/image-to-video, 5 for "
                        "extension). 0 = no prefix."
                    ),
                ),
                io.Int.Input("width", default=512, min=8, max=4096, step=8, tooltip="Width in pixels (multiple of 8)."),
                io.Int.Input(
                    "height", default=320, min=8, max=4096, step=8, tooltip="Height in pixels (multiple of 8)."
                ),
                io.Int.Input(
                    "frames",
                    default=49,
                    min=1,
                    max=1 + 4 * 256,
                    step=4,
                    tooltip="Frames, 1 + 4k (49 as trained; 1 = an image). IBQ checkpoints make one image.",
                ),
                io.Int.Input(
                    "steps", default=25, min=1, max=500, tooltip="Sampling steps (the official videos use 50)."
                ),
                io.Float.Input(
                    "guidance",
                    default=7.0,
                    min=0.0,
                    max=30.0,
                    step=0.1,
                    tooltip="Classifier-free guidance scale; <= 1 runs without the negative prompt.",
                ),
                io.Float.Input(
                    "guidance_trunc",
                    default=0.9,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="Guidance applies while t < guidance_trunc (t runs from 0 to 1).",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFF,
                    control_after_generate=True,
                    tooltip="Random seed. On the CPU in fp32 it gives the official ids exactly.",
                ),
                io.Image.Input(
                    "image",
                    optional=True,
                    tooltip=(
                        "First frame (image-to-video), or the image to vary (IBQ). Its size must be width x height."
                    ),
                ),
                io.Image.Input(
                    "video",
                    optional=True,
                    tooltip=(
                        "A clip to extend: its last num_cond_frames frames start the new clip, and the "
                        "output is the clip followed by the new frames."
                    ),
                ),
                io.Int.Input(
                    "num_cond_frames",
                    default=13,
                    min=1,
                    max=1 + 4 * 256,
                    step=4,
                    optional=True,
                    tooltip="With video: how many of its last frames condition the new clip (1 + 4k).",
                ),
                io.Float.Input(
                    "cond_noise_scale",
                    default=0.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    optional=True,
                    tooltip="Noise on the conditioning tokens (the official extension uses 0.1).",
                ),
            ],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def validate_inputs(cls, frames=49, num_cond_frames=13):
        for name, value in (("frames", frames), ("num_cond_frames", num_cond_frames)):
            if isinstance(value, int) and (value - 1) % 4:
                lower = (value - 1) // 4 * 4 + 1
                return f"{name} = {value}; URSA's video tokenizer makes 1 + 4k frames (try {lower} or {lower + 4})."
        return True

    @classmethod
    def execute(
        cls,
        model,
        prompt,
        negative_prompt,
        motion,
        width,
        height,
        frames,
        steps,
        guidance,
        guidance_trunc,
        seed,
        image=None,
        video=None,
        num_cond_frames=13,
        cond_noise_scale=0.0,
    ) -> io.NodeOutput:
        from ..nova.ursa.pipeline import UrsaPipeline, pixels_to_uint8

        if not isinstance(model, UrsaModel):
            raise InputError(f"model is a {type(model).__name__}; connect an URSA Checkpoint Loader.")
        check_seed(seed)
        if not model.is_video_model and frames != 1:
            raise InputError(f"frames = {frames}; '{model.name}' is an image checkpoint (IBQ): set frames to 1.")
        if image is not None and video is not None:
            raise InputError("connect image or video, not both.")
        host = model.host
        text = str(prompt)
        if model.is_video_model and frames > 1 and motion > 0 and not text.lstrip().startswith("motion="):
            text = f"motion={float(motion)}, {text}"
        start = None if video is None else image_to_uint8(video, "video")
        kwargs = dict(
            prompt=text,
            negative_prompt=negative_prompt,
            height=int(height),
            width=int(width),
            num_frames=int(frames),
            num_inference_steps=int(steps),
            guidance_scale=float(guidance),
            guidance_trunc=float(guidance_trunc),
            cond_noise_scale=float(cond_noise_scale),
            output_type="np",
        )
        if image is not None:
            kwargs["image"] = image_to_uint8(image, "image")[0]
        if start is not None:
            kwargs.update(video=start, num_cond_frames=int(num_cond_frames))
        # Three phases, each with only the model it needs on the GPU: encode the condition (tokenizer),
        # sample (transformer), decode (tokenizer). Encoding makes no random draws, so encoding first
        # and passing cond_latents draws exactly what the official call does.
        transformer, vae = model.transformer_patcher.model.module, model.vae_patcher.model.module
        pipe = UrsaPipeline(transformer, model.scheduler, vae, model.tokenizer)
        size = (int(height), int(width))
        if image is not None or start is not None:
            host.load(model.vae_patcher)
            if image is not None:
                kwargs["cond_latents"] = pipe.encode_image(kwargs.pop("image"), *size)
            else:
                kwargs["cond_latents"] = pipe.encode_video(
                    kwargs.pop("video"), *size, int(frames), kwargs.pop("num_cond_frames")
                )
        host.load(model.transformer_patcher, memory_required=sampling_memory(model, frames, height, width, guidance))
        device = transformer.device
        pipe = UrsaPipeline(transformer, model.scheduler.to(device), vae, model.tokenizer)
        progress = host.progress(int(steps))
        generator = torch.Generator(device=device).manual_seed(int(seed))
        ids = pipe(
            **{**kwargs, "output_type": "latent"},
            generator=generator,
            callback_on_step_end=lambda step, total, ids: progress.update(
                step + 1, preview_image=token_preview(model, ids)
            ),
        ).frames
        host.load(model.vae_patcher)
        result = pixels_to_uint8(pipe.decode(ids))[0]  # [F, H, W, 3] (video) or [H, W, 3] (image)
        result = result if model.is_video_model else result[None]
        if start is not None:  # the official extension: the given clip, then the frames after the condition
            result = np.concatenate([start, result[int(num_cond_frames) :]])
        pixels = torch.from_numpy(np.ascontiguousarray(result)).float().div(255)
        return io.NodeOutput(pixels.to(host.intermediate_device()))

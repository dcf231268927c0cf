"""``NovaPipeline``: the official ``NOVAPipeline`` call signature and outputs on our engine.

A script written for the official pipeline ports by changing one import::

    from nova import NovaPipeline
    pipe = NovaPipeline.from_pretrained("BAAI/nova-d48w1024-osp480", torch_dtype=torch.bfloat16)
    frames = pipe("a fox in the snow", max_latent_length=9, output_type="np").frames
"""

from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from .components import load_scheduler, load_transformer
from .errors import CheckpointError, InputError
from .fast import Accel
from .loading import read_model_index, resolve_checkpoint
from .sampling import Guidance, SamplerSettings, build_context, generate_latents, new_generator
from .text_encoder import PromptEmbeds, TextEncoder
from .vae import NovaVAE
from .vae import load_vae as load_vae_folder  # (from_pretrained has a load_vae flag)


@dataclasses.dataclass
class NovaPipelineOutput:
    images: Optional[Union[List, np.ndarray, torch.Tensor]] = None
    frames: Optional[Union[np.ndarray, torch.Tensor]] = None


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pixels_to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """[B, 3, T, H, W] in [-1, 1] -> [B, T, H, W, 3] uint8, rounding as the official code does
    (truncation after clamping)."""
    return pixels.permute(0, 2, 3, 4, 1).mul(127.5).add(127.5).clamp(0, 255).to(torch.uint8).cpu().numpy()


def center_crop_box(h: int, w: int, height: int, width: int):
    """(top, bottom, left, right) of the largest centered region of an h x w image with the
    aspect ratio of height x width (the official demo crops so before resizing)."""
    target = width / height
    if w / h > target:  # too wide: crop the sides
        new_w = max(1, round(h * target))
        return 0, h, (w - new_w) // 2, (w - new_w) // 2 + new_w
    new_h = max(1, round(w / target))
    return (h - new_h) // 2, (h - new_h) // 2 + new_h, 0, w


def fit_image(image: np.ndarray, height: int, width: int, resize: bool = True) -> np.ndarray:
    """Center-crop to the target aspect ratio and resize (as the official demo app does)."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"image has shape {list(arr.shape)}; expected an HxWx3 (RGB) array.")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    h, w = arr.shape[:2]
    if (h, w) == (height, width):
        return arr
    if not resize:
        raise InputError(f"image is {w}x{h}; this checkpoint needs exactly {width}x{height} (WxH).")
    top, bottom, left, right = center_crop_box(h, w, height, width)
    arr = np.ascontiguousarray(arr[top:bottom, left:right])
    return np.asarray(Image.fromarray(arr).resize((width, height), Image.BILINEAR))


class NovaPipeline:
    """Text-to-video / image-to-video / text-to-image with a NOVA checkpoint."""

    def __init__(self, transformer, scheduler, vae: Optional[NovaVAE] = None, text_encoder: Optional[TextEncoder] = None):
        self.transformer, self.scheduler, self.vae, self.text_encoder = transformer, scheduler, vae, text_encoder
        self.accel = Accel()  # speed-ups that keep the latents; Accel.plain() is the reference path

    @property
    def config(self):
        return self.transformer.config

    @property
    def device(self):
        return self.transformer.device

    @property
    def dtype(self):
        return self.transformer.dtype

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str,
        torch_dtype: torch.dtype = torch.float32,
        device=None,
        text_encoder_dtype: Optional[torch.dtype] = None,
        vae_dtype: Optional[torch.dtype] = None,
        load_text_encoder: bool = True,
        load_vae: bool = True,
        cache_dir: Optional[str] = None,
        local_files_only: bool = False,
    ) -> "NovaPipeline":
        folder = resolve_checkpoint(path_or_repo_id, cache_dir=cache_dir, local_files_only=local_files_only)
        index = read_model_index(folder)
        if index and index.get("_class_name") not in (None, "NOVAPipeline"):
            raise CheckpointError(
                f"{os.path.join(folder, 'model_index.json')}: _class_name = {index.get('_class_name')!r}; "
                "this is not a NOVA checkpoint (expected 'NOVAPipeline')."
            )
        device = torch.device(device) if device is not None else default_device()
        sub = lambda name: os.path.join(folder, name)  # noqa: E731
        transformer = load_transformer(sub("transformer"), device, torch_dtype)
        scheduler = load_scheduler(sub("scheduler"))
        vae = load_vae_folder(sub("vae"), device, vae_dtype or torch_dtype) if load_vae else None
        text = None
        if load_text_encoder:
            text = TextEncoder.from_folders(sub("text_encoder"), sub("tokenizer"), device, text_encoder_dtype or torch_dtype)
        return cls(transformer, scheduler, vae, text)

    # -- stages ------------------------------------------------------------------------------
    def encode_prompt(self, prompts: Union[str, Sequence[str]]) -> PromptEmbeds:
        if self.text_encoder is None:
            raise InputError("this pipeline was loaded without a text encoder; pass prompt_embeds instead of prompt.")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise InputError("prompt is empty; pass a string or a non-empty list of strings.")
        return self.text_encoder.encode(prompts, self.config.text_token_len)

    def encode_image(self, image, generator=None) -> torch.Tensor:
        """uint8 HxWx3 image -> scaled latent [1, C, h, w] (a posterior sample, as official)."""
        if self.vae is None:
            raise InputError("image-to-video needs the VAE; load the pipeline with load_vae=True.")
        h, w = self.config.image_size
        arr = fit_image(image, h, w)
        x = torch.from_numpy(np.array(arr, copy=True)).float().sub(127.5).div(127.5).permute(2, 0, 1).unsqueeze(0)
        return self.vae.encode(x, generator=generator)

    def save(self, latents: torch.Tensor, path: str, fps: float = 12.0, blend=None) -> str:
        """Decode latents [1, C, T, h, w] tile by tile straight into a video/image file, so a long
        video never holds all its frames or activations at once. ``blend``: a
        :class:`nova.masks.FeatherBlend` applied to the decoded frames (masked generation)."""
        from .media import VideoWriter

        if self.vae is None:
            raise InputError("saving frames needs the VAE; load the pipeline with load_vae=True.")
        with VideoWriter(path, fps) as writer:
            start = 0
            for chunk in self.vae.decode_chunks(latents[:1]):
                if blend is not None:
                    chunk, start = blend(chunk, start), start + chunk.shape[2]
                writer.write(pixels_to_uint8(chunk)[0])
        return path

    def segment(self, prompt: str, frames: int, settings: SamplerSettings, negative_prompt: str = "",
                motion_flow: float = 5.0, fps: float = 12.0):
        """A :class:`nova.video.Segment` for :func:`nova.video.generate_video`."""
        from .video import Segment

        guidance = Guidance(settings)
        negative = self.encode_prompt([negative_prompt]) if negative_prompt and guidance.passes > 1 else None
        ctx = build_context(self.transformer, guidance, self.encode_prompt([prompt]), negative, [motion_flow], [fps])
        return Segment(ctx, int(frames))

    def encode_video(self, frames, max_frames: Optional[int] = None) -> torch.Tensor:
        """uint8 frames [T, H, W, 3] (T = 1 + 4k) -> scaled latents [1, C, t, h, w] (posterior mean),
        each frame center-cropped and resized to the checkpoint's size."""
        if self.vae is None:
            raise InputError("encoding a clip needs the VAE; load the pipeline with load_vae=True.")
        h, w = self.config.image_size
        frames = [fit_image(f, h, w) for f in list(frames)[:max_frames]]
        ratio = self.vae.temporal_ratio
        keep = 1 + ratio * ((len(frames) - 1) // ratio)
        x = torch.from_numpy(np.stack(frames[:keep])).float().sub(127.5).div(127.5).permute(3, 0, 1, 2).unsqueeze(0)
        if not self.vae.temporal:
            return self.vae.encode(x.squeeze(2).transpose(0, 1), sample=False).unsqueeze(2).transpose(0, 2)[:, :, :1]
        return self.vae.encode(x, sample=False)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        if self.vae is None:
            raise InputError("decoding needs the VAE; load the pipeline with load_vae=True or use output_type='latent'.")
        return self.vae.decode(latents)

    # -- the official entry point ------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt=None,
        num_inference_steps: int = 64,
        num_diffusion_steps: int = 25,
        max_latent_length: int = 1,
        guidance_scale: float = 5,
        guidance_trunc: float = 0,
        guidance_renorm: float = 1,
        image_guidance_scale: float = 0,
        spatiotemporal_guidance_scale: float = 0,
        flow_shift: Optional[float] = None,
        motion_flow: Union[float, Sequence[float]] = 5,
        negative_prompt=None,
        image=None,
        num_images_per_prompt: int = 1,
        generator: Optional[torch.Generator] = None,
        latents=None,
        prompt_embeds=None,
        negative_prompt_embeds=None,
        disable_progress_bar: bool = False,
        output_type: str = "pil",
        fps: float = 12,
        callback=None,
        mask=None,
        mask_threshold: float = 0.5,
        mask_grow: int = 0,
        mask_feather: int = 0,
        **kwargs,
    ) -> NovaPipelineOutput:
        if output_type not in ("pil", "np", "latent", "pt"):
            raise InputError(f"output_type = {output_type!r}; expected 'pil', 'np', 'pt' or 'latent'.")
        if not isinstance(max_latent_length, int) or max_latent_length < 1:
            raise InputError(f"max_latent_length = {max_latent_length!r}; expected an integer >= 1.")
        if not self.config.is_video_model and max_latent_length != 1:
            raise InputError(
                f"max_latent_length = {max_latent_length}, but this is an image checkpoint (video_base_size[0] = "
                f"{self.config.video_base_size[0]}); it generates one frame. Use max_latent_length=1."
            )
        if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
            raise InputError(f"num_images_per_prompt = {num_images_per_prompt!r}; expected an integer >= 1.")
        settings = SamplerSettings(
            int(num_inference_steps), int(num_diffusion_steps), float(guidance_scale), float(guidance_trunc),
            float(guidance_renorm), float(image_guidance_scale), flow_shift,
        )
        generator = generator if generator is not None else new_generator()
        # Image-to-video samples the VAE posterior before anything else draws from the generator.
        prefix = prefix_mask = blend = None
        if mask is not None:  # inpainting / outpainting of `image` or `latents` (nova/masks.py)
            from .masks import masked_prefix

            prefix, prefix_mask, blend = masked_prefix(self, mask, image=image, latents=latents, threshold=mask_threshold,
                                                       grow=mask_grow, feather=mask_feather)
        elif latents is not None:
            prefix = _as_prefix(latents)
        elif image is not None:
            prefix = self.encode_image(image, generator).unsqueeze(2)

        n = num_images_per_prompt
        cond = self._embeds(prompt, prompt_embeds, "prompt")
        guidance = Guidance(settings)
        negative = None
        if guidance.passes > 1:
            negative = self._negative(negative_prompt, negative_prompt_embeds, len(cond))
        batch = len(cond) * n
        flows = _per_sample(motion_flow, len(cond), "motion_flow", n)
        fpss = _per_sample(fps, len(cond), "fps", n)
        context = build_context(
            self.transformer, guidance, cond.repeat(n), None if negative is None else negative.repeat(n), flows, fpss
        )
        if prefix is not None:
            prefix = _match_batch(prefix, batch, self.config)
        out = generate_latents(
            self.transformer, self.scheduler, context, batch, max_latent_length, settings, generator,
            prefix=prefix, callback=callback, accel=self.accel, prefix_mask=prefix_mask,
        )
        return self._output(out, output_type, blend)

    def _embeds(self, prompt, embeds, name) -> PromptEmbeds:
        if embeds is not None:
            return _embeds_from_tensors(embeds)
        if prompt is None:
            raise InputError(f"pass either {name} or {name}_embeds.")
        return self.encode_prompt(prompt)

    def _negative(self, negative_prompt, negative_embeds, batch: int) -> Optional[PromptEmbeds]:
        """None means the learned null embedding (what the empty prompt encodes to)."""
        if negative_embeds is not None:
            return _embeds_from_tensors(negative_embeds)
        negative = negative_prompt or ""
        negative = [negative] * batch if isinstance(negative, str) else list(negative)
        if len(negative) != batch:
            raise InputError(f"negative_prompt has {len(negative)} entries for {batch} prompts; pass one or {batch}.")
        if all(p == "" for p in negative):
            return None
        return self.encode_prompt(negative)

    def _output(self, latents: torch.Tensor, output_type: str, blend=None) -> NovaPipelineOutput:
        video = self.config.is_video_model
        if output_type == "latent":
            return NovaPipelineOutput(frames=latents) if video else NovaPipelineOutput(images=latents)
        pixels = self.decode_latents(latents)
        if blend is not None:
            pixels = blend(pixels)
        if output_type == "pt":
            return NovaPipelineOutput(frames=pixels) if video else NovaPipelineOutput(images=pixels[:, :, 0])
        arr = pixels_to_uint8(pixels)
        if video:
            return NovaPipelineOutput(frames=arr)
        images = arr[:, 0]
        if output_type == "pil":
            from PIL import Image

            return NovaPipelineOutput(images=[Image.fromarray(a) for a in images])
        return NovaPipelineOutput(images=images)


def _embeds_from_tensors(embeds) -> PromptEmbeds:
    """Official ``prompt_embeds``: a list of [L_i, D] tensors, or a [B, L, D] tensor."""
    if isinstance(embeds, PromptEmbeds):
        return embeds
    items = list(embeds) if isinstance(embeds, (list, tuple)) else list(torch.as_tensor(embeds))
    if not items or any(t.dim() != 2 for t in map(torch.as_tensor, items)):
        raise InputError("prompt_embeds must be a list of [tokens, dim] tensors or a [batch, tokens, dim] tensor.")
    items = [torch.as_tensor(t) for t in items]
    width = max(t.shape[0] for t in items)
    feats = torch.stack([torch.nn.functional.pad(t, (0, 0, 0, width - t.shape[0])) for t in items])
    return PromptEmbeds(feats, [t.shape[0] for t in items], [False] * len(items))


def _per_sample(value, batch: int, name: str, repeat: int) -> List[float]:
    values = [value] * batch if isinstance(value, (int, float)) else list(value)
    if len(values) != batch:
        raise InputError(f"{name} has {len(values)} values for {batch} prompts; pass one or {batch}.")
    return [float(v) for v in values for _ in range(repeat)]


def _as_prefix(latents) -> torch.Tensor:
    """Prefilled latents: [B, C, N, h, w], [B, C, h, w] (one frame) or a list of [B, C, h, w]."""
    if isinstance(latents, (list, tuple)):
        return torch.stack([torch.as_tensor(l) for l in latents], dim=2)
    latents = torch.as_tensor(latents)
    return latents.unsqueeze(2) if latents.dim() == 4 else latents


def _match_batch(prefix: torch.Tensor, batch: int, config) -> torch.Tensor:
    expected = (config.image_dim,) + tuple(config.latent_size)
    if prefix.dim() != 5 or tuple(prefix.shape[1:2]) + tuple(prefix.shape[3:]) != expected:
        raise InputError(
            f"prefilled latents have shape {list(prefix.shape)}; this checkpoint needs [B, {expected[0]}, N, "
            f"{expected[1]}, {expected[2]}] (latents of a {config.image_size[1]}x{config.image_size[0]} video)."
        )
    if prefix.shape[0] == batch:
        return prefix
    if prefix.shape[0] == 1:
        return prefix.expand(batch, -1, -1, -1, -1)
    raise InputError(f"prefilled latents have batch {prefix.shape[0]}; expected 1 or {batch}.")

"""``NovaPipeline``: the official ``NOVAPipeline`` call signature and outputs on our engine.

A script written for the official pipeline ports by changing one import::

    from nova import NovaPipeline
    pipe = NovaPipeline.from_pretrained("BAAI/nova-d48w1024-osp480", torch_dtype=torch.bfloat16)
    frames = pipe("a fox in the snow", max_latent_length=9, output_type="np").frames
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from .checks import check_fits
from .components.loaders import load_scheduler, load_transformer
from .components.loading import CheckpointPipeline, read_model_index
from .components.text_encoder import PromptEmbeds, TextEncoder, as_prompt_list
from .components.vae import NovaVAE
from .components.vae import load_vae as load_vae_folder  # (from_pretrained has a load_vae flag)
from .errors import InputError, WrongFamilyError
from .io.frames import frames_kept
from .io.images import fit_image
from .io.latents import as_prefix
from .io.pixels import pixels_to_uint8
from .request import GivenFrames, build_plan, encode_given
from .sampling.fast import Accel
from .sampling.keyframes import DEFAULT_APPROACH, DEFAULT_STRENGTH, Keyframe, latent_index
from .sampling.plan import Segment, per_sample
from .sampling.rng import new_generator
from .sampling.sampler import SamplerSettings, check_denoise

log = logging.getLogger("nova")


@dataclasses.dataclass
class NovaPipelineOutput:
    images: Optional[Union[List, np.ndarray, torch.Tensor]] = None
    frames: Optional[Union[np.ndarray, torch.Tensor]] = None


class NovaPipeline(CheckpointPipeline):
    """Text-to-video / image-to-video / text-to-image with a NOVA checkpoint."""

    def __init__(
        self, transformer, scheduler, vae: Optional[NovaVAE] = None, text_encoder: Optional[TextEncoder] = None
    ):
        self.transformer, self.scheduler, self.vae, self.text_encoder = transformer, scheduler, vae, text_encoder
        self.accel = Accel()  # speed-ups that keep the latents; Accel.plain() is the reference path

    @property
    def config(self):
        return self.transformer.config

    @classmethod
    def from_folder(
        cls,
        folder: str,
        torch_dtype: torch.dtype,
        device: torch.device,
        text_encoder_dtype: Optional[torch.dtype] = None,
        vae_dtype: Optional[torch.dtype] = None,
        load_text_encoder: bool = True,
        load_vae: bool = True,
    ) -> "NovaPipeline":
        """The pipeline of a NOVA checkpoint folder (``from_pretrained`` finds or downloads it).
        ``text_encoder_dtype`` and ``vae_dtype`` default to ``torch_dtype``; without the text
        encoder, pass ``prompt_embeds``; without the VAE, output ``"latent"``."""
        index = read_model_index(folder)
        if index and index.get("_class_name") not in (None, "NOVAPipeline"):
            hint = (
                " It is an URSA checkpoint: load it with nova.UrsaPipeline."
                if index.get("_class_name") == "URSAPipeline"
                else ""
            )
            raise WrongFamilyError(
                f"{os.path.join(folder, 'model_index.json')}: _class_name = {index.get('_class_name')!r}; "
                f"this is not a NOVA checkpoint (expected 'NOVAPipeline').{hint}"
            )
        sub = lambda name: os.path.join(folder, name)  # noqa: E731
        transformer = load_transformer(sub("transformer"), device, torch_dtype)
        scheduler = load_scheduler(sub("scheduler"))
        vae = load_vae_folder(sub("vae"), device, vae_dtype or torch_dtype) if load_vae else None
        text = None
        if load_text_encoder:
            text = TextEncoder.from_folders(
                sub("text_encoder"), sub("tokenizer"), device, text_encoder_dtype or torch_dtype
            )
        return cls(transformer, scheduler, vae, text)

    # -- stages ------------------------------------------------------------------------------
    def encode_prompt(self, prompts: Union[str, Sequence[str]]) -> PromptEmbeds:
        if self.text_encoder is None:
            raise InputError("this pipeline was loaded without a text encoder; pass prompt_embeds instead of prompt.")
        return self.text_encoder.encode(as_prompt_list(prompts), self.config.text_token_len)

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
        :class:`nova.sampling.masks.FeatherBlend` applied to the decoded frames (masked generation)."""
        from .io.media import VideoWriter

        if self.vae is None:
            raise InputError("saving frames needs the VAE; load the pipeline with load_vae=True.")
        with VideoWriter(path, fps) as writer:
            start = 0
            for chunk in self.vae.decode_chunks(latents[:1]):
                if blend is not None:
                    chunk, start = blend(chunk, start), start + chunk.shape[2]
                writer.write(pixels_to_uint8(chunk)[0])
        return path

    def segment(
        self,
        prompt: str,
        frames: int,
        negative_prompt: str = "",
        motion_flow: float = 5.0,
        fps: float = 12.0,
        guided: bool = True,
    ) -> Segment:
        """A :class:`nova.sampling.plan.Segment` from prompt strings (``guided=False`` skips the negative)."""
        negative = self.encode_prompt([negative_prompt]) if negative_prompt and guided else None
        return Segment(self.encode_prompt([prompt]), frames, negative, motion_flow, fps)

    def encode_video(self, frames, max_frames: Optional[int] = None) -> torch.Tensor:
        """uint8 frames [T, H, W, 3] (T = 1 + 4k) -> scaled latents [1, C, t, h, w] (posterior mean),
        each frame center-cropped and resized to the checkpoint's size."""
        if self.vae is None:
            raise InputError("encoding a clip needs the VAE; load the pipeline with load_vae=True.")
        frames = list(frames)[:max_frames]
        if not self.vae.temporal and len(frames) > 1:
            raise InputError(
                f"a clip of {len(frames)} frames was given to an image checkpoint, which encodes one "
                "frame; pass one image (or a 1-frame clip), or use a video checkpoint."
            )
        h, w = self.config.image_size
        keep = frames_kept(len(frames), self.vae.temporal_ratio)
        frames = [fit_image(f, h, w) for f in frames[:keep]]
        x = torch.from_numpy(np.stack(frames)).float().sub(127.5).div(127.5).permute(3, 0, 1, 2).unsqueeze(0)
        return self.vae.encode(x, sample=False)  # an image VAE encodes [1, 3, 1, H, W] frame by frame

    def encode_keyframe(self, image, index: int) -> torch.Tensor:
        """A keyframe's latent [1, C, h, w] for latent frame ``index``: the picture (cropped and
        resized to the checkpoint's size) held still over the frames of that latent, encoded
        (posterior mean): alone for latent 0, as a 5-frame still clip's second latent after it."""
        clip = self.encode_video([image] * (1 if index == 0 else 1 + self.vae.temporal_ratio))
        return clip[:, :, -1]

    def keyframes(
        self, pairs, num_latents: int, approach: int = DEFAULT_APPROACH, strength: float = DEFAULT_STRENGTH
    ) -> List[Keyframe]:
        """(picture, video frame) pairs -> :class:`nova.sampling.keyframes.Keyframe` for a video of
        ``num_latents`` latent frames (which frames are exact: nova/sampling/keyframes.py)."""
        if not self.config.is_video_model:
            raise InputError(
                "keyframes pin pictures at times of a video; this is an image checkpoint (one frame). "
                "Use a video checkpoint, or image with strength for an image."
            )
        if self.vae is None:
            raise InputError("keyframes need the VAE to encode their pictures; load the pipeline with load_vae=True.")
        try:
            pairs = [(image, frame) for image, frame in pairs]
        except (TypeError, ValueError) as exc:
            raise InputError("keyframes: expected a list of (image, video frame index) pairs.") from exc
        indices = [latent_index(frame, num_latents) for _, frame in pairs]  # every index checked before encoding
        fitted = [fit_image(image, *self.config.image_size) for image, _ in pairs]
        return [Keyframe(i, self.encode_keyframe(image, i), approach, strength) for image, i in zip(fitted, indices)]

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        if self.vae is None:
            raise InputError(
                "decoding needs the VAE; load the pipeline with load_vae=True or use output_type='latent'."
            )
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
        strength: Optional[float] = None,
        keyframes=None,
        keyframe_approach: int = DEFAULT_APPROACH,
        keyframe_strength: float = DEFAULT_STRENGTH,
    ) -> NovaPipelineOutput:
        """Generate images or a video: the official ``NOVAPipeline.__call__`` arguments and defaults
        (a misspelled keyword raises TypeError), plus masks, denoise strength and keyframes.

        Stages: :meth:`check_inputs` (everything knowable before any work), :meth:`encode_prompts`,
        :meth:`prepare_latents` (given frames, masks, keyframes), the plan's run, the output.

        Args:
            prompt: a string or a list of strings (one sample each); or pass ``prompt_embeds``.
            num_inference_steps: set-by-set (autoregressive) steps per frame; official default 64.
            num_diffusion_steps: steps of the per-token diffusion head at each set step (25).
            max_latent_length: latent frames to make: 1 for an image; a video of T latents has
                1 + 4 (T - 1) frames (9 -> 33). Given frames (``image``, ``latents``) count in it.
            guidance_scale: classifier-free guidance (1 or less: none).
            guidance_trunc: guidance applies at diffusion timesteps from this one up (0: always).
            guidance_renorm: in (0, 1]; below 1 the guided prediction is renormalised toward the
                conditional one's norm (1: off).
            image_guidance_scale: an extra pass against the video context (video checkpoints).
            spatiotemporal_guidance_scale: accepted for the official signature; it has no effect on
                NOVA checkpoints (the official third pass equals the conditional one; a warning says so).
            flow_shift: the flow-matching scheduler's shift (flow checkpoints only; None: the
                checkpoint's).
            motion_flow: the motion conditioning of video checkpoints, one value or one per prompt.
            negative_prompt: a string or one per prompt; None or "" is the learned null embedding.
            image: a first frame (image-to-video), or what ``mask`` repaints / ``strength``
                re-samples: an HxWx3 array (uint8, 16-bit or float), a PIL image; center-cropped and
                resized to the checkpoint's size as the official demo does.
            num_images_per_prompt: samples per prompt.
            generator: a ``torch.Generator`` (the official pipeline's CPU generator reproduces its
                seeds); None draws a random seed.
            latents: given latent frames [B, C, T, h, w] (raw VAE space) to continue, repaint or
                re-sample; not with ``image``.
            prompt_embeds / negative_prompt_embeds: Phi-2 features, a list of [tokens, dim] tensors or
                a [batch, tokens, dim] tensor, instead of the prompts.
            disable_progress_bar: no progress bar on stderr.
            output_type: "pil" (images), "np" (uint8 arrays), "pt" (float tensors in [0, 1]) or
                "latent" (the latents, transformer scale).
            fps: the frame-rate conditioning of video checkpoints, one value or one per prompt.
            callback: called with a :class:`nova.sampling.sampler.Progress` after every set step.
            mask: white where ``image`` / ``latents`` are repainted (nova/sampling/masks.py); a token is repainted
                if any of its pixels is above ``mask_threshold``; ``mask_grow`` widens the region by
                tokens, ``mask_feather`` blends the decoded result into the source over that many pixels.
            strength: in [0, 1] (image-to-image, video-to-video; not in the official pipeline):
                ``image`` or ``latents`` are re-sampled instead of continued, each token's diffusion
                starting from the given token noised to this level (only under ``mask`` with one);
                0 returns them, 1 ignores them; None keeps them and continues (or repaints).
            keyframes: (picture, video frame) pairs pinned in the video (frame 0 or a multiple of 4,
                -1 = the last frame); the ``keyframe_approach`` latent frames before each approach it
                with up to ``keyframe_strength`` of their tokens fixed to it (nova/sampling/keyframes.py).

        Returns:
            NovaPipelineOutput: ``frames`` for a video checkpoint ([B, T, H, W, 3] for "np"),
            ``images`` for an image checkpoint.
        """
        settings = SamplerSettings(
            _whole(num_inference_steps, "num_inference_steps"),
            _whole(num_diffusion_steps, "num_diffusion_steps"),
            guidance_scale,
            guidance_trunc,
            guidance_renorm,
            image_guidance_scale,
            flow_shift,
        )
        image, prefix = self.check_inputs(
            prompt=prompt,
            prompt_embeds=prompt_embeds,
            image=image,
            latents=latents,
            generator=generator,
            output_type=output_type,
            max_latent_length=max_latent_length,
            num_images_per_prompt=num_images_per_prompt,
            spatiotemporal_guidance_scale=spatiotemporal_guidance_scale,
            strength=strength,
        )
        segment = self.encode_prompts(
            prompt,
            prompt_embeds,
            negative_prompt,
            negative_prompt_embeds,
            settings,
            num_images_per_prompt,
            motion_flow,
            fps,
        )
        generator = generator if generator is not None else new_generator()
        given = self.prepare_latents(
            image=image,
            prefix=prefix,
            max_latent_length=max_latent_length,
            generator=generator,
            mask=mask,
            mask_threshold=mask_threshold,
            mask_grow=mask_grow,
            mask_feather=mask_feather,
            keyframes=keyframes,
            keyframe_approach=keyframe_approach,
            keyframe_strength=keyframe_strength,
        )
        segment = dataclasses.replace(segment, frames=max_latent_length - given.frames)
        plan = build_plan(self, settings, [segment], given, denoise=strength)
        with progress_bar(plan.ticks, disable=disable_progress_bar) as bar:

            def on_progress(p):
                bar(p)
                if callback is not None:
                    callback(p)

            out = plan.run(generator, on_progress)
        return self._output(out, output_type, given.blend)

    def check_inputs(
        self,
        prompt,
        prompt_embeds,
        image,
        latents,
        generator,
        output_type,
        max_latent_length,
        num_images_per_prompt,
        spatiotemporal_guidance_scale,
        strength,
    ):
        """Every check that needs no model run, before any work. Returns the image fitted to the
        checkpoint's size (or None) and the given latents as a prefix [B, C, T, h, w] (or None)."""
        if output_type not in ("pil", "np", "latent", "pt"):
            raise InputError(f"output_type = {output_type!r}; expected 'pil', 'np', 'pt' or 'latent'.")
        if isinstance(max_latent_length, bool) or not isinstance(max_latent_length, int) or max_latent_length < 1:
            raise InputError(f"max_latent_length = {max_latent_length!r}; expected an integer >= 1.")
        if not self.config.is_video_model and max_latent_length != 1:
            raise InputError(
                f"max_latent_length = {max_latent_length}, but this is an image checkpoint (video_base_size[0] = "
                f"{self.config.video_base_size[0]}); it generates one frame. Use max_latent_length=1."
            )
        n = num_images_per_prompt
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"num_images_per_prompt = {n!r}; expected an integer >= 1.")
        if not isinstance(spatiotemporal_guidance_scale, (int, float)) or spatiotemporal_guidance_scale < 0:
            raise InputError(
                f"spatiotemporal_guidance_scale = {spatiotemporal_guidance_scale!r}; expected a number >= 0."
            )
        if spatiotemporal_guidance_scale > 0:
            log.warning(
                "NOVA: spatiotemporal_guidance_scale = %s has no effect on NOVA checkpoints (the official code's "
                "third pass equals the conditional one); ignored.",
                spatiotemporal_guidance_scale,
            )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InputError(f"generator is a {type(generator).__name__}; expected a torch.Generator (or None).")
        if latents is not None and image is not None:
            raise InputError("pass either image or latents, not both.")
        if strength is not None:
            check_denoise(strength, "strength")
            if image is None and latents is None:
                raise InputError(
                    f"strength = {strength} re-samples given frames: pass image or latents (or drop strength)."
                )
        if prompt_embeds is None and prompt is None:
            raise InputError("pass either prompt or prompt_embeds.")
        prefix = as_prefix(latents) if latents is not None else None
        if image is not None:  # fitted now (a bad image fails before any work); encoded later
            if self.vae is None:
                raise InputError("image-to-video needs the VAE; load the pipeline with load_vae=True.")
            h, w = self.config.image_size
            image = fit_image(image, h, w)
        given = 1 if image is not None else (0 if prefix is None else prefix.shape[2])
        check_fits(
            max_latent_length,
            given,
            "max_latent_length",
            "the given image" if image is not None else "the given latents",
        )
        return image, prefix

    def encode_prompts(
        self,
        prompt,
        prompt_embeds,
        negative_prompt,
        negative_prompt_embeds,
        settings: SamplerSettings,
        num_images_per_prompt: int,
        motion_flow,
        fps,
    ) -> Segment:
        """The prompts (or their embeddings), the negative ones when guidance needs them, and each
        sample's motion and fps, as the run's one segment (its frame count set later)."""
        n = num_images_per_prompt
        if prompt_embeds is not None:
            cond = _embeds_from_tensors(prompt_embeds, "prompt_embeds")
            batch = len(cond)
        else:
            prompt = as_prompt_list(prompt)
            batch = len(prompt)
        flows = _repeat(per_sample(per_prompt(motion_flow, batch, "motion_flow"), batch, "motion_flow", 0.0, True), n)
        fpss = _repeat(per_sample(per_prompt(fps, batch, "fps"), batch, "fps", 0.0, False), n)
        if prompt_embeds is None:
            cond = self.encode_prompt(prompt)
        negative = None
        if settings.guidance_scale > 1:
            negative = self._negative(negative_prompt, negative_prompt_embeds, batch)
        return Segment(cond.repeat(n), 0, None if negative is None else negative.repeat(n), flows, fpss)

    def prepare_latents(
        self,
        image,
        prefix,
        max_latent_length: int,
        generator,
        mask,
        mask_threshold,
        mask_grow,
        mask_feather,
        keyframes,
        keyframe_approach,
        keyframe_strength,
    ) -> "GivenFrames":
        """The given frames as latents (:func:`nova.request.encode_given`): the masked source with its
        token mask, or the image's posterior sample (drawn first from ``generator``, as the official
        code does), or the given latents (``prefix``); and the pinned keyframes (no draw)."""
        return encode_given(
            self,
            generator,
            image=image,
            prefix=prefix,
            mask=mask,
            threshold=mask_threshold,
            grow=mask_grow,
            feather=mask_feather,
            keyframes=keyframes or (),
            total=max_latent_length,
            approach=keyframe_approach,
            strength=keyframe_strength,
        )

    def _negative(self, negative_prompt, negative_embeds, batch: int) -> Optional[PromptEmbeds]:
        """None means the learned null embedding (what the empty prompt encodes to)."""
        if negative_embeds is not None:
            return _embeds_from_tensors(negative_embeds, "negative_prompt_embeds")
        negative = negative_prompt or ""
        if not isinstance(negative, (str, list, tuple)):
            raise InputError(f"negative_prompt is a {type(negative).__name__}; expected a string or a list of strings.")
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


def _embeds_from_tensors(embeds, name: str = "prompt_embeds") -> PromptEmbeds:
    """Official ``prompt_embeds``: a list of [L_i, D] tensors, or a [B, L, D] tensor."""
    if isinstance(embeds, PromptEmbeds):
        return embeds
    try:
        items = [torch.as_tensor(t) for t in (embeds if isinstance(embeds, (list, tuple)) else torch.as_tensor(embeds))]
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(
            f"{name} is a {type(embeds).__name__}; expected a list of [tokens, dim] tensors or a [batch, tokens, dim] "
            "tensor."
        ) from exc
    if not items or any(t.dim() != 2 or not t.is_floating_point() for t in items):
        raise InputError(
            f"{name} must be a list of [tokens, dim] float tensors or a [batch, tokens, dim] float tensor."
        )
    width = max(t.shape[0] for t in items)
    feats = torch.stack([torch.nn.functional.pad(t, (0, 0, 0, width - t.shape[0])) for t in items])
    return PromptEmbeds(feats, [t.shape[0] for t in items], [False] * len(items))


def per_prompt(value, batch: int, name: str) -> list:
    """One number or a sequence of one per prompt (the values are checked by the plan)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) not in (1, batch):
        raise InputError(f"{name} has {len(values)} values for {batch} prompts; pass one or {batch}.")
    return values


def _repeat(values: list, n: int) -> list:
    return [v for v in values for _ in range(n)]


def _whole(value, name: str) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # SamplerSettings names anything else


def progress_bar(total: int, disable: bool = False, desc: str = "NOVA"):
    """A tqdm bar on stderr that a :class:`nova.sampling.sampler.Progress` callback advances (frames and
    set steps, with ETA); ``disable`` gives a no-op."""
    from .sampling.progress import StepProgressBar

    return StepProgressBar(total, disable=disable, desc=desc)

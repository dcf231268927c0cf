"""``UrsaPipeline``: the official ``URSAPipeline.__call__`` (signature and defaults) on our engine.

A script written for the official pipeline ports by changing the import::

    from nova import UrsaPipeline
    pipe = UrsaPipeline.from_pretrained("BAAI/URSA-1.7B-FSQ320", torch_dtype=torch.bfloat16, device="cuda")
    frames = pipe("motion=9.0, a bear in the forest", num_frames=49, output_type="np").frames

How a call computes (see ``tests/golden_ursa/README.md`` for the full account): the prompt is
tokenized to ``max_prompt_length`` ids (left padding, no attention mask), every visual token of the
clip starts as a random code, and for each of ``num_inference_steps`` steps the transformer predicts
all codes at once from ``[prompt | bov | codes]`` (with classifier-free guidance against the negative
prompt while t < ``guidance_trunc``), after which the sampler moves some tokens. The final ids are
decoded by the VQ tokenizer.

Where the official code has a bug, this pipeline does what the argument evidently means:
``flow_shift=`` overrides the scheduler's shift for the call (officially it crashes); ``image=`` works
on the image (IBQ) model (officially a shape error); ``cond_noise_scale > 0`` works on a mixture-path
checkpoint (officially a type error). ``generator=None`` draws from torch's default generator
(officially it silently reuses the previous call's generator).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch

from ..components.loading import CheckpointPipeline
from ..components.text_encoder import as_prompt_list
from ..errors import InputError
from ..io.pixels import pixels_to_uint8
from .config import check_ursa_folder
from .loading import check_components, load_scheduler, load_text_tokenizer, load_transformer, load_vq_tokenizer
from .scheduler import KineticOptimalScheduler, as_generator_device
from .transformer import UrsaTransformer, rope_positions

log = logging.getLogger("nova")

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclasses.dataclass
class UrsaPipelineOutput:
    """``frames``: uint8 [B, F, H, W, 3] (video tokenizer) or [B, H, W, 3] (image tokenizer) for
    ``"np"``, a list of PIL images for ``"pil"`` (single frames), pixels in [-1, 1] for ``"pt"``, the
    final token ids [B, T, h, w] for ``"latent"``."""

    frames: Union[np.ndarray, torch.Tensor, List]


def _int_arg(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} = {value!r}; expected an integer >= {minimum}.")
    return int(value)


def _number_arg(name: str, value, low: Optional[float] = None, high: Optional[float] = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InputError(f"{name} = {value!r}; expected a number.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InputError(f"{name} = {value!r}; expected a number in [{low}, {high}].")
    return float(value)


def _uint8_array(value, name: str, dims: Sequence[int]) -> np.ndarray:
    """A uint8 array (or PIL image / list of them) with one of ``dims`` dimensions, channels last."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if array.dtype != np.uint8:
        raise InputError(f"{name} has dtype {array.dtype}; expected uint8 pixels (0..255), channels last.")
    if array.ndim not in dims or array.shape[-1] != 3:
        wanted = " or ".join(f"{d}-D" for d in dims)
        raise InputError(f"{name} has shape {list(array.shape)}; expected {wanted} uint8 with 3 channels last.")
    return array


class UrsaPipeline(CheckpointPipeline):
    """Text/image/video-to-video and text-to-image with an URSA checkpoint (components passed in)."""

    def __init__(self, transformer: UrsaTransformer, scheduler: KineticOptimalScheduler, vae, tokenizer):
        self.transformer, self.scheduler, self.vae, self.tokenizer = transformer, scheduler, vae, tokenizer
        self.temporal_stride = vae.config.temporal_stride
        self.spatial_stride = vae.config.spatial_stride

    @classmethod
    def from_folder(cls, folder: str, torch_dtype: torch.dtype, device: torch.device) -> "UrsaPipeline":
        """The pipeline of an URSA checkpoint folder (``from_pretrained`` finds or downloads it:
        ``BAAI/URSA-1.7B-FSQ320``, ...). The sampler's codebook stays float16 whatever
        ``torch_dtype`` is (as official)."""
        check_ursa_folder(folder)
        sub = lambda name: os.path.join(folder, name)  # noqa: E731
        transformer = load_transformer(sub("transformer"), device, torch_dtype)
        scheduler = load_scheduler(sub("scheduler"), device)
        check_components(transformer, scheduler, folder)
        vae = load_vq_tokenizer(sub("vae"), device, torch_dtype)
        return cls(transformer, scheduler, vae, load_text_tokenizer(sub("tokenizer")))

    @property
    def vae_device(self) -> torch.device:
        """Where the tokenizer is (it may sit apart from the transformer, e.g. under ComfyUI's manager)."""
        return next(self.vae.parameters()).device

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, vae_batch_size: int = 1) -> torch.Tensor:
        """Final ids [B, T, h, w] -> pixels in [-1, 1], ``vae_batch_size`` clips at a time."""
        ids = ids.to(self.vae_device)
        return torch.cat([self.vae.decode(chunk) for chunk in ids.split(vae_batch_size)])

    @property
    def is_video_model(self) -> bool:
        return self.vae.config.video

    # -- inputs -------------------------------------------------------------------------------
    def encode_prompt(self, prompts: List[str], max_prompt_length: int) -> torch.Tensor:
        """[len(prompts), max_prompt_length] ids: left-padded with the pad token, truncated, no BOS/EOS."""
        ids = self.tokenizer(
            prompts, max_length=max_prompt_length, padding="max_length", truncation=True, return_tensors="pt"
        ).input_ids
        return ids.to(self.device)

    def prompt_ids(
        self,
        prompt,
        negative_prompt=None,
        num_images_per_prompt=1,
        max_prompt_length=320,
        prompt_ids=None,
        negative_prompt_ids=None,
    ):
        """(prompt ids, negative prompt ids), each [prompts x num_images_per_prompt, max_prompt_length],
        as the official ``encode_prompt`` makes them (given ids are used as they are)."""
        copies = num_images_per_prompt
        if prompt_ids is None:
            if prompt is None:
                raise InputError("pass prompt= (a string or a list of strings) or prompt_ids=.")
            prompt_ids = self.encode_prompt(as_prompt_list(prompt), max_prompt_length).repeat_interleave(copies, 0)
        num_prompts = prompt_ids.shape[0] // copies if prompt is None else len(as_prompt_list(prompt))
        if negative_prompt_ids is None:
            negatives = negative_prompt or ""
            negatives = [negatives] * num_prompts if isinstance(negatives, str) else negatives
            negatives = as_prompt_list(negatives, "negative_prompt")
            if len(negatives) != num_prompts:
                raise InputError(
                    f"{len(negatives)} negative prompts for {num_prompts} prompts; pass one or one per prompt."
                )
            negative_prompt_ids = self.encode_prompt(negatives, max_prompt_length).repeat_interleave(copies, 0)
        prompt_ids = torch.as_tensor(prompt_ids, device=self.device)
        negative_prompt_ids = torch.as_tensor(negative_prompt_ids, device=self.device)
        if prompt_ids.dim() != 2 or prompt_ids.shape != negative_prompt_ids.shape:
            raise InputError(
                f"prompt_ids {list(prompt_ids.shape)} and negative_prompt_ids {list(negative_prompt_ids.shape)}: "
                "expected two [batch, length] tensors of the same shape."
            )
        return prompt_ids, negative_prompt_ids

    def latent_grid(self, num_frames: int, height: int, width: int):
        """(T, h, w) for a clip, or an InputError naming the value the tokenizer cannot make."""
        stride = self.spatial_stride
        for name, value in (("height", height), ("width", width)):
            if value % stride:
                raise InputError(
                    f"{name} = {value}; the tokenizer works on multiples of {stride} pixels "
                    f"(try {max(stride, value // stride * stride)})."
                )
        if self.is_video_model and (num_frames - 1) % self.temporal_stride:
            lower = (num_frames - 1) // self.temporal_stride * self.temporal_stride + 1
            raise InputError(
                f"num_frames = {num_frames}; the video tokenizer makes 1 + {self.temporal_stride}k frames "
                f"(try {lower} or {lower + self.temporal_stride})."
            )
        return (num_frames - 1) // self.temporal_stride + 1, height // stride, width // stride

    def encode_image(self, image, height: int, width: int) -> torch.Tensor:
        """uint8 [H, W, 3] (or [1, H, W, 3]) -> ids [1, 1, h, w]."""
        array = _uint8_array(image, "image", (3, 4))
        array = array[0] if array.ndim == 4 and array.shape[0] == 1 else array
        if array.ndim == 4:
            raise InputError(
                f"image has shape {list(array.shape)}; pass one image [H, W, 3] (the same for every prompt)."
            )
        self._check_size(array.shape[:2], height, width, "image")
        pixels = torch.as_tensor(array, device=self.vae_device).to(self.vae.dtype).sub(127.5).div_(127.5)
        pixels = pixels.permute(2, 0, 1).unsqueeze(0)  # [1, 3, H, W]
        if self.is_video_model:
            return self.vae.encode(pixels.unsqueeze(2))
        return self.vae.encode(pixels).unsqueeze(1)

    def encode_video(
        self, video, height: int, width: int, num_frames: int, num_cond_frames: Optional[int]
    ) -> torch.Tensor:
        """uint8 [F, H, W, 3] -> ids [1, T', h, w]; ``num_cond_frames``: use only the last frames."""
        if not self.is_video_model:
            raise InputError("video= needs a video checkpoint (URSA-*-FSQ320); this one has the image tokenizer.")
        array = _uint8_array(video, "video", (4, 5))
        array = array[0] if array.ndim == 5 and array.shape[0] == 1 else array
        if array.ndim == 5:
            raise InputError(f"video has shape {list(array.shape)}; pass one clip [F, H, W, 3].")
        if num_cond_frames is not None:
            num_cond_frames = _int_arg("num_cond_frames", num_cond_frames, 1)
            if num_cond_frames > array.shape[0]:
                raise InputError(f"num_cond_frames = {num_cond_frames} but the video has only {array.shape[0]} frames.")
            array = array[-num_cond_frames:]
        frames = array.shape[0]
        if (frames - 1) % self.temporal_stride:
            raise InputError(
                f"the conditioning video has {frames} frames; the video tokenizer encodes 1 + {self.temporal_stride}k "
                "frames (set num_cond_frames to such a number)."
            )
        if frames > num_frames:
            raise InputError(
                f"the conditioning video has {frames} frames, beyond the clip of num_frames = {num_frames}; "
                f"use num_cond_frames <= {num_frames}."
            )
        self._check_size(array.shape[1:3], height, width, "video")
        pixels = torch.as_tensor(array, device=self.vae_device).to(self.vae.dtype).sub(127.5).div_(127.5)
        return self.vae.encode(pixels.permute(3, 0, 1, 2).unsqueeze(0))

    @staticmethod
    def _check_size(size, height: int, width: int, name: str) -> None:
        if tuple(size) != (height, width):
            raise InputError(
                f"{name} is {size[1]}x{size[0]} (WxH) but the clip is {width}x{height}; resize the {name} or set "
                "width/height to its size."
            )

    # -- the call -----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt=None,
        negative_prompt=None,
        height=320,
        width=512,
        num_frames=1,
        num_inference_steps=25,
        guidance_scale=7,
        guidance_trunc=0.9,
        flow_shift=None,
        image=None,
        video=None,
        num_images_per_prompt=1,
        generator: Optional[torch.Generator] = None,
        latents: Optional[torch.Tensor] = None,
        latents_shape: Optional[Sequence[int]] = None,
        cond_latents: Optional[torch.Tensor] = None,
        cond_indices: Optional[Sequence[int]] = None,
        cond_noise_scale=0,
        prompt_ids: Optional[torch.Tensor] = None,
        negative_prompt_ids: Optional[torch.Tensor] = None,
        output_type="pil",
        max_prompt_length=320,
        vae_batch_size=1,
        num_cond_frames: Optional[int] = None,
        callback_on_step_end: Optional[Callable[[int, int, torch.Tensor], None]] = None,
    ) -> UrsaPipelineOutput:
        """Generate: the official arguments, spelt and defaulted as the official signature (the
        official code's bugs fixed as the module says).

        Args:
            prompt, negative_prompt: the text (one or one per sample); an absent negative prompt is
                "" (all padding). ``prompt_ids`` / ``negative_prompt_ids`` [B, L] stand in for them.
            height, width, num_frames: the clip's size in pixels and frames (1 + 4k on a video
                checkpoint; 1 is an image); ``latents_shape`` ([T, h, w] or [h, w]) gives it in tokens instead.
            num_inference_steps: sampler steps; ``flow_shift`` overrides the scheduler's shift.
            guidance_scale: classifier-free guidance (<= 1: none), applied while t < ``guidance_trunc``.
            image: uint8 [H, W, 3] (or a PIL image): the first frame to continue (video checkpoint)
                or the image to vary (image checkpoint), at width x height.
            video: uint8 [F, H, W, 3]: a clip to extend; ``num_cond_frames`` (ours): condition on
                its last frames only.
            num_images_per_prompt: samples per prompt.
            generator: the random stream (None: torch's default generator).
            latents: starting ids [B, T, h, w] (default: uniform random codes).
            cond_latents: condition ids [N, T', h, w] written at the first latent frames, or at
                ``cond_indices``; ``cond_noise_scale`` in [0, 1] noises them.
            output_type: "pil", "np", "pt" (frames) or "latent" (the final ids).
            max_prompt_length: prompt tokens (left padded, as official).
            vae_batch_size: clips decoded at a time.
            callback_on_step_end: ``f(step, num_steps, ids)`` after every step; raise in it to cancel.
        """
        if output_type not in OUTPUT_TYPES:
            raise InputError(f"output_type = {output_type!r}; expected one of {list(OUTPUT_TYPES)}.")
        num_steps = _int_arg("num_inference_steps", num_inference_steps, 1)
        guidance_scale = _number_arg("guidance_scale", guidance_scale, 0.0)
        guidance_trunc = _number_arg("guidance_trunc", guidance_trunc)
        cond_noise_scale = _number_arg("cond_noise_scale", cond_noise_scale, 0.0, 1.0)
        copies = _int_arg("num_images_per_prompt", num_images_per_prompt, 1)
        max_prompt_length = _int_arg("max_prompt_length", max_prompt_length, 1)
        vae_batch_size = _int_arg("vae_batch_size", vae_batch_size, 1)
        if flow_shift is not None:
            flow_shift = _number_arg("flow_shift", flow_shift, 1e-6)
        if image is not None and video is not None:
            raise InputError("pass image= or video=, not both.")
        generator = as_generator_device(generator, self.device)

        if latents_shape is None:
            height, width = _int_arg("height", height, 1), _int_arg("width", width, 1)
            num_frames = _int_arg("num_frames", num_frames, 1)
            grid = self.latent_grid(num_frames, height, width)
        else:
            grid = [_int_arg("latents_shape", v, 1) for v in latents_shape]
            if len(grid) not in (2, 3):
                raise InputError(f"latents_shape = {latents_shape!r}; expected [T, h, w] or [h, w].")
            grid = ([1] if len(grid) == 2 else []) + grid
            num_frames = 1 + self.temporal_stride * (grid[0] - 1)
            height, width = grid[1] * self.spatial_stride, grid[2] * self.spatial_stride

        # 1. Prompt ids (the negative prompt defaults to "", all padding).
        prompt_ids, negative_prompt_ids = self.prompt_ids(
            prompt, negative_prompt, copies, max_prompt_length, prompt_ids, negative_prompt_ids
        )
        batch, prompt_length = prompt_ids.shape

        # 2. Starting ids: uniform random codes, then the condition (if any) on the first latent frames.
        if latents is None:
            latents = torch.ones(batch, *grid, dtype=torch.long, device=self.device)
            latents.random_(to=self.scheduler.codebook_size, generator=generator)
        else:
            latents = torch.as_tensor(latents, device=self.device).long().clone()
            if list(latents.shape) != [batch, *grid]:
                raise InputError(f"latents has shape {list(latents.shape)}; expected {[batch, *grid]}.")
        if image is not None:
            cond_latents = self.encode_image(image, height, width).expand(copies, -1, -1, -1)
        elif video is not None:
            cond_latents = self.encode_video(video, height, width, num_frames, num_cond_frames)
            cond_latents = cond_latents.expand(copies, -1, -1, -1)
        if cond_latents is not None:
            cond_latents = self._place_condition(latents, cond_latents, cond_noise_scale, cond_indices, generator)

        # 3. The sequence [prompt | bov | codes], positions, and the sampling loop.
        config = self.transformer.config
        num_tokens = latents[0].numel()
        latents = latents.flatten(1)
        image_ids = torch.nn.functional.pad(latents + config.lm_vocab_size, (1, 0), value=config.bov_token_id)
        input_ids = torch.cat([prompt_ids, image_ids], 1)
        uncond_ids = torch.cat([negative_prompt_ids, image_ids], 1)
        rope_pos = rope_positions(prompt_length, grid, device=self.device)
        code_logits = slice(-(num_tokens + 1), -1)  # bov predicts code 0, code j predicts code j + 1
        for step in range(num_steps):
            t = self.scheduler.timestep_to_t(step, num_steps, flow_shift)
            if guidance_scale > 1:
                uncond_ids[:, -num_tokens:] = input_ids[:, -num_tokens:]
                # Logits stay in the model's dtype, as official: the sampler then works in it too.
                logits = self.transformer(torch.cat([input_ids, uncond_ids]), rope_pos, keep=code_logits)
                cond, uncond = logits.chunk(2)
                scale = guidance_scale if t < guidance_trunc else 1.0
                logits = uncond.add_(cond.sub_(uncond).mul_(scale))
            else:
                logits = self.transformer(input_ids, rope_pos, keep=code_logits)
            latents = self.scheduler.step(logits, step, num_steps, latents, generator, shift=flow_shift)
            input_ids[:, -num_tokens:] = latents + config.lm_vocab_size
            if callback_on_step_end is not None:
                callback_on_step_end(step, num_steps, latents.view(-1, *grid))

        ids = latents.view(-1, *grid)
        if output_type == "latent":
            return UrsaPipelineOutput(frames=ids)
        pixels = self.decode(ids, vae_batch_size)
        if output_type == "pt":
            return UrsaPipelineOutput(frames=pixels)
        frames = pixels_to_uint8(pixels)
        if output_type == "pil" and grid[0] == 1:
            from PIL import Image

            return UrsaPipelineOutput(frames=[Image.fromarray(f) for f in frames.reshape(-1, *frames.shape[-3:])])
        return UrsaPipelineOutput(frames=frames)  # "pil" of a video gives arrays, as official

    def _place_condition(self, latents, cond, noise_scale: float, cond_indices, generator) -> torch.Tensor:
        """Write the condition ids into ``latents`` (in place): the first T' latent frames, or the
        frames ``cond_indices``; with ``noise_scale`` > 0 a draw of the path at t = 1 - noise_scale."""
        cond = torch.as_tensor(cond, device=self.device)
        if cond.dim() != 4 or tuple(cond.shape[2:]) != tuple(latents.shape[2:]):
            wanted = f"[N, T', {latents.shape[2]}, {latents.shape[3]}]"
            raise InputError(f"cond_latents has shape {list(cond.shape)}; expected {wanted}.")
        if cond.shape[1] > latents.shape[1]:
            raise InputError(
                f"the condition has {cond.shape[1]} latent frames, beyond the clip's {latents.shape[1]}; "
                "condition on fewer frames or generate more."
            )
        if noise_scale > 0:
            cond = self.scheduler.add_noise(cond, 1 - noise_scale, generator)
        if cond.shape[0] != latents.shape[0]:
            if latents.shape[0] % cond.shape[0]:
                raise InputError(f"{cond.shape[0]} condition rows for a batch of {latents.shape[0]}.")
            cond = cond.repeat(latents.shape[0] // cond.shape[0], 1, 1, 1)  # the same condition for every prompt
        if cond_indices is None:
            latents[:, : cond.shape[1]] = cond
        else:
            for i in cond_indices:
                if not 0 <= int(i) < cond.shape[1]:
                    raise InputError(f"cond_indices holds {i}; the condition has latent frames 0..{cond.shape[1] - 1}.")
                latents[:, int(i)] = cond[:, int(i)]
        return cond

"""NOVA VAE Encode (IMAGE frames -> LATENT) and NOVA VAE Decode (LATENT -> IMAGE frames + fps)."""

from __future__ import annotations

import torch

from ..nova.errors import InputError
from ..nova.io.pixels import fit_frames
from ..nova.sampling import masks
from .compat import io
from .handles import LATENT_SPACE_KEY, check_latent_space, latent_tensor
from .inputs import fps_input
from .masks import ENCODED_FRAMES, MAX_FEATHER, RESIZE, feather_decoded
from .types import NovaVaeType

RESIZE_MODES = list(masks.RESIZE_MODES)


def encode_images(handle, images: torch.Tensor, width: int, height: int, mode: str = "crop") -> dict:
    """IMAGE -> LATENT (posterior mean, raw VAE space). A video VAE takes the frames as one clip
    (1 + 4k frames; extra frames are dropped with a warning); an image VAE encodes each image."""
    host = handle.host
    vae = handle.vae
    pixels = fit_frames(images, width, height, mode)
    host.load(handle.patcher, vae.encode_memory_bytes(pixels.shape[0], height, width))
    mean = vae.encode_frames(pixels)
    return {
        "samples": mean.to(host.intermediate_device()),
        LATENT_SPACE_KEY: vae.latent_space,
        RESIZE: mode,
        ENCODED_FRAMES: int(pixels.shape[0]),
    }


def decode_latent(handle, latent: dict, tile_latents: int = 5) -> torch.Tensor:
    """LATENT (raw VAE space) -> IMAGE [B*frames, H, W, 3] in 0..1, decoded in temporal tiles."""
    if isinstance(tile_latents, bool) or not isinstance(tile_latents, int) or tile_latents < 2:
        raise InputError(f"tile_latents = {tile_latents!r}; expected an integer >= 2 (latents decoded together).")
    host = handle.host
    vae = handle.vae
    z = latent_tensor(latent)
    check_latent_space(latent, vae.latent_space, f"VAE '{handle.name}'")
    if z.shape[1] != vae.latent_channels:
        raise InputError(
            f"latents of shape {list(z.shape)} do not fit this VAE ({vae.latent_channels} channels, [B, C, T, h, w])."
        )
    host.load(handle.patcher, vae.decode_memory_bytes(z.shape[-2], z.shape[-1], tile_latents))
    out = []
    tiles = vae.decode_chunk_count(z.shape[2], tile_latents)
    progress = host.progress(z.shape[0] * tiles)
    step = 0
    for b in range(z.shape[0]):
        for pixels in vae.decode_chunks(z[b : b + 1], raw=True, tile_latents=tile_latents):
            out.append(((pixels[0].float() + 1) / 2).clamp(0, 1).movedim(0, -1).to(host.intermediate_device()))
            step += 1
            progress.update(step)
    return torch.cat(out)


# VAE Encode's width/height: what the widgets allow is what an API workflow may send.
MIN_SIZE, MAX_SIZE, SIZE_STEP = 64, 4096, 8


class NovaVAEEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NOVAVAEEncode",
            display_name="NOVA VAE Encode",
            category="NOVA",
            description="Encodes an image (image-to-video) or a clip (continuation) into NOVA latents.",
            inputs=[
                NovaVaeType.Input("vae"),
                io.Image.Input("image", tooltip="An image, or video frames (1 + 4k frames for the video VAE)."),
                io.Int.Input(
                    "width",
                    default=768,
                    min=MIN_SIZE,
                    max=MAX_SIZE,
                    step=SIZE_STEP,
                    tooltip="The checkpoint's width (osp480: 768; sdxl1024: 1024).",
                ),
                io.Int.Input(
                    "height",
                    default=480,
                    min=MIN_SIZE,
                    max=MAX_SIZE,
                    step=SIZE_STEP,
                    tooltip="The checkpoint's height (osp480: 480; sdxl1024: 1024).",
                ),
                io.Combo.Input(
                    "resize",
                    options=RESIZE_MODES,
                    default="crop",
                    tooltip=(
                        "crop: center-crop to the aspect ratio, then resize (official demo). "
                        "The latents remember it: a noise_mask and the feather's source are fitted the same way."
                    ),
                ),
            ],
            outputs=[io.Latent.Output(display_name="latents")],
        )

    @classmethod
    def execute(cls, vae, image, width, height, resize="crop") -> io.NodeOutput:
        if resize not in RESIZE_MODES:
            raise InputError(f"resize '{resize}' is not one of {RESIZE_MODES}.")
        for name, value in (("width", width), ("height", height)):
            ok = isinstance(value, int) and not isinstance(value, bool) and MIN_SIZE <= value <= MAX_SIZE
            if not ok or value % SIZE_STEP:
                raise InputError(
                    f"{name} = {value!r}; expected a multiple of {SIZE_STEP} in [{MIN_SIZE}, {MAX_SIZE}] "
                    "(the checkpoint's size: osp480 768x480, sdxl1024 1024x1024)."
                )
        return io.NodeOutput(encode_images(vae, image, width, height, resize))


class NovaVAEDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NOVAVAEDecode",
            display_name="NOVA VAE Decode",
            category="NOVA",
            description=(
                "Decodes NOVA latents to frames, in temporal chunks so memory stays bounded. Every "
                "latent count decodes to 1 + 4(T-1) frames. Latents repainted under a mask (AR Frame Step) "
                "can be feathered into their source frames."
            ),
            inputs=[
                NovaVaeType.Input("vae"),
                io.Latent.Input("latents"),
                fps_input("Used when the latents do not carry the fps they were generated at."),
                io.Int.Input(
                    "tile_latents",
                    default=5,
                    min=2,
                    max=64,
                    tooltip=(
                        "Latents decoded together (video VAE). 5 = the official numerics; "
                        "3 lowers peak memory (33 frames at 768x480 in bf16: about 6 GB instead of 8)."
                    ),
                ),
                io.Image.Input(
                    "source",
                    optional=True,
                    tooltip="Repainted latents: the frames that were encoded, to blend the result into.",
                ),
                io.Int.Input(
                    "feather",
                    default=0,
                    min=0,
                    max=MAX_FEATHER,
                    optional=True,
                    tooltip=(
                        "With source and repainted latents: blend over this many pixels inside the edge of the "
                        "regenerated tokens (the mask rounded out to 16-px cells, after mask_grow); pixels outside "
                        "those tokens are then the source's exactly. 0 = the plain decode."
                    ),
                ),
            ],
            outputs=[io.Image.Output(display_name="frames"), io.Float.Output(display_name="fps")],
        )

    @classmethod
    def execute(cls, vae, latents, fps=12.0, tile_latents=5, source=None, feather=0) -> io.NodeOutput:
        from ..nova.io.media import check_fps

        images = decode_latent(vae, latents, int(tile_latents))
        if source is not None and feather:
            images = feather_decoded(images, latents, source, int(feather), vae.vae.temporal_ratio)
        return io.NodeOutput(images, check_fps(latents.get("nova_fps", fps)))

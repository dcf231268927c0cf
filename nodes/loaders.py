"""Loader nodes: NOVA checkpoint (transformer + scheduler), text encoder (Phi-2), VAE."""

from __future__ import annotations

import os

import torch

from ..nova.components.config import read_json
from ..nova.components.loaders import load_scheduler, load_transformer
from ..nova.components.text_encoder import load_phi, load_tokenizer
from ..nova.components.vae import IMAGE_VAE, VIDEO_VAE, check_vae_config, latent_space_id, load_vae
from ..nova.errors import CheckpointError
from ..nova.speed.fp8 import store_linear_weights_fp8
from . import folders
from .compat import io
from .handles import NovaModel, NovaTextEncoder, NovaVaeHandle
from .host import DTYPE_CHOICES, Host, default_host
from .types import NovaModelType, NovaTextEncoderType, NovaVaeType

TEXT_DTYPE_CHOICES = DTYPE_CHOICES + ["fp8_e4m3fn"]
DOWNLOAD_TIP = "Download the official checkpoint from Hugging Face into models/nova/<name> when it is missing."
DTYPE_TIP = "Weight/compute dtype. auto = bf16 where supported, else fp32 (fp16 can overflow to black frames)."


def _loader_inputs(name_id, found, tooltip, dtypes, dtype_default, dtype_tip):
    """The three inputs every loader has: which folder, which dtype, whether to download."""
    return [
        io.Combo.Input(name_id, options=folders.choices(found), default="nova-d48w1024-osp480", tooltip=tooltip),
        io.Combo.Input("dtype", options=dtypes, default=dtype_default, tooltip=dtype_tip),
        io.Boolean.Input("download", default=False, tooltip=DOWNLOAD_TIP),
    ]


def _check_dtype(dtype, choices):
    if dtype not in choices:
        raise CheckpointError(f"dtype '{dtype}' is not one of {choices}.")


def _unknown(name, found, what):
    if name not in folders.choices(found):
        return (
            f"{what} '{name}' is not in models/nova, models/diffusers or models/text_encoders. Refresh the page or "
            "check the folder."
        )
    return True


def _checkpoint_latent_info(folder: str, scheduler, video: bool):
    """The VAE latent space the transformer was trained in (from the checkpoint's vae/config.json,
    else the official VAE of that kind): (scale, shift, preview format, latent space id)."""
    path = os.path.join(folder, "vae", "config.json")
    fmt = "sdxl" if type(scheduler).__name__ == "FlowMatchEulerDiscreteScheduler" else "sd15"
    if os.path.isfile(path):
        cfg = read_json(path)
        check_vae_config(cfg, path)
    else:
        cfg = {
            "_class_name": VIDEO_VAE if video else IMAGE_VAE,
            "scaling_factor": 0.13025 if fmt == "sdxl" else 0.18215,
        }
    return float(cfg.get("scaling_factor") or 1.0), float(cfg.get("shift_factor") or 0.0), fmt, latent_space_id(cfg)


class NovaCheckpointLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NOVACheckpointLoader",
            display_name="NOVA Checkpoint Loader",
            category="NOVA/loaders",
            description="Loads the NOVA transformer and scheduler of a checkpoint folder in the official layout.",
            inputs=_loader_inputs(
                "ckpt_name",
                folders.find_checkpoints(default_host()),
                "Checkpoint folder under models/nova or models/diffusers.",
                DTYPE_CHOICES,
                "auto",
                DTYPE_TIP,
            ),
            outputs=[io_model_output()],
        )

    @classmethod
    def validate_inputs(cls, ckpt_name):
        return _unknown(ckpt_name, folders.find_checkpoints(default_host()), "checkpoint")

    @classmethod
    def execute(cls, ckpt_name, dtype="auto", download=False) -> io.NodeOutput:
        host = default_host()
        _check_dtype(dtype, DTYPE_CHOICES)
        folder = folders.locate(ckpt_name, folders.find_checkpoints(host), "checkpoint", host, download)
        return io.NodeOutput(load_nova_model(folder, ckpt_name, dtype, host))


def load_nova_model(folder: str, name: str, dtype: str, host: Host) -> NovaModel:
    load_device, offload_device = host.devices("transformer")
    torch_dtype = host.pick_dtype(dtype, "transformer", load_device)
    scheduler = load_scheduler(os.path.join(folder, "scheduler"))
    transformer = load_transformer(os.path.join(folder, "transformer"), offload_device, torch_dtype, host.operations())
    transformer.compute_device = torch.device(load_device)
    scale, shift, fmt, space = _checkpoint_latent_info(folder, scheduler, transformer.config.is_video_model)
    return NovaModel(
        host.wrap(transformer, "transformer"), scheduler, transformer.config, name, host, scale, shift, fmt, space
    )


class NovaTextEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NOVATextEncoderLoader",
            display_name="NOVA Text Encoder Loader (Phi-2)",
            category="NOVA/loaders",
            description=(
                "Loads Phi-2 from a NOVA checkpoint or a standalone folder in models/text_encoders "
                "(one copy serves every NOVA checkpoint)."
            ),
            inputs=_loader_inputs(
                "text_encoder_name",
                folders.find_text_encoders(default_host()),
                "A NOVA checkpoint (uses its text_encoder/) or a Phi-2 folder.",
                TEXT_DTYPE_CHOICES,
                "auto",
                DTYPE_TIP + " fp8 stores the weights in float8 (half of bf16's memory) and computes in bf16.",
            ),
            outputs=[NovaTextEncoderType.Output(display_name="text_encoder")],
        )

    @classmethod
    def validate_inputs(cls, text_encoder_name):
        return _unknown(text_encoder_name, folders.find_text_encoders(default_host()), "text encoder")

    @classmethod
    def execute(cls, text_encoder_name, dtype="auto", download=False) -> io.NodeOutput:
        host = default_host()
        entry = folders.locate(text_encoder_name, folders.find_text_encoders(host), "text encoder", host, download)
        te_dir, tok_dir = (
            entry
            if isinstance(entry, tuple)
            else (os.path.join(entry, "text_encoder"), os.path.join(entry, "tokenizer"))
        )
        _check_dtype(dtype, TEXT_DTYPE_CHOICES)
        load_device, offload_device = host.devices("text_encoder")
        compute = "bf16" if dtype == "fp8_e4m3fn" else dtype
        model = load_phi(te_dir, offload_device, host.pick_dtype(compute, "text_encoder", load_device))
        if dtype == "fp8_e4m3fn":
            store_linear_weights_fp8(model)
        return io.NodeOutput(
            NovaTextEncoder(host.wrap(model, "text_encoder"), load_tokenizer(tok_dir), text_encoder_name, host)
        )


class NovaVAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NOVAVAELoader",
            display_name="NOVA VAE Loader",
            category="NOVA/loaders",
            description="Loads a NOVA checkpoint's VAE (3D Open-Sora-Plan for video, AutoencoderKL for images).",
            inputs=_loader_inputs(
                "vae_name",
                folders.find_vaes(default_host()),
                "A NOVA checkpoint (uses its vae/) or a VAE folder in models/vae.",
                DTYPE_CHOICES,
                "fp32",
                "fp32 is safest for decoding; bf16 halves memory.",
            ),
            outputs=[NovaVaeType.Output(display_name="vae")],
        )

    @classmethod
    def validate_inputs(cls, vae_name):
        return _unknown(vae_name, folders.find_vaes(default_host()), "VAE")

    @classmethod
    def execute(cls, vae_name, dtype="fp32", download=False) -> io.NodeOutput:
        host = default_host()
        _check_dtype(dtype, DTYPE_CHOICES)
        entry = folders.locate(vae_name, folders.find_vaes(host), "VAE", host, download)
        folder = entry if os.path.isfile(os.path.join(entry, "config.json")) else os.path.join(entry, "vae")
        load_device, offload_device = host.devices("vae")
        vae = load_vae(folder, offload_device, host.pick_dtype(dtype, "vae", load_device))
        return io.NodeOutput(NovaVaeHandle(host.wrap(vae.model, "vae"), vae, vae_name, host))


def io_model_output():
    return NovaModelType.Output(display_name="model")

"""Benchmark models: random weights at the real NOVA sizes (no download), or a real checkpoint."""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from typing import Tuple

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nova.components.config import NovaConfig  # noqa: E402
from nova.components.text_encoder import TextEncoder  # noqa: E402
from nova.components.vae import NovaVAE  # noqa: E402
from nova.models.vae_opensora import AutoencoderKLOpenSora  # noqa: E402

OSP480 = {
    "image_dim": 4,
    "image_size": [480, 768],
    "image_stride": 8,
    "text_token_dim": 2560,
    "text_token_len": 256,
    "video_mixer_rank": 24,
    "video_base_size": [16, 15, 24],
    "image_base_size": [30, 48],
    "arch": ["vit_d16w1024", "vit_d32w1024", "mlp_d3w1280"],
}
PHI2 = dict(
    vocab_size=51200,
    hidden_size=2560,
    intermediate_size=10240,
    num_hidden_layers=32,
    num_attention_heads=32,
    partial_rotary_factor=0.4,
    max_position_embeddings=2048,
    hidden_act="gelu_new",
)
OSP_VAE = {
    "_class_name": "AutoencoderKLOpenSora",
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "down_block_types": ["DownEncoderBlock2D"] * 2 + ["DownEncoderBlock3D"] * 2,
    "up_block_types": ["UpDecoderBlock3D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "scaling_factor": 0.18215,
}
MID = {
    "image_dim": 4,
    "image_size": [128, 192],
    "image_stride": 8,
    "text_token_dim": 128,
    "text_token_len": 64,
    "video_base_size": [16, 4, 6],
    "image_base_size": [8, 12],
    "video_mixer_rank": 24,
    "arch": ["vit_d4w256", "vit_d8w256", "mlp_d3w256"],
}
MID_PHI = dict(
    vocab_size=300,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    partial_rotary_factor=0.4,
    max_position_embeddings=512,
    hidden_act="gelu_new",
)
MID_VAE = {**OSP_VAE, "block_out_channels": [32, 32, 64, 64], "layers_per_block": 1}
SDXL1024 = {  # nova-d48w1024-sdxl1024 (text-to-image, 1024 x 1024)
    "image_dim": 4,
    "image_size": 1024,
    "image_stride": 8,
    "text_token_dim": 2560,
    "text_token_len": 256,
    "video_base_size": [1, 32, 32],
    "image_base_size": [64, 64],
    "arch": ["vit_d16w1024", "vit_d32w1024", "mlp_d6w1024"],
}
SDXL_VAE = {
    "_class_name": "AutoencoderKL",
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "scaling_factor": 0.13025,
    "sample_size": 1024,
}
DDPM = {
    "_class_name": "DDPMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "timestep_spacing": "trailing",
    "variance_type": "fixed_small",
    "clip_sample": False,
}
FLOW = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0}


@dataclasses.dataclass(frozen=True)
class Preset:
    transformer: dict
    phi: dict
    vae: dict
    scheduler: dict
    dtype: torch.dtype
    latents: int
    steps: Tuple[int, int]  # set steps, diffusion steps


PRESETS = {
    "cpu-mid": Preset(MID, MID_PHI, MID_VAE, DDPM, torch.float32, 3, (16, 10)),  # 2-core CPU
    "gpu-osp480": Preset(OSP480, PHI2, OSP_VAE, DDPM, torch.bfloat16, 9, (64, 25)),  # 33 x 480 x 768 video
    "gpu-sdxl1024": Preset(SDXL1024, PHI2, SDXL_VAE, FLOW, torch.bfloat16, 1, (64, 25)),  # 1024 x 1024 image
}
PROMPT = "A majestic red fox trots through fresh snow in a quiet pine forest at golden hour."


def build(preset: Preset, device: torch.device):
    """Random weights at the preset's sizes: transformer, text encoder, VAE, scheduler."""
    import diffusers
    from transformers import PhiConfig, PhiModel

    from nova.components.loaders import build_transformer
    from nova.components.text_encoder import load_tokenizer
    from nova.components.tiny import write_tokenizer

    dtype = preset.dtype
    torch.manual_seed(0)
    model = build_transformer(NovaConfig.from_dict(preset.transformer), device=device, dtype=dtype)
    for p in model.parameters():  # post-norm blocks: keep random activations in range
        p.mul_(0.5) if p.dim() > 1 else None
    model.mask_embed.bos_token.normal_(std=0.02)
    model.mask_embed.mask_token.normal_(std=0.02)
    model.text_embed.weight.normal_(std=0.02)
    with torch.device(device):
        phi = PhiModel(PhiConfig(**preset.phi)).to(dtype).eval().requires_grad_(False)
    tok_dir = tempfile.mkdtemp()
    write_tokenizer(tok_dir)
    text = TextEncoder(phi, load_tokenizer(tok_dir))
    with torch.device(device):
        if preset.vae["_class_name"] == "AutoencoderKLOpenSora":
            vae_model = AutoencoderKLOpenSora(preset.vae)
        else:
            vae_model = diffusers.AutoencoderKL.from_config(preset.vae)
    vae = NovaVAE(vae_model.eval().requires_grad_(False), preset.vae)
    sched = getattr(diffusers, preset.scheduler["_class_name"]).from_config(preset.scheduler)
    return model, text, vae, sched


def load(checkpoint: str, device: torch.device, dtype: torch.dtype):
    """A real checkpoint (a local folder in the hub layout, or a hub id) instead of random weights."""
    from nova.pipeline import NovaPipeline

    pipe = NovaPipeline.from_pretrained(checkpoint, torch_dtype=dtype, device=device)
    return pipe.transformer, pipe.text_encoder, pipe.vae, pipe.scheduler

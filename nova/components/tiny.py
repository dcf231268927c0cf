"""Write small random-weight checkpoints in the official NOVA layout (tests, demos, benchmarks).

Everything is made here: the weights come from our own modules (random init), the tokenizer is a
byte-level BPE trained on a few sentences. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import torch

from .config import NovaConfig


def _transformer_config(
    image_size, text: int, video_base_size, image_base_size, arch, mixer_rank: Optional[int] = None
) -> dict:
    """A transformer config with 4 latent channels and stride-8 pixels; ``text`` is the Phi width,
    its token budget half of it."""
    config = {
        "image_dim": 4,
        "image_size": image_size,
        "image_stride": 8,
        "text_token_dim": text,
        "text_token_len": text // 2,
        "video_base_size": video_base_size,
        "image_base_size": image_base_size,
    }
    if mixer_rank is not None:
        config["video_mixer_rank"] = mixer_rank
    return dict(config, arch=arch)


PRESETS = {
    # name: (kind, transformer config, phi hidden size, phi layers)
    "video": (
        "video",
        _transformer_config([64, 96], 64, [16, 2, 3], [4, 6], ["vit_d2w64", "vit_d4w64", "mlp_d2w64"], 8),
        64,
        2,
    ),
    "image": ("image", _transformer_config(64, 64, [1, 2, 2], [4, 4], ["vit_d2w64", "vit_d2w64", "mlp_d2w64"]), 64, 2),
    # The CPU benchmark size: 256 wide, 4 + 8 layers, 128x192 pixels.
    "mid": (
        "video",
        _transformer_config([128, 192], 128, [16, 4, 6], [8, 12], ["vit_d4w256", "vit_d8w256", "mlp_d3w256"], 24),
        128,
        2,
    ),
}

_TEXT = [
    "a red fox runs through snow",
    "many spotted jellyfish pulsating under water",
    "a cat, a dog, and a bird",
    "a shiba inu wearing a beret",
    "niagara falls at sunset",
    "a city street at night with neon lights",
    "waves crash on a rocky beach",
    "a hot air balloon over green hills",
    "low quality, deformed, distorted",
]


def _save_safetensors(state: dict, path: str) -> None:
    from safetensors.torch import save_file

    # "format": "pt" as Hugging Face writes it (transformers < 4.47 refuses files without it)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, path, metadata={"format": "pt"})


def _write_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)


def write_tokenizer(folder: str, vocab_size: int = 300) -> int:
    from tokenizers import ByteLevelBPETokenizer

    os.makedirs(folder, exist_ok=True)
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(
        _TEXT * 4, vocab_size=vocab_size, min_frequency=1, special_tokens=["<|endoftext|>"], show_progress=False
    )
    tok.save(os.path.join(folder, "tokenizer.json"))
    _write_json(
        os.path.join(folder, "tokenizer_config.json"),
        {
            "tokenizer_class": "CodeGenTokenizer",
            "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
            "add_prefix_space": False,
            "model_max_length": 2048,
        },
    )
    return tok.get_vocab_size()


def write_text_encoder(folder: str, hidden: int, layers: int, vocab_size: int, seed: int) -> None:
    from transformers import PhiConfig, PhiForCausalLM

    os.makedirs(folder, exist_ok=True)
    config = PhiConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 32),
        max_position_embeddings=512,
        partial_rotary_factor=0.4,
        hidden_act="gelu_new",
    )
    torch.manual_seed(seed)
    model = PhiForCausalLM(config)
    config.architectures = ["PhiEncoderModel"]
    config.save_pretrained(folder)
    _save_safetensors(model.state_dict(), os.path.join(folder, "model.safetensors"))


def write_vae(folder: str, kind: str, seed: int) -> None:
    os.makedirs(folder, exist_ok=True)
    common = {
        "act_fn": "silu",
        "block_out_channels": [32, 32, 64, 64],
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 32,
        "out_channels": 3,
        "sample_size": 64,
    }
    torch.manual_seed(seed)
    if kind == "video":
        from ..models.vae_opensora import AutoencoderKLOpenSora

        config = {
            "_class_name": "AutoencoderKLOpenSora",
            **common,
            "scaling_factor": 0.18215,
            "down_block_types": ["DownEncoderBlock2D"] * 2 + ["DownEncoderBlock3D"] * 2,
            "up_block_types": ["UpDecoderBlock3D"] * 4,
        }
        model = AutoencoderKLOpenSora(config)
    else:
        from diffusers import AutoencoderKL

        config = {
            "_class_name": "AutoencoderKL",
            **common,
            "scaling_factor": 0.13025,
            "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4,
        }
        model = AutoencoderKL.from_config(config)
    _write_json(os.path.join(folder, "config.json"), config)
    _save_safetensors(model.state_dict(), os.path.join(folder, "diffusion_pytorch_model.safetensors"))


def write_scheduler(folder: str, kind: str) -> None:
    os.makedirs(folder, exist_ok=True)
    if kind == "video":
        config = {
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
    else:
        config = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0}
    _write_json(os.path.join(folder, "scheduler_config.json"), config)


def write_transformer(folder: str, config_dict: dict, seed: int) -> None:
    from .loaders import build_transformer

    os.makedirs(folder, exist_ok=True)
    config = NovaConfig.from_dict(config_dict)
    torch.manual_seed(seed)
    model = build_transformer(config)
    # Give the learned tokens and the null text embedding non-zero values, as trained ones have.
    for tensor in (model.mask_embed.bos_token, model.mask_embed.mask_token, model.text_embed.weight):
        tensor.normal_(std=0.02)
    _write_json(os.path.join(folder, "config.json"), config_dict)
    _save_safetensors(model.state_dict(), os.path.join(folder, "diffusion_pytorch_model.safetensors"))


def make_tiny(folder: str, preset: str = "video", seed: int = 0, text_encoder: Optional[bool] = True) -> str:
    """Write a random checkpoint named ``preset`` ('video', 'image' or 'mid') into ``folder``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if os.path.exists(folder) and (not os.path.isdir(folder) or os.listdir(folder)):
        from ..errors import InputError

        raise InputError(
            f"{folder}: exists and is not an empty folder; make-tiny writes random weights only into a "
            "new or empty folder (it would overwrite a checkpoint there)."
        )
    kind, tcfg, hidden, layers = PRESETS[preset]
    os.makedirs(folder, exist_ok=True)
    write_transformer(os.path.join(folder, "transformer"), tcfg, seed)
    vocab = write_tokenizer(os.path.join(folder, "tokenizer"))
    if text_encoder:
        write_text_encoder(os.path.join(folder, "text_encoder"), hidden, layers, vocab, seed + 1)
    write_vae(os.path.join(folder, "vae"), kind, seed + 2)
    write_scheduler(os.path.join(folder, "scheduler"), kind)
    sched = "DDPMScheduler" if kind == "video" else "FlowMatchEulerDiscreteScheduler"
    vae = "AutoencoderKLOpenSora" if kind == "video" else "AutoencoderKL"
    _write_json(
        os.path.join(folder, "model_index.json"),
        {
            "_class_name": "NOVAPipeline",
            "scheduler": ["diffusers", sched],
            "text_encoder": ["__text_encoder__", "PhiEncoderModel"],
            "tokenizer": ["transformers", "CodeGenTokenizerFast"],
            "transformer": ["__transformer__", "NOVATransformer3DModel"],
            "vae": ["__vae__", vae],
        },
    )
    return folder

"""Load the four components of an URSA checkpoint folder: transformer, VQ tokenizer (``vae/``),
sampler (``scheduler/``) and the Qwen text tokenizer.

Weights come from safetensors only, checked key by key against the module built from the config
(:func:`nova.components.loading.load_module`); ``scheduler_model.pth`` is read with ``weights_only=True``.
Nothing in the folder is imported or executed.
"""

from __future__ import annotations

import os

import torch

from ..components.loading import load_module, weight_files
from ..components.text_encoder import load_tokenizer
from ..errors import CheckpointError
from .config import load_transformer_config, load_vae_config
from .scheduler import KineticOptimalScheduler
from .tokenizer_fsq import AutoencoderVQCosmos3D
from .tokenizer_ibq import AutoencoderVQ
from .transformer import UrsaTransformer


def load_transformer(folder: str, device="cpu", dtype=torch.float32) -> UrsaTransformer:
    config = load_transformer_config(folder)
    files = weight_files(folder, "diffusion_pytorch_model")
    config_path = os.path.join(folder, "config.json")
    return load_module(lambda: UrsaTransformer(config), files, folder, device, dtype, config_path=config_path)


def load_vq_tokenizer(folder: str, device="cpu", dtype=torch.float32):
    """``vae/``: :class:`AutoencoderVQCosmos3D` (video, FSQ) or :class:`AutoencoderVQ` (image)."""
    config = load_vae_config(folder)
    build = (lambda: AutoencoderVQCosmos3D(config)) if config.video else (lambda: AutoencoderVQ(config))
    files = weight_files(folder, "diffusion_pytorch_model")
    model = load_module(build, files, folder, device, dtype, config_path=os.path.join(folder, "config.json"))
    # Parameters that require grad, as in the official (diffusers) model. Not for training: on the CPU,
    # torch picks another matmul kernel for a non-contiguous input when the weight requires grad (the
    # video tokenizer's attention gets such inputs), and that kernel is what reproduces the official
    # pixels and ids to the bit. encode/decode run under no_grad, so no graph is ever built.
    model.requires_grad_(True)
    return model if config.video else model.cast_decoder()


def load_scheduler(folder: str, device="cpu") -> KineticOptimalScheduler:
    return KineticOptimalScheduler.from_folder(folder, device)


def load_text_tokenizer(folder: str):
    """The Qwen tokenizer, set to pad on the left as the official pipeline calls it."""
    tokenizer = load_tokenizer(folder)
    tokenizer.padding_side = "left"
    return tokenizer


def check_components(transformer: UrsaTransformer, scheduler: KineticOptimalScheduler, folder: str) -> None:
    """The sampler's codebook must have one row per logit of the transformer's head."""
    rows, logits = scheduler.codebook_size, transformer.config.lm_head_size
    if rows != logits:
        raise CheckpointError(
            f"{folder}: scheduler/scheduler_model.pth has {rows} codes (path.emb rows) but transformer/config.json "
            f"has lm_head_size = {logits}; they must be equal (are both folders from the same checkpoint?)."
        )

"""URSA checkpoint configs: read and validate ``model_index.json``, ``transformer/config.json``,
``vae/config.json`` and ``scheduler/scheduler_config.json`` of an official URSA folder.

Only JSON is read here; nothing from the folder is imported (the official ``__*.py`` files are
one-line imports of ``diffnext`` and are never touched). Every error names the file, the key, the
value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Optional, Tuple

from ..components.config import read_json
from ..errors import ConfigError, WrongFamilyError

log = logging.getLogger("nova")

URSA_PIPELINE = "URSAPipeline"
NOVA_PIPELINE = "NOVAPipeline"
FSQ_VAE, IBQ_VAE = "AutoencoderVQCosmos3D", "AutoencoderVQ"
SCHEDULER = "KineticOptimalScheduler"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_family(folder: str) -> Optional[str]:
    """``_class_name`` of the folder's ``model_index.json`` (None when the file is absent)."""
    path = os.path.join(folder, "model_index.json")
    if not os.path.isfile(path):
        return None
    index = read_json(path)
    if not isinstance(index, dict):
        raise ConfigError(f"{path}: expected a JSON object (the pipeline's components), got {type(index).__name__}.")
    return index.get("_class_name")


def check_ursa_folder(folder: str) -> None:
    """A :class:`WrongFamilyError` (an InputError) unless ``folder`` holds an URSA checkpoint."""
    family = read_family(folder)
    path = os.path.join(folder, "model_index.json")
    if family == URSA_PIPELINE:
        return
    if family == NOVA_PIPELINE:
        raise WrongFamilyError(
            f"{path}: _class_name = 'NOVAPipeline': this is a NOVA checkpoint, not URSA. "
            "Load it with nova.NovaPipeline (or the NOVA loader node); UrsaPipeline needs _class_name 'URSAPipeline'."
        )
    if family is None:
        raise WrongFamilyError(
            f"{folder}: no model_index.json; an URSA checkpoint folder has one with _class_name 'URSAPipeline'."
        )
    raise WrongFamilyError(f"{path}: _class_name = {family!r}; UrsaPipeline loads only 'URSAPipeline' checkpoints.")


# The keys of the official URSATransformer3DModel.__init__; everything else of Qwen3 is fixed.
_TRANSFORMER_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "num_hidden_layers",
    "max_window_layers",
    "rope_theta",
    "vocab_size",
    "lm_vocab_size",
    "lm_head_size",
    "bov_token_id",
)
_TRANSFORMER_DEFAULTS = {
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "num_hidden_layers": 28,
    "max_window_layers": 28,
    "rope_theta": 1000000,
    "vocab_size": 215669,
    "lm_vocab_size": 151669,
    "lm_head_size": 64000,
    "bov_token_id": 151652,
}


@dataclasses.dataclass(frozen=True)
class UrsaTransformerConfig:
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    num_hidden_layers: int
    max_window_layers: int
    rope_theta: float
    vocab_size: int
    lm_vocab_size: int
    lm_head_size: int
    bov_token_id: int
    rms_norm_eps: float = 1e-6  # transformers' Qwen3Config default; the official config never sets it

    @classmethod
    def from_dict(cls, raw, where: str) -> "UrsaTransformerConfig":
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(raw).__name__}.")
        name = raw.get("_class_name", "URSATransformer3DModel")
        if name != "URSATransformer3DModel":
            raise ConfigError(f"{where}: _class_name = {name!r}; an URSA transformer is 'URSATransformer3DModel'.")
        extra = sorted(k for k in raw if not k.startswith("_") and k not in _TRANSFORMER_KEYS)
        if extra:  # the official class ignores them too (they land in **kwargs)
            log.warning("%s: ignoring keys the URSA transformer does not read: %s", where, ", ".join(extra))
        values = {k: raw.get(k, _TRANSFORMER_DEFAULTS[k]) for k in _TRANSFORMER_KEYS}
        for key, value in values.items():
            ok = _is_number(value) and value > 0 if key == "rope_theta" else _is_int(value) and value >= 0
            if not ok or (key != "bov_token_id" and value == 0):
                kind = "number" if key == "rope_theta" else "integer"
                raise ConfigError(f"{where}: {key} = {value!r}; expected a positive {kind}.")
        config = cls(**values)
        if config.num_attention_heads % config.num_key_value_heads:
            raise ConfigError(
                f"{where}: num_attention_heads = {config.num_attention_heads} is not a multiple of "
                f"num_key_value_heads = {config.num_key_value_heads}."
            )
        if config.vocab_size < config.lm_vocab_size + config.lm_head_size:
            raise ConfigError(
                f"{where}: vocab_size = {config.vocab_size} < lm_vocab_size + lm_head_size = "
                f"{config.lm_vocab_size + config.lm_head_size}: visual code c is token c + lm_vocab_size."
            )
        if config.bov_token_id >= config.lm_vocab_size:
            raise ConfigError(
                f"{where}: bov_token_id = {config.bov_token_id} is not a text token "
                f"(< lm_vocab_size = {config.lm_vocab_size})."
            )
        return config


def load_transformer_config(folder: str) -> UrsaTransformerConfig:
    path = os.path.join(folder, "config.json")
    return UrsaTransformerConfig.from_dict(read_json(path), path)


@dataclasses.dataclass(frozen=True)
class UrsaVAEConfig:
    """What the two URSA tokenizers read of ``vae/config.json``."""

    class_name: str  # FSQ_VAE (video) or IBQ_VAE (image)
    in_channels: int
    out_channels: int
    block_out_channels: Tuple[int, ...]
    layers_per_block: int
    latent_channels: int
    num_vq_embeddings: int
    vq_embed_dim: int
    temporal_stride: int
    spatial_stride: int
    patch_size: int = 4  # FSQ only
    sample_frames: int = 17  # FSQ only: the temporal tile
    attn_down_block: bool = False  # IBQ only
    attn_up_block: bool = False  # IBQ only
    decoder_dtype: Optional[str] = None  # IBQ only

    @property
    def video(self) -> bool:
        return self.class_name == FSQ_VAE

    @property
    def latent_tile(self) -> int:
        """Latent frames per decoder tile (FSQ): (sample_frames - 1) // temporal_stride + 1."""
        return (self.sample_frames - 1) // self.temporal_stride + 1


def load_vae_config(folder: str) -> UrsaVAEConfig:
    path = os.path.join(folder, "config.json")
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(raw).__name__}.")
    name = raw.get("_class_name")
    if name not in (FSQ_VAE, IBQ_VAE):
        raise ConfigError(
            f"{path}: _class_name = {name!r}; URSA tokenizers are {FSQ_VAE!r} (video) or {IBQ_VAE!r} (image)."
        )
    video = name == FSQ_VAE
    quantizer = raw.get("_quantizer_name", "FSQuantizer" if video else "VQuantizer")
    allowed_quantizer = "FSQuantizer" if video else "VQuantizer"
    if quantizer != allowed_quantizer:
        raise ConfigError(f"{path}: _quantizer_name = {quantizer!r}; {name} is supported with {allowed_quantizer!r}.")
    defaults = {
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "latent_channels": 16,
        "num_vq_embeddings": 64000 if video else 16384,
        "vq_embed_dim": 6 if video else 8,
        "temporal_stride": 4 if video else 1,
        "spatial_stride": 8 if video else 16,
        "patch_size": 4,
        "sample_frames": 17,
    }
    values = {k: raw.get(k, v) for k, v in defaults.items()}
    for key, value in values.items():
        if key == "block_out_channels":
            if not (isinstance(value, list) and len(value) >= 2 and all(_is_int(c) and c > 0 for c in value)):
                raise ConfigError(f"{path}: block_out_channels = {value!r}; expected a list of >= 2 positive integers.")
        elif not (_is_int(value) and value > 0):
            raise ConfigError(f"{path}: {key} = {value!r}; expected a positive integer.")
    if video and values["vq_embed_dim"] != 6:
        raise ConfigError(
            f"{path}: vq_embed_dim = {values['vq_embed_dim']}; the FSQ quantizer has 6 levels (8,8,8,5,5,5)."
        )
    for key in ("temporal_stride", "spatial_stride", "patch_size"):
        value = values[key]
        if value & (value - 1):
            raise ConfigError(f"{path}: {key} = {value}; expected a power of two.")
    decoder_dtype = raw.get("decoder_dtype")
    if decoder_dtype not in (None, "float32", "float16", "bfloat16"):
        raise ConfigError(
            f"{path}: decoder_dtype = {decoder_dtype!r}; expected null, 'float32', 'float16' or 'bfloat16'."
        )
    return UrsaVAEConfig(
        class_name=name,
        block_out_channels=tuple(values.pop("block_out_channels")),
        attn_down_block=bool(raw.get("attn_down_block", False)),
        attn_up_block=bool(raw.get("attn_up_block", False)),
        decoder_dtype=decoder_dtype,
        **values,
    )


@dataclasses.dataclass(frozen=True)
class UrsaSchedulerConfig:
    alpha: Optional[float]  # None: the mixture path
    c: Optional[float]
    shift: float
    eps: float

    @property
    def metric(self) -> bool:
        return self.alpha is not None


def load_scheduler_config(folder: str) -> UrsaSchedulerConfig:
    path = os.path.join(folder, "scheduler_config.json")
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(raw).__name__}.")
    name = raw.get("_class_name", SCHEDULER)
    if name != SCHEDULER:
        raise ConfigError(f"{path}: _class_name = {name!r}; URSA uses {SCHEDULER!r}.")
    alpha, c = raw.get("alpha"), raw.get("c")
    shift, eps = raw.get("shift", 1.0), raw.get("eps", 1e-5)
    if alpha is not None and not (_is_number(alpha) and alpha > 0):
        raise ConfigError(
            f"{path}: alpha = {alpha!r}; expected a positive number (metric path) or null (mixture path)."
        )
    if alpha is not None and not (_is_number(c) and c > 0):
        raise ConfigError(f"{path}: c = {c!r}; the metric path (alpha = {alpha}) needs a positive number.")
    if not (_is_number(shift) and shift > 0):
        raise ConfigError(f"{path}: shift = {shift!r}; expected a positive number.")
    if not (_is_number(eps) and eps > 0):
        raise ConfigError(f"{path}: eps = {eps!r}; expected a positive number.")
    return UrsaSchedulerConfig(alpha=alpha, c=c, shift=shift, eps=eps)

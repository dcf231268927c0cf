"""Phi-2 text encoder (``transformers``' own Phi model) and its tokenizer.

The official encoder is a causal Phi-2 whose ``last_hidden_state`` (after the final LayerNorm)
feeds the transformer; prompts are padded/truncated to ``text_token_len`` (256) tokens and only
the first len(tokens) features are used (the rest become the learned null embedding).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from typing import List, Sequence

import torch

from ..errors import CheckpointError, ConfigError, InputError
from .config import read_json
from .loading import HoldsModel, check_depths, check_state, read_shapes, weight_files

log = logging.getLogger("nova")


@dataclasses.dataclass(frozen=True)
class PromptEmbeds:
    """Phi-2 features of a batch of prompts. Rows past ``lengths[i]`` are not meaningful."""

    features: torch.Tensor  # [B, L, text_dim]
    lengths: List[int]
    truncated: List[bool]

    def __post_init__(self):
        rows = self.features.shape[0] if self.features.dim() >= 1 else 0
        if len(self.lengths) != rows:
            raise InputError(
                f"prompt features have {rows} rows but {len(self.lengths)} lengths; each prompt needs its length."
            )

    def __len__(self):
        return self.features.shape[0]

    def repeat(self, n: int) -> "PromptEmbeds":
        if n == 1:
            return self
        return PromptEmbeds(
            self.features.repeat_interleave(n, dim=0),
            [l for l in self.lengths for _ in range(n)],
            [t for t in self.truncated for _ in range(n)],
        )

    @staticmethod
    def cat(parts: Sequence["PromptEmbeds"]) -> "PromptEmbeds":
        width = max(p.features.shape[1] for p in parts)
        feats = [torch.nn.functional.pad(p.features, (0, 0, 0, width - p.features.shape[1])) for p in parts]
        return PromptEmbeds(
            torch.cat(feats), [l for p in parts for l in p.lengths], [t for p in parts for t in p.truncated]
        )


def _dtype_kwarg(dtype):
    import transformers

    major = int(transformers.__version__.split(".")[0])
    return {"dtype": dtype} if major >= 5 else {"torch_dtype": dtype}


class TextEncoder(HoldsModel):
    """Tokenizer + Phi model. ``encode`` never mutates the model."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @classmethod
    def from_folders(cls, text_encoder_dir: str, tokenizer_dir: str, device="cpu", dtype=torch.float32):
        return cls(load_phi(text_encoder_dir, device, dtype), load_tokenizer(tokenizer_dir))

    def tokenize(self, prompts: Sequence[str], max_length: int):
        """Token ids [B, max_length] (padded/truncated as the official ``padding="max_length",
        truncation=True`` call), lengths and whether each prompt was cut.

        Every call asks the tokenizer the same thing (no padding, no truncation) and pads here: a
        Hugging Face fast tokenizer keeps its padding/truncation settings as shared state, so
        toggling them per call gives wrong ids when two threads share the tokenizer."""
        ids, lengths, truncated = [], [], []
        pad_id = self.pad_id()
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        for i, p in enumerate(prompts):
            check_prompt(p, f"prompt {i}" if len(prompts) > 1 else "prompt")
            full = list(self.tokenizer(p, padding=False, truncation=False).input_ids)
            kept = full[:max_length]
            pad = [pad_id] * (max_length - len(kept))
            ids.append(pad + kept if left else kept + pad)
            lengths.append(len(kept))
            truncated.append(len(full) > max_length)
        return torch.tensor(ids, dtype=torch.long), lengths, truncated

    def pad_id(self) -> int:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            raise CheckpointError(
                "the tokenizer has neither a pad nor an eos token; tokenizer_config.json needs 'pad_token' or "
                "'eos_token'."
            )
        return int(pad)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], max_length: int = 256) -> PromptEmbeds:
        prompts = as_prompt_list(prompts)
        ids, lengths, truncated = self.tokenize(prompts, max_length)
        for p, n, cut in zip(prompts, lengths, truncated):
            if cut:
                log.warning(
                    "NOVA: prompt truncated to %d tokens: %r", max_length, p[:80] + ("..." if len(p) > 80 else "")
                )
        feats = torch.zeros(len(prompts), max_length, self.hidden_size, dtype=self.dtype, device=self.device)
        todo = [i for i, n in enumerate(lengths) if n > 0]  # empty prompts are all-null: skip Phi
        if todo:
            out = self.model(input_ids=ids[todo].to(self.device)).last_hidden_state
            feats[todo] = out.to(feats.dtype)
        return PromptEmbeds(feats, lengths, truncated)


def as_prompt_list(prompts, name: str = "prompt") -> List[str]:
    """A string or a list/tuple of strings -> a non-empty list of checked prompts."""
    if isinstance(prompts, str):
        prompts = [prompts]
    elif not isinstance(prompts, (list, tuple)):
        raise InputError(
            f"{name} is a {type(prompts).__name__} ({prompts!r:.60}); expected a string or a list of strings."
        )
    if not prompts:
        raise InputError(f"{name} is an empty list; pass a string or a non-empty list of strings.")
    return [check_prompt(p, f"{name} {i}" if len(prompts) > 1 else name) for i, p in enumerate(prompts)]


def check_prompt(prompt, name: str = "prompt") -> str:
    """A prompt the tokenizer can take: a string that encodes to UTF-8 (no lone surrogates)."""
    if not isinstance(prompt, str):
        raise InputError(f"{name} is a {type(prompt).__name__} ({prompt!r:.60}); expected a string.")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{name} holds an invalid character {prompt[exc.start]!r} at position {exc.start} (a lone surrogate, "
            "not valid Unicode text); remove it or re-copy the text."
        ) from exc
    return prompt


def load_tokenizer(folder: str):
    if not os.path.isfile(os.path.join(folder, "tokenizer.json")) and not os.path.isfile(
        os.path.join(folder, "vocab.json")
    ):
        raise CheckpointError(f"{folder}: no tokenizer found; expected tokenizer.json and tokenizer_config.json.")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        # Some broken tokenizer.json files load and fail only at the first prompt: try one now.
        probe = tok("a red fox", padding=False, truncation=False).input_ids
    except Exception as exc:  # tokenizers/transformers raise many types for a broken file
        raise CheckpointError(
            f"{folder}: the tokenizer files do not work ({type(exc).__name__}: {exc}). Re-download tokenizer/."
        ) from exc
    if not probe:
        raise CheckpointError(
            f"{folder}: the tokenizer turns text into no tokens; tokenizer.json is broken. Re-download tokenizer/."
        )
    return tok


def load_phi(folder: str, device="cpu", dtype=torch.float32):
    """Phi-2 through ``transformers.PhiModel`` (the ``lm_head`` of the file is not loaded)."""
    from transformers import PhiConfig, PhiModel

    config_path = os.path.join(folder, "config.json")
    data = read_json(config_path)
    if not isinstance(data, dict):
        raise ConfigError(f"{config_path}: expected a JSON object, got {type(data).__name__}.")
    if data.get("model_type") != "phi":
        raise ConfigError(
            f"{config_path}: model_type = {data.get('model_type')!r}; the NOVA text encoder is Phi ('phi')."
        )
    check_phi_config(data, config_path)
    files = weight_files(folder, "model")
    found = read_shapes(files)
    if data.get("num_hidden_layers") is not None:  # (absent: transformers' default, checked with the shapes)
        check_depths(found, [("model.layers", data["num_hidden_layers"], "num_hidden_layers")], config_path)
    try:
        config = PhiConfig.from_pretrained(folder)
        with torch.device("meta"):
            state = PhiModel(config).state_dict()
    except (TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError, RuntimeError) as exc:
        raise ConfigError(
            f"{config_path}: the config does not describe a buildable Phi model ({type(exc).__name__}: {exc})."
        ) from exc
    expected = {f"model.{k}": tuple(v.shape) for k, v in state.items()}
    floating = [f"model.{k}" for k, v in state.items() if v.is_floating_point()]
    check_state(expected, found, folder, ignore_unexpected=("lm_head.",), floating=floating)
    with _quiet_transformers():  # its load report flags the lm_head we deliberately skip
        model = PhiModel.from_pretrained(
            folder, config=config, use_safetensors=True, trust_remote_code=False, **_dtype_kwarg(dtype)
        )
    return model.to(device).eval().requires_grad_(False)


_PHI_INTS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
    "max_position_embeddings",
)
_PHI_NUMBERS = ("layer_norm_eps", "partial_rotary_factor", "rope_theta")


def check_phi_config(data: dict, path: str) -> None:
    """The sizes Phi is built from, with the types it needs (a wrong type fails here, naming the file)."""
    for key in _PHI_INTS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{path}: key {key!r} = {value!r}; expected a positive integer.")
    for key in _PHI_NUMBERS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{path}: key {key!r} = {value!r}; expected a number.")
    heads, hidden = data.get("num_attention_heads"), data.get("hidden_size")
    if isinstance(heads, int) and isinstance(hidden, int) and hidden % heads:
        raise ConfigError(f"{path}: hidden_size {hidden} is not divisible by num_attention_heads {heads}.")


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the "Loading weights" bar (and its blank lines)
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()

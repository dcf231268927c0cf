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

from .config import read_json
from .errors import CheckpointError, ConfigError
from .loading import check_state, read_shapes, weight_files

log = logging.getLogger("nova")


@dataclasses.dataclass(frozen=True)
class PromptEmbeds:
    """Phi-2 features of a batch of prompts. Rows past ``lengths[i]`` are not meaningful."""

    features: torch.Tensor  # [B, L, text_dim]
    lengths: List[int]
    truncated: List[bool]

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


class TextEncoder:
    """Tokenizer + Phi model. ``encode`` never mutates the model."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def dtype(self):
        return next(self.model.parameters()).dtype

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @classmethod
    def from_folders(cls, text_encoder_dir: str, tokenizer_dir: str, device="cpu", dtype=torch.float32):
        return cls(load_phi(text_encoder_dir, device, dtype), load_tokenizer(tokenizer_dir))

    def tokenize(self, prompts: Sequence[str], max_length: int):
        ids, lengths, truncated = [], [], []
        for p in prompts:
            if not isinstance(p, str):
                raise ConfigError(f"prompt {p!r} is not a string")
            full = self.tokenizer(p).input_ids
            padded = self.tokenizer(p, padding="max_length", max_length=max_length, truncation=True).input_ids
            ids.append(padded)
            lengths.append(min(len(full), max_length))
            truncated.append(len(full) > max_length)
        return torch.tensor(ids, dtype=torch.long), lengths, truncated

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], max_length: int = 256) -> PromptEmbeds:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids, lengths, truncated = self.tokenize(prompts, max_length)
        for p, n, cut in zip(prompts, lengths, truncated):
            if cut:
                log.warning("NOVA: prompt truncated to %d tokens: %r", max_length, p[:80] + ("..." if len(p) > 80 else ""))
        feats = torch.zeros(len(prompts), max_length, self.hidden_size, dtype=self.dtype, device=self.device)
        todo = [i for i, n in enumerate(lengths) if n > 0]  # empty prompts are all-null: skip Phi
        if todo:
            out = self.model(input_ids=ids[todo].to(self.device)).last_hidden_state
            feats[todo] = out.to(feats.dtype)
        return PromptEmbeds(feats, lengths, truncated)


def load_tokenizer(folder: str):
    if not os.path.isfile(os.path.join(folder, "tokenizer.json")) and not os.path.isfile(os.path.join(folder, "vocab.json")):
        raise CheckpointError(f"{folder}: no tokenizer found; expected tokenizer.json and tokenizer_config.json.")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_phi(folder: str, device="cpu", dtype=torch.float32):
    """Phi-2 through ``transformers.PhiModel`` (the ``lm_head`` of the file is not loaded)."""
    from transformers import PhiConfig, PhiModel

    config_path = os.path.join(folder, "config.json")
    data = read_json(config_path)
    if data.get("model_type") != "phi":
        raise ConfigError(f"{config_path}: model_type = {data.get('model_type')!r}; the NOVA text encoder is Phi ('phi').")
    files = weight_files(folder, "model")
    config = PhiConfig.from_pretrained(folder)
    with torch.device("meta"):
        expected = {f"model.{k}": tuple(v.shape) for k, v in PhiModel(config).state_dict().items()}
    check_state(expected, read_shapes(files), folder, ignore_unexpected=("lm_head.",))
    with _quiet_transformers():  # its load report flags the lm_head we deliberately skip
        model = PhiModel.from_pretrained(
            folder, config=config, use_safetensors=True, trust_remote_code=False, **_dtype_kwarg(dtype)
        )
    return model.to(device).eval().requires_grad_(False)


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)

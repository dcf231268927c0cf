"""NOVA Text Encode: a prompt -> CONDITIONING (Phi-2 features), like CLIPTextEncode."""

from __future__ import annotations

import logging

import torch

from ..nova.components.text_encoder import PromptEmbeds, TextEncoder, as_prompt_list
from ..nova.errors import InputError
from .compat import io
from .types import NovaTextEncoderType

log = logging.getLogger("nova")
MAX_TOKENS = 256  # text_token_len of every official checkpoint


class NovaTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NOVATextEncode",
            display_name="NOVA Text Encode",
            category="NOVA",
            description=(
                "Encodes a prompt with Phi-2. Leave the sampler's negative unconnected for the learned "
                "null embedding (the official default). The text encoder is offloaded after use."
            ),
            inputs=[
                NovaTextEncoderType.Input("text_encoder"),
                io.String.Input(
                    "text",
                    multiline=True,
                    default="",
                    tooltip="The prompt (up to 256 tokens; longer prompts are truncated with a warning).",
                ),
            ],
            outputs=[io.Conditioning.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, text_encoder, text) -> io.NodeOutput:
        return io.NodeOutput(encode_text(text_encoder, [text]))


def encode_text(handle, prompts) -> list:
    host = handle.host
    prompts = as_prompt_list(prompts, "text")
    host.load(handle.patcher)
    try:
        embeds = TextEncoder(handle.patcher.model.module, handle.tokenizer).encode(prompts, MAX_TOKENS)
    finally:
        host.offload(handle.patcher)
    if any(embeds.truncated):
        log.warning("NOVA Text Encode: prompt longer than %d tokens was truncated.", MAX_TOKENS)
    feats = embeds.features.to(host.intermediate_device())
    return [
        [feats, {"nova_lengths": list(embeds.lengths), "nova_truncated": list(embeds.truncated), "pooled_output": None}]
    ]


def conditioning_embeds(conditioning, text_dim: int, what: str) -> PromptEmbeds:
    """CONDITIONING from NOVA Text Encode -> PromptEmbeds (all entries as one batch)."""
    if not isinstance(conditioning, (list, tuple)) or not conditioning:
        raise InputError(f"{what} conditioning is empty; connect NOVA Text Encode.")
    feats, lengths = [], []
    for entry in conditioning:
        if not isinstance(entry, (list, tuple)) or not entry or not isinstance(entry[0], torch.Tensor):
            raise InputError(
                f"{what} conditioning is not a CONDITIONING list of [tensor, dict]; connect NOVA Text Encode."
            )
        tensor, extra = entry[0], entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
        if tensor.dim() != 3 or tensor.shape[-1] != text_dim or "nova_lengths" not in extra:
            raise InputError(
                f"{what} conditioning has features of shape {list(tensor.shape)}; NOVA needs Phi-2 features "
                f"(last dim {text_dim}) from NOVA Text Encode, not another text encoder."
            )
        entry_lengths = list(extra["nova_lengths"])
        if len(entry_lengths) != tensor.shape[0]:
            # Each row needs its own length: a missing one would silently become the null prompt.
            raise InputError(
                f"{what} conditioning has a batch of {tensor.shape[0]} prompts but {len(entry_lengths)} "
                "nova_lengths; a node between NOVA Text Encode and here changed the batch. Encode each prompt with "
                "NOVA Text Encode."
            )
        if not tensor.is_floating_point():
            raise InputError(
                f"{what} conditioning features have dtype {tensor.dtype}; expected float features from NOVA Text "
                "Encode."
            )
        feats.append(tensor)
        lengths += entry_lengths
    width = max(f.shape[1] for f in feats)
    feats = [torch.nn.functional.pad(f, (0, 0, 0, width - f.shape[1])) for f in feats]
    return PromptEmbeds(torch.cat(feats), lengths, [False] * len(lengths))

"""NOVATransformer3DModel: the modules of the official checkpoint, under the official key names.

The module only holds weights and per-stage forward functions. The autoregressive loops (what
frame comes next, which tokens are known, the K/V cache) live in :mod:`nova.sampling.sampler` and pass
their state explicitly.
"""

from __future__ import annotations

import functools
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from .diffusion_mlp import DiffusionMLP
from .embeddings import MaskEmbed, MotionEmbed, Rotary3D, TextEmbed, VideoPosEmbed, space_embed_2d, timestep_embed
from .vit import EAGER, KV, AdaLayerNorm, VisionTransformer


@functools.lru_cache(maxsize=16)
def _image_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    """The image tokens' rotary coordinates on ``device``, made once: a set step replayed as a CUDA
    graph cannot copy them from the CPU. Callers must not modify it in place."""
    return Rotary3D.grid(1, h, w).to(device)


class NovaTransformer(nn.Module):
    """NOVA's network from a :class:`nova.components.config.NovaConfig` (the official
    ``transformer/config.json``); ``ops`` supplies the layer classes (a host may swap them)."""

    def __init__(self, config, ops=nn):
        super().__init__()
        self.config = config
        ve, ie, dh = config.video_encoder, config.image_encoder, config.diffusion_head
        c, p = config.image_dim, config.patch_size
        self.video_encoder = VisionTransformer(ve.depth, ve.width, ve.heads, 2 * p, c, ops)
        self.image_encoder = VisionTransformer(ie.depth, ie.width, ie.heads, p, c, ops)
        self.image_decoder = DiffusionMLP(dh.depth, dh.width, ie.width, p, c, ops)
        self.mask_embed = MaskEmbed(ie.width)
        self.text_embed = TextEmbed(config.text_token_dim, ie.width, config.text_token_len, ops)
        if config.has_mixer:
            self.video_encoder.mixer = AdaLayerNorm(ve.width, max(config.video_mixer_rank, 0), ops)
        if not config.rotary_pos_embed:
            self.video_pos_embed = VideoPosEmbed(ve.width, config.video_base_size, ops)
        if config.is_video_model:
            self.motion_embed = MotionEmbed(ve.width, ops)
        self.video_rope = Rotary3D(ve.width // ve.heads) if config.rotary_pos_embed else None
        self.image_rope = Rotary3D(ie.width // ie.heads) if config.rotary_pos_embed else None
        # Where to compute. A host that offloads weights layer by layer (ComfyUI lowvram) sets it;
        # otherwise it is wherever the weights are.
        self.compute_device: Optional[torch.device] = None

    @property
    def dtype(self) -> torch.dtype:
        return self.mask_embed.bos_token.dtype

    @property
    def device(self) -> torch.device:
        return self.compute_device or self.mask_embed.bos_token.device

    def _param(self, tensor: torch.Tensor) -> torch.Tensor:
        """A small learned tensor (BOS/mask token, null text) on the compute device."""
        return tensor.to(device=self.device, dtype=self.dtype)

    # -- conditioning ------------------------------------------------------------------------
    def text_features(self, features: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
        """Raw Phi-2 features (valid up to ``lengths``) -> the padded raw features the model saw in
        training: positions past each prompt's length hold the learned null embedding."""
        raw = self._param(self.text_embed.null_features(features.shape[0]))
        for i, n in enumerate(lengths):
            n = min(int(n), raw.shape[1])
            raw[i, :n] = features[i, :n].to(device=raw.device, dtype=raw.dtype)
        return raw

    def null_text_features(self, batch: int) -> torch.Tensor:
        return self._param(self.text_embed.null_features(batch))

    def context_tokens(self, raw_text: torch.Tensor, flow: Sequence[float], fps: Sequence[float]) -> torch.Tensor:
        """Context of the video encoder: projected text tokens (+ motion and fps tokens)."""
        ctx = self.text_embed(raw_text.to(self.device))
        if getattr(self, "motion_embed", None) is not None:
            ctx = torch.cat([ctx, self.motion_embed(flow, fps, ctx.device, ctx.dtype)], dim=1)
        return ctx

    # -- temporal (frame-by-frame) stage ------------------------------------------------------
    def video_grid(self) -> Tuple[int, int]:
        return tuple(self.config.video_base_size[1:])

    def frame_tokens(self, prev_latent: Optional[torch.Tensor], batch: int, time_pos: float) -> torch.Tensor:
        """Input tokens of the video encoder for one frame: the previous latent (BOS for the first
        frame), plus time and space embeddings (absolute mode)."""
        if prev_latent is None:
            h, w = self.video_grid()
            tokens = self._param(self.mask_embed.bos_token).expand(batch, h * w, -1)
        else:
            tokens = self.video_encoder.patch_embed(prev_latent.to(device=self.device, dtype=self.dtype))
        if self.video_rope is not None:
            return tokens
        pe = self.video_pos_embed
        time = pe.time_embed(torch.tensor([float(time_pos)]))[0]
        return tokens + time + pe.space_embed(tokens.device, tokens.dtype)

    def video_rotation(self, frame_index: int, with_context: int) -> Optional[torch.Tensor]:
        if self.video_rope is None:
            return None
        h, w = self.video_grid()
        pos = Rotary3D.grid(1, h, w, t_offset=frame_index).to(self.device).unsqueeze(0)
        return self.video_rope.rotation(pos, pad=with_context)

    def encode_frame(
        self, tokens: torch.Tensor, context: Optional[torch.Tensor], past: Optional[List[KV]], frame_index: int
    ) -> Tuple[torch.Tensor, List[KV]]:
        """Video encoder features of one frame's tokens, and the K/V cache grown by them (``context``,
        the text + motion tokens, with the first frame only; ``frame_index`` places its rotary positions)."""
        rot = self.video_rotation(frame_index, context.shape[1] if context is not None else 0)
        return self.video_encoder.forward_causal(tokens, context, past, rot)

    def bos_token(self) -> torch.Tensor:
        return self._param(self.mask_embed.bos_token)

    def mix(self, first: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """Video mixer: modulate the first frame's features by the current ones (rank>0 models)."""
        mixer = getattr(self.video_encoder, "mixer", None)
        return current if mixer is None else mixer(first, current)

    # -- spatial (set-by-set) stage -----------------------------------------------------------
    def image_tokens(self, latent: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
        """Embed a partially generated latent; ``unknown`` [B, L, 1] marks tokens still to predict."""
        tokens = self.image_encoder.patch_embed(latent.to(device=self.device, dtype=self.dtype))
        unknown = unknown.to(tokens.dtype)
        return tokens * (1 - unknown) + self._param(self.mask_embed.mask_token) * unknown

    def image_space_embed(self) -> torch.Tensor:
        h, w = self.config.image_base_size
        return space_embed_2d(self.image_encoder.dim, h, w, self.device, self.dtype)

    def image_rotations(self, known_ids: torch.Tensor, n_ctx: int):
        if self.image_rope is None:
            return None, None
        h, w = self.config.image_base_size
        pos = _image_grid(h, w, self.device).unsqueeze(0).expand(known_ids.shape[0], -1, -1)
        rot_all = self.image_rope.rotation(pos, pad=n_ctx)
        rot_known = self.image_rope.rotation(pos.gather(1, known_ids.expand(-1, -1, 3)), pad=n_ctx)
        return rot_known, rot_all

    def encode_image(
        self, tokens: torch.Tensor, context: torch.Tensor, known_ids: torch.Tensor, out_ids=None, kernels=EAGER
    ) -> torch.Tensor:
        """Spatial encoder features of every token, or of the ``out_ids`` [B, n, 1] tokens
        (``kernels``: how its blocks compute, see nova/speed/spatial_kernels.py)."""
        rot_known, rot_all = self.image_rotations(known_ids, context.shape[1])
        if self.image_rope is None:
            tokens = tokens + self.image_space_embed()
        return self.image_encoder.forward_masked(tokens, context, known_ids, rot_known, rot_all, out_ids, kernels)

    def head_condition(self, z: torch.Tensor) -> torch.Tensor:
        """The diffusion head's condition projection; constant across diffusion steps."""
        return self.image_decoder.time_cond_embed.condition_proj(z)

    def head(self, tokens: torch.Tensor, timestep: torch.Tensor, cond_proj: torch.Tensor) -> torch.Tensor:
        dec = self.image_decoder
        x = dec.embed_tokens(tokens.to(self.dtype))
        t = dec.time_cond_embed.timestep_proj(timestep_embed(timestep).to(cond_proj.dtype))
        z = cond_proj + t.unsqueeze(1)
        for blk in dec.blocks:
            x = blk(x, z)
        return dec.head(dec.norm(x, z)[0])

"""The diffusion head prepared for a run: its weights as plain tensors laid out for one batched
product per step (the network itself, with the official keys, is nova/models/diffusion_mlp.py)."""

from __future__ import annotations

import copy

import torch
from torch.nn import functional as F

from ..models.embeddings import timestep_embed


class HeadPlan:
    """The diffusion head prepared for one run, as plain tensors on the compute device.

    Its AdaLN modulations depend on the token's condition and the timestep only, so
    :meth:`modulations` computes them for every diffusion step of a set step in one matrix product
    (``1 + scale`` included); a diffusion step is then ~25 small tensor operations. The noisy
    tokens are the same in every guidance pass, so they are embedded once and broadcast.
    """

    def __init__(self, model, timesteps: torch.Tensor, fused: bool, triton: bool = False):
        dec = model.image_decoder
        self.fused, self.kernels = fused, None  # kernels: a TritonHead, when asked for and usable
        if not fused:
            return
        device, dtype = model.device, model.dtype

        def get(t):  # a host may keep weights elsewhere (offload) or in another dtype (manual cast)
            return None if t is None else t.to(device=device, dtype=dtype)

        t = torch.as_tensor(timesteps, device=device).reshape(-1)
        self.t_proj = dec.time_cond_embed.timestep_proj(timestep_embed(t).to(dtype))  # [S, D]
        projs = [blk.norm1.proj for blk in dec.blocks] + [dec.norm.proj]
        self.width = dec.head.weight.shape[1]
        self.mod_weight = torch.cat([get(p.weight) for p in projs])
        self.mod_bias = torch.cat([get(p.bias) for p in projs])
        # +1 on the scale columns (chunk 0 of every projection): x + 0 and 1 + x are exact.
        self.mod_ones = torch.cat([F.pad(torch.ones(self.width), (0, p.weight.shape[0] - self.width)) for p in projs])
        self.mod_ones = self.mod_ones.to(device=device, dtype=dtype)
        self.mod_sizes = [self.width] * (self.mod_weight.shape[0] // self.width)
        # Linear weights are kept transposed ([in, out], contiguous) for torch.addmm: with a
        # dozen rows, that layout is much faster on CPU BLAS than F.linear's [out, in].
        conv = dec.patch_embed.proj  # the patch conv as the equivalent linear map, flattened once
        w = get(conv.weight)
        self.embed = (get(conv.bias), w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).t().contiguous())
        self.blocks = [
            (
                get(b.proj.fc1.bias),
                get(b.proj.fc1.weight).t().contiguous(),
                get(b.proj.fc2.bias),
                get(b.proj.fc2.weight).t().contiguous(),
                get(b.norm2.weight),
                get(b.norm2.bias),
                b.norm2.eps,
            )
            for b in dec.blocks
        ]
        self.out = (get(dec.head.bias), get(dec.head.weight).t().contiguous())
        if triton:
            from .triton import load  # (imports triton only when it can run)

            self.kernels = load(self)

    def skipping(self, skip: int) -> "HeadPlan":
        """This head for the last diffusion steps only (the first ``skip`` dropped)."""
        if not skip or not self.fused:
            return self
        head = copy.copy(self)
        head.t_proj = self.t_proj[skip:]
        return head

    def modulations(self, cond_proj: torch.Tensor, passes: int, budget: int = 1 << 28):
        """Yields, per diffusion step, the (1 + scale, shift, gate) of each block and (1 + scale,
        shift) of the final norm, each [passes, B * n, D]. ``cond_proj`` is [passes * B, n, D].
        Steps are computed together in chunks of at most ``budget`` bytes."""
        cond = cond_proj.reshape(passes, -1, cond_proj.shape[-1])
        per_step = cond[..., 0].numel() * self.mod_weight.shape[0] * cond.element_size()
        chunk = max(1, budget // max(per_step, 1))
        for start in range(0, self.t_proj.shape[0], chunk):
            z = F.silu(cond.unsqueeze(0) + self.t_proj[start : start + chunk, None, None])
            stats = F.linear(z, self.mod_weight, self.mod_bias).add_(self.mod_ones)
            for s in stats.unbind(0):
                yield s.split(self.mod_sizes, dim=-1)

    def __call__(self, tokens: torch.Tensor, mods: tuple) -> torch.Tensor:
        """Head output for ``tokens`` [B, n, ppC] (float32) under one step's modulations, as
        [passes, B, n, ppC] in the model's dtype."""
        if self.kernels is not None:
            return self.kernels(tokens, mods)
        width, d = (self.width,), self.width
        passes, (b, n, ppc) = mods[0].shape[0], tokens.shape
        x = torch.addmm(self.embed[0], tokens.reshape(b * n, ppc).to(self.embed[1].dtype), self.embed[1])
        for k, (b1, w1, b2, w2, nw, nb, eps) in enumerate(self.blocks):
            scale, shift, gate = mods[3 * k : 3 * k + 3]
            h = torch.addcmul(shift, F.layer_norm(x, width, eps=1e-6), scale).view(-1, d)
            h = torch.addmm(b2, F.silu(torch.addmm(b1, h, w1), inplace=True), w2)
            x = torch.addcmul(x, F.layer_norm(h, width, nw, nb, eps).view(passes, -1, d), gate)
        scale, shift = mods[-2:]
        h = torch.addcmul(shift, F.layer_norm(x, width, eps=1e-6), scale).view(-1, d)
        return torch.addmm(self.out[0], h, self.out[1]).view(passes, b, n, ppc)

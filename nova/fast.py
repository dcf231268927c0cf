"""The fast path of the set-by-set sampler: same latents as the plain path, less work.

- The diffusion loop runs on the tokens being predicted only. The random draws stay full-size
  (the official stream), and only the drawn values of those tokens are used.
- Scheduler steps use coefficients precomputed from the diffusers scheduler's own tensors, in the
  same operation order as ``scheduler.step`` (bitwise the same values, no per-step Python work).
- The diffusion head's timestep features are computed once per run, and the AdaLN projections of
  all its blocks run as one matrix product.
- Only the predicted tokens go through the spatial encoder's last block (its keys and values still
  come from every token).
- On CUDA, each set step's whole diffusion loop is captured once per token-count bucket as a CUDA
  graph and replayed (the head is launch-bound: tiny tensors, 25 x 64 x 9 times per video).

:class:`Accel` switches each of these; ``Accel.plain()`` is the reference path.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import List, Optional

import torch
from torch.nn import functional as F

from .models.embeddings import timestep_embed

log = logging.getLogger("nova")


@dataclasses.dataclass(frozen=True)
class Accel:
    token_loop: bool = True  # diffusion loop on predicted tokens with precomputed scheduler steps
    fused_head: bool = True  # precomputed timestep features, one AdaLN projection for all blocks
    prune_last_block: bool = True  # the spatial encoder's last block on predicted tokens only
    cuda_graphs: bool = True  # capture the diffusion loop (CUDA only)

    @classmethod
    def plain(cls) -> "Accel":
        return cls(False, False, False, False)


class StepPlan:
    """Per-timestep coefficients of a prepared DDPM (epsilon, fixed_small) or flow-matching Euler
    scheduler; ``None`` from :meth:`build` when the scheduler's config needs the library path."""

    def __init__(self, kind: str, timesteps: torch.Tensor, coeffs: List[tuple]):
        self.kind, self.timesteps, self.coeffs = kind, timesteps, coeffs

    @classmethod
    def build(cls, sched) -> Optional["StepPlan"]:
        name, cfg = type(sched).__name__, sched.config
        timesteps = sched.timesteps
        if name == "DDPMScheduler":
            if cfg.prediction_type != "epsilon" or cfg.variance_type != "fixed_small" or cfg.clip_sample or cfg.thresholding:
                return None
            coeffs = []
            for t in timesteps:
                prev_t = sched.previous_timestep(t)
                a_t = sched.alphas_cumprod[t]
                a_prev = sched.alphas_cumprod[prev_t] if prev_t >= 0 else sched.one
                b_t, b_prev = 1 - a_t, 1 - a_prev
                cur_a = a_t / a_prev
                cur_b = 1 - cur_a
                std = sched._get_variance(t) ** 0.5 if t > 0 else None
                coeffs.append((b_t ** (0.5), a_t ** (0.5), (a_prev ** (0.5) * cur_b) / b_t, cur_a ** (0.5) * b_prev / b_t, std))
            return cls("ddpm", timesteps, coeffs)
        if name == "FlowMatchEulerDiscreteScheduler":
            if cfg.stochastic_sampling:
                return None
            sigmas = sched.sigmas
            return cls("flow", timesteps, [(sigmas[i + 1] - sigmas[i],) for i in range(len(timesteps))])
        return None

    @property
    def draws_noise(self) -> List[bool]:
        return [self.kind == "ddpm" and c[4] is not None for c in self.coeffs]

    def step(self, i: int, model_output: torch.Tensor, sample: torch.Tensor, noise: Optional[torch.Tensor]):
        c = self.coeffs[i]
        if self.kind == "flow":
            return (sample + c[0] * model_output).to(model_output.dtype)
        sqrt_b, sqrt_a, c0, c1, std = c
        x0 = (sample - sqrt_b * model_output) / sqrt_a
        prev = c0 * x0 + c1 * sample
        return prev + std * noise if std is not None else prev


class HeadPlan:
    """The diffusion head prepared for one run: timestep features per step and fused AdaLN."""

    def __init__(self, model, timesteps: torch.Tensor, fused: bool):
        dec = model.image_decoder
        device, dtype = model.device, model.dtype
        self.model, self.fused = model, fused
        self.t_proj = None
        self.weight = self.bias = None
        if not fused:
            return
        t = torch.as_tensor(timesteps, device=device).reshape(-1)
        self.t_proj = dec.time_cond_embed.timestep_proj(timestep_embed(t).to(dtype)).unsqueeze(1)  # [S, 1, D]
        projs = [blk.norm1.proj for blk in dec.blocks] + [dec.norm.proj]
        self.sizes = [p.weight.shape[0] for p in projs]
        self.weight = torch.cat([p.weight.to(device=device, dtype=dtype) for p in projs])
        self.bias = torch.cat([p.bias.to(device=device, dtype=dtype) for p in projs])
        conv = dec.patch_embed.proj  # the patch conv as the equivalent linear map, flattened once
        w = conv.weight.to(device=device, dtype=dtype)
        self.embed_weight = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)
        self.embed_bias = conv.bias.to(device=device, dtype=dtype)

    def __call__(self, tokens: torch.Tensor, i: int, t, cond_proj: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            timestep = torch.as_tensor(t, device=tokens.device).expand(tokens.shape[0])
            return self.model.head(tokens, timestep, cond_proj)
        dec = self.model.image_decoder
        x = F.linear(tokens.to(cond_proj.dtype), self.embed_weight, self.embed_bias)
        stats = F.linear(F.silu(cond_proj + self.t_proj[i]), self.weight, self.bias).split(self.sizes, dim=-1)
        width = x.shape[-1:]
        for blk, s in zip(dec.blocks, stats):
            scale, shift, gate = s.chunk(3, dim=-1)
            h = torch.addcmul(shift, F.layer_norm(x, width, eps=1e-6), 1 + scale)
            x = torch.addcmul(x, blk.norm2(blk.proj(h)), gate)
        scale, shift = stats[-1].chunk(2, dim=-1)
        return dec.head(torch.addcmul(shift, F.layer_norm(x, width, eps=1e-6), 1 + scale))


@dataclasses.dataclass(frozen=True)
class FastPlan:
    """What one video's frames share: the scheduler steps, the prepared head, the pruning switch."""

    steps: Optional[StepPlan]
    head: Optional[HeadPlan]
    prune_last_block: bool
    graphed: Optional[GraphedLoop] = None

    @classmethod
    def build(cls, model, sched, accel: Optional[Accel], guidance) -> "FastPlan":
        accel = accel or Accel()
        steps = StepPlan.build(sched) if accel.token_loop and guidance.renorm >= 1 else None
        head = HeadPlan(model, steps.timesteps, accel.fused_head) if steps is not None else None
        graphed = None
        if steps is not None and accel.cuda_graphs and GraphedLoop.usable(model, head, guidance):
            graphed = GraphedLoop(model, steps, head, guidance)
        return cls(steps, head, accel.prune_last_block, graphed)

    def denoise(self, model, cond_proj, x_tokens, step_noise, guidance) -> torch.Tensor:
        if self.graphed is not None:
            try:
                return self.graphed(cond_proj, x_tokens, step_noise)
            except RuntimeError as exc:  # capture can fail on unusual setups: stay correct, go eager
                log.warning("NOVA: CUDA graph capture failed (%s); using the eager diffusion loop.", exc)
                object.__setattr__(self, "graphed", None)
        return denoise_tokens(model, self.steps, self.head, cond_proj, x_tokens, step_noise, guidance)


def draw_step_noise(plan: StepPlan, shape, generator: torch.Generator) -> List[Optional[torch.Tensor]]:
    """The scheduler's variance noise for every step, drawn in the library's order (full latent)."""
    return [torch.randn(shape, generator=generator, device=generator.device) if d else None for d in plan.draws_noise]


def denoise_tokens(model, plan: StepPlan, head: HeadPlan, cond_proj, x_tokens, step_noise, guidance) -> torch.Tensor:
    """The diffusion loop on predicted tokens only. ``x_tokens`` [B, n, ppC] float32 noise,
    ``cond_proj`` [P*B, n, D], ``step_noise`` per-step noise gathered to [B, n, ppC] (or None)."""
    passes = guidance.passes
    batch = x_tokens.shape[0]
    for i, t in enumerate(plan.timesteps):
        if passes > 1 and guidance.truncates_at(t):
            passes, cond_proj = 1, cond_proj[:batch]
        # (no host-to-device copy here when fused: the loop must be capturable as a CUDA graph)
        out = head(x_tokens.repeat(passes, 1, 1), i, t, cond_proj).float()
        x_tokens = plan.step(i, guidance.combine(out, passes), x_tokens, step_noise[i])
    return x_tokens


class GraphedLoop:
    """:func:`denoise_tokens` captured as CUDA graphs, one per token-count bucket (the count of
    predicted tokens changes every set step; padding to a multiple of ``bucket`` keeps the graphs
    few). Padded rows are computed and dropped: every op of the head is per token, so they cannot
    affect the real ones. Used only on CUDA with the fused head and no guidance truncation."""

    def __init__(self, model, plan: StepPlan, head: HeadPlan, guidance, bucket: int = 16):
        self.model, self.plan, self.head, self.guidance, self.bucket = model, plan, head, guidance, bucket
        self.graphs = {}

    @staticmethod
    def usable(model, head: Optional[HeadPlan], guidance) -> bool:
        return model.device.type == "cuda" and head is not None and head.fused and guidance.trunc <= 0

    def _pad(self, t: torch.Tensor, n: int) -> torch.Tensor:
        return F.pad(t, (0, 0, 0, n - t.shape[1]))

    def _capture(self, batch: int, n: int, dims):
        device = self.model.device
        passes = self.guidance.passes
        ppc, width = dims
        x_in = torch.zeros(batch, n, ppc, device=device)
        cond_in = torch.zeros(batch * passes, n, width, device=device, dtype=self.model.dtype)
        noise_in = [torch.zeros(batch, n, ppc, device=device) if d else None for d in self.plan.draws_noise]

        def body():
            return denoise_tokens(self.model, self.plan, self.head, cond_in, x_in, noise_in, self.guidance)

        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            body()  # warm-up outside the graph (allocations, library handles)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = body()
        return graph, x_in, cond_in, noise_in, out

    def __call__(self, cond_proj, x_tokens, step_noise) -> torch.Tensor:
        batch, n, ppc = x_tokens.shape
        padded = -(-n // self.bucket) * self.bucket
        key = (batch, padded)
        if key not in self.graphs:
            self.graphs[key] = self._capture(batch, padded, (ppc, cond_proj.shape[-1]))
        graph, x_in, cond_in, noise_in, out = self.graphs[key]
        x_in.copy_(self._pad(x_tokens, padded))
        cond_in.copy_(self._pad(cond_proj, padded))
        for buf, noise in zip(noise_in, step_noise):
            if buf is not None:
                buf.copy_(self._pad(noise, padded))
        graph.replay()
        return out[:, :n].clone()

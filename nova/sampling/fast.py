"""The fast path of the set-by-set sampler: same latents as the plain path, less work.

- The diffusion loop runs on the tokens being predicted only. The random draws stay full-size
  (the official stream), and only the drawn values of those tokens are used.
- Scheduler steps use coefficients precomputed from the diffusers scheduler's own tensors and
  folded into ``a * sample + b * prediction (+ std * noise)`` (the library's values up to float32
  rounding, no per-step Python work).
- The diffusion head's AdaLN modulations depend only on the condition and the timestep: they are
  computed for every diffusion step of a set step in one matrix product, and the head then runs
  as plain tensor operations; the noisy tokens are embedded once for all guidance passes.
- Only the predicted tokens go through the spatial encoder's last block (its keys and values still
  come from every token).
- On CUDA, each set step's whole diffusion loop is captured once per token-count bucket as a CUDA
  graph and replayed (the head is launch-bound: tiny tensors, 25 x 64 x 9 times per video).

:class:`Accel` switches each of these; ``Accel.plain()`` is the reference path. It also carries the
spatial encoder's modes (nova/speed/spatial_kernels.py): the attention kernel, and the opt-in modes that
change the latents (SageAttention, fp8 matmuls), which are never on by default.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import List, Optional

import torch
from torch.nn import functional as F

from ..errors import InputError
from ..head.prepared import HeadPlan
from ..speed.options import LOSSY_ATTENTION, check_mode, check_offered
from ..speed.spatial_kernels import SpatialKernels
from .rng import draw_per_sample
from .set_step import StepBuffers, encode_step, make_runner

log = logging.getLogger("nova")


@dataclasses.dataclass(frozen=True)
class Accel:
    token_loop: bool = True  # diffusion loop on predicted tokens with precomputed scheduler steps
    fused_head: bool = True  # head as plain tensor ops, AdaLN modulations of all steps in one product
    prune_last_block: bool = True  # the spatial encoder's last block on predicted tokens only
    cuda_graphs: bool = True  # capture the diffusion loop (CUDA only)
    # The fused head's per-step work as Triton kernels (nova/head/triton.py; CUDA with triton, or
    # TRITON_INTERPRET=1). Off: slower than the default on an H200 (bench/results/gpu-check-h200.md);
    # kept for bench/gpu_check.py, to be turned on only once a GPU run shows it faster.
    triton_head: bool = False
    # The spatial encoder's attention kernel: "auto" (PyTorch picks), one SDPA kernel ("flash",
    # "cudnn", "efficient", "math"), or "sage" (SageAttention: other latents, opt-in only).
    attention: str = "auto"
    fp8_matmuls: bool = False  # the spatial encoder's linears as fp8 products: other latents, opt-in only
    compile_encoder: bool = False  # the spatial encoder's blocks through torch.compile (exact modes only)
    # Whole set steps on fixed buffers, replayed as CUDA graphs on CUDA (nova/sampling/set_step.py), for runs
    # that sample more than one frame (a graph pays off when its shape comes round again).
    step_graphs: bool = True

    def __post_init__(self):
        check_mode(self.attention, self.fp8_matmuls, self.compile_encoder)

    @classmethod
    def plain(cls) -> "Accel":
        return cls(False, False, False, False, step_graphs=False)

    @classmethod
    def choose(
        cls, reference: bool = False, attention: str = "auto", fp8_matmuls: bool = False, compile_encoder: bool = False
    ) -> "Accel":
        """What a front end's options ask for: the fast path (or the reference path) with the
        spatial encoder's mode, refused unless it is offered (nova/speed/options.py)."""
        check_offered(attention, fp8_matmuls, compile_encoder)
        if reference and (fp8_matmuls or attention in LOSSY_ATTENTION):
            raise InputError(
                "the reference path is the official algorithm; it takes no speed mode that changes the "
                "latents (SageAttention, fp8 matmuls). Drop one of the two."
            )
        return dataclasses.replace(
            cls.plain() if reference else cls(),
            attention=attention,
            fp8_matmuls=bool(fp8_matmuls),
            compile_encoder=bool(compile_encoder),
        )

    @property
    def exact(self) -> bool:
        """False for the modes that change the latents (SageAttention, fp8 matmuls)."""
        return self.attention not in LOSSY_ATTENTION and not self.fp8_matmuls

    def describe(self) -> str:
        """The spatial encoder's mode in words, for logs and reports."""
        parts = [] if self.attention == "auto" else [f"attention {self.attention}"]
        parts += ["fp8 matmuls"] if self.fp8_matmuls else []
        parts += ["compiled blocks"] if self.compile_encoder else []
        text = ", ".join(parts) or "default kernels"
        return text if self.exact else text + " (changes the latents)"


class StepPlan:
    """Per-timestep coefficients of a prepared DDPM (epsilon, fixed_small) or flow-matching Euler
    scheduler; ``None`` from :meth:`build` when the scheduler's config needs the library path.

    Each step is ``prev = a * sample + b * model_output (+ std * noise)``: the library's formula
    with its constants folded (computed in float64 from the scheduler's own tensors), so a step
    is three tensor operations instead of eight.
    """

    def __init__(self, timesteps: torch.Tensor, coeffs: List[tuple]):
        self.timesteps, self.coeffs = timesteps, coeffs  # coeffs: (a, b, std or None) per step

    @classmethod
    def build(cls, sched) -> Optional["StepPlan"]:
        name, cfg = type(sched).__name__, sched.config
        timesteps = sched.timesteps
        if name == "DDPMScheduler":
            if (
                cfg.prediction_type != "epsilon"
                or cfg.variance_type != "fixed_small"
                or cfg.clip_sample
                or cfg.thresholding
            ):
                return None
            coeffs = []
            for t in timesteps:
                prev_t = sched.previous_timestep(t)
                a_t = float(sched.alphas_cumprod[t])
                a_prev = float(sched.alphas_cumprod[prev_t]) if prev_t >= 0 else float(sched.one)
                cur_a = a_t / a_prev
                # x0 = (x - sqrt(1-a_t) eps) / sqrt(a_t); prev = c0 x0 + c1 x  (DDPM posterior mean)
                c0 = a_prev**0.5 * (1 - cur_a) / (1 - a_t)
                c1 = cur_a**0.5 * (1 - a_prev) / (1 - a_t)
                std = float(sched._get_variance(t)) ** 0.5 if t > 0 else None
                coeffs.append((c0 / a_t**0.5 + c1, -c0 * (1 - a_t) ** 0.5 / a_t**0.5, std))
            return cls(timesteps, coeffs)
        if name == "FlowMatchEulerDiscreteScheduler":
            if cfg.get("stochastic_sampling", False):  # (the option is absent before diffusers 0.33)
                return None
            sigmas = sched.sigmas
            return cls(timesteps, [(1.0, float(sigmas[i + 1] - sigmas[i]), None) for i in range(len(timesteps))])
        return None

    @property
    def draws_noise(self) -> List[bool]:
        return [c[2] is not None for c in self.coeffs]

    def step(self, i: int, model_output: torch.Tensor, sample: torch.Tensor, noise: Optional[torch.Tensor]):
        a, b, std = self.coeffs[i]
        prev = torch.add(sample if a == 1.0 else sample * a, model_output, alpha=b)
        return prev if std is None else prev.add_(noise, alpha=std)


@dataclasses.dataclass(frozen=True)
class FastPlan:
    """What one video's frames share: the scheduler steps, the prepared head, the pruning switch,
    the spatial encoder's kernels (``None``: the eager default)."""

    steps: Optional[StepPlan]
    head: Optional[HeadPlan]
    prune_last_block: bool
    graphed: Optional[GraphedLoop] = None
    encoder: Optional[SpatialKernels] = None
    runner: Optional[StepBuffers] = None  # whole set steps on fixed buffers (nova/sampling/set_step.py)

    @classmethod
    def build(cls, model, sched, accel: Optional[Accel], guidance, frames: int = 1) -> "FastPlan":
        """``frames``: how many frames the run samples (set-step graphs are built when more than one
        frame shares the schedule)."""
        accel = accel or Accel()
        steps = StepPlan.build(sched) if accel.token_loop and guidance.renorm >= 1 else None
        head = HeadPlan(model, steps.timesteps, accel.fused_head, accel.triton_head) if steps is not None else None
        graphed = None
        if steps is not None and accel.cuda_graphs and GraphedLoop.usable(model, head, guidance):
            graphed = GraphedLoop(model, steps, head, guidance)
        encoder = SpatialKernels.build(model, accel.attention, accel.fp8_matmuls, accel.compile_encoder)
        if not accel.exact:
            log.warning("NOVA: spatial encoder with %s.", accel.describe())
        plan = cls(steps, head, accel.prune_last_block, graphed, encoder)
        if steps is not None and head.fused and accel.step_graphs and frames > 1:
            runner = make_runner(model, functools.partial(encode_step, model, plan, guidance))
            plan = dataclasses.replace(plan, runner=runner)
            # (the step reads the plan it is built from: the replaced copy has the same fields)
        return plan

    def skipping(self, model, guidance, skip: int) -> "FastPlan":
        """This plan for frames whose diffusion loop skips its first ``skip`` steps (denoise
        strength < 1): the same spatial half (and set-step runner), the scheduler steps and head
        modulations of the remaining steps, and their own diffusion-loop graphs."""
        if not skip or self.steps is None:
            return self
        steps = StepPlan(self.steps.timesteps[skip:], self.steps.coeffs[skip:])
        head = self.head.skipping(skip)
        graphed = GraphedLoop(model, steps, head, guidance) if self.graphed is not None else None
        return dataclasses.replace(self, steps=steps, head=head, graphed=graphed)

    def encode_image(self, model, *args, **kwargs) -> torch.Tensor:
        """The spatial encoder (``model.encode_image``) under this plan's kernels."""
        if self.encoder is None:
            return model.encode_image(*args, **kwargs)
        return self.encoder.encode(model, *args, **kwargs)

    def denoise(self, model, cond_proj, x_tokens, step_noise, guidance) -> torch.Tensor:
        if self.graphed is not None:
            try:
                return self.graphed(cond_proj, x_tokens, step_noise)
            except RuntimeError as exc:  # capture can fail on unusual setups: stay correct, go eager
                log.warning("NOVA: CUDA graph capture failed (%s); using the eager diffusion loop.", exc)
                object.__setattr__(self, "graphed", None)
        return denoise_tokens(model, self.steps, self.head, cond_proj, x_tokens, step_noise, guidance)


def draw_step_noise(plan: StepPlan, shape, generator) -> List[Optional[torch.Tensor]]:
    """The scheduler's variance noise for every step, drawn in the library's order (full latent;
    ``generator``: one, or one per sample, see :mod:`nova.sampling.rng`)."""

    def draw(g, n):
        return torch.randn((n, *shape[1:]), generator=g, device=g.device)

    return [draw_per_sample(generator, shape[0], draw) if d else None for d in plan.draws_noise]


def denoise_tokens(model, plan: StepPlan, head: HeadPlan, cond_proj, x_tokens, step_noise, guidance) -> torch.Tensor:
    """The diffusion loop on predicted tokens only. ``x_tokens`` [B, n, ppC] float32 noise,
    ``cond_proj`` [P*B, n, D], ``step_noise`` per-step noise gathered to [B, n, ppC] (or None)."""
    passes, batch = guidance.passes, x_tokens.shape[0]
    cut = None  # the step where guidance truncation drops to one pass
    if passes > 1 and guidance.trunc > 0:
        cut = next((i for i, t in enumerate(plan.timesteps.tolist()) if guidance.truncates_at(t)), None)
    if not head.fused:
        for i, t in enumerate(plan.timesteps):
            if i == cut:
                passes, cond_proj = 1, cond_proj[:batch]
            timestep = torch.as_tensor(t, device=x_tokens.device).expand(batch * passes)
            out = model.head(x_tokens.repeat(passes, 1, 1), timestep, cond_proj).float()
            x_tokens = plan.step(i, guidance.combine(out, passes), x_tokens, step_noise[i])
        return x_tokens
    # (no host-to-device copy in this branch: it must be capturable as a CUDA graph)
    for i, mods in enumerate(head.modulations(cond_proj, passes)):
        if cut is not None and i >= cut:
            passes, mods = 1, [m[:1] for m in mods]
        out = head(x_tokens, mods)  # [passes, B, n, ppC]
        if head.kernels is not None and passes <= 2:  # guidance and scheduler step in one kernel
            x_tokens = head.kernels.step(out, x_tokens, step_noise[i], plan.coeffs[i], guidance.scale)
            continue
        out = out.float()
        if passes == 2:
            eps = torch.lerp(out[1], out[0], guidance.scale)  # uncond + scale * (cond - uncond)
        else:
            eps = guidance.combine(out.flatten(0, 1), passes)
        x_tokens = plan.step(i, eps, x_tokens, step_noise[i])
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
        draws = sum(self.plan.draws_noise)
        noise_in = torch.zeros(draws, batch, n, ppc, device=device) if draws else None  # every step's, stacked

        def body():
            drawn = iter(noise_in.unbind(0) if draws else ())
            step_noise = [next(drawn) if d else None for d in self.plan.draws_noise]
            return denoise_tokens(self.model, self.plan, self.head, cond_in, x_in, step_noise, self.guidance)

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
        if noise_in is not None:
            noise_in[:, :, :n].copy_(torch.stack([d for d in step_noise if d is not None]))
        graph.replay()
        return out[:, :n].clone()

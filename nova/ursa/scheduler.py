"""URSA's sampler: discrete flow matching with the kinetic-optimal velocity, on the metric path
(``alpha`` set: tokens jump towards codes whose embeddings are near the predicted one) or the
mixture path (``alpha: null``: tokens jump straight to the prediction).

The codebook of the metric path is ``path.emb`` in ``scheduler/scheduler_model.pth``. It is read
with ``torch.load(weights_only=True)`` (no pickled code runs) and kept in float16 whatever dtype the
rest of the pipeline uses, because the official loader does so and the draws depend on it.

Every random draw is made with the same call, shape, dtype and order as the official code, so a CPU
``torch.Generator`` seeded alike reproduces the official ids. The generator is always passed in:
this scheduler keeps no state between calls.
"""

from __future__ import annotations

import os
from typing import Optional, Union

import torch

from ..errors import CheckpointError, InputError
from .config import UrsaSchedulerConfig, load_scheduler_config

MODEL_FILE = "scheduler_model.pth"
EMB_KEY = "path.emb"


def load_path_embedding(folder: str) -> torch.Tensor:
    """``path.emb`` [K, D] of ``scheduler_model.pth``, read without unpickling arbitrary objects."""
    path = os.path.join(folder, MODEL_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"missing file {path} (the sampler's codebook, {EMB_KEY!r}).")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unsafe or corrupt pickle: weights_only refuses it
        raise CheckpointError(
            f"{path}: not a plain tensor file ({type(exc).__name__}: {exc}). It must hold only {{'{EMB_KEY}': tensor}}."
        ) from exc
    emb = data.get(EMB_KEY) if isinstance(data, dict) else None
    if not isinstance(emb, torch.Tensor) or emb.dim() != 2 or not emb.is_floating_point():
        raise CheckpointError(f"{path}: expected {{'{EMB_KEY}': a 2-D float tensor [codebook size, dim]}}.")
    return emb


def categorical(prob: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """One draw per row of ``prob`` [..., K] (unnormalised weights), as ``multinomial`` makes it."""
    return prob.flatten(0, -2).multinomial(1, generator=generator).view(prob.shape[:-1])


class KineticOptimalScheduler:
    """Timesteps, forward noise (``add_noise``) and the sampling step of an URSA checkpoint."""

    def __init__(self, config: UrsaSchedulerConfig, emb: torch.Tensor, device="cpu"):
        self.config = config
        # fp16, as the official loader leaves it (see the module docstring).
        self.emb = emb.to(device).to(torch.float16)
        self.codebook_size = self.emb.shape[0]
        if config.metric:
            # Looked-up codes are taken from the normalised table and normalised once more in each
            # distance, as the official code does (the second rounding in fp16 changes some draws).
            self.unit_emb = torch.nn.functional.normalize(self.emb, dim=-1, eps=config.eps)
            self.unit_sumsq = self.unit_emb.square().sum(-1)
            self.unit_twice_t = self.unit_emb.mul(2).T.contiguous()

    @classmethod
    def from_folder(cls, folder: str, device="cpu") -> "KineticOptimalScheduler":
        return cls(load_scheduler_config(folder), load_path_embedding(folder), device)

    def to(self, device) -> "KineticOptimalScheduler":
        return KineticOptimalScheduler(self.config, self.emb, device)

    @property
    def device(self) -> torch.device:
        return self.emb.device

    # -- time -------------------------------------------------------------------------------
    def timestep_to_t(self, step: int, num_steps: int, shift: Optional[float] = None) -> float:
        """t of step ``step`` of ``num_steps`` (0 at the first step, rising towards 1)."""
        shift = self.config.shift if shift is None else shift
        sigma = 1 - step / num_steps
        return 1 - shift * sigma / (1 + (shift - 1) * sigma)

    # -- metric-path geometry -----------------------------------------------------------------
    def _normalize(self, emb: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(emb, dim=-1, eps=self.config.eps)

    def _beta(self, t: float) -> float:
        return self.config.c * (t / (1 - t)) ** self.config.alpha

    def _dist_to_codebook(self, emb: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """|e|^2 + |e_k|^2 - 2 e.e_k for every code k: [..., K]. The sum is computed in fp16 and
        written into ``out`` (the fp32 logits buffer, as the official code reuses it) when given."""
        unit = self._normalize(emb)
        return torch.add(unit.square().sum(-1, keepdim=True), self.unit_sumsq, out=out).sub_(unit @ self.unit_twice_t)

    def _dist_pairwise(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        return self._normalize(emb_a).sub(self._normalize(emb_b)).abs_().square_().sum(-1, keepdim=True)

    # -- forward noise ------------------------------------------------------------------------
    def add_noise(self, ids: torch.Tensor, t: float, generator: Optional[torch.Generator]) -> torch.Tensor:
        """A draw of the path at time ``t`` around the clean ``ids`` (t -> 1: the ids themselves)."""
        if not 0 <= t < 1:
            raise InputError(f"add_noise: t = {t}; expected 0 <= t < 1 (cond_noise_scale in (0, 1]).")
        if self.config.metric:
            dist = self._dist_to_codebook(self.unit_emb[ids])
            return categorical(dist.mul_(-self._beta(t)).softmax(-1), generator)
        # Mixture path. The official code needs a tensor t here (a float crashes); this is what it
        # computes for t given as a one-element tensor in the codebook's dtype.
        t_tensor = torch.tensor(t, dtype=self.emb.dtype, device=ids.device)
        noise = ids.new_empty(ids.shape).random_(to=self.codebook_size, generator=generator)
        keep_noise = t_tensor.new_empty(ids.shape).uniform_(generator=generator).lt(1 - t_tensor)
        return noise.where(keep_noise, ids)

    # -- sampling -----------------------------------------------------------------------------
    def velocity(self, logits: torch.Tensor, sample: torch.Tensor, t: float, generator) -> torch.Tensor:
        """Jump rates [B, n, K] from the current ids ``sample`` given the model's ``logits`` (fp32,
        overwritten: the official code reuses the buffer and so does this)."""
        target = categorical(logits.softmax(-1), generator)
        if not self.config.metric:
            return logits.zero_().scatter_(-1, target.unsqueeze(-1), 1 / (1 - t))
        alpha, c = self.config.alpha, self.config.c
        rate = (c * alpha * t ** (alpha - 1) if t > 0 else 0) / (1 - t) ** (alpha + 1)  # d beta / dt
        target_emb = self.unit_emb[target]
        dist_to_target = self._dist_to_codebook(target_emb, out=logits)  # D[k], in the logits buffer
        prob = dist_to_target.mul(-self._beta(t)).softmax(-1)
        dist_current = self._dist_pairwise(self.unit_emb[sample], target_emb)  # d
        closer = torch.nn.functional.relu(dist_to_target.sub_(dist_current).neg_(), inplace=True)  # relu(d - D)
        return prob.mul_(rate).mul_(closer)

    def step(
        self,
        logits: torch.Tensor,
        step: int,
        num_steps: int,
        sample: torch.Tensor,
        generator: Optional[torch.Generator],
        shift: Optional[float] = None,
    ) -> torch.Tensor:
        """The ids after step ``step``: a jump of each token with probability 1 - exp(-dt * rate),
        to a code drawn by rate; the last step draws every token from the logits."""
        if step == num_steps - 1:
            return categorical(logits.softmax(-1), generator)
        t = self.timestep_to_t(step, num_steps, shift)
        dt = self.timestep_to_t(step + 1, num_steps, shift) - t
        rates = self.velocity(logits, sample, t, generator)
        uniform = torch.empty_like(sample, dtype=rates.dtype).uniform_(generator=generator)
        jump_prob = 1 - rates.scatter_(-1, sample.unsqueeze(-1), 0).sum(-1).mul_(-dt).exp_()
        jumps = uniform < jump_prob
        out = sample.clone()
        out[jumps] = categorical(rates[jumps], generator)
        return out


def as_generator_device(generator: Union[torch.Generator, None], device: torch.device):
    """``generator`` if it can draw for tensors on ``device``, else an InputError saying what fits."""
    if generator is None:
        return None
    if torch.device(generator.device).type != torch.device(device).type:
        raise InputError(
            f"generator is on {generator.device} but the pipeline runs on {device}; pass "
            f"torch.Generator({torch.device(device).type!r}).manual_seed(seed) (only a CPU generator "
            "reproduces the official CPU results)."
        )
    return generator

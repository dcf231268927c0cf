"""The run's random stream: seeds, generators, and draws from one generator or one per sample.

A seed becomes a CPU ``torch.Generator`` (:func:`new_generator`, as the official code draws) in the
front end, and travels as an argument to every draw: the token order once per video
(:func:`draw_token_order`), the noise of each set step. Nothing random is kept on a module.

With one ``torch.Generator`` a batch is drawn in one call: the official random stream. With a
list of generators (one per sample, as :mod:`nova.batch.runner` passes), each sample's values come from
its own generator and are stacked, so a sample gets the same values whatever batch it runs in: a
list of one generator draws exactly what that generator alone would.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..errors import InputError

Generators = Union[torch.Generator, Sequence[torch.Generator]]


def draw_per_sample(
    generator: Generators, batch: int, draw: Callable[[torch.Generator, int], torch.Tensor]
) -> torch.Tensor:
    """``draw(g, n)`` returns ``n`` samples' values (dim 0) from ``g``; this returns ``batch`` of them."""
    if isinstance(generator, torch.Generator):
        return draw(generator, batch)
    generators = list(generator)
    if len(generators) != batch:
        raise InputError(f"{len(generators)} generators for a batch of {batch}; pass one generator or one per sample.")
    return torch.cat([draw(g, 1) for g in generators])


MAX_SEED = 2**64 - 1


def check_seed(seed) -> int:
    """A seed ``torch.Generator.manual_seed`` takes: an integer in [0, 2**64 - 1]. On the CPU
    generator (the official pipeline's) only the low 32 bits change the result: seed, seed + 2**32
    and seed + 2**63 give the same video."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise InputError(
            f"seed = {seed!r}; expected an integer in [0, 2**64 - 1] (only the low 32 bits change the result on the "
            "CPU generator)."
        )
    return int(seed)


def new_generator(seed: Optional[int] = None, device="cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(check_seed(seed))
    return gen


def draw_token_order(generator: Generators, batch: int, num_tokens: int, device) -> torch.Tensor:
    """Random order in which tokens get predicted: [B, L, 1], drawn once per video (``generator``:
    one, or one per sample, as above)."""
    u = draw_per_sample(
        generator, batch, lambda g, n: torch.empty(n, num_tokens, 1, device=g.device).uniform_(generator=g)
    )
    return u.argsort(dim=1).to(device)

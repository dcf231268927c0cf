"""Random draws from one generator or from one generator per sample.

With one ``torch.Generator`` a batch is drawn in one call: the official random stream. With a
list of generators (one per sample, as :mod:`nova.batch.runner` passes), each sample's values come from
its own generator and are stacked, so a sample gets the same values whatever batch it runs in: a
list of one generator draws exactly what that generator alone would.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch

from ..errors import InputError

Generators = Union[torch.Generator, Sequence[torch.Generator]]


def draw_per_sample(generator: Generators, batch: int, draw: Callable[[torch.Generator, int], torch.Tensor]) -> torch.Tensor:
    """``draw(g, n)`` returns ``n`` samples' values (dim 0) from ``g``; this returns ``batch`` of them."""
    if isinstance(generator, torch.Generator):
        return draw(generator, batch)
    generators = list(generator)
    if len(generators) != batch:
        raise InputError(f"{len(generators)} generators for a batch of {batch}; pass one generator or one per sample.")
    return torch.cat([draw(g, 1) for g in generators])

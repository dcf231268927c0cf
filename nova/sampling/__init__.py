"""Sampling: from a request's plan to latent frames.

``plan`` (:class:`GenerationPlan`) checks one generation and owns its frame-by-frame temporal
loop; ``sampler`` samples one frame set by set (settings, guidance, the temporal step, the
per-token diffusion); ``fast`` and ``set_step`` are its default fast path (folded scheduler steps,
set steps on fixed buffers replayed as CUDA graphs); ``masks`` (masks on tokens), ``keyframes``
(pinned frames) and ``rng`` (the official random stream) feed it; ``progress`` reports it.
"""

from .._exports import lazy_names

# What ``nova.sampling`` (a module until 0.2) handed out, and the plan.
_LAZY = {
    "SamplerSettings": ("sampler", "SamplerSettings"),
    "Progress": ("sampler", "Progress"),
    "new_generator": ("sampler", "new_generator"),
    "check_seed": ("sampler", "check_seed"),
    "sample_frame": ("sampler", "sample_frame"),
    "GenerationPlan": ("plan", "GenerationPlan"),
    "Segment": ("plan", "Segment"),
}
__getattr__ = lazy_names(__name__, _LAZY)
__all__ = list(_LAZY)

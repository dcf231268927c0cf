"""Sampling: from a request's plan to latent frames.

``plan`` (:class:`GenerationPlan`) checks one generation; ``frame_loop`` runs it frame by frame;
``sampler`` holds each frame's temporal step and samples a frame set by set (settings, guidance,
the per-token diffusion); ``fast`` and ``set_step`` are its default fast path (folded scheduler steps,
set steps on fixed buffers replayed as CUDA graphs); ``masks`` (masks on tokens), ``keyframes``
(pinned frames) and ``rng`` (the official random stream) feed it; ``progress`` reports it.
"""

from .._exports import lazy_exports

# What ``nova.sampling`` (a module until 0.2) handed out, and the plan.
_EXPORTS = {
    "sampler": ("SamplerSettings", "Progress", "new_generator", "check_seed", "sample_frame"),
    "plan": ("GenerationPlan", "Segment"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)

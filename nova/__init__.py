"""NOVA (autoregressive video generation without vector quantization) and its successor URSA
(``nova.ursa``: discrete flow matching over VQ tokens) in pure PyTorch.

The packages, from the front ends down (docs/architecture.md draws them):
``pipeline`` (``NovaPipeline``), ``__main__`` (the CLI) and ``batch`` (``nova batch``) take a
request; ``request`` checks it (the rules: ``checks``), reads its files and builds its plan;
``sampling`` runs the plan; ``head`` is the diffusion head's prepared and Triton forms; ``speed``
holds other ways to compute, offered once measured faster; ``components`` loads a checkpoint's
parts; ``models`` are the networks; ``io`` reads and writes pixels and files; ``ursa`` is the
successor model beside them. Importing this package is cheap: heavy modules load on first use.
"""

from ._exports import MovedModules, lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "pipeline": ("NovaPipeline", "NovaPipelineOutput"),
    "components.config": ("NovaConfig",),
    "sampling.sampler": ("SamplerSettings",),
    "sampling.plan": ("GenerationPlan", "Segment"),
    "sampling.fast": ("Accel",),
    "sampling.keyframes": ("Keyframe",),
    "components.loaders": ("load_transformer", "load_scheduler"),
    "components.vae": ("load_vae",),
    "components.text_encoder": ("TextEncoder",),
    "errors": ("NovaError",),
    "ursa.pipeline": ("UrsaPipeline", "UrsaPipelineOutput"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)

# The flat modules of 0.1 (``nova.plan``, ``nova.fast``, ...) and the Triton head of ``nova.speed``
# at their places in the packages.
# (``nova.batch``, ``nova.sampling`` and ``nova.components`` are packages now; their old names
# are handed on by the packages themselves.)
MovedModules.install(
    __name__,
    {
        "batch_cli": "batch.cli",
        "batch_items": "batch.items",
        "batch_progress": "batch.progress",
        "manifest": "batch.manifest",
        "layouts": "batch.layouts",
        "distributed": "batch.distributed",
        "embed_cache": "batch.embed_cache",
        "plan": "sampling.plan",
        "fast": "sampling.fast",
        "set_step": "sampling.set_step",
        "masks": "sampling.masks",
        "keyframes": "sampling.keyframes",
        "rng": "sampling.rng",
        "step_progress": "sampling.progress",
        "loading": "components.loading",
        "config": "components.config",
        "text_encoder": "components.text_encoder",
        "vae": "components.vae",
        "tiny": "components.tiny",
        "media": "io.media",
        "images": "io.images",
        "pixels": "io.pixels",
        "vae_frames": "io.frames",
        "latents": "io.latents",
        "fp8": "speed.fp8",
        "speed.triton_head": "head.triton",
        "speed.triton_kernels": "head.triton_kernels",
    },
)

"""URSA (BAAI, "Uniform Discrete Diffusion with Metric Path for Video Generation"), NOVA's successor,
in pure PyTorch: a Qwen3 transformer refines all discrete tokens of a clip at once over N steps of a
discrete flow-matching sampler, and a VQ tokenizer (FSQ for video, IBQ for images) decodes them.

One concern per module: ``config`` (the JSON files), ``transformer``, ``tokenizer_fsq`` /
``tokenizer_ibq`` (the VQ autoencoders), ``scheduler`` (kinetic-optimal sampler, metric and mixture
paths), ``loading`` (safe loading of a checkpoint folder) and ``pipeline`` (``UrsaPipeline``).
Importing this package is cheap: heavy modules load on first use.
"""

from .._exports import lazy_exports

_EXPORTS = {
    "pipeline": ("UrsaPipeline", "UrsaPipelineOutput"),
    "transformer": ("UrsaTransformer",),
    "scheduler": ("KineticOptimalScheduler",),
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)

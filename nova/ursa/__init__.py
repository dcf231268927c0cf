"""URSA (BAAI, "Uniform Discrete Diffusion with Metric Path for Video Generation"), NOVA's successor,
in pure PyTorch: a Qwen3 transformer refines all discrete tokens of a clip at once over N steps of a
discrete flow-matching sampler, and a VQ tokenizer (FSQ for video, IBQ for images) decodes them.

One concern per module: ``config`` (the JSON files), ``transformer``, ``tokenizer_fsq`` /
``tokenizer_ibq`` (the VQ autoencoders), ``scheduler`` (kinetic-optimal sampler, metric and mixture
paths), ``loading`` (safe loading of a checkpoint folder) and ``pipeline`` (``UrsaPipeline``).
Importing this package is cheap: heavy modules load on first use.
"""

_LAZY = {
    "UrsaPipeline": ("pipeline", "UrsaPipeline"),
    "UrsaPipelineOutput": ("pipeline", "UrsaPipelineOutput"),
    "UrsaTransformer": ("transformer", "UrsaTransformer"),
    "KineticOptimalScheduler": ("scheduler", "KineticOptimalScheduler"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'nova.ursa' has no attribute {name!r}")


__all__ = list(_LAZY)

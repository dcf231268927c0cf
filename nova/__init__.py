"""NOVA (autoregressive video generation without vector quantization) and its successor URSA
(``nova.ursa``: discrete flow matching over VQ tokens) in pure PyTorch.

Importing this package is cheap: heavy modules load on first use.
"""

__version__ = "0.1.0"

_LAZY = {
    "NovaPipeline": ("pipeline", "NovaPipeline"),
    "NovaPipelineOutput": ("pipeline", "NovaPipelineOutput"),
    "NovaConfig": ("config", "NovaConfig"),
    "SamplerSettings": ("sampling", "SamplerSettings"),
    "Keyframe": ("keyframes", "Keyframe"),
    "load_transformer": ("components", "load_transformer"),
    "load_scheduler": ("components", "load_scheduler"),
    "load_vae": ("vae", "load_vae"),
    "TextEncoder": ("text_encoder", "TextEncoder"),
    "NovaError": ("errors", "NovaError"),
    "UrsaPipeline": ("ursa.pipeline", "UrsaPipeline"),
    "UrsaPipelineOutput": ("ursa.pipeline", "UrsaPipelineOutput"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'nova' has no attribute {name!r}")


__all__ = list(_LAZY)

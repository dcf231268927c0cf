"""A checkpoint's components, from its folder to ready modules: ``loading`` finds the folder (a
path or a hub repo) and reads its index; ``config`` is the transformer's config; ``loaders`` builds
the transformer and the scheduler; ``text_encoder`` (Phi-2 through ``transformers``) and ``vae``
(diffusers' AutoencoderKL or the OSP 3D VAE) wrap the other two; ``tiny`` writes small random
checkpoints in the official layout. The networks themselves are in ``nova.models``.
"""

from .._exports import lazy_exports

# What ``nova.components`` (a module until 0.2) handed out.
_EXPORTS = {
    "loaders": ("load_transformer", "load_scheduler"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)

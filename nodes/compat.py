"""The V3 node API: ComfyUI's ``comfy_api.latest`` inside ComfyUI, our stand-in elsewhere."""

try:  # inside ComfyUI
    from comfy_api.latest import ComfyExtension, io  # noqa: F401

    IN_COMFYUI = True
except ImportError:  # tests and scripts
    from ._standalone import ComfyExtension, io  # noqa: F401

    IN_COMFYUI = False

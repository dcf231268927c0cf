"""Where the nodes get devices, dtypes, memory management and progress from.

Inside ComfyUI everything goes through ``comfy.model_management`` and ``ModelPatcher`` so NOVA
models share VRAM with every other model, obey --cpu/--lowvram, and tick the UI progress bar
(which also makes Cancel work). Outside ComfyUI a small fallback does the same job plainly.

The host is passed explicitly: a loader node takes :func:`default_host` and puts it into the
handle it returns (``NovaModel.host`` ...), and every node after it uses the handle's host. There
is no module-level host to swap; tests build handles with their own :class:`FallbackHost`, and
the fallback reads its model folders from ``NOVA_MODELS_DIR`` and its device from ``NOVA_DEVICE``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable, List, Optional, Protocol

import torch

from ..nova.dtypes import DTYPE_NAMES, torch_dtype

log = logging.getLogger("nova")

DTYPE_CHOICES = ["auto", "bf16", "fp16", "fp32"]


class HostedModule(torch.nn.Module):
    """Container the host's patcher manages. ComfyUI's ModelPatcher assigns ``model.device``,
    which modules with a read-only ``device`` property (ours, transformers') cannot take."""

    def __init__(self, module):
        super().__init__()
        self.module = module


class NovaTransformerModule(HostedModule):
    pass


class NovaTextEncoderModule(HostedModule):
    pass


class NovaVAEModule(HostedModule):
    pass


# Distinct classes so ComfyUI's log says which model it loads ("Requested to load NovaVAEModule").
HOSTED = {"transformer": NovaTransformerModule, "text_encoder": NovaTextEncoderModule, "vae": NovaVAEModule}


class Progress(Protocol):
    total: int

    def update(self, value: int, preview_latent=None, latent_format: str = "sd15", preview_image=None) -> None: ...


class Host(Protocol):
    """What the nodes need from the program they run in (ComfyUI, or a plain fallback)."""

    name: str

    def devices(self, kind: str): ...  # (load device, offload device) of "transformer" | "text_encoder" | "vae"

    def intermediate_device(self): ...  # where node outputs live between nodes

    def pick_dtype(self, choice: str, kind: str, device) -> torch.dtype: ...

    def operations(self): ...  # the nn layer classes models are built with

    def wrap(self, module, kind: str): ...  # a patcher the host's memory manager moves

    def load(self, patcher, memory_required: int = 0) -> None: ...

    def offload(self, patcher) -> None: ...

    def progress(self, total: int) -> Progress: ...

    def folder_paths(self, kind: str) -> List[str]: ...


class SimplePatcher:
    """Fallback for ``ModelPatcher``: holds a module and the devices it moves between."""

    def __init__(self, model, load_device, offload_device):
        self.model, self.load_device, self.offload_device = model, load_device, offload_device


@dataclasses.dataclass
class FallbackProgress:
    total: int
    on_update: Optional[Callable[[int, int], None]] = None
    value: int = 0
    last_preview: object = None  # the last preview_image (a PIL image), for tests

    def update(self, value: int, preview_latent=None, latent_format: str = "sd15", preview_image=None):
        self.value = value
        if preview_image is not None:
            self.last_preview = preview_image
        if self.on_update is not None:
            self.on_update(value, self.total)


class FallbackHost:
    """Plain PyTorch host for tests and scripts. ``on_progress`` may raise to simulate Cancel."""

    name = "fallback"

    def __init__(self, device=None, on_progress: Optional[Callable[[int, int], None]] = None, models_dirs=None):
        device = device if device is not None else os.environ.get("NOVA_DEVICE") or "cpu"
        self.device = torch.device(device)
        self.on_progress = on_progress
        if models_dirs is None:
            models_dirs = [p for p in os.environ.get("NOVA_MODELS_DIR", "").split(os.pathsep) if p]
        self.models_dirs: List[str] = list(models_dirs)

    def devices(self, kind: str):
        return self.device, torch.device("cpu")

    def intermediate_device(self):
        return torch.device("cpu")

    def pick_dtype(self, choice: str, kind: str, device) -> torch.dtype:
        if choice in DTYPE_NAMES:
            return torch_dtype(choice)
        from ..nova.devices import auto_dtype

        return auto_dtype(device)

    def operations(self):
        return torch.nn

    def wrap(self, module, kind: str):
        load, offload = self.devices(kind)
        return SimplePatcher(HOSTED[kind](module), load, offload)

    def load(self, patcher, memory_required: int = 0):
        patcher.model.to(patcher.load_device)

    def offload(self, patcher):
        if patcher.load_device != patcher.offload_device:
            patcher.model.to(patcher.offload_device)

    def progress(self, total: int):
        return FallbackProgress(total, self.on_progress)

    def folder_paths(self, kind: str) -> List[str]:
        if kind not in ("nova", "ursa", "diffusers", "text_encoders", "vae"):
            raise KeyError(kind)
        return [os.path.join(d, kind) for d in self.models_dirs]


class ComfyHost:
    """ComfyUI's model management, devices, dtypes, folders and progress bar."""

    name = "comfyui"

    def __init__(self):
        import comfy.model_management as mm

        self.mm = mm

    def devices(self, kind: str):
        mm = self.mm
        if kind == "text_encoder":
            return mm.text_encoder_device(), mm.text_encoder_offload_device()
        if kind == "vae":
            return mm.vae_device(), mm.vae_offload_device()
        return mm.get_torch_device(), mm.unet_offload_device()

    def intermediate_device(self):
        return self.mm.intermediate_device()

    def pick_dtype(self, choice: str, kind: str, device) -> torch.dtype:
        if choice in DTYPE_NAMES:
            return torch_dtype(choice)
        mm = self.mm
        if kind == "vae":
            return mm.vae_dtype(device, [torch.bfloat16, torch.float32])
        if mm.should_use_bf16(device):
            return torch.bfloat16
        return torch.float32  # fp16 overflows in NOVA (black frames); never the automatic choice

    def operations(self):
        import comfy.ops

        return comfy.ops.disable_weight_init

    def wrap(self, module, kind: str):
        import comfy.model_patcher

        load, offload = self.devices(kind)
        return comfy.model_patcher.ModelPatcher(HOSTED[kind](module), load_device=load, offload_device=offload)

    def load(self, patcher, memory_required: int = 0):
        self.mm.load_models_gpu([patcher], memory_required=int(memory_required))

    def offload(self, patcher):
        """Move one model back to its offload device now (the text encoder after encoding)."""
        mm = self.mm
        if patcher.load_device == patcher.offload_device:
            return
        for i, loaded in enumerate(list(mm.current_loaded_models)):
            if loaded.model is patcher:
                if loaded.model_unload():
                    mm.current_loaded_models.pop(i)
                break

    def progress(self, total: int):
        return ComfyProgress(total)

    def folder_paths(self, kind: str) -> List[str]:
        import folder_paths

        try:
            return list(folder_paths.get_folder_paths(kind))
        except Exception:
            return []


class ComfyProgress:
    """ComfyUI progress bar with a latent2rgb preview of the frame being sampled. Every update
    also checks for Cancel (ComfyUI's progress hook raises InterruptProcessingException)."""

    def __init__(self, total: int):
        import comfy.utils

        self.bar = comfy.utils.ProgressBar(total)
        self.total = total
        self._previewers = {}

    def _previewer(self, fmt: str, device):
        if fmt not in self._previewers:
            import comfy.latent_formats
            import latent_preview

            latent_format = comfy.latent_formats.SDXL() if fmt == "sdxl" else comfy.latent_formats.SD15()
            self._previewers[fmt] = latent_preview.get_previewer(device, latent_format)
        return self._previewers[fmt]

    def update(self, value: int, preview_latent=None, latent_format: str = "sd15", preview_image=None):
        """``preview_image``: a ready PIL image (URSA's token previews), else ``preview_latent`` is
        turned into one with ComfyUI's latent2rgb previewer."""
        preview = ("JPEG", preview_image, 512) if preview_image is not None else None
        if preview is None and preview_latent is not None:
            previewer = self._previewer(latent_format, preview_latent.device)
            if previewer is not None:
                preview = previewer.decode_latent_to_preview_image("JPEG", preview_latent[:1].float())
        self.bar.update_absolute(value, self.total, preview)


def default_host() -> Host:
    """ComfyHost inside ComfyUI, else a FallbackHost configured from the environment."""
    try:
        return ComfyHost()
    except ImportError:
        return FallbackHost()

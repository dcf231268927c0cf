"""NOVA Speed Mode: how the spatial encoder (97% of a video's FLOPs) computes, as a model -> model
node placed between the checkpoint loader and the samplers (nova/speed/spatial_kernels.py).

Deprecated: no mode beyond the default was faster on a GPU (nova/speed/options.py), so the node is
hidden from the node list; saved workflows still load, and run when it is left at its defaults."""

from __future__ import annotations

import dataclasses

from ..nova.errors import InputError
from ..nova.sampling.fast import Accel
from ..nova.speed.options import ATTENTION_CHOICES
from ..nova.speed.spatial_kernels import check_runnable
from .compat import io
from .handles import NovaModel
from .types import NovaModelType

ATTENTION_TIP = (
    "The spatial encoder's attention kernel. auto: PyTorch picks (default). flash / cudnn / efficient / "
    "math: that SDPA kernel only (same video up to rounding; refused where it cannot run). sage: "
    "SageAttention, if installed (CUDA only; faster, a slightly different video)."
)
COMPILE_TIP = (
    "Run the spatial encoder's blocks through torch.compile: fused normalization and activation kernels, "
    "the same video up to rounding. The first run waits for the compilation (about a minute; once per "
    "ComfyUI session). Exact attention modes only (not with sage or fp8_matmuls)."
)
FP8_TIP = (
    "Run the spatial encoder's linear layers as fp8 matrix products (Ada and Hopper GPUs: RTX 40xx, L4/L40, "
    "H100/H200). Faster, a slightly different video; never on by default."
)


class NovaSpeedMode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NOVASpeedMode",
            display_name="NOVA Speed Mode",
            category="NOVA",
            description=(
                "Deprecated: every mode it offered was slower than the default on an H200 (2026-12-04), so "
                "only its defaults run (attention auto, no fp8, no compile). Remove it from the workflow; the "
                "default path is the fastest measured."
            ),
            is_deprecated=True,
            inputs=[
                NovaModelType.Input("model"),
                io.Combo.Input("attention", options=list(ATTENTION_CHOICES), default="auto", tooltip=ATTENTION_TIP),
                io.Boolean.Input("fp8_matmuls", default=False, tooltip=FP8_TIP),
                io.Boolean.Input("compile", default=False, tooltip=COMPILE_TIP),
            ],
            outputs=[NovaModelType.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, attention="auto", fp8_matmuls=False, compile=False) -> io.NodeOutput:  # noqa: A002 (the widget's name)
        if not isinstance(model, NovaModel):
            raise InputError(f"model is a {type(model).__name__}; connect NOVA Checkpoint Loader.")
        accel = Accel.choose(False, attention, bool(fp8_matmuls), bool(compile))
        transformer = model.transformer  # (computes on the host's load device)
        check_runnable(
            accel.attention,
            accel.fp8_matmuls,
            accel.compile_encoder,
            transformer.device,
            transformer.dtype,
            model.config,
        )
        # a new handle over the same weights: the input handle is cached by ComfyUI and stays as it was
        return io.NodeOutput(dataclasses.replace(model, accel=accel))

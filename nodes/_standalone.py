"""A minimal stand-in for ``comfy_api.latest`` (``io`` and ``ComfyExtension``), used only when the
nodes run outside ComfyUI (tests, scripts). It mirrors the attribute names of the real V3 classes
that our schemas use, so the same node code and schema tests work in both places."""

from __future__ import annotations

import dataclasses
from typing import Any, List, Optional


class _Input:
    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None, **extra):
        self.id, self.display_name, self.optional, self.tooltip, self.lazy = id, display_name, optional, tooltip, lazy
        self.default = default
        for key, value in extra.items():
            setattr(self, key, value)

    def get_io_type(self):
        return self.io_type


class _Output:
    def __init__(self, id=None, display_name=None, tooltip=None, is_output_list=False):
        self.id, self.display_name, self.tooltip, self.is_output_list = id, display_name, tooltip, is_output_list

    def get_io_type(self):
        return self.io_type


def _type(io_type: str):
    attrs = {"io_type": io_type}
    return type(
        io_type.title(),
        (),
        {
            "io_type": io_type,
            "Input": type("Input", (_Input,), dict(attrs)),
            "Output": type("Output", (_Output,), dict(attrs)),
        },
    )


class _Combo:
    io_type = "COMBO"

    class Input(_Input):
        io_type = "COMBO"

        def __init__(
            self, id, options=None, display_name=None, optional=False, tooltip=None, lazy=None, default=None, **extra
        ):
            super().__init__(id, display_name, optional, tooltip, lazy, default, **extra)
            self.options = list(options or [])

    class Output(_Output):
        io_type = "COMBO"


@dataclasses.dataclass
class Schema:
    node_id: str
    display_name: Optional[str] = None
    category: str = "sd"
    inputs: List[Any] = dataclasses.field(default_factory=list)
    outputs: List[Any] = dataclasses.field(default_factory=list)
    hidden: List[Any] = dataclasses.field(default_factory=list)
    description: str = ""
    is_output_node: bool = False
    is_experimental: bool = False
    is_deprecated: bool = False
    not_idempotent: bool = False


class NodeOutput:
    def __init__(self, *args, ui=None, expand=None, block_execution=None):
        self.args, self.ui, self.expand, self.block_execution = args, ui, expand, block_execution

    @property
    def result(self):
        return self.args if self.args else None

    def __getitem__(self, index):
        return self.args[index]


class ComfyNode:
    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs) -> NodeOutput:
        raise NotImplementedError


class _IO:
    Schema, NodeOutput, ComfyNode = Schema, NodeOutput, ComfyNode
    Int, Float, String, Boolean = _type("INT"), _type("FLOAT"), _type("STRING"), _type("BOOLEAN")
    Image, Latent, Conditioning, Mask = _type("IMAGE"), _type("LATENT"), _type("CONDITIONING"), _type("MASK")
    Video = _type("VIDEO")
    Combo = _Combo

    @staticmethod
    def Custom(io_type: str):
        return _type(io_type)


io = _IO()


class ComfyExtension:
    async def on_load(self) -> None:
        return None

    async def get_node_list(self):
        raise NotImplementedError

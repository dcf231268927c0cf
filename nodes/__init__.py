"""ComfyUI V3 nodes over the ``nova`` engine. Node ids are permanent (workflows store them)."""

from .compat import ComfyExtension
from .keyframes import NovaKeyframes
from .loaders import NovaCheckpointLoader, NovaTextEncoderLoader, NovaVAELoader
from .long_video import NovaLongVideo, NovaSegment
from .masks import NovaOutpaintCanvas
from .sampling import NovaARFrameStep, NovaGenerate, NovaSetSampler
from .speed import NovaSpeedMode
from .text import NovaTextEncode
from .ursa import UrsaCheckpointLoader, UrsaGenerate
from .vae import NovaVAEDecode, NovaVAEEncode

NODES = [
    NovaCheckpointLoader,
    NovaTextEncoderLoader,
    NovaVAELoader,
    NovaTextEncode,
    NovaSetSampler,
    NovaSpeedMode,
    NovaARFrameStep,
    NovaGenerate,
    NovaKeyframes,
    NovaVAEEncode,
    NovaVAEDecode,
    NovaSegment,
    NovaLongVideo,
    NovaOutpaintCanvas,
    UrsaCheckpointLoader,
    UrsaGenerate,
]


class NovaExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODES)

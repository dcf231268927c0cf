"""Run API-format workflows through the node classes in graph order, outside ComfyUI.

Our nodes run as they are; the few core ComfyUI nodes the workflows use (LoadImage, LoadVideo,
GetVideoComponents, CreateVideo, SaveVideo, SaveImage) get small stand-ins with the same inputs
and outputs that read and write real files.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import torch

from pack import load_pack


class CoreStandIns:
    def __init__(self, input_dir: str, output_dir: str):
        self.input_dir, self.output_dir = input_dir, output_dir
        self.saved = []

    def LoadImage(self, image):
        from PIL import Image

        with Image.open(os.path.join(self.input_dir, image)) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(arr)[None], torch.zeros(1, arr.shape[0], arr.shape[1])

    def LoadVideo(self, file):
        return (os.path.join(self.input_dir, file),)

    def GetVideoComponents(self, video):
        import av

        from comfyui_nova.nova.media import read_frames

        frames = np.stack(read_frames(video)).astype(np.float32) / 255.0
        with av.open(video) as c:
            fps = float(c.streams.video[0].average_rate)
        return torch.from_numpy(frames), None, fps

    def CreateVideo(self, images, fps, audio=None):
        return ({"images": images, "fps": float(fps)},)

    def _path(self, prefix, ext):
        path = os.path.join(self.output_dir, f"{prefix}_{len(self.saved):05d}_.{ext}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def SaveVideo(self, video, filename_prefix, format="auto", codec="auto"):
        from comfyui_nova.nova.media import write_video

        frames = (video["images"].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        path = write_video(frames, self._path(filename_prefix, "mp4"), fps=video["fps"])
        self.saved.append(path)
        return ()

    def SaveImage(self, images, filename_prefix):
        from PIL import Image

        for img in images:
            path = self._path(filename_prefix, "png")
            Image.fromarray((img.clamp(0, 1) * 255).round().to(torch.uint8).numpy()).save(path)
            self.saved.append(path)
        return ()


OUTPUT_NODES = {"SaveVideo", "SaveImage"}


def node_classes():
    load_pack()
    from comfyui_nova.nodes import NODES

    return {n.define_schema().node_id: n for n in NODES}


def run_api_workflow(workflow: dict, core: CoreStandIns):
    """Execute every output node's ancestors once, in dependency order. Returns the outputs of
    every node (a tuple per node id) in the order they ran."""
    classes = node_classes()
    results, order = {}, []

    def evaluate(node_id):
        if node_id in results:
            return results[node_id]
        node = workflow[node_id]
        kwargs = {}
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                kwargs[name] = evaluate(value[0])[value[1]]
            else:
                kwargs[name] = value
        frozen = copy.deepcopy({k: v for k, v in kwargs.items() if isinstance(v, dict)})
        cls = node["class_type"]
        if cls in classes:
            out = tuple(classes[cls].execute(**kwargs).args)
        else:
            out = getattr(core, cls)(**kwargs)
        for key, before in frozen.items():  # nodes must never mutate their inputs (ComfyUI caches them)
            _assert_same(before, kwargs[key], f"{cls}.{key}")
        results[node_id] = out
        order.append(node_id)
        return out

    for node_id, node in workflow.items():
        if node["class_type"] in OUTPUT_NODES:
            evaluate(node_id)
    return results, order


def _assert_same(before, after, where):
    for key, value in before.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, after[key]), f"{where}['{key}'] was modified by the node"


def topological_ok(workflow, order) -> bool:
    seen = set()
    for node_id in order:
        for value in workflow[node_id]["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and value[0] not in seen:
                return False
        seen.add(node_id)
    return True

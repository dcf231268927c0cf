"""Run an API-format workflow through the NOVA node classes in graph order, without ComfyUI.

Our nodes run as they are (on the fallback host); the few core ComfyUI nodes the workflows use
(LoadImage, LoadVideo, GetVideoComponents, ImageToMask, SetLatentNoiseMask, ImageScale, CreateVideo,
SaveVideo, SaveImage) get small stand-ins
with the same inputs and outputs that read and write real files.

    python tools/run_workflow.py workflows/api/nova_text_to_video.json --models models --out output

With ``--tiny`` (or when the workflow's checkpoints are not in --models), a tiny random checkpoint
is written and swapped in (for URSA: the golden tiny checkpoints of tests/golden_ursa, linked into
models/ursa), with short settings: the whole graph runs on a CPU in seconds and writes a real video file.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from pack import load_pack  # noqa: E402


class CoreStandIns:
    def __init__(self, input_dir: str, output_dir: str):
        self.input_dir, self.output_dir = input_dir, output_dir
        self.saved = []

    def LoadImage(self, image):
        from PIL import Image

        with Image.open(os.path.join(self.input_dir, image)) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
            mask = torch.zeros(1, arr.shape[0], arr.shape[1])
            if "A" in im.getbands():  # as core: the mask is where the image is transparent
                mask = 1.0 - torch.from_numpy(np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0)[None]
        return torch.from_numpy(arr)[None], mask

    def LoadVideo(self, file):
        return (os.path.join(self.input_dir, file),)

    def GetVideoComponents(self, video):
        import av

        from comfyui_nova.nova.io.media import read_frames

        frames = np.stack(read_frames(video)).astype(np.float32) / 255.0
        with av.open(video) as c:
            fps = float(c.streams.video[0].average_rate)
        return torch.from_numpy(frames), None, fps

    def ImageToMask(self, image, channel):
        return (image[:, :, :, ["red", "green", "blue", "alpha"].index(channel)],)

    def SetLatentNoiseMask(self, samples, mask):
        return ({**samples, "noise_mask": mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))},)

    def ImageScale(self, image, upscale_method, width, height, crop):
        """As core: center crop to the target's aspect, then resize (lanczos as bicubic here)."""
        samples = image.movedim(-1, 1)
        if crop == "center":
            old_w, old_h = samples.shape[-1], samples.shape[-2]
            old_aspect, new_aspect = old_w / old_h, width / height
            x = round((old_w - old_w * (new_aspect / old_aspect)) / 2) if old_aspect > new_aspect else 0
            y = round((old_h - old_h * (old_aspect / new_aspect)) / 2) if old_aspect < new_aspect else 0
            samples = samples.narrow(-2, y, old_h - 2 * y).narrow(-1, x, old_w - 2 * x)
        mode = "bicubic" if upscale_method == "lanczos" else upscale_method
        return (torch.nn.functional.interpolate(samples, size=(height, width), mode=mode).movedim(1, -1),)

    def CreateVideo(self, images, fps, audio=None):
        return ({"images": images, "fps": float(fps)},)

    def _path(self, prefix, ext):
        path = os.path.join(self.output_dir, f"{prefix}_{len(self.saved):05d}_.{ext}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def SaveVideo(self, video, filename_prefix, format="auto", codec="auto"):
        from comfyui_nova.nova.io.media import write_video

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


TINY = {
    "nova-d48w1024-osp480": "nova-tiny-video",
    "nova-d48w1024-sd512": "nova-tiny-image",
    "nova-d48w768-sdxl1024": "nova-tiny-image",
    "nova-d48w1024-sdxl1024": "nova-tiny-image",
    "nova-d48w1536-sdxl1024": "nova-tiny-image",
    "URSA-0.6B-FSQ320": "ursa-tiny-video",
    "URSA-1.7B-FSQ320": "ursa-tiny-video",
    "URSA-0.6B-IBQ1024": "ursa-tiny-image",
    "URSA-1.7B-IBQ1024": "ursa-tiny-image",
}
# The tiny URSA checkpoints are the golden ones (tests/golden_ursa), at the sizes they were made for.
URSA_TINY = {
    "ursa-tiny-video": ("t2v_tiny", {"width": 48, "height": 32}),
    "ursa-tiny-image": ("t2i_tiny", {"width": 64, "height": 48}),
}


def shrink(workflow: dict) -> dict:
    """Official checkpoint names -> the tiny ones; CPU-sized steps and lengths (a 9-frame video,
    3-latent first segments, 2-latent extensions)."""
    wf = json.loads(json.dumps(workflow))
    for node in wf.values():
        inputs, cls = node["inputs"], node["class_type"]
        for key in ("ckpt_name", "text_encoder_name", "vae_name"):
            if key in inputs:
                inputs[key] = TINY.get(inputs[key], inputs[key])
        if cls == "NOVASetSampler":
            inputs.update(ar_steps=4, diffusion_steps=2)
        if cls == "NOVAGenerate" and inputs["frames"] > 1:
            inputs["frames"] = 9
        if cls == "NOVAARFrameStep" and inputs["latent_frames"] > 0:  # 0: repaint only
            inputs["latent_frames"] = 3 if inputs["latent_frames"] == 9 else 2
        if cls in ("NOVAVAEEncode", "NOVAOutpaintCanvas", "NOVAKeyframes"):
            inputs.update(width=96, height=64)
        if cls == "NOVASegment":
            inputs["latent_frames"] = 2
        if cls == "NOVALongVideo":
            inputs["window"] = 3
        if cls == "URSAGenerate":  # 9-frame clips (extensions: on the last 5 frames, 4 new ones), 4 steps
            size = URSA_TINY[wf[inputs["model"][0]]["inputs"]["ckpt_name"]][1]
            inputs.update(size, steps=4, num_cond_frames=5)
            if inputs["frames"] > 1:
                inputs["frames"] = 9
    for node in wf.values():  # an image scaled for URSA gets the tiny clip's size
        for value in node["inputs"].values():
            if (
                node["class_type"] == "URSAGenerate"
                and isinstance(value, list)
                and wf[value[0]]["class_type"] == "ImageScale"
            ):
                wf[value[0]]["inputs"].update(width=node["inputs"]["width"], height=node["inputs"]["height"])
    return wf


def prepare_tiny_models(models_dir: str) -> None:
    load_pack()
    from comfyui_nova.nova.components.tiny import make_tiny

    for name, preset in (("nova-tiny-video", "video"), ("nova-tiny-image", "image")):
        folder = os.path.join(models_dir, "nova", name)
        if not os.path.isfile(os.path.join(folder, "model_index.json")):
            make_tiny(folder, preset=preset)
    for name, (case, _) in URSA_TINY.items():
        folder, golden = os.path.join(models_dir, "ursa", name), os.path.join(ROOT, "tests", "golden_ursa", case)
        if not os.path.exists(folder) and os.path.isdir(golden):
            os.makedirs(os.path.dirname(folder), exist_ok=True)
            os.symlink(golden, folder)


def prepare_inputs(input_dir: str) -> None:
    """The files the workflows load: example.png (image-to-video), end.png (a last frame), clip.mp4 (continuation, video
    inpainting), inpaint.png (an RGBA picture whose transparent area is the mask, as the mask
    editor saves it), clip_mask.mp4 (white = the region to replace, one frame per frame of clip.mp4)
    and clip_4x3.mp4 (outpainting)."""
    from PIL import Image

    load_pack()
    from comfyui_nova.nova.io.media import write_video

    os.makedirs(input_dir, exist_ok=True)
    rng = np.random.RandomState(0)
    if not os.path.exists(os.path.join(input_dir, "example.png")):
        Image.fromarray(rng.randint(0, 255, (120, 200, 3), dtype=np.uint8)).save(os.path.join(input_dir, "example.png"))
    if not os.path.exists(os.path.join(input_dir, "end.png")):  # (drawn after example.png: its pixels stay the same)
        Image.fromarray(np.random.RandomState(1).randint(0, 255, (120, 200, 3), dtype=np.uint8)).save(
            os.path.join(input_dir, "end.png")
        )
    if not os.path.exists(os.path.join(input_dir, "clip.mp4")):
        write_video(rng.randint(0, 255, (9, 64, 96, 3), dtype=np.uint8), os.path.join(input_dir, "clip.mp4"), fps=12)
    if not os.path.exists(os.path.join(input_dir, "inpaint.png")):
        rgba = rng.randint(0, 255, (120, 200, 4), dtype=np.uint8)
        rgba[..., 3] = 255
        rgba[30:90, 70:130, 3] = 0  # the erased area
        Image.fromarray(rgba, "RGBA").save(os.path.join(input_dir, "inpaint.png"))
    if not os.path.exists(os.path.join(input_dir, "clip_mask.mp4")):
        masks = np.zeros((9, 64, 96, 3), dtype=np.uint8)
        for t in range(9):  # a square moving right
            masks[t, 16:48, 8 + 4 * t : 40 + 4 * t] = 255
        write_video(masks, os.path.join(input_dir, "clip_mask.mp4"), fps=12)
    if not os.path.exists(os.path.join(input_dir, "clip_4x3.mp4")):
        write_video(
            rng.randint(0, 255, (9, 48, 64, 3), dtype=np.uint8), os.path.join(input_dir, "clip_4x3.mp4"), fps=12
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflow", help="an API-format workflow (workflows/api/*.json)")
    parser.add_argument("--models", default="models", help="folder holding nova/<checkpoint> (ComfyUI's models folder)")
    parser.add_argument("--input", default="input", help="folder LoadImage/LoadVideo read from")
    parser.add_argument("--out", default="output", help="folder the save nodes write to")
    parser.add_argument("--tiny", action="store_true", help="use tiny random checkpoints and short settings")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    load_pack()
    from comfyui_nova.nodes import folders, host
    from comfyui_nova.nodes.ursa import find_ursa_checkpoints

    # The loader nodes build their host from these (and hand it on in the models they load).
    os.environ["NOVA_MODELS_DIR"] = os.path.abspath(args.models)
    if args.device:
        os.environ["NOVA_DEVICE"] = args.device
    with open(args.workflow, encoding="utf-8") as f:
        workflow = json.load(f)
    names = {n["inputs"].get("ckpt_name") for n in workflow.values()} - {None}
    fallback = host.FallbackHost()
    if args.tiny or not names <= set(folders.find_checkpoints(fallback)) | set(find_ursa_checkpoints(fallback)):
        why = "--tiny" if args.tiny else f"checkpoints {sorted(names)} are not in {args.models}/nova (or ursa)"
        print(
            f"NOTICE: {why}: using tiny RANDOM weights with short settings. The output only shows that the "
            "graph runs: random weights: the video is noise.",
            file=sys.stderr,
        )
        prepare_tiny_models(args.models)
        workflow = shrink(workflow)
    prepare_inputs(args.input)
    core = CoreStandIns(args.input, args.out)
    with torch.inference_mode():
        run_api_workflow(workflow, core)
    for path in core.saved:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

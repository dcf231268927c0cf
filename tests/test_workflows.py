"""Every shipped workflow runs end to end (tiny checkpoints, CPU) through the node classes, and its
UI and API versions describe the same graph."""

import glob
import json
import os
import sys

import pytest
from conftest import ROOT
from pack import load_pack

sys.path.insert(0, os.path.join(ROOT, "tools"))
from run_workflow import CoreStandIns, prepare_inputs, run_api_workflow, shrink, topological_ok  # noqa: E402

API_DIR = os.path.join(ROOT, "workflows", "api")
NAMES = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(API_DIR, "*.json")))
# Expected video frames after swapping in the tiny checkpoint and the short settings below.
EXPECTED_FRAMES = {
    "nova_text_to_video": 9,
    "nova_image_to_video": 9,
    "nova_video_continuation": 17,  # a 9-frame clip (3 latents) + 2 latents
    "nova_long_video": 25,  # 3 + 2 + 2 latents
    "nova_long_video_30s": 21,  # 3 segments of 2 latents, window 3
    "nova_video_inpainting": 9,  # clip.mp4 repainted in place
    "nova_outpainting": 9,  # clip_4x3.mp4 on the 96x64 canvas
    "nova_video_restyle": 9,  # clip.mp4 re-sampled in place
    "nova_first_last_frame": 9,
    "ursa_text_to_video": 9,
    "ursa_image_to_video": 9,
    "ursa_video_extension": 17,  # a 9-frame clip + two extensions of 4 new frames (each on the last 5)
}
# The tiny URSA video checkpoint (tests/golden_ursa/t2v_tiny) makes 48x32 clips, the NOVA ones 96x64.
FRAME_SHAPE = {"ursa": (32, 48, 3), "nova": (64, 96, 3)}
IMAGE_SIZE = {
    "nova_text_to_image": (64, 64),
    "nova_image_inpainting": (64, 64),
    "nova_image_to_image": (64, 64),
    "ursa_text_to_image": (64, 48),
}


def link_tiny_ursa(models):
    """The golden tiny URSA checkpoints under the names shrink() gives the official ones."""
    from run_workflow import URSA_TINY

    (models / "ursa").mkdir(parents=True, exist_ok=True)
    for name, (case, _) in URSA_TINY.items():
        os.symlink(os.path.join(ROOT, "tests", "golden_ursa", case), models / "ursa" / name)


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_video, tiny_image):
    load_pack()
    base = tmp_path_factory.mktemp("comfy")
    (base / "models" / "nova").mkdir(parents=True)
    os.symlink(tiny_video, base / "models" / "nova" / "nova-tiny-video")
    os.symlink(tiny_image, base / "models" / "nova" / "nova-tiny-image")
    link_tiny_ursa(base / "models")
    prepare_inputs(str(base / "input"))
    with pytest.MonkeyPatch.context() as mp:  # the fallback host finds its model folders here
        mp.setenv("NOVA_MODELS_DIR", str(base / "models"))
        yield base


def test_all_workflows_present():
    assert NAMES == [
        "nova_first_last_frame",
        "nova_image_inpainting",
        "nova_image_to_image",
        "nova_image_to_video",
        "nova_long_video",
        "nova_long_video_30s",
        "nova_outpainting",
        "nova_text_to_image",
        "nova_text_to_video",
        "nova_video_continuation",
        "nova_video_inpainting",
        "nova_video_restyle",
        "ursa_image_to_video",
        "ursa_text_to_image",
        "ursa_text_to_video",
        "ursa_video_extension",
    ]
    for name in NAMES:
        assert os.path.isfile(os.path.join(ROOT, "workflows", f"{name}.json"))


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_runs(env, name):
    with open(os.path.join(API_DIR, f"{name}.json"), encoding="utf-8") as f:
        workflow = shrink(json.load(f))
    core = CoreStandIns(str(env / "input"), str(env / "output"))
    results, order = run_api_workflow(workflow, core)
    assert topological_ok(workflow, order)
    assert len(core.saved) >= 1 and all(os.path.getsize(p) > 0 for p in core.saved)
    by_id = {nid: out for nid, out in results.items()}
    if name in IMAGE_SIZE:
        from PIL import Image

        with Image.open(core.saved[0]) as im:
            assert im.size == IMAGE_SIZE[name]
        if name == "nova_image_inpainting":  # feathered: outside the mask the loaded picture, inside new pixels
            from comfyui_nova.nova.io.pixels import fit_frames

            by_class = {workflow[nid]["class_type"]: out for nid, out in results.items()}
            source = (fit_frames(by_class["LoadImage"][0], 64, 64, "crop").movedim(1, -1) + 1) / 2
            kept = (by_class["NOVAGenerate"][0] == source).all(dim=-1)
            assert kept.any() and not kept.all()
        return
    import av

    with av.open(core.saved[0]) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        fps = float(c.streams.video[0].average_rate)
    shape = FRAME_SHAPE[name.split("_")[0]]
    assert len(frames) == EXPECTED_FRAMES[name] and frames[0].shape == shape and fps == 12.0
    producers = ("NOVAGenerate", "NOVAVAEDecode", "URSAGenerate")
    images = [out[0] for nid, out in results.items() if workflow[nid]["class_type"] in producers]
    assert images and images[-1].shape == (EXPECTED_FRAMES[name], *shape)
    import torch

    assert 0.0 <= float(images[0].min()) and float(images[0].max()) <= 1.0
    if name in ("nova_video_inpainting", "nova_outpainting"):  # only the masked tokens changed
        by_class = {workflow[nid]["class_type"]: out for nid, out in results.items()}
        given, out = by_class["NOVAVAEEncode"][0]["samples"], by_class["NOVAARFrameStep"][0]["samples"]
        kept = (given == out).all(dim=1)  # [B, T, h, w]
        assert out.shape == given.shape and kept.any() and not kept.all()
    if name == "nova_video_restyle":  # every token re-sampled, near the clip
        by_class = {workflow[nid]["class_type"]: out for nid, out in results.items()}
        given, out = by_class["NOVAVAEEncode"][0]["samples"], by_class["NOVAARFrameStep"][0]["samples"]
        assert out.shape == given.shape and not (given == out).all(dim=1).any()
    if name == "ursa_video_extension":  # each extension is the clip it extends, then 4 new frames
        first, second, third = (by_id[nid][0] for nid in ("2", "3", "4"))
        assert first.shape[0] == 9 and second.shape[0] == 13 and third.shape[0] == 17
        assert torch.equal(second[:9], first) and torch.equal(third[:13], second)
        assert not torch.equal(third[13:], second[9:])  # new frames, not a copy of the previous ones
    if name == "ursa_image_to_video":  # example.png scaled to the clip's size conditions the clip
        assert by_id["3"][0].shape == (1, 32, 48, 3) and by_id["4"][0].shape == (9, 32, 48, 3)
        from comfyui_nova.nodes.ursa import UrsaGenerate

        widgets = {k: v for k, v in workflow["4"]["inputs"].items() if not isinstance(v, list)}
        unconditioned = UrsaGenerate.execute(by_id["1"][0], **widgets).args[0]
        assert unconditioned.shape == by_id["4"][0].shape and not torch.equal(unconditioned, by_id["4"][0])
    if name == "nova_first_last_frame":  # the last latent is end.png's, held still
        import torch

        by_class = {workflow[nid]["class_type"]: out for nid, out in results.items()}
        (spec,), latent = by_class["NOVAKeyframes"][0], by_class["NOVAGenerate"][2]["samples"]
        torch.testing.assert_close(latent[:, :, -1], spec.still[:, :, 0], rtol=0, atol=1e-5)


def _ui_to_api(ui, specs):
    """Rebuild the API graph from a UI workflow using the nodes' widget order."""
    from build_workflows import WIDGET_TYPES

    links = {l[0]: l for l in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        spec = specs[node["type"]]
        values = list(node["widgets_values"])
        inputs = {}
        for name, io_type in spec["inputs"]:
            if io_type in WIDGET_TYPES:
                inputs[name] = values.pop(0)
                if name in spec.get("control", ()):
                    values.pop(0)
                if name in spec.get("extra", {}):
                    values.pop(0)
        for entry in node["inputs"]:
            if entry.get("link") is not None:
                link = links[entry["link"]]
                inputs[entry["name"]] = [str(link[1]), link[2]]
                assert link[3] == node["id"]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


@pytest.mark.parametrize("name", NAMES)
def test_ui_and_api_describe_the_same_graph(name):
    from build_workflows import node_specs

    with open(os.path.join(ROOT, "workflows", f"{name}.json"), encoding="utf-8") as f:
        ui = json.load(f)
    with open(os.path.join(API_DIR, f"{name}.json"), encoding="utf-8") as f:
        api = json.load(f)
    assert ui["version"] == 0.4 and ui["last_link_id"] == len(ui["links"])
    assert isinstance(ui["id"], str) and len(ui["id"]) == 36  # the frontend's schema wants a UUID string
    assert _ui_to_api(ui, node_specs()) == api


def test_workflows_are_up_to_date():
    """The JSON files are what tools/build_workflows.py writes from tools/workflow_graphs.py."""
    from build_workflows import node_specs, to_api, to_ui
    from workflow_graphs import DESCRIPTIONS, WORKFLOWS

    specs = node_specs()
    for name, graph in WORKFLOWS.items():
        with open(os.path.join(API_DIR, f"{name}.json"), encoding="utf-8") as f:
            assert json.load(f) == to_api(graph)
        with open(os.path.join(ROOT, "workflows", f"{name}.json"), encoding="utf-8") as f:
            assert json.load(f) == json.loads(json.dumps(to_ui(graph, specs, DESCRIPTIONS[name], name)))


def test_workflows_use_only_core_and_nova_nodes():
    core = {
        "CreateVideo",
        "SaveVideo",
        "SaveImage",
        "LoadImage",
        "LoadVideo",
        "GetVideoComponents",
        "ImageToMask",
        "SetLatentNoiseMask",
        "ImageScale",
    }
    for name in NAMES:
        with open(os.path.join(API_DIR, f"{name}.json"), encoding="utf-8") as f:
            for node in json.load(f).values():
                assert node["class_type"] in core or node["class_type"].startswith(("NOVA", "URSA"))


def test_run_workflow_says_when_it_falls_back_to_random_weights(tmp_path, tiny_image, capsys, monkeypatch):
    """Without the workflow's checkpoints, the tool says loudly that its output is noise."""
    import run_workflow

    (tmp_path / "models" / "nova").mkdir(parents=True)
    os.symlink(tiny_image, tmp_path / "models" / "nova" / "nova-tiny-image")  # so no checkpoint is written
    monkeypatch.setenv("NOVA_MODELS_DIR", "")  # restored after the test (the tool sets it)
    rc = run_workflow.main(
        [
            os.path.join(API_DIR, "nova_text_to_image.json"),
            "--models",
            str(tmp_path / "models"),
            "--input",
            str(tmp_path / "input"),
            "--out",
            str(tmp_path / "output"),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0 and "random weights: the video is noise" in captured.err and "NOTICE" in captured.err
    assert [p for p in captured.out.split() if p.endswith(".png")]

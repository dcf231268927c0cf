import json
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

GOLDEN = os.path.join(ROOT, "tests", "golden")
CASES = ("t2v_tiny", "t2i_tiny")


def edit_json(path, **changes):
    """Update keys of a JSON file in a test's copy of a checkpoint."""
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def golden_case(name):
    folder = os.path.join(GOLDEN, name)
    with open(os.path.join(folder, "case.json"), encoding="utf-8") as f:
        meta = json.load(f)
    from safetensors.torch import load_file

    return folder, meta, load_file(os.path.join(folder, "expected.safetensors"))


def golden_runs():
    out = []
    for case in CASES:
        _, meta, _ = golden_case(case)
        out += [pytest.param(case, run, id=f"{case}-{run['name']}") for run in meta["runs"]]
    return out


@pytest.fixture(scope="session")
def golden_pipes():
    from nova import NovaPipeline

    return {case: NovaPipeline.from_pretrained(os.path.join(GOLDEN, case), device="cpu") for case in CASES}


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory):
    from nova.components.tiny import make_tiny

    return make_tiny(str(tmp_path_factory.mktemp("ckpt") / "nova-tiny-video"), preset="video")


@pytest.fixture(scope="session")
def tiny_image(tmp_path_factory):
    from nova.components.tiny import make_tiny

    return make_tiny(str(tmp_path_factory.mktemp("ckpt") / "nova-tiny-image"), preset="image")


@pytest.fixture(scope="session")
def tiny_video_pipe(tiny_video):
    from nova import NovaPipeline

    return NovaPipeline.from_pretrained(tiny_video, device="cpu")


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.inference_mode():
        yield

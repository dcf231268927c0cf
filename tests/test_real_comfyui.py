"""The pack in a real ComfyUI (runs when COMFYUI_DIR points at a ComfyUI checkout).

Starts ``python main.py --cpu`` with the pack in custom_nodes and tiny checkpoints in models/nova,
checks /object_info lists every NOVA node, then queues every API workflow (official names swapped
for the tiny checkpoints) over HTTP and waits for its saved files.
"""

import glob
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT
from test_workflows import API_DIR, NAMES

sys.path.insert(0, os.path.join(ROOT, "tools"))
from run_workflow import prepare_inputs, shrink  # noqa: E402

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
pytestmark = pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout to run this test")

NOVA_NODES = {"NOVACheckpointLoader", "NOVATextEncoderLoader", "NOVAVAELoader", "NOVATextEncode", "NOVASetSampler",
              "NOVAARFrameStep", "NOVAGenerate", "NOVAVAEEncode", "NOVAVAEDecode", "NOVASegment", "NOVALongVideo"}


def _get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _post(url, data):
    req = urllib.request.Request(url, data=json.dumps(data).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_video, tiny_image):
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    os.symlink(ROOT, base / "custom_nodes" / "ComfyUI-NOVA")
    (base / "models" / "nova").mkdir(parents=True)
    os.symlink(tiny_video, base / "models" / "nova" / "nova-tiny-video")
    os.symlink(tiny_image, base / "models" / "nova" / "nova-tiny-image")
    prepare_inputs(str(base / "input"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(base / "comfyui.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory", str(base),
         "--disable-auto-launch", "--preview-method", "latent2rgb"],
        cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                break
            try:
                _get(url + "/system_stats", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("ComfyUI did not start in 120 s")
        assert proc.poll() is None, (base / "comfyui.log").read_text()[-3000:]
        yield url, base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_pack_imports_and_lists_nodes(server):
    url, base = server
    info = _get(url + "/object_info", timeout=60)
    assert NOVA_NODES <= set(info), sorted(NOVA_NODES - set(info))
    log = (base / "comfyui.log").read_text()
    assert "IMPORT FAILED" not in log
    loader = info["NOVACheckpointLoader"]["input"]["required"]["ckpt_name"]
    assert "nova-tiny-video" in json.dumps(loader)
    assert {"/extensions/ComfyUI-NOVA/nova.js", "/extensions/ComfyUI-NOVA/nova_logic.js"} <= set(_get(url + "/extensions"))
    templates = _get(url + "/api/workflow_templates")
    assert sorted(templates.get("ComfyUI-NOVA", [])) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_in_comfyui(server, name):
    url, base = server
    with open(os.path.join(API_DIR, f"{name}.json"), encoding="utf-8") as f:
        workflow = shrink(json.load(f))
    for node in workflow.values():  # unique output names per test
        if "filename_prefix" in node["inputs"]:
            node["inputs"]["filename_prefix"] = f"test/{name}"
    prompt_id = _post(url + "/prompt", {"prompt": workflow})["prompt_id"]
    for _ in range(600):
        history = _get(url + f"/history/{prompt_id}")
        if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
            break
        time.sleep(0.5)
    entry = history[prompt_id]
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[-3000:]
    files = glob.glob(str(base / "output" / "test" / f"{name}*"))
    assert files and all(os.path.getsize(f) > 0 for f in files)


def _wait(url, prompt_id, limit=600):
    for _ in range(limit):
        history = _get(url + f"/history/{prompt_id}")
        if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
            return history[prompt_id]
        time.sleep(0.5)
    pytest.fail(f"prompt {prompt_id} did not finish")


def test_cancel_then_next_prompt_succeeds(server):
    url, base = server
    with open(os.path.join(API_DIR, "nova_long_video.json"), encoding="utf-8") as f:
        workflow = shrink(json.load(f))
    for node in workflow.values():  # long enough to be interrupted mid-sampling
        if node["class_type"] == "NOVASetSampler":
            node["inputs"].update(ar_steps=24, diffusion_steps=50)
        if node["class_type"] == "NOVAARFrameStep":
            node["inputs"]["latent_frames"] = 9
        if "filename_prefix" in node["inputs"]:
            node["inputs"]["filename_prefix"] = "test/cancelled"
    prompt_id = _post(url + "/prompt", {"prompt": workflow})["prompt_id"]
    time.sleep(3)
    urllib.request.urlopen(urllib.request.Request(url + "/interrupt", data=b"", method="POST"), timeout=10)
    entry = _wait(url, prompt_id)
    events = [m[0] for m in entry["status"].get("messages", [])]
    assert entry["status"]["status_str"] == "error" and "execution_interrupted" in events, events
    assert not glob.glob(str(base / "output" / "test" / "cancelled*"))
    with open(os.path.join(API_DIR, "nova_text_to_video.json"), encoding="utf-8") as f:
        again = shrink(json.load(f))
    for node in again.values():
        if "filename_prefix" in node["inputs"]:
            node["inputs"]["filename_prefix"] = "test/after_cancel"
    entry = _wait(url, _post(url + "/prompt", {"prompt": again})["prompt_id"])
    assert entry["status"]["status_str"] == "success"
    assert glob.glob(str(base / "output" / "test" / "after_cancel*"))

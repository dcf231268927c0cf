"""The pack in a real ComfyUI (runs when COMFYUI_DIR points at a ComfyUI checkout).

Starts ``main.py --cpu`` with the pack in custom_nodes and tiny checkpoints in models/nova (and the
golden tiny URSA ones in models/ursa),
checks /object_info lists every NOVA node and serves every help page, lints every API workflow
against the server's own /object_info (comfy-lint), then queues each one (official names swapped
for the tiny checkpoints) over HTTP and waits for its saved files.

``COMFYUI_PYTHON`` is the interpreter that runs ComfyUI (default: this one). ``.ci/run`` prepares
ComfyUI in a venv of its own, so the server and the test runner need not share packages.
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
from pack import load_pack
from test_workflows import API_DIR, NAMES, link_tiny_ursa

sys.path.insert(0, os.path.join(ROOT, "tools"))
from run_workflow import prepare_inputs, shrink  # noqa: E402

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
COMFYUI_PYTHON = os.environ.get("COMFYUI_PYTHON") or sys.executable
# CI sets NOVA_REQUIRE_COMFYUI=1: there a missing ComfyUI is a failure, never a skip.
REQUIRED = os.environ.get("NOVA_REQUIRE_COMFYUI") == "1"
pytestmark = pytest.mark.skipif(
    not COMFYUI_DIR and not REQUIRED, reason="set COMFYUI_DIR to a ComfyUI checkout to run this test"
)

load_pack()
from comfyui_nova.nodes import NODES  # noqa: E402

NOVA_NODES = {cls.define_schema().node_id for cls in NODES}
HELP_LOCALES = ("", "zh")  # web/docs/<id>.md and web/docs/<id>/zh.md


def _get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _post(url, data):
    req = urllib.request.Request(url, data=json.dumps(data).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_video, tiny_image):
    assert COMFYUI_DIR and os.path.isfile(os.path.join(COMFYUI_DIR, "main.py")), (
        f"COMFYUI_DIR = {COMFYUI_DIR!r} is not a ComfyUI checkout (no main.py); .ci/run prepares one"
    )
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    os.symlink(ROOT, base / "custom_nodes" / "ComfyUI-NOVA")
    (base / "models" / "nova").mkdir(parents=True)
    os.symlink(tiny_video, base / "models" / "nova" / "nova-tiny-video")
    os.symlink(tiny_image, base / "models" / "nova" / "nova-tiny-image")
    link_tiny_ursa(base / "models")
    prepare_inputs(str(base / "input"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(base / "comfyui.log", "w")
    proc = subprocess.Popen(
        [
            COMFYUI_PYTHON,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--base-directory",
            str(base),
            "--disable-auto-launch",
            "--preview-method",
            "latent2rgb",
        ],
        cwd=COMFYUI_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
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
    assert {"/extensions/ComfyUI-NOVA/nova.js", "/extensions/ComfyUI-NOVA/nova_logic.js"} <= set(
        _get(url + "/extensions")
    )
    templates = _get(url + "/api/workflow_templates")
    assert sorted(templates.get("ComfyUI-NOVA", [])) == NAMES


def test_help_pages_are_served(server):
    """The frontend's node documentation panel fetches these paths; each must be our page."""
    url, _ = server
    for node_id in sorted(NOVA_NODES):
        for locale in HELP_LOCALES:
            rel = f"docs/{node_id}/{locale}.md" if locale else f"docs/{node_id}.md"
            with urllib.request.urlopen(f"{url}/extensions/ComfyUI-NOVA/{rel}", timeout=10) as r:
                served = r.read()
            with open(os.path.join(ROOT, "web", rel), "rb") as f:
                assert served == f.read(), rel


def test_api_workflows_pass_comfy_lint(server, tmp_path):
    """comfy-lint checks every API workflow against this server's own /object_info (node ids,
    input names, types, links, widget ranges)."""
    url, _ = server
    lint = os.path.join(os.path.dirname(sys.executable), "comfy-lint")
    files = [os.path.join(API_DIR, f"{name}.json") for name in NAMES]
    result = subprocess.run(
        [lint, "--server", url, "--strict", "--color", "never", *files], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


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

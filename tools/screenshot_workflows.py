"""Screenshots of every UI workflow in a real ComfyUI frontend: docs/workflows/<name>.png (README)
and workflows/<name>.jpg (template browser thumbnail).

    COMFYUI_DIR=/path/to/ComfyUI python tools/screenshot_workflows.py [NAME ...]

Without names, every workflow; with names (e.g. ursa_text_to_video), only those. Needs a ComfyUI
checkout with its requirements (run by COMFYUI_PYTHON, default this interpreter), playwright (Python)
and a Chromium at CHROMIUM (default /usr/bin/chromium). Tiny checkpoints stand in for the official ones, so the
loaders' dropdowns hold the workflows' values. Console errors of the page are printed.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The canvas fills the window under the frontend's side bar and top bars, so the graph is fitted
# into CLIP, the part of the window the screenshot keeps.
CLIP = {"x": 64, "y": 92, "width": 2536, "height": 1008}
FIT = """([area, margin]) => {
  const app = window.app, c = app.canvas, nodes = app.graph._nodes;
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const n of nodes) { x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 30);
    x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]); }
  const s = Math.min((area.width - 2 * margin) / (x1 - x0), (area.height - 2 * margin) / (y1 - y0), 1.0);
  c.ds.scale = s; c.ds.offset = [(area.x + margin) / s - x0, (area.y + margin) / s - y0]; c.setDirty(true, true);
}"""
# No minimap or render statistics in the pictures, and full detail (text) at any zoom.
SETTINGS = {"Comfy.Minimap.Visible": False, "Comfy.Graph.CanvasInfo": False, "LiteGraph.Canvas.MinFontSizeForLOD": 0}


def main(names=()):
    comfy = os.environ["COMFYUI_DIR"]
    sys.path.insert(0, ROOT)
    from playwright.sync_api import sync_playwright

    from nova.components.tiny import make_tiny

    base = tempfile.mkdtemp()
    os.makedirs(os.path.join(base, "custom_nodes"))
    os.symlink(ROOT, os.path.join(base, "custom_nodes", "ComfyUI-NOVA"))
    video, image = (
        make_tiny(os.path.join(base, "tiny-video")),
        make_tiny(os.path.join(base, "tiny-image"), preset="image"),
    )
    os.makedirs(os.path.join(base, "models", "nova"))
    for name in ("nova-d48w1024-osp480",):
        os.symlink(video, os.path.join(base, "models", "nova", name))
    os.symlink(image, os.path.join(base, "models", "nova", "nova-d48w1024-sdxl1024"))
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from run_workflow import prepare_inputs, prepare_tiny_models

    prepare_tiny_models(os.path.join(base, "models"))  # models/ursa: the golden tiny URSA checkpoints
    prepare_inputs(os.path.join(base, "input"))
    port = 8199
    log = open(os.path.join(base, "comfyui.log"), "w")
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    proc = subprocess.Popen(
        [
            python,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--base-directory",
            base,
            "--disable-auto-launch",
        ],
        cwd=comfy,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            page = browser.new_page(viewport={"width": 2600, "height": 1100})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle", timeout=120000)
            time.sleep(3)
            page.keyboard.press("Escape")  # the template dialog of a first visit
            for key, value in SETTINGS.items():
                page.evaluate(
                    "async ([k, v]) => { await window.app.extensionManager.setting.set(k, v); }", [key, value]
                )
            for path in sorted(glob.glob(os.path.join(ROOT, "workflows", "*.json"))):
                name = os.path.splitext(os.path.basename(path))[0]
                if names and name not in names:
                    continue
                with open(path, encoding="utf-8") as f:
                    page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", json.load(f))
                time.sleep(1.5)
                page.evaluate(FIT, [CLIP, 30])
                time.sleep(1.0)
                out = os.path.join(ROOT, "docs", "workflows", f"{name}.png")
                os.makedirs(os.path.dirname(out), exist_ok=True)
                page.screenshot(path=out, clip=CLIP)
                from PIL import Image

                with Image.open(out) as im:
                    thumb = im.convert("RGB")
                    thumb.thumbnail((800, 400))
                    thumb.save(os.path.join(ROOT, "workflows", f"{name}.jpg"), quality=85)
                print("shot", name)
            print("page errors:", errors)
            browser.close()
    finally:
        proc.terminate()


if __name__ == "__main__":
    main(sys.argv[1:])

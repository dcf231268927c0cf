"""Draw each UI workflow as a picture: docs/workflows/<name>.png (README) and
workflows/<name>.jpg (thumbnail in ComfyUI's template browser). Run after build_workflows.py."""

from __future__ import annotations

import glob
import json
import os

from PIL import Image, ImageDraw, ImageFont

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLORS = {"IMAGE": "#64b5f6", "LATENT": "#ff9cf9", "CONDITIONING": "#ffa931", "FLOAT": "#aaee88", "VIDEO": "#f0c040"}
ROW = 18


def _font(size):
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def render(ui: dict) -> Image.Image:
    nodes = {n["id"]: n for n in ui["nodes"]}
    heights = {}
    for n in ui["nodes"]:
        heights[n["id"]] = 34 + ROW * (max(len(n["inputs"]), len(n["outputs"])) + len(n["widgets_values"]))
    width = max(n["pos"][0] + 340 for n in ui["nodes"]) + 40
    height = max(n["pos"][1] + heights[n["id"]] for n in ui["nodes"]) + 40
    img = Image.new("RGB", (width, height), "#202020")
    draw = ImageDraw.Draw(img)
    title_font, font = _font(15), _font(12)

    def out_xy(node_id, slot):
        n = nodes[node_id]
        return n["pos"][0] + 340, n["pos"][1] + 34 + ROW * slot + 6

    def in_xy(node_id, slot):
        n = nodes[node_id]
        return n["pos"][0], n["pos"][1] + 34 + ROW * slot + 6

    for link_id, src, src_slot, dst, dst_slot, io_type in ui["links"]:
        (x0, y0), (x1, y1) = out_xy(src, src_slot), in_xy(dst, dst_slot)
        pts = [(x0 + (x1 - x0) * t / 16 + 0, y0 + (y1 - y0) * (3 * (t / 16) ** 2 - 2 * (t / 16) ** 3)) for t in range(17)]
        draw.line(pts, fill=COLORS.get(io_type, "#bbbbbb"), width=3)
    for n in ui["nodes"]:
        x, y = n["pos"]
        h = heights[n["id"]]
        nova = n["type"].startswith("NOVA")
        draw.rounded_rectangle([x, y, x + 340, y + h], radius=8, fill="#353535", outline="#5a5a5a")
        draw.rounded_rectangle([x, y, x + 340, y + 26], radius=8, fill="#2a5a8a" if nova else "#4a4a4a")
        draw.text((x + 10, y + 5), n.get("title") or n["type"], fill="white", font=title_font)
        for i, inp in enumerate(n["inputs"]):
            cy = y + 34 + ROW * i
            draw.ellipse([x - 5, cy + 1, x + 5, cy + 11], fill=COLORS.get(inp["type"], "#bbbbbb"))
            draw.text((x + 10, cy), inp["name"], fill="#dddddd", font=font)
        for i, out in enumerate(n["outputs"]):
            cy = y + 34 + ROW * i
            draw.ellipse([x + 335, cy + 1, x + 345, cy + 11], fill=COLORS.get(out["type"], "#bbbbbb"))
            tw = draw.textlength(out["name"], font=font)
            draw.text((x + 330 - tw, cy), out["name"], fill="#dddddd", font=font)
        top = y + 34 + ROW * max(len(n["inputs"]), len(n["outputs"]))
        for i, value in enumerate(n["widgets_values"]):
            text = str(value)
            text = text if len(text) < 44 else text[:41] + "..."
            draw.text((x + 10, top + ROW * i), text, fill="#9fc5e8", font=font)
    return img


def main():
    os.makedirs(os.path.join(ROOT, "docs", "workflows"), exist_ok=True)
    for path in sorted(glob.glob(os.path.join(ROOT, "workflows", "*.json"))):
        name = os.path.splitext(os.path.basename(path))[0]
        with open(path, encoding="utf-8") as f:
            img = render(json.load(f))
        img.save(os.path.join(ROOT, "docs", "workflows", f"{name}.png"), optimize=True)
        thumb = img.copy()
        thumb.thumbnail((800, 400))
        thumb.save(os.path.join(ROOT, "workflows", f"{name}.jpg"), quality=85)
        print("drew", name)


if __name__ == "__main__":
    main()

"""Write workflows/*.json (UI format) and workflows/api/*.json (API format) from
tools/workflow_graphs.py. Run: ``python tools/build_workflows.py``."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}

# Core ComfyUI nodes used by the workflows: widgets in order, sockets, outputs.
CORE = {
    "CreateVideo": {
        "inputs": [("images", "IMAGE"), ("fps", "FLOAT"), ("audio", "AUDIO")],
        "outputs": [("VIDEO", "VIDEO")],
    },
    "SaveVideo": {
        "inputs": [("video", "VIDEO"), ("filename_prefix", "STRING"), ("format", "COMBO"), ("codec", "COMBO")],
        "outputs": [],
    },
    "SaveImage": {"inputs": [("images", "IMAGE"), ("filename_prefix", "STRING")], "outputs": []},
    "LoadImage": {
        "inputs": [("image", "COMBO")],
        "outputs": [("IMAGE", "IMAGE"), ("MASK", "MASK")],
        "extra": {"image": "image"},
    },
    "LoadVideo": {"inputs": [("file", "COMBO")], "outputs": [("VIDEO", "VIDEO")]},
    "GetVideoComponents": {
        "inputs": [("video", "VIDEO")],
        "outputs": [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")],
    },
    "ImageToMask": {"inputs": [("image", "IMAGE"), ("channel", "COMBO")], "outputs": [("MASK", "MASK")]},
    "SetLatentNoiseMask": {"inputs": [("samples", "LATENT"), ("mask", "MASK")], "outputs": [("LATENT", "LATENT")]},
    "ImageScale": {
        "inputs": [
            ("image", "IMAGE"),
            ("upscale_method", "COMBO"),
            ("width", "INT"),
            ("height", "INT"),
            ("crop", "COMBO"),
        ],
        "outputs": [("IMAGE", "IMAGE")],
    },
}


def node_specs():
    from pack import load_pack

    load_pack()
    from comfyui_nova.nodes import NODES

    specs = dict(CORE)
    for node in NODES:
        schema = node.define_schema()
        specs[schema.node_id] = {
            "inputs": [(i.id, i.get_io_type()) for i in schema.inputs],
            "outputs": [(o.display_name or o.get_io_type(), o.get_io_type()) for o in schema.outputs],
            "control": {i.id for i in schema.inputs if getattr(i, "control_after_generate", None)},
            "title": schema.display_name,
        }
    return specs


def to_api(graph):
    api = {}
    for node_id, cls, widgets, links in graph:
        inputs = dict(widgets)
        for name, (src, slot) in links.items():
            inputs[name] = [str(src), slot]
        api[str(node_id)] = {"class_type": cls, "inputs": inputs}
    return api


def _depths(graph, first_columns):
    """A node's column: one right of its rightmost input, or further right where the workflow's
    layout hint (``first_columns``: node id -> column) asks for it."""
    depth = {}
    by_id = {n[0]: n for n in graph}

    def d(node_id):
        if node_id not in depth:
            links = by_id[node_id][3]
            depth[node_id] = max(
                first_columns.get(node_id, 0), 1 + max((d(src) for src, _ in links.values()), default=-1)
            )
        return depth[node_id]

    for node_id, *_ in graph:
        d(node_id)
    return depth


# Nodes the frontend draws taller than 200 (a LoadImage/LoadVideo preview), so the next node in
# their column starts below them.
NODE_HEIGHTS = {"LoadImage": 340, "LoadVideo": 330}


def to_ui(graph, specs, description="", name="workflow"):
    from workflow_graphs import FIRST_COLUMNS

    depth = _depths(graph, FIRST_COLUMNS.get(name, {}))
    column_y = defaultdict(lambda: 40)
    nodes, links, link_id = [], [], 0
    out_links = defaultdict(list)
    in_links = {}
    for dst, cls, _, inputs in graph:
        for name, (src, slot) in inputs.items():
            link_id += 1
            src_cls = next(n[1] for n in graph if n[0] == src)
            io_type = specs[src_cls]["outputs"][slot][1]
            links.append([link_id, src, slot, dst, None, io_type])
            out_links[(src, slot)].append(link_id)
            in_links[(dst, name)] = link_id
    for order, (node_id, cls, widgets, inputs) in enumerate(sorted(graph, key=lambda n: (depth[n[0]], n[0]))):
        spec = specs[cls]
        col, y = depth[node_id], column_y[depth[node_id]]
        column_y[col] += NODE_HEIGHTS.get(cls, 200) + 60
        ui_inputs, values = [], []
        for name, io_type in spec["inputs"]:
            is_widget = io_type in WIDGET_TYPES
            if is_widget:
                values.append(widgets[name])
                if name in spec.get("control", ()):
                    values.append("fixed")
                if name in spec.get("extra", {}):
                    values.append(spec["extra"][name])
            if not is_widget or (node_id, name) in in_links:
                entry = {"name": name, "type": io_type, "link": in_links.get((node_id, name))}
                if is_widget:
                    entry["widget"] = {"name": name}
                ui_inputs.append(entry)
        for slot_index, entry in enumerate(ui_inputs):
            if entry["link"] is not None:
                next(l for l in links if l[0] == entry["link"])[4] = slot_index
        ui_outputs = [
            {"name": name, "type": io_type, "links": out_links.get((node_id, slot), []), "slot_index": slot}
            for slot, (name, io_type) in enumerate(spec["outputs"])
        ]
        nodes.append(
            {
                "id": node_id,
                "type": cls,
                "pos": [40 + 380 * col, y],
                "size": [340, 200],
                "flags": {},
                "order": order,
                "mode": 0,
                "inputs": ui_inputs,
                "outputs": ui_outputs,
                "properties": {
                    "Node name for S&R": cls,
                    "cnr_id": "comfyui-nova" if cls.startswith(("NOVA", "URSA")) else "comfy-core",
                },
                "widgets_values": values,
                **({"title": spec["title"]} if spec.get("title") else {}),
            }
        )
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-nova/{name}")),
        "revision": 0,
        "last_node_id": max(n[0] for n in graph),
        "last_link_id": link_id,
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"info": {"description": description}},
        "version": 0.4,
    }


def main():
    from workflow_graphs import DESCRIPTIONS, WORKFLOWS

    specs = node_specs()
    out_dir = os.path.join(ROOT, "workflows")
    os.makedirs(os.path.join(out_dir, "api"), exist_ok=True)
    for name, graph in WORKFLOWS.items():
        with open(os.path.join(out_dir, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(to_ui(graph, specs, DESCRIPTIONS[name], name), f, indent=2)
        with open(os.path.join(out_dir, "api", f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(to_api(graph), f, indent=2)
        print("wrote", name)


if __name__ == "__main__":
    main()

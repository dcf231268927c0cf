"""Where a batch run writes each output, relative to its output folder.

- ``default``: ``<name or index>-<sample>.mp4`` (``.png`` for image checkpoints).
- ``vbench``: ``<prompt>-<sample>.mp4``, the names VBench's evaluation looks up for its prompt lists.
- ``geneval``: ``<index:05d>/metadata.jsonl`` (the item's JSON line) and
  ``<index:05d>/samples/<sample:04d>.png``, GenEval's folder layout (image checkpoints).
"""

from __future__ import annotations

import json
from typing import Dict, List, Sequence

from ..errors import InputError
from .items import Item

LAYOUTS = ("default", "vbench", "geneval")
_MAX_NAME_BYTES = 240  # file systems allow 255 bytes a name; room for "-<sample>.mp4"


def check_layout(layout: str, video_model: bool) -> None:
    if layout not in LAYOUTS:
        raise InputError(f"--layout {layout!r}; expected one of {', '.join(LAYOUTS)}.")
    if layout == "geneval" and video_model:
        raise InputError(
            "--layout geneval writes images (GenEval scores text-to-image); this is a video checkpoint. "
            "Use an image checkpoint, or --layout default/vbench."
        )
    if layout == "vbench" and not video_model:
        raise InputError("--layout vbench writes videos; this is an image checkpoint. Use --layout geneval or default.")


def _stem(item: Item, layout: str) -> str:
    if layout == "vbench":
        if len(item.prompts) > 1:
            raise InputError("--layout vbench names files after one prompt; this item has several.")
        return item.prompts[0]
    return item.name if item.name is not None else f"{item.index:05d}"


def output_path(item: Item, sample: int, layout: str, video_model: bool) -> str:
    """The output's path relative to the output folder ('/'-separated); InputError if the item's
    name cannot be a file name."""
    if layout == "geneval":
        return f"{item.index:05d}/samples/{sample:04d}.png"
    stem = _stem(item, layout)
    what = "prompt" if layout == "vbench" else "name"
    if stem in ("", ".", "..") or any(c in stem for c in "/\\\0"):
        raise InputError(f"{what} {stem!r} cannot be a file name (no '/', '\\' or NUL, not '.' or '..').")
    if len(stem.encode("utf-8")) > _MAX_NAME_BYTES:
        raise InputError(
            f"{what} {stem[:40]!r}... is {len(stem.encode('utf-8'))} bytes; a file name allows {_MAX_NAME_BYTES}."
        )
    return f"{stem}-{sample}{'.mp4' if video_model else '.png'}"


def side_files(item: Item, layout: str) -> Dict[str, str]:
    """Files written beside an item's outputs: relative path -> text."""
    if layout != "geneval":
        return {}
    record = item.record if item.record is not None else {"prompt": item.prompt}
    return {f"{item.index:05d}/metadata.jsonl": json.dumps(record, ensure_ascii=False) + "\n"}


def check_collisions(items: Sequence[Item], layout: str, video_model: bool) -> None:
    """Two items may not write the same file (a name or, under vbench, a prompt used twice)."""
    seen: Dict[str, int] = {}
    clashes: List[str] = []
    for item in items:
        if item.error is not None:
            continue
        try:
            path = output_path(item, 0, layout, video_model)
        except InputError:
            continue  # reported as this item's failure
        if path in seen:
            clashes.append(f"items {seen[path]} and {item.index} (both {path!r})")
        seen.setdefault(path, item.index)
    if clashes:
        hint = "use distinct prompts (vbench) or names" if layout == "vbench" else "give the items distinct names"
        raise InputError(f"two items would write the same file: {'; '.join(clashes[:5])}; {hint}.")

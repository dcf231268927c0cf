"""The work of a batch run: items read from a prompt file, their samples, seeds and batches.

A prompt file is plain text (one prompt a line) or JSONL (``.jsonl``: one JSON object a line with
``prompt`` and optionally ``negative_prompt``, ``seed``, ``frames``, ``image``, ``name`` and any
other generation option of :data:`OPTIONS`). Blank lines are skipped; items are numbered from 0 in
file order. A line that cannot be used becomes an item with an error: it is reported, the others
go on. Never a pickle.

A unit of work is (item, sample). Its seed depends on (run seed, item index, sample index) only,
and units are grouped into batches over the whole list before the batches are shared between
processes, so a unit gets the same video in 1 or N processes and in a first or resumed run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import InputError


@dataclasses.dataclass(frozen=True)
class Option:
    """A generation option: a ``--flag`` of ``nova batch`` (the default of every item) and a JSONL key."""

    key: str
    type: type
    default: Any
    help: str
    per_sample: bool = False  # may differ between the samples of one batched forward

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


OPTIONS = (
    Option("negative_prompt", str, None, "negative prompt", per_sample=True),
    Option("image", str, None, "first frame for image-to-video", per_sample=True),
    Option("video", str, None, "a clip to continue"),
    Option("frames", int, None, "video frames in total: 1 + 4k; default 33, with mask the length of the given clip"),
    Option("window", int, 0, "latent frames of temporal context (0 = all)"),
    Option("blend", int, 0, "frames over which a new prompt fades in"),
    Option("loop", int, 0, "extra frames leading back to the first frame"),
    Option("mask", str, None, "a mask image or video: inpaint/outpaint image or video where it is white"),
    Option("mask_threshold", float, 0.5, "with mask: a token is regenerated if any of its mask pixels is above this"),
    Option("mask_grow", int, 0, "with mask: widen the regenerated region by this many tokens"),
    Option("feather", int, 0, "with mask: blend into the source over this many pixels inside the mask edge"),
    Option("denoise", float, None, "re-sample image/video (under mask, if any) at strength [0, 1]; unset: keep them"),
    Option(
        "keyframe", str, None, "pictures IMAGE@FRAME;... (FRAME 0, a multiple of 4 or -1 = last); JSONL: a list too"
    ),
    Option("keyframe_approach", int, 2, "with keyframe: latent frames before each keyframe that approach it"),
    Option("keyframe_strength", float, 0.5, "with keyframe: how strongly they do, in [0, 1]"),
    Option("steps", int, 64, "set-by-set (AR) steps per frame"),
    Option("diffusion_steps", int, 25, "diffusion steps per set step"),
    Option("cfg", float, 5.0, "guidance scale"),
    Option("motion_flow", float, 5.0, "motion flow", per_sample=True),
    Option("fps", float, 12.0, "frames per second (conditioning and file)", per_sample=True),
    Option("width", int, None, "URSA only: output width in pixels (default 512 video, 1024 image)"),
    Option("height", int, None, "URSA only: output height in pixels (default 320 video, 1024 image)"),
    Option("motion", float, None, "URSA only: the 'motion=<value>, ' prompt prefix of a video (default 9; 0 = none)"),
)
# Steps and cfg left unset on the command line take the checkpoint family's defaults (nova/batch/runner.py).
FAMILY_DEFAULTS = {"nova": {"steps": 64, "cfg": 5.0}, "ursa": {"steps": 25, "cfg": 7.0}}
URSA_KEYS = ("width", "height", "motion")
# NOVA-only options with the value that means "not used" (an URSA run refuses any other).
NOVA_ONLY = (
    ("image", None),
    ("video", None),
    ("window", 0),
    ("blend", 0),
    ("loop", 0),
    ("mask", None),
    ("mask_threshold", 0.5),
    ("mask_grow", 0),
    ("feather", 0),
    ("denoise", None),
    ("keyframe", None),
    ("keyframe_approach", 2),
    ("keyframe_strength", 0.5),
    ("diffusion_steps", 25),
    ("motion_flow", 5.0),
)
OPTION_KEYS = {o.key: o for o in OPTIONS}
PATH_KEYS = ("image", "video", "mask")
ITEM_KEYS = ("prompt", "seed", "name")
# Carried along unused (GenEval's metadata lines have them; the geneval layout writes them back).
METADATA_KEYS = ("tag", "include", "exclude", "metadata")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin")


@dataclasses.dataclass(frozen=True)
class Item:
    index: int
    line: int  # 1-based line in the prompt file
    prompts: Tuple[str, ...]  # one per segment of the video
    options: Dict[str, Any]  # every OPTIONS key, the item's value or the run's default
    seed: Optional[int] = None
    name: Optional[str] = None
    record: Optional[dict] = None  # the JSON object as read (JSONL only)
    error: Optional[str] = None  # why this item cannot be generated

    @property
    def prompt(self) -> str:
        return self.prompts[0] if len(self.prompts) == 1 else " | ".join(self.prompts)


@dataclasses.dataclass(frozen=True)
class Unit:
    item: Item
    sample: int
    seed: int

    @property
    def key(self) -> Tuple[int, int]:
        return self.item.index, self.sample


def read_items(path: str, defaults: Dict[str, Any]) -> List[Item]:
    """Items of a prompt file, each with every option filled from ``defaults`` (the CLI's values)."""
    if not os.path.isfile(path):
        raise InputError(f"--prompts {path}: no such file; pass a text file (one prompt a line) or a .jsonl file.")
    with open(path, "rb") as f:
        data = f.read()
    if path.lower().endswith(PICKLE_SUFFIXES) or data[:1] == b"\x80":
        raise InputError(
            f"--prompts {path} looks like a pickle; NOVA never unpickles (it can run code). "
            "Write the prompts as text, one a line, or as JSONL."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"--prompts {path}: not UTF-8 text ({exc}).") from None
    jsonl = path.lower().endswith(".jsonl")
    base = os.path.dirname(os.path.abspath(path))
    items = []
    # Only \n (and \r\n) end a line: str.splitlines would also split at U+2028, \x0c and the like,
    # which a prompt (and a JSON string written with ensure_ascii=False) may hold.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line[:-1] if line.endswith("\r") else line
        if not line.strip():
            continue
        index = len(items)
        if jsonl:
            items.append(_json_item(index, number, line, defaults, base))
        else:
            items.append(_checked(Item(index, number, (line.strip(),), dict(defaults))))
    if not items:
        raise InputError(f"--prompts {path}: no prompts (the file is empty or blank).")
    return items


def _json_item(index: int, line: int, text: str, defaults: Dict[str, Any], base: str) -> Item:
    def bad(message: str, prompts=("",), record=None) -> Item:
        return Item(index, line, tuple(prompts), dict(defaults), record=record, error=f"line {line}: {message}")

    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return bad(f"not valid JSON ({exc.msg} at column {exc.colno}).")
    if not isinstance(record, dict):
        return bad('expected a JSON object like {"prompt": "..."}.')
    prompt = record.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        return bad("'prompt' must be a non-empty string (or a list of them: one video segment each).", record=record)
    prompts = tuple(p.strip() for p in prompts)
    unknown = sorted(set(record) - set(ITEM_KEYS) - set(OPTION_KEYS) - set(METADATA_KEYS))
    if unknown:
        allowed = ", ".join(list(ITEM_KEYS) + list(OPTION_KEYS) + list(METADATA_KEYS))
        return bad(f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {allowed}.", prompts, record)
    options = dict(defaults)
    for key, option in OPTION_KEYS.items():
        if key not in record or record[key] is None or (key == "negative_prompt" and record[key] == ""):
            continue
        raw = record[key]
        if key == "keyframe" and isinstance(raw, list) and raw and all(isinstance(v, str) for v in raw):
            raw = ";".join(raw)
        value, problem = _typed(raw, option.type)
        if problem:
            return bad(f"{key} = {record[key]!r}: {problem}", prompts, record)
        if key in PATH_KEYS:
            value = os.path.join(base, value)
        elif key == "keyframe":
            value = ";".join(os.path.join(base, part.strip()) for part in value.split(";") if part.strip())
        options[key] = value
    seed, name = record.get("seed"), record.get("name")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        return bad(f"seed = {seed!r}: expected an integer in [0, 2**63).", prompts, record)
    if name is not None and not isinstance(name, str):
        return bad(f"name = {name!r}: expected a string.", prompts, record)
    return _checked(Item(index, line, prompts, options, seed, name, record))


def _checked(item: Item) -> Item:
    """The item with the error the shared option rules (nova/checks.py) find, if any."""
    from ..checks import check_options

    try:
        check_options(item.options, prompts=len(item.prompts), name=lambda key: key)
    except InputError as exc:
        return dataclasses.replace(item, error=f"line {item.line}: {exc}")
    return item


def _typed(value, kind) -> Tuple[Any, Optional[str]]:
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value, None if ok else "expected an integer."
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return (float(value), None) if ok else (value, "expected a number.")
    return value, None if isinstance(value, str) and value else "expected a non-empty string."


def unit_seed(run_seed: int, item: Item, sample: int) -> int:
    """An item's own seed counts up with the sample (its sample 0 is ``generate --seed`` with that
    seed); otherwise a hash of (run seed, item index, sample index)."""
    if item.seed is not None:
        return item.seed + sample
    digest = hashlib.sha256(f"nova-batch/{run_seed}/{item.index}/{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def batch_key(item: Item) -> tuple:
    """What the samples of one forward must share: every option that is not per sample, the
    segment count, whether the video starts from an image, and whether a negative prompt is used
    (a batch guides all its samples with negative prompts or all with the learned null embedding)."""
    o = item.options
    shared = tuple((opt.key, o[opt.key]) for opt in OPTIONS if not opt.per_sample)
    negative = bool(o["negative_prompt"]) and o["cfg"] > 1  # as the worker decides (batch._Worker._prepare)
    return shared + (("segments", len(item.prompts)), ("image", o["image"] is not None), ("negative", negative))


def plan_batches(items: Sequence[Item], samples: int, batch_size: int, run_seed: int) -> List[List[Unit]]:
    """Every unit in batches of at most ``batch_size`` compatible units, in item order. The plan
    depends on the prompt file and these arguments only (not on the number of processes)."""
    if samples < 1 or batch_size < 1:
        raise InputError(f"--samples {samples} / --batch-size {batch_size}: both must be at least 1.")
    batches: List[List[Unit]] = []
    open_batches: Dict[tuple, List[Unit]] = {}
    for item in items:
        for sample in range(samples):
            unit = Unit(item, sample, unit_seed(run_seed, item, sample))
            if item.error is not None:
                batches.append([unit])  # reported without running
                continue
            batch = open_batches.setdefault(batch_key(item), [])
            batch.append(unit)
            if len(batch) == batch_size:
                batches.append(open_batches.pop(batch_key(item)))
    batches.extend(open_batches.values())  # (dicts keep insertion order: deterministic)
    return batches


def share(batches: Sequence[List[Unit]], done, rank: int, world_size: int) -> List[List[Unit]]:
    """This process's batches: units already done are dropped, then every ``world_size``-th batch."""
    todo = [[u for u in b if u.key not in done] for b in batches]
    todo = [b for b in todo if b]
    return todo[rank::world_size]

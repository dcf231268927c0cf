"""``DIR/manifest.jsonl``: the record of a batch run, one JSON object a line.

- ``{"kind": "run", "args": {...}, ...}``: written at every start; the first one holds the
  arguments every later start must repeat.
- ``{"kind": "done", "item", "sample", "seed", "path", "sha256", "seconds", ...}``: appended only
  after the output was renamed into place.
- ``{"kind": "failed", "item", "sample", "seed", "error", ...}``: the unit failed; a rerun tries it again.

Every line goes out in one ``write`` on a file opened for appending, under a lock (processes on
several machines share the file through their file system), so a killed process leaves at worst
one torn last line: readers skip it and the next start cuts it off.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ..errors import InputError

try:  # POSIX record locks (NFS-aware); Windows runs one process per folder without them
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

NAME = "manifest.jsonl"
Key = Tuple[int, int]  # (item, sample)


# What a unit's record must hold for a resume to use it.
UNIT_FIELDS = {"done": {"item": int, "sample": int}, "failed": {"item": int, "sample": int}}


def read(path: str) -> List[dict]:
    """Every complete, valid line (a torn or foreign line is skipped; a done/failed line without
    what a resume needs is an error naming the line)."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                break  # torn by a kill mid-write
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("kind"), str):
                _check_record(record, path, number)
                records.append(record)
    return records


def _check_record(record: dict, path: str, line: int) -> None:
    for key, kind in UNIT_FIELDS.get(record["kind"], {}).items():
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, kind):
            fields = ", ".join(f"{k} ({t.__name__})" for k, t in UNIT_FIELDS[record["kind"]].items())
            raise InputError(
                f"{path} line {line}: a {record['kind']!r} record with {key} = {value!r}; it needs "
                f"{fields}. Remove or fix that line (this folder's run is otherwise resumable)."
            )


def repair(path: str) -> None:
    """Cut a torn last line so the next append starts on a line of its own."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def append(path: str, record: dict) -> None:
    line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        os.write(fd, line)
    finally:
        os.close(fd)  # (closing releases the lock)


# Identity keys earlier versions did not write: their runs still resume.
RECORDED_LATER = ("weights_sha256",)


def first_args(records: Iterable[dict]) -> Optional[dict]:
    return next((r.get("args") for r in records if r.get("kind") == "run"), None)


def check_same_args(records: Iterable[dict], args: dict, path: str) -> None:
    """InputError naming every argument that differs from the run this folder holds."""
    old = first_args(records)
    if old is None:
        return
    differ = []
    for key in sorted(set(old) | set(args)):
        if key in RECORDED_LATER and key not in old:
            continue  # a run from before it was recorded
        if old.get(key) != args.get(key):
            if key == "prompts_sha256":
                differ.append("the prompt file's content")
            elif key == "weights_sha256":
                differ.append("the checkpoint's weights (their safetensors headers differ)")
            else:
                differ.append(f"--{key.replace('_', '-')} was {old.get(key)!r}, now {args.get(key)!r}")
    if differ:
        raise InputError(
            f"{path} belongs to a run with other arguments: {'; '.join(differ)}. "
            "Resume with the same arguments, or write to another --out folder."
        )


def latest(records: Iterable[dict]) -> Dict[Key, dict]:
    """The last done/failed line of every unit."""
    out: Dict[Key, dict] = {}
    for r in records:
        if r.get("kind") in ("done", "failed"):
            out[(int(r["item"]), int(r["sample"]))] = r
    return out


def finished(records: Iterable[dict], out_dir: str) -> Set[Key]:
    """Units whose output is recorded and still on disk."""
    return {
        key
        for key, r in latest(records).items()
        if r["kind"] == "done" and isinstance(r.get("path"), str) and os.path.isfile(os.path.join(out_dir, r["path"]))
    }


def failed(records: Iterable[dict]) -> Dict[Key, dict]:
    return {key: r for key, r in latest(records).items() if r["kind"] == "failed"}

"""Finding NOVA checkpoints, text encoders and VAEs in the host's model folders.

A checkpoint is a folder in the official layout (``transformer/``, ``vae/``, ...) under
``models/nova`` or ``models/diffusers`` (or any path ``extra_model_paths.yaml`` adds to those keys).
A Phi-2 folder under ``models/text_encoders`` serves every checkpoint, so one copy is enough.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Tuple

from ..nova.components.loading import HUB_PATTERNS, expected_layout
from ..nova.errors import CheckpointError

OFFICIAL = {
    "nova-d48w1024-osp480": "BAAI/nova-d48w1024-osp480",
    "nova-d48w1024-sd512": "BAAI/nova-d48w1024-sd512",
    "nova-d48w768-sdxl1024": "BAAI/nova-d48w768-sdxl1024",
    "nova-d48w1024-sdxl1024": "BAAI/nova-d48w1024-sdxl1024",
    "nova-d48w1536-sdxl1024": "BAAI/nova-d48w1536-sdxl1024",
}


def register_nova_folder() -> None:
    """Add ``models/nova`` to ComfyUI's folder registry, keeping paths from extra_model_paths.yaml
    (which is applied before packs import)."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, "nova")
    if "nova" in folder_paths.folder_names_and_paths:
        paths, exts = folder_paths.folder_names_and_paths["nova"]
        if default not in paths:
            paths.append(default)
        folder_paths.folder_names_and_paths["nova"] = (paths, exts)
    else:
        folder_paths.folder_names_and_paths["nova"] = ([default], {"folder"})


def register_ursa_folder() -> None:
    """Add ``models/ursa`` (URSA checkpoints) to ComfyUI's folder registry, as for ``models/nova``."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, "ursa")
    paths, exts = folder_paths.folder_names_and_paths.get("ursa", ([], {"folder"}))
    if default not in paths:
        paths.append(default)
    folder_paths.folder_names_and_paths["ursa"] = (paths, exts)


def _subdirs(root: str, depth: int = 2):
    if not os.path.isdir(root):
        return
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if os.path.isdir(path) and not entry.startswith("."):
            yield entry, path
            if depth > 1:
                for sub, sub_path in _subdirs(path, depth - 1):
                    yield f"{entry}/{sub}", sub_path


def find_checkpoints(host) -> Dict[str, str]:
    found = {}
    for root in host.folder_paths("nova") + host.folder_paths("diffusers"):
        for name, path in _subdirs(root):
            if os.path.isfile(os.path.join(path, "transformer", "config.json")):
                found.setdefault(name, path)
    return found


def _is_phi(folder: str) -> bool:
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            return json.load(f).get("model_type") == "phi"
    except (OSError, ValueError):
        return False


def find_text_encoders(host) -> Dict[str, Tuple[str, str]]:
    """name -> (text encoder folder, tokenizer folder)."""
    found = {}
    for name, path in find_checkpoints(host).items():
        if os.path.isdir(os.path.join(path, "text_encoder")):
            found[name] = (os.path.join(path, "text_encoder"), os.path.join(path, "tokenizer"))
    for root in host.folder_paths("text_encoders"):
        for name, path in _subdirs(root):
            if _is_phi(path):
                tok = os.path.join(path, "tokenizer") if os.path.isdir(os.path.join(path, "tokenizer")) else path
                found.setdefault(name, (path, tok))
            elif _is_phi(os.path.join(path, "text_encoder")):
                found.setdefault(name, (os.path.join(path, "text_encoder"), os.path.join(path, "tokenizer")))
    return found


def find_vaes(host) -> Dict[str, str]:
    found = {}
    for name, path in find_checkpoints(host).items():
        if os.path.isfile(os.path.join(path, "vae", "config.json")):
            found[name] = os.path.join(path, "vae")
    for root in host.folder_paths("vae"):
        for name, path in _subdirs(root, depth=1):
            if os.path.isfile(os.path.join(path, "config.json")):
                found.setdefault(name, path)
    return found


def choices(found: Dict) -> list:
    """Dropdown entries: what is on disk, plus the official names (shared workflows name them)."""
    return sorted(set(found) | set(OFFICIAL))


def locate(name: str, found: Dict, what: str, host, download: bool = False):
    """The entry for ``name``; downloads an official checkpoint when allowed. Errors say where we
    looked and what is expected there."""
    if name in found:
        return found[name]
    searched = host.folder_paths("nova") + host.folder_paths("diffusers")
    if name in OFFICIAL:
        if download:
            return download_repo(OFFICIAL[name], name, host, "nova", expected_layout())
        raise CheckpointError(
            f"{what} '{name}' is not installed. Put the folder of Hugging Face repo {OFFICIAL[name]} into one of "
            f"{searched or ['models/nova']} (it must hold {expected_layout()}), or set download to true."
        )
    raise CheckpointError(f"{what} '{name}' not found; looked in {searched}. Available: {sorted(found) or 'none'}.")


def download_repo(repo_id: str, name: str, host, kind: str, layout: str) -> str:
    """Download the checkpoint files of Hub repo ``repo_id`` into ``name`` in the host's first
    models folder of ``kind`` (nova, ursa); ``layout`` says what it must hold, for the errors."""
    into = host.folder_paths(kind)[:1]
    if not into:
        raise CheckpointError(f"no models/{kind} folder is configured to download into.")
    target = os.path.join(into[0], name)
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id=repo_id, local_dir=target, allow_patterns=HUB_PATTERNS)
    except Exception as exc:
        raise CheckpointError(
            f"downloading {repo_id} into {target} failed ({type(exc).__name__}: {exc}). Offline? Copy the repo "
            f"there by hand; the folder must hold {layout.rstrip('.')}."
        ) from exc
    return target

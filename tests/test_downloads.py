"""The nodes' download of an official checkpoint (``download`` true): the Hub repo's checkpoint
files land in the first models folder of the family, and what cannot be downloaded says what to
copy by hand. The Hub is not reachable here: ``snapshot_download`` is replaced by a copy of a
local folder laid out like the repo, filtered by the same file patterns."""

import fnmatch
import os
import shutil

import pytest
from pack import ROOT, load_pack

load_pack()
from comfyui_nova.nodes import folders  # noqa: E402
from comfyui_nova.nodes.host import FallbackHost  # noqa: E402
from comfyui_nova.nodes.ursa import locate_ursa  # noqa: E402
from comfyui_nova.nova.errors import CheckpointError  # noqa: E402

REPOS = {
    "BAAI/nova-d48w1024-osp480": os.path.join(ROOT, "tests", "golden", "t2v_tiny"),
    "BAAI/URSA-1.7B-FSQ320": os.path.join(ROOT, "tests", "golden_ursa", "t2v_tiny"),
}


@pytest.fixture
def hub(monkeypatch):
    """A stand-in for ``huggingface_hub.snapshot_download`` over REPOS; records each call."""
    import huggingface_hub

    calls = []

    def snapshot_download(repo_id, local_dir, allow_patterns):
        calls.append(repo_id)
        if repo_id not in REPOS:
            raise OSError(f"{repo_id} is not reachable")
        source = REPOS[repo_id]
        for folder, _, files in os.walk(source):
            for name in files:
                rel = os.path.relpath(os.path.join(folder, name), source).replace(os.sep, "/")
                if any(fnmatch.fnmatch(rel, p) for p in allow_patterns):
                    os.makedirs(os.path.join(local_dir, os.path.dirname(rel)), exist_ok=True)
                    shutil.copy(os.path.join(folder, name), os.path.join(local_dir, rel))
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def test_an_official_nova_checkpoint_downloads_into_models_nova(tmp_path, hub):
    host = FallbackHost(models_dirs=[str(tmp_path)])
    with pytest.raises(CheckpointError, match="not installed.*or set download to true"):
        folders.locate("nova-d48w1024-osp480", {}, "checkpoint", host, download=False)
    assert hub == []
    folder = folders.locate("nova-d48w1024-osp480", {}, "checkpoint", host, download=True)
    assert folder == os.path.join(str(tmp_path), "nova", "nova-d48w1024-osp480")
    assert hub == ["BAAI/nova-d48w1024-osp480"]
    found = folders.find_checkpoints(host)
    assert found == {"nova-d48w1024-osp480": folder}  # a later run finds it without downloading
    for part in ("model_index.json", "transformer/config.json", "scheduler/scheduler_config.json"):
        assert os.path.isfile(os.path.join(folder, part)), part
    # Only the checkpoint files come: no code shim (the official repos ship __transformer__.py).
    assert not any(f.endswith(".py") for _, _, files in os.walk(folder) for f in files)


def test_an_official_ursa_checkpoint_downloads_into_models_ursa(tmp_path, hub):
    host = FallbackHost(models_dirs=[str(tmp_path)])
    folder = locate_ursa("URSA-1.7B-FSQ320", host, download=True)
    assert folder == os.path.join(str(tmp_path), "ursa", "URSA-1.7B-FSQ320")
    assert os.path.isfile(os.path.join(folder, "scheduler", "scheduler_model.pth"))
    assert not any(f.endswith(".py") for _, _, files in os.walk(folder) for f in files)
    assert locate_ursa("URSA-1.7B-FSQ320", host, download=False) == folder  # found on disk now
    assert hub == ["BAAI/URSA-1.7B-FSQ320"]


def test_a_failed_download_says_what_to_copy_by_hand(tmp_path, hub):
    host = FallbackHost(models_dirs=[str(tmp_path)])
    with pytest.raises(CheckpointError) as err:
        folders.locate("nova-d48w1024-sd512", {}, "checkpoint", host, download=True)
    message = str(err.value)
    assert "downloading BAAI/nova-d48w1024-sd512 into" in message and "is not reachable" in message
    assert "Copy the repo there by hand; the folder must hold model_index.json" in message
    assert message.endswith("scheduler/scheduler_config.json.")
    with pytest.raises(CheckpointError, match=r"URSA-0.6B-IBQ1024 into .*must hold model_index.json \(_class_name"):
        locate_ursa("URSA-0.6B-IBQ1024", host, download=True)


@pytest.mark.parametrize("family", ["nova", "ursa"])
def test_no_models_folder_to_download_into(family, hub):
    host = FallbackHost(models_dirs=[])
    with pytest.raises(CheckpointError, match=f"no models/{family} folder is configured to download into"):
        if family == "nova":
            folders.locate("nova-d48w1024-osp480", {}, "checkpoint", host, download=True)
        else:
            locate_ursa("URSA-1.7B-FSQ320", host, download=True)
    assert hub == []

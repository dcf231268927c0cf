"""What users download: the Registry zip that `comfy node pack` builds, and the metadata comfy-cli
reads from pyproject.toml. Runs comfy-cli itself (requirements-dev.txt)."""

import os
import re
import shutil
import subprocess
import sys
import zipfile

import tomllib
from conftest import ROOT

MAX_ZIP_BYTES = 3 * 1024 * 1024


def _requirements(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith(("#", "-r"))]


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_pyproject_dependencies_equal_requirements():
    assert _pyproject()["project"]["dependencies"] == _requirements("requirements.txt")


def test_every_engine_package_is_shipped():
    """`pip install .` (and the `nova` script) carries every package under nova/."""
    found = sorted(
        os.path.relpath(folder, ROOT).replace(os.sep, ".")
        for folder, _, files in os.walk(os.path.join(ROOT, "nova"))
        if "__init__.py" in files
    )
    assert sorted(_pyproject()["tool"]["setuptools"]["packages"]) == found


def test_dev_requirements_never_pin_what_torch_pins():
    """A CUDA torch pins its own triton (and torchvision/torchaudio pin torch): a version on any of
    them in requirements-dev.txt makes ``pip install torch -r requirements-dev.txt`` swap torch."""
    for line in _requirements("requirements-dev.txt"):
        name = re.match(r"[A-Za-z0-9_.-]+", line).group(0).lower()
        if name in {"torch", "triton", "torchvision", "torchaudio", "pytorch-triton"}:
            spec = line.split(";")[0].split("#")[0].strip()
            assert spec.lower() == name, f"requirements-dev.txt: {line!r} pins {name}; leave it unpinned"


def test_floor_set_pins_each_floor():
    """requirements-floor.txt (what CI's second environment installs) is the lowest version each
    requirements.txt line allows, package for package."""
    floors = {}
    for req in _requirements("requirements.txt"):
        name, op, version = re.match(r"([A-Za-z0-9_.-]+)\s*(>=)\s*([0-9][0-9A-Za-z.]*)$", req).groups()
        floors[name.lower()] = version
    pins = {}
    for line in _requirements("requirements-floor.txt"):
        name, version = line.split("==")
        pins[name.lower()] = version
    assert set(pins) == set(floors)
    for name, floor in floors.items():
        assert pins[name].split(".")[: len(floor.split("."))] == floor.split("."), (name, floor, pins[name])


def test_comfy_cli_reads_our_metadata():
    from comfy_cli.registry.config_parser import extract_node_configuration

    config = extract_node_configuration(os.path.join(ROOT, "pyproject.toml"))
    assert config.project.dependencies == _requirements("requirements.txt")
    assert config.project.license  # Registry shows it
    assert config.tool_comfy.icon.startswith("https://") and config.tool_comfy.icon.endswith("/icon.png")
    assert os.path.isfile(os.path.join(ROOT, "icon.png"))
    assert config.project.supported_comfyui_version == ">=0.3.64"


def test_registry_zip_carries_only_what_runs(tmp_path):
    comfy = shutil.which("comfy", path=os.path.dirname(sys.executable)) or shutil.which("comfy")
    assert comfy, "comfy-cli is missing: pip install -r requirements-dev.txt"
    # comfy-cli packs the git-tracked files of the current folder; a clone keeps the work tree clean.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", ROOT, str(clone)], check=True)
    for rel in subprocess.run(["git", "ls-files", "-m"], cwd=ROOT, capture_output=True, text=True).stdout.split():
        shutil.copy2(os.path.join(ROOT, rel), clone / rel)  # uncommitted edits, so a dev run tests them too
    result = subprocess.run(
        [comfy, "--skip-prompt", "node", "pack"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    path = clone / "node.zip"
    assert path.stat().st_size <= MAX_ZIP_BYTES, path.stat().st_size
    names = zipfile.ZipFile(path).namelist()
    top = {n.split("/")[0] for n in names}
    assert {"__init__.py", "requirements.txt", "LICENSE", "NOTICE", "nodes", "nova", "web", "workflows"} <= top
    assert top <= {
        "__init__.py",
        "requirements.txt",
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "NOTICE",
        "CHANGELOG.md",
        "icon.png",
        "nodes",
        "nova",
        "web",
        "workflows",
    }, sorted(top)
    assert not [n for n in names if n.endswith((".safetensors", ".bin", ".pt", ".ckpt", ".pth"))]
    assert "nodes/__init__.py" in names and "nova/models/transformer.py" in names
    assert any(n.startswith("web/docs/") and n.endswith("/zh.md") for n in names)

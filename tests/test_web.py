"""The frontend extension's logic (web/nova_logic.js), tested with node's own test runner."""

import os
import shutil
import subprocess

import pytest
from conftest import ROOT


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_web_logic():
    r = subprocess.run(
        ["node", "--test", os.path.join(ROOT, "tests", "web")], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "# fail 0" in r.stdout and "# pass 6" in r.stdout


def test_web_directory_ships_only_entry_modules():
    """ComfyUI loads every .js under web/ as an extension: keep only ours there."""
    web = os.path.join(ROOT, "web")
    scripts = sorted(
        os.path.relpath(os.path.join(d, f), web) for d, _, files in os.walk(web) for f in files if f.endswith(".js")
    )
    assert scripts == ["nova.js", "nova_logic.js"]

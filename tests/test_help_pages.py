"""Every registered node has an English and a Chinese help page (web/docs/<node id>.md and
web/docs/<node id>/zh.md, shown by ComfyUI's node documentation panel), each naming every input
and output of the node's schema, with working image links and a small web/ folder."""

import os
import re

import pytest
from pack import ROOT, load_pack

load_pack()
from comfyui_nova.nodes import NODES  # noqa: E402

DOCS = os.path.join(ROOT, "web", "docs")
PAGES = {"en": "{node_id}.md", "zh": os.path.join("{node_id}", "zh.md")}
WEB_BUDGET = 1024 * 1024  # the whole web/ folder ships in the registry zip
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _schemas():
    return [node.define_schema() for node in NODES]


def _page(node_id: str, lang: str) -> str:
    return os.path.join(DOCS, PAGES[lang].format(node_id=node_id))


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("lang", sorted(PAGES))
@pytest.mark.parametrize("schema", _schemas(), ids=lambda s: s.node_id)
def test_page_exists_and_names_every_input_and_output(schema, lang):
    path = _page(schema.node_id, lang)
    assert os.path.isfile(path), f"{schema.node_id} has no {lang} help page: write {os.path.relpath(path, ROOT)}"
    text = _read(path)
    assert text.startswith("# ") and schema.display_name in text.splitlines()[0]
    # Names are written as code (`name`), so that "seed" is not found inside another word.
    missing = [i.id for i in schema.inputs if f"`{i.id}`" not in text]
    assert not missing, f"{os.path.relpath(path, ROOT)} does not describe inputs {missing}"
    outputs = [o.display_name for o in schema.outputs]
    missing = [name for name in outputs if f"`{name}`" not in text]
    assert not missing, f"{os.path.relpath(path, ROOT)} does not describe outputs {missing}"


def test_chinese_pages_are_chinese():
    for schema in _schemas():
        text = _read(_page(schema.node_id, "zh"))
        han = sum("\u4e00" <= ch <= "\u9fff" for ch in text)
        assert han > 150, f"{schema.node_id}/zh.md has only {han} Chinese characters"


def test_no_page_for_an_unknown_node():
    """A page for a renamed or removed node would never be shown: keep docs/ in step with the nodes."""
    ids = {s.node_id for s in _schemas()}
    pages = {name[:-3] for name in os.listdir(DOCS) if name.endswith(".md")}
    folders = {name for name in os.listdir(DOCS) if os.path.isdir(os.path.join(DOCS, name)) and name != "images"}
    assert pages == ids and folders == ids


def test_image_links_resolve():
    """The frontend resolves a relative link against /extensions/<pack>/docs/ for every locale's
    page, so links are relative to web/docs/ in both languages."""
    linked = set()
    for schema in _schemas():
        for lang in PAGES:
            for link in IMAGE_LINK.findall(_read(_page(schema.node_id, lang))):
                assert not re.match(r"^(/|[a-z]+:)", link), f"{schema.node_id} ({lang}): {link} must be relative"
                assert os.path.isfile(os.path.join(DOCS, link)), f"{schema.node_id} ({lang}): {link} not in web/docs"
                linked.add(os.path.normpath(link))
    images = {os.path.join("images", name) for name in os.listdir(os.path.join(DOCS, "images"))}
    assert images == linked, f"unused images: {sorted(images - linked)}"


def test_web_folder_stays_small():
    total = sum(
        os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(os.path.join(ROOT, "web")) for f in files
    )
    assert total < WEB_BUDGET, f"web/ holds {total} bytes"

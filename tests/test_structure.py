"""Structure that keeps results right: no import cycle in nova/, and one pipeline serves threads."""

import ast
import os
import threading

import torch
from conftest import ROOT

NOVA = os.path.join(ROOT, "nova")


def _module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def nova_imports():
    """module -> the nova modules it imports (every import statement, lazy ones in functions too)."""
    return pack_imports(("nova",))


def pack_imports(packages=("nova", "nodes")):
    """module -> the pack's modules it imports, over the given top-level packages of the pack (a
    relative import reaching above a package is resolved against the pack's root)."""
    found = {}
    for path in _sources(packages):
        name = _module_name(path)
        package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
        found[name] = [(mod, names) for mod, names in _imports(path, package) if mod.split(".")[0] in packages]
    graph = {}
    for name, imports in found.items():
        targets = set()
        for mod, names in imports:
            submodules = {f"{mod}.{n}" for n in names} & found.keys()  # `from . import x`: the module x
            targets |= submodules if submodules else {mod}
        graph[name] = {t for t in targets if t in found and t != name}
    return graph


def _sources(packages):
    for top in packages:
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            yield from (os.path.join(folder, f) for f in sorted(files) if f.endswith(".py"))


def _imports(path, package):
    """(absolute module, names) of every import statement in a file; relative imports resolved
    against ``package`` (one reaching above the pack's root resolves to a name starting with '.')."""
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level - 1 > len(base):
                    yield "." + (node.module or ""), [a.name for a in node.names]
                    continue
                base = base[: len(base) - (node.level - 1)]
                yield ".".join(base + ([node.module] if node.module else [])), [a.name for a in node.names]
            else:
                yield node.module or "", [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


def find_cycle(graph):
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                return stack[stack.index(t) :] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycle_in_nova():
    graph = nova_imports()
    assert (
        "nova.sampling.plan" in graph and "nova.sampling.sampler" in graph["nova.sampling.plan"]
    )  # the walker sees imports
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]  # and the finder finds cycles
    assert find_cycle(graph) is None


def test_no_import_cycle_in_the_pack():
    """nova/ and nodes/ together: no two modules import each other, directly or around a loop."""
    graph = pack_imports()
    assert "nodes.vae" in graph and "nova.io.pixels" in graph["nodes.vae"]
    assert find_cycle(graph) is None


HOST_MODULES = {
    "comfy",
    "comfy_api",
    "comfy_extras",
    "comfy_execution",
    "server",
    "nodes",
    "folder_paths",
    "execution",
    "latent_preview",
    "node_helpers",
}


def test_nova_never_imports_comfyui():
    """The engine stands alone (a plain package and CLI): no ComfyUI module, no import of the pack's
    nodes/ (relative imports reaching above nova/ included)."""
    offenders = []
    for path in _sources(("nova",)):
        name = _module_name(path)
        package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
        for mod, _ in _imports(path, package):
            top = mod.split(".")[0]
            if mod.startswith(".") or top in HOST_MODULES:
                offenders.append(f"{os.path.relpath(path, ROOT)} imports {mod or '.'}")
    assert not offenders, offenders


def test_the_rule_sees_a_host_import(tmp_path):
    """The scanner itself: an absolute, a relative one reaching the pack's nodes/, and a lazy import."""
    src = tmp_path / "probe.py"
    src.write_text(
        "import comfy.model_management\nfrom ..nodes import x\ndef f():\n    from server import PromptServer\n"
    )
    found = [m for m, _ in _imports(str(src), "nova")]
    assert found == ["comfy.model_management", "nodes", "server"]


def test_nodes_reach_the_engine_through_its_wrappers():
    """nodes/ converts ComfyUI types and calls the engine; the networks (nova/models/) stay behind
    the engine's wrappers (nova/components/vae.py, nova/components/loaders.py, ...)."""
    offenders = []
    for path in _sources(("nodes",)):
        name = _module_name(path)
        package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
        offenders += [
            f"{os.path.relpath(path, ROOT)} imports {mod}"
            for mod, _ in _imports(path, package)
            if mod.startswith("nova.models")
        ]
    assert not offenders, offenders


def test_building_the_cli_parser_imports_no_torch():
    """`python -m nova --help` answers at once: the parser (generate, batch, make-tiny) is built
    without importing torch, diffusers or transformers."""
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from nova.__main__ import build_parser; build_parser(); "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; print(heavy); "
        "sys.exit(1 if heavy else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code, ROOT], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_two_threads_on_one_pipeline_give_the_sequential_results(tiny_video_pipe):
    """20 generations per thread from text, prompts of different lengths (the tokenizer is shared)."""
    pipe = tiny_video_pipe
    words = "a red fox runs through deep snow under a pale winter sky at dawn".split()
    jobs = [(" ".join(words[: 1 + i % len(words)]), i) for i in range(40)]
    kw = dict(num_inference_steps=1, num_diffusion_steps=1, output_type="latent", disable_progress_bar=True)

    def generate(prompt, seed):
        return pipe(prompt, generator=torch.Generator().manual_seed(seed), **kw).frames

    expected = [generate(p, s) for p, s in jobs]
    results, errors = [None] * len(jobs), []

    def worker(indices):
        try:
            for i in indices:
                results[i] = generate(*jobs[i])
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(range(k, len(jobs), 2),)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(torch.equal(r, e) for r, e in zip(results, expected))
    assert len({float(e.sum()) for e in expected}) > 30  # the prompts and seeds do differ


def test_the_old_flat_module_paths_still_import_with_a_warning():
    """Code written against 0.1 (``from nova.plan import GenerationPlan``, ``import nova.media``)
    keeps working: the module at its new place, one DeprecationWarning naming where it went."""
    import subprocess
    import sys

    code = (
        "import sys, warnings; sys.path.insert(0, sys.argv[1]); warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    from nova.plan import GenerationPlan\n"
        "    import nova.media as old_media\n"
        "    from nova.speed import triton_head as old_triton_head\n"
        "import nova.sampling.plan, nova.io.media\n"
        "assert GenerationPlan is nova.sampling.plan.GenerationPlan\n"
        "assert old_media is nova.io.media\n"
        "import nova.head.triton\n"
        "assert old_triton_head is nova.head.triton\n"
        "msgs = [str(w.message) for w in caught if w.category is DeprecationWarning]\n"
        "assert any('nova.plan moved to nova.sampling.plan' in m for m in msgs), msgs\n"
        "assert any('nova.media moved to nova.io.media' in m for m in msgs), msgs\n"
    )
    r = subprocess.run([sys.executable, "-c", code, ROOT], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

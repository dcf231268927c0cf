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
    graph = {}
    for folder, _, files in os.walk(NOVA):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(folder, f)
            name = _module_name(path)
            package = name if f == "__init__.py" else name.rsplit(".", 1)[0]
            targets = set()
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                if isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = package.split(".")
                        base = base[: len(base) - (node.level - 1)]
                        mod = ".".join(base + ([node.module] if node.module else []))
                    else:
                        mod = node.module or ""
                    if mod.startswith("nova"):
                        targets.add(mod)
                        targets.update(f"{mod}.{a.name}" for a in node.names)  # `from . import x`
                elif isinstance(node, ast.Import):
                    targets.update(a.name for a in node.names if a.name.startswith("nova"))
            graph[name] = targets
    return {m: {t for t in ts if t in graph and t != m} for m, ts in graph.items()}


def find_cycle(graph):
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                return stack[stack.index(t):] + [t]
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
    assert "nova.plan" in graph and "nova.sampling" in graph["nova.plan"]  # the walker sees imports
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]  # and the finder finds cycles
    assert find_cycle(graph) is None


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

"""The import rules of the architecture, read from every module's source with ast.

Imports point down the layers: a module imports its own package and packages of lower layers,
never a higher layer nor another package of its own layer. nanosora-internal imports are
statements of the module body, so no cycle can hide in a function, and there is no cycle.
Function-local imports remain for optional or heavy third-party packages only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import nanosora

SRC = Path(nanosora.__file__).parent

# From the bottom up. Packages and top-level modules by name; "__init__" is nanosora itself.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("config", "atomic", "precision"),
    ("video",),
    ("shapes", "models", "diffusion"),
    ("lora",),
    ("pipeline",),  # the pipeline and the loading and saving of trained models
    ("data",),
    ("train", "generate", "curate"),
    ("evaluate", "story"),
    ("quickstart", "studio"),
    ("cli", "__main__", "__init__"),
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}

# The rules in words (docs/architecture.md); LAYERS must imply each of them.
FORBIDDEN = (
    ("data", "train"),
    ("video", "data"),
    ("train", "evaluate"),
    ("generate", "train"),
    ("train", "generate"),
    ("story", "evaluate"),
)


def module_name(path: Path) -> str:
    """src/nanosora/train/vae.py -> nanosora.train.vae; a package's __init__ -> the package."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(module: str, modules: set[str]) -> bool:
    return any(m.startswith(module + ".") for m in modules)


def imported(node: ast.Import | ast.ImportFrom, module: str, modules: set[str]) -> list[str]:
    """The modules an import statement depends on: ``from pkg import sub`` on ``pkg.sub`` (and on
    ``pkg`` itself only for names that are not submodules)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:  # relative: resolved against the importing module's package
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_package(module, modules) else 0)
        target = ".".join(parts[:keep] + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
    return subs + ([target] if len(subs) < len(node.names) else [])


def component(module: str) -> str:
    """nanosora.train.vae -> train; nanosora -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def check_source(source: str, module: str, modules: set[str]) -> tuple[list[str], set[str]]:
    """(violations, modules imported at module level) of one module's source.

    A violation is a nanosora import that is not a statement of the module body (function-local,
    under ``if TYPE_CHECKING`` or ``try``), or that points up the layers or sideways into another
    package of the same layer.
    """
    tree = ast.parse(source)
    body = {id(n) for n in tree.body}
    problems, edges = [], set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        targets = [
            n
            for n in imported(node, module, modules)
            if n == "nanosora" or n.startswith("nanosora.")
        ]
        if not targets:
            continue
        where = f"{module} line {node.lineno}"
        if id(node) not in body:
            problems.append(f"{where}: imports {targets[0]} inside a function or block")
        for target in targets:
            edges.add(target)
            src, dst = component(module), component(target)
            if src == dst or target == "nanosora":
                continue
            if src not in LAYER or dst not in LAYER:
                problems.append(f"{where}: {src} or {dst} has no layer in LAYERS")
            elif LAYER[dst] >= LAYER[src]:
                problems.append(f"{where}: {src} (layer {LAYER[src]}) imports {target} "
                                f"(layer {LAYER[dst]})")  # fmt: skip
    return problems, edges


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (module -> modules it imports) as a path, or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        state[m] = 2
        stack.pop()
        return []

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return []


def package_sources() -> dict[str, str]:
    return {module_name(p): p.read_text() for p in sorted(SRC.rglob("*.py"))}


def test_every_import_points_down_and_sits_at_module_level():
    sources = package_sources()
    modules = set(sources)
    problems = []
    for module, source in sources.items():
        problems += check_source(source, module, modules)[0]
    assert problems == [], "\n".join(problems)


def test_there_is_no_import_cycle():
    sources = package_sources()
    modules = set(sources)
    graph = {m: check_source(s, m, modules)[1] - {m} for m, s in sources.items()}
    assert find_cycle(graph) == []


def test_layers_encode_the_stated_rules():
    for src, dst in FORBIDDEN:
        assert LAYER[dst] >= LAYER[src], f"LAYERS lets {src} import {dst}"


MODULES = {
    "nanosora",
    "nanosora.config",
    "nanosora.data",
    "nanosora.data.cache",
    "nanosora.train",
    "nanosora.train.vae",
    "nanosora.video",
    "nanosora.video.io",
    "nanosora.generate",
    "nanosora.story",
    "nanosora.story.render",
    "nanosora.evaluate",
    "nanosora.evaluate.metrics",
}


@pytest.mark.parametrize(
    "module, source, problem",
    [
        ("nanosora.data.cache", "from nanosora.train.vae import load_vae\n", "data (layer 5)"),
        ("nanosora.video.io", "import nanosora.data.cache\n", "video (layer 1)"),
        ("nanosora.train.vae", "from nanosora import generate\n", "train (layer 6)"),
        ("nanosora.story.render", "from nanosora.evaluate.metrics import psnr\n", "story"),
        (
            "nanosora.train.vae",
            "def f():\n    from nanosora.config import VAEConfig\n",
            "inside a function",
        ),
        (
            "nanosora.train.vae",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from nanosora import config\n",
            "inside a function or block",
        ),
    ],
)
def test_a_violation_is_reported(module, source, problem):
    problems, _ = check_source(source, module, MODULES)
    assert len(problems) == 1 and problem in problems[0], problems


def test_allowed_imports_are_not_reported():
    source = (
        "import torch\n"
        "from nanosora.config import VAEConfig\n"
        "from nanosora.data.cache import LatentCache\n"
        "from nanosora.train import vae\n"
        "def f():\n    import ray\n"
    )
    assert check_source(source, "nanosora.train.dit", MODULES | {"nanosora.train.dit"})[0] == []


def test_a_cycle_is_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []

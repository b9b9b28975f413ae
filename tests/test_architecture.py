"""The layout's rules (docs/architecture.md): no import cycles, stage cores that fit on a screen, and a
document that names only modules and stages that exist."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"wm": ROOT / "wm", "wm.stages": ROOT / "stages", "wm.pipelines": ROOT / "pipelines"}


def module_files() -> dict[str, Path]:
    """Every module of the installed package, by dotted name (stages/ and pipelines/ install as wm.stages and wm.pipelines)."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            if package == "wm" and path.relative_to(folder).parts[0] in ("stages", "pipelines"):
                continue
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The wm modules that module `name` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import wm.a.b` names wm.a.b; `from wm.a import f` names wm.a
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("wm"):
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_even_through_imports_inside_functions():
    modules = module_files()
    # A package's __init__ importing its own modules is how a package exposes them, not a cycle between parts.
    graph = {name: {t for t in imports_of(name, path, modules) if not t.startswith(name + ".")} for name, path in modules.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_stage_core_fits_on_a_screen():
    from wm.stages import all_stages

    lengths = {stage.name: len(inspect.getsource(stage.compute).splitlines()) for stage in all_stages()}
    assert max(lengths.values()) <= 60, lengths


def test_the_architecture_document_names_only_what_exists():
    from wm.stages import all_stages

    text = (ROOT / "docs" / "architecture.md").read_text()
    for path in sorted(set(re.findall(r"`((?:wm|stages|pipelines|tests|bench)/[\w/]+\.py)`", text))):
        assert (ROOT / path).exists(), f"docs/architecture.md names {path}, which does not exist"
    for name in sorted(set(re.findall(r"`(wm(?:\.\w+)+)`", text))):
        module, _, attribute = name, "", ""
        while module not in module_files():
            module, _, tail = module.rpartition(".")
            attribute = f"{tail}.{attribute}".rstrip(".")
        assert module, f"docs/architecture.md names {name}, which is not a wm module"
        if attribute:
            import importlib

            assert hasattr(importlib.import_module(module), attribute.split(".")[0]), f"docs/architecture.md names {name}"
    for stage in all_stages():
        assert f"`{stage.name}`" in text, f"docs/architecture.md does not describe the stage {stage.name}"

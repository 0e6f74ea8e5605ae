"""The layering, enforced (issue 14): the import-linter contracts of pyproject.toml ([tool.importlinter])
hold — relay's layers from model up to cli, the core never importing Flask or Celery, webhooks and
workers never importing each other. Run by hand with `lint-imports`. And no import cycles, not even through
imports placed inside functions, and no module importing another's private names."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint_imports), "--no-cache", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"import-linter contracts broken:\n{done.stdout}\n{done.stderr}"


def _module_graph() -> tuple[dict[str, set[str]], list[str]]:
    """module -> the project modules it imports (function-level imports included), and every import of
    another module's private name (`from relay.x import _y`)."""
    modules = {}
    for package in ("relay", "webhooks", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    private = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base, alias.name)
                           for alias in node.names]
            else:
                continue
            for target, imported in targets:
                found = target
                while found and found not in modules:
                    found = found.rpartition(".")[0]
                if not found or found == name:
                    continue
                graph[name].add(found)
                if imported and imported.startswith("_") and not imported.startswith("__") and found == target:
                    private.append(f"{name} line {node.lineno}: {found}.{imported}")
    return graph, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles():
    """Not even through an import placed inside a function: a cycle hidden that way is still a cycle."""
    graph, _ = _module_graph()
    assert _cycles(graph) == []


def test_no_module_imports_another_modules_private_names():
    _, private = _module_graph()
    assert private == []

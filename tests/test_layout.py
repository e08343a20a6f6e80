"""The project's import graph: no loops among its modules, and nothing in app/ imports workers/.

`python -m tests.test_layout` prints the graph (one line per module: what it imports), the
loops and the layering faults, using the project's own code only.
"""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "models", "views", "workers")
TOP_MODULES = ("config", "wsgi")


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules():
    """{module name: path} of every Python module of the project (tests and bench aside)."""
    found = {name: ROOT / f"{name}.py" for name in TOP_MODULES if (ROOT / f"{name}.py").exists()}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _resolve(name, modules):
    """The project module `name` stands for (a module, or the package holding it), else None."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imported(path, name, modules):
    """Every project module that the module `name` at `path` imports, wherever the import stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports pkg.mod when that is a module, else a name of pkg.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved is not None and resolved != name:
                out.add(resolved)
    return out


def import_graph():
    """{module: sorted modules it imports}, project modules only."""
    modules = project_modules()
    return {name: sorted(_imported(path, name, modules)) for name, path in modules.items()}


def loops(graph):
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def app_imports_workers(graph):
    """(module, imported) pairs where a module of app/ imports one of workers/."""
    return sorted(
        (m, t) for m, targets in graph.items() if m == "app" or m.startswith("app.") for t in targets if t == "workers" or t.startswith("workers.")
    )


def test_no_import_loops():
    """No module of the project imports, directly or through others, a module that imports it."""
    assert loops(import_graph()) == []


def test_app_never_imports_workers():
    """The web side enqueues jobs by name; only workers/ (and wsgi) know the worker code."""
    assert app_imports_workers(import_graph()) == []


def test_graph_sees_every_import_form():
    """The parser counts plain, from-, relative and function-level imports (else the two tests above prove nothing)."""
    graph = import_graph()
    assert "app.extensions" in graph["app"]  # a function-level `from app.extensions import ...`
    assert "models" in graph["app"]  # `import models` inside create_app
    assert any(t.startswith("app.services") for t in graph["views.api.approvals"])


def main():
    """Print the graph, its loops and app/ → workers/ imports."""
    graph = import_graph()
    for name in sorted(graph):
        print(f"{name}: {' '.join(graph[name])}")
    print()
    found = loops(graph)
    print(f"loops: {len(found)}")
    for component in found:
        print("  " + " ".join(component))
    bad = app_imports_workers(graph)
    print(f"app -> workers imports: {len(bad)}")
    for module, target in bad:
        print(f"  {module} -> {target}")


if __name__ == "__main__":
    main()

"""The package's shape: no import cycles (function-level imports included) and no module over ~400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import ultranas

ROOT = Path(ultranas.__file__).parent
MAX_LINES = 420


def _module(path: Path) -> str:
    parts = ["ultranas", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``module -> ultranas modules it imports`` (every ``import`` statement, wherever it is in the file). A name
    imported from a package counts as its submodule when there is one, else as the package."""
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v), on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_there_are_no_import_cycles():
    graph = import_graph()
    assert {"ultranas.engine", "ultranas.trial_loop", "ultranas.context"} <= set(graph)
    assert "ultranas.trial_loop" in graph["ultranas.local_workers"]  # the graph sees function-level imports
    assert cycles(graph) == []


def test_the_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_is_much_over_400_lines():
    long = {_module(p): n for p in ROOT.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_only_the_study_package_touches_optuna_records_and_internals():
    """User attributes (what ultranas records on a study and its trials) and optuna's private API
    (``study._storage``, ``trial._trial_id``, ``optuna.storages._*``) are reached through ``ultranas.study`` only."""
    import re

    pattern = re.compile(r"user_attrs|_storage|_trial_id|storages\._|set_user_attr")
    found = [f"{p.relative_to(ROOT)}:{i}" for p in ROOT.rglob("*.py") if p.parent.name != "study"
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []
    assert pattern.search((ROOT / "study" / "records.py").read_text())  # the check reads the right files

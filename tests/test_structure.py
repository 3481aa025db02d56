"""The package's shape: no import cycle, no module over 400 lines, no public function defined twice."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

KIT = Path(__file__).resolve().parents[1] / "kit"
COMMAND_PROTOCOL = {"add_parser", "run"}   # every kit/commands/*.py defines these two by design


def modules() -> dict[str, Path]:
    out = {}
    for p in KIT.rglob("*.py"):
        rel = p.relative_to(KIT.parent).with_suffix("")
        out[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """kit module -> kit modules it imports anywhere (lazy imports too) plus their parent packages."""
    mods = modules()
    graph = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kit"):
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in (t for t in targets if t in mods and t != m):
                parts = t.split(".")
                graph[m] |= {t} | {".".join(parts[:i]) for i in range(1, len(parts))
                                   if not m.startswith(".".join(parts[:i]) + ".") and ".".join(parts[:i]) != m}
    return {m: {t for t in ts if t in mods} for m, ts in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, path = {}, []

    def visit(v):
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state and (c := visit(w)):
                return c
        state[v] = 2
        path.pop()
        return None

    return next((c for v in sorted(graph) if v not in state and (c := visit(v))), None)


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_no_module_over_400_lines():
    long = {str(p.relative_to(KIT)): n for p in KIT.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_no_public_function_defined_twice():
    where = defaultdict(list)
    for p in KIT.rglob("*.py"):
        for node in ast.parse(p.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                where[node.name].append(str(p.relative_to(KIT)))
    twice = {k: v for k, v in where.items() if len(v) > 1 and k not in COMMAND_PROTOCOL}
    assert twice == {}


def test_every_subpackage_says_what_it_owns():
    for init in KIT.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.relative_to(KIT)} has no docstring"

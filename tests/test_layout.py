"""The grader's three rooms and their one-way arrows: workflow -> isolation -> judge, no import circle.

Imports are read from the source (module-level and inside functions alike), so a lazy import that
would close a circle counts too.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.grader
GRADER = Path(__file__).resolve().parents[1] / "grader"
ROOMS = ("judge", "isolation", "workflow")
ALLOWED = {"judge": {"judge"}, "isolation": {"isolation"}, "workflow": {"workflow", "isolation", "judge"}}


def _module(path: Path) -> str:
    parts = path.relative_to(GRADER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every grader module (and nbgrader) that ``path`` imports, resolved to absolute names."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
    return {name for name in found if name.startswith(("grader", "nbgrader"))}


MODULES = {_module(p): p for p in GRADER.rglob("*.py")}


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else None


def test_every_grader_module_lives_in_one_of_the_three_rooms():
    loose = [m for m in MODULES if m != "grader" and _room(m) is None]
    assert not loose, f"modules outside judge/, isolation/ and workflow/: {loose}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _room(m)))
def test_imports_follow_the_arrows(module):
    room = _room(module)
    wrong = sorted(name for name in _imports(MODULES[module])
                   if (_room(name) and _room(name) not in ALLOWED[room]) or (room == "judge" and name.startswith("nbgrader")))
    assert not wrong, f"{module} ({room}) imports {wrong}"


def test_no_import_circle_among_grader_modules():
    graph = {m: {n for n in _imports(p) if n in MODULES and n != m} for m, p in MODULES.items()}
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                raise AssertionError(" -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_the_judge_imports_without_nbgrader_the_sandbox_or_the_workflow():
    code = ("import sys, grader.judge.items, grader.judge.review, grader.judge.protocol\n"
            "print(sorted(m for m in sys.modules if m.startswith(('nbgrader', 'grader.workflow', 'grader.isolation'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out

"""Code a chapter is given from earlier chapters, generated from their solution notebooks.

A later chapter uses what learners built before (chapter 04 trains networks with
chapter 02's affine layer and softmax loss). Its notebook says so with one import::

    from earlier_chapters import affine_forward, affine_backward, softmax_loss

and ``course release`` (and ``course autograde``) write
``solutions/<chapter>/earlier_chapters.py`` from the answer cells
(``grade_id: <name>_answer``) of the earlier chapters' solution notebooks: the
worked solution is the single source, never a copy kept by hand, and the file in
solutions/ is not committed. Functions those answers call are taken along. The
file travels with the chapter: nbgrader releases it (so notebooks/ has the
learners' copy), and at grading time puts the source folder's copy in place of
any submitted one, so editing it gains a learner nothing. A chapter is never
given its own graded functions (``given_code_problems`` says so).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat

from ..judge.notebooks import SOLUTIONS, nb_meta, read

MODULE = "earlier_chapters"
FILENAME = f"{MODULE}.py"
ANSWER_SUFFIX = "_answer"
SOLUTION_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.M)


def _solutions_dir():
    return SOLUTIONS


def _notebook(chapter, solutions: Path):
    return nbformat.read(str(solutions / chapter / f"{chapter}.ipynb"), as_version=4)


def requested_names(nb) -> list[str]:
    """Names imported with ``from earlier_chapters import ...`` anywhere in a notebook's code cells."""
    names = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == MODULE:
                names += [alias.name for alias in node.names if alias.name not in names]
    return names


def available_answers(chapter, solutions: Path) -> dict[str, tuple[str, str]]:
    """{function name: (chapter, answer source)} from every chapter before ``chapter``."""
    answers = {}
    for earlier in sorted(p.name for p in solutions.iterdir() if p.is_dir() and p.name < chapter):
        path = solutions / earlier / f"{earlier}.ipynb"
        if not path.is_file():
            continue
        for cell in nbformat.read(str(path), as_version=4).cells:
            grade_id = str(nb_meta(cell).get("grade_id", ""))
            if nb_meta(cell).get("solution") and grade_id.endswith(ANSWER_SUFFIX):
                answers[grade_id[:-len(ANSWER_SUFFIX)]] = (earlier, SOLUTION_MARKERS.sub("", cell.source).strip())
    return answers


def _names_used(source) -> set[str]:
    return {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)}


# Modules and names that given torch code may use without importing them (the chapter's set-up cell
# imports them in the notebook); the generated file imports the ones its answers need.
IMPORTS = {
    "torch": "import torch",
    "nn": "from torch import nn",
    "F": "import torch.nn.functional as F",
    "optim": "from torch import optim",
    "Function": "from torch.autograd import Function",
    "Dataset": "from torch.utils.data import Dataset",
    "DataLoader": "from torch.utils.data import DataLoader",
    "OrderedDict": "from collections import OrderedDict",
    "progress": "from dlcourse.torch_training import progress",
}


def _bound_names(tree) -> set[str]:
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return bound


def imports_needed(sources) -> list[str]:
    """The IMPORTS lines for names the sources read but never bind (``F`` as a filter count is not torch's F)."""
    trees = [ast.parse(src) for src in sources]
    bound = set().union(*(_bound_names(t) for t in trees)) if trees else set()
    read = {n.id for t in trees for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return [line for name, line in IMPORTS.items() if name in read and name not in bound]


def generate(chapter, solutions: Path | None = None) -> str | None:
    """The text of ``earlier_chapters.py`` for ``chapter``, or None if it imports nothing from earlier chapters."""
    solutions = Path(solutions or _solutions_dir())
    wanted = requested_names(_notebook(chapter, solutions))
    if not wanted:
        return None
    answers = available_answers(chapter, solutions)
    unknown = [name for name in wanted if name not in answers]
    if unknown:
        raise KeyError(f"{chapter} imports {unknown} from {MODULE}, but no earlier chapter has an answer cell "
                       f"with grade_id '<name>{ANSWER_SUFFIX}' for them")
    # Take along the earlier answers these call (affine_relu_forward needs affine_forward).
    chosen, queue = set(), list(wanted)
    while queue:
        name = queue.pop()
        if name not in chosen:
            chosen.add(name)
            queue += [n for n in _names_used(answers[name][1]) if n in answers and n not in chosen]
    order = [name for name in answers if name in chosen]       # chapter order, then notebook order
    by_chapter: dict[str, list[str]] = {}
    for name in order:
        by_chapter.setdefault(answers[name][0], []).append(name)
    imports = "".join(f"{line}\n" for line in imports_needed([answers[name][1] for name in order]))
    parts = [f'"""Functions you wrote in earlier chapters, as worked solutions: {", ".join(by_chapter)}.\n\n'
             f"Generated by `course release` from solutions/; do not edit (grading uses this version).\n"
             f'"""\nimport numpy as np\n{imports}']
    for earlier, names in by_chapter.items():
        parts.append(f"\n# --- from {earlier} " + "-" * max(3, 70 - len(earlier)) + "\n")
        parts += [f"\n{answers[name][1]}\n\n" for name in names]
    return "".join(parts).rstrip() + "\n"


def write_given_code(chapter, solutions: Path | None = None) -> Path | None:
    """(Re)write ``solutions/<chapter>/earlier_chapters.py``; remove it if the chapter imports nothing."""
    solutions = Path(solutions or _solutions_dir())
    path = solutions / chapter / FILENAME
    text = generate(chapter, solutions)
    if text is None:
        if path.exists():
            path.unlink()
        return None
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def given_code_problems(chapter, graded: set[str], solutions: Path | None = None) -> list[str]:
    """Why a chapter's given code cannot be made, or would hand the chapter its own graded functions."""
    try:
        text = generate(chapter, solutions)
    except (KeyError, SyntaxError) as exc:
        return [str(exc)]
    if text is None:
        return []
    defined = {node.name for node in ast.parse(text).body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    leaked = sorted(defined & graded)
    return [f"{chapter} would be given its own graded functions {leaked}"] if leaked else []


def main():
    """Write every chapter's given code into solutions/ (so the solution notebooks run as they are)."""
    chapters = sorted(p.name for p in SOLUTIONS.iterdir() if p.is_dir() and not p.name.startswith("."))
    for chapter in chapters:
        if write_given_code(chapter, SOLUTIONS):
            print(f"solutions/{chapter}/{FILENAME} written from earlier chapters' solutions")


def _setup_imports(nb) -> str:
    """The top-level import statements of a notebook's first code cell (its set-up cell), given code excepted."""
    import ast

    first = next((c for c in nb.cells if c.cell_type == "code"), None)
    if first is None or nb_meta(first).get("solution"):
        return ""
    source = "\n".join(line for line in first.source.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    keep = [node for node in tree.body if isinstance(node, ast.Import)
            or (isinstance(node, ast.ImportFrom) and node.module != "earlier_chapters")]
    return "\n".join(ast.unparse(node) for node in keep)


def solution_namespace(path) -> dict:
    """Execute only the answer cells of a solution notebook and return their namespace.

    Answer cells are self-contained function definitions (they may use ``np`` and
    what the chapter imports from earlier chapters, generated afresh from their
    solution notebooks), so the project's tests can grade the reference solutions in-process.
    """
    nb = read(path)
    namespace: dict = {}
    exec("import numpy as np", namespace)
    exec(_setup_imports(nb), namespace)     # torch chapters' answers use torch, nn, ... from the set-up cell
    given = generate(Path(path).parent.name, Path(path).parent.parent)
    if given:
        exec(compile(given, f"{Path(path).parent.name}/earlier_chapters.py", "exec"), namespace)
    for cell in nb.cells:
        if cell.cell_type == "code" and nb_meta(cell).get("solution"):
            exec(compile(cell.source, f"{Path(path).name}:{nb_meta(cell).get('grade_id')}", "exec"), namespace)
    return namespace


if __name__ == "__main__":
    main()

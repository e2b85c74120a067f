"""Hints must not be the answer (issue 20): nothing a learner receives holds a line of the chapter's own answers.

The answers are the code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` in the answer cells of
``solutions/NN_name/NN_name.ipynb``. A chapter's learner material is

- every file of ``notebooks/NN_name/`` (every cell: markdown, stubs, check cells and their hints, given code),
  except ``earlier_chapters.py``, which holds EARLIER chapters' answers on purpose;
- the learner-side library ``dlcourse`` (every module: its messages and hints reach the check cells);
- the feedback hints of the chapter's graded items (``hint`` / ``hints`` of ``grader.judge.items``), which reach
  learners with their grades (a separate test, so that the chapters whose hints are still being rewritten show
  by name).

The rule, strict on purpose. An answer is cut into logical lines (one Python statement each, a statement written
over several lines counts as one, comments dropped), and a line is compared with all whitespace removed and
single quotes read as double quotes, so that reformatting a line does not hide it. A line counts unless it is
trivial, which means one of:

1. it has fewer than 12 characters (``return out``, ``pass``, ``dx = dout * 1``), or no letter or digit;
2. it is a block header: ``for ...:``, ``if ...:``, ``else:``, ``with ...:``, ``def ...:``, ... (a loop or a
   branch names a structure, not the computation inside it);
3. it is a lone call without arguments (``loss.backward()``, ``model.eval()``, ``super().__init__()``): API
   vocabulary that the chapter's text names; the answer is where such calls go and with what around them;
4. it only unpacks a shape into names (``N, C, H, W = x.shape``, ``d = q.shape[-1]``): the docstrings state
   the shapes;
5. it appears in a released stub of the chapter (a signature or docstring the learner is given anyway: a
   docstring that states the contract ``next_h = tanh(x @ Wx + prev_h @ Wh + b)`` is the specification);
6. it is listed in ``GIVEN_ON_PURPOSE`` below, for the one place named there (given code that the chapter
   shows, or that a later chapter's library needs, and that happens to share the line; each with its reason).

A counted line must not occur, as a substring after the same normalisation, in any piece of learner material:
a cell's source, a module's source, or a string literal of either (adjacent literals joined, so that a hint
split over two lines of code is read whole), or a feedback hint.
"""
from __future__ import annotations

import ast
import io
import re
import textwrap
import tokenize
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from grader.judge.notebooks import nb_meta
from grader.workflow import course

from conftest import ROOT, SOLUTION_REGION, solution_notebook

pytestmark = pytest.mark.release
CHAPTERS = course.chapters()

MIN_CHARS = 12
GIVEN_CODE = "earlier_chapters.py"          # earlier chapters' answers, given on purpose (tests/test_release.py)

# (chapter, answer line as written, a text the piece of material must contain, why it may be there)
GIVEN_ON_PURPOSE = [
    ("03_initialization", "loss, dscores = softmax_loss(scores, y)", "def deep_net_loss(",
     "the chapter's given deep-network demo calls chapter 02's softmax_loss by its contract, as the answer does"),
    ("07_pytorch", "losses.append(loss.item())", "def train_reversal(",
     "chapter 09's training loop in dlcourse.sequence_models keeps its batch losses in a list the same way"),
]

_HEADER = re.compile(r"^(for|async for|if|elif|else|while|with|async with|try|except|finally|def|class)\b.*:$")
_BARE_CALL = re.compile(r"^[A-Za-z_][\w.]*(\(\)\.[A-Za-z_]\w*)*\(\)$")
_SHAPE_UNPACK = re.compile(r"^[\w,()]+=[\w.]+\.shape(\[-?\d+\])?$")


def normalise(text: str) -> str:
    """All whitespace removed, single quotes read as double quotes."""
    return re.sub(r"\s+", "", text).replace("'", '"')


@dataclass(frozen=True)
class AnswerLine:
    chapter: str
    cell: str           # grade_id of the answer cell
    text: str           # the statement as written (comments dropped)
    key: str            # normalised

    def __str__(self):
        return f"`{self.text}` ({self.cell})"


@dataclass(frozen=True)
class Piece:
    where: str
    text: str


def logical_lines(body: str) -> list[str]:
    """The statements of a solution region, comments dropped; a statement over several lines is one."""
    source = textwrap.dedent(body)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [line.split("#")[0] for line in source.splitlines()]
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    lines, current, end = [], "", None
    for token in tokens:
        if token.type == tokenize.NEWLINE:
            lines.append(current)
            current, end = "", None
        elif token.type not in skip:
            # as written: a space where the source has one between two tokens, or where a line breaks
            current += ("" if end is None or end == token.start else " ") + token.string
            end = token.end
    if current:
        lines.append(current)
    return lines


def _released_stub_text(chapter) -> str:
    learner = nbformat.read(str(ROOT / "notebooks" / chapter / f"{chapter}.ipynb"), as_version=4)
    return normalise("\n".join(c.source for c in learner.cells if nb_meta(c).get("solution")))


def trivial(statement: str, stubs: str) -> bool:
    key = normalise(statement)
    return (len(key) < MIN_CHARS or not re.search(r"[A-Za-z0-9]", key)
            or bool(_HEADER.match(statement.strip())) or bool(_BARE_CALL.match(key))
            or bool(_SHAPE_UNPACK.match(key)) or key in stubs)


def answer_lines(chapter) -> list[AnswerLine]:
    """The non-trivial statements of the chapter's worked answers (see the module docstring for the rule)."""
    stubs = _released_stub_text(chapter)
    found = {}
    for cell in nbformat.read(str(solution_notebook(chapter)), as_version=4).cells:
        meta = nb_meta(cell)
        if not meta.get("solution"):
            continue
        for body in SOLUTION_REGION.findall(cell.source):
            for statement in logical_lines(body):
                if not trivial(statement, stubs):
                    key = normalise(statement)
                    found.setdefault(key, AnswerLine(chapter, meta.get("grade_id", "?"), statement, key))
    return list(found.values())


def _string_literals(source: str) -> list[str]:
    """Every string literal of Python source (adjacent literals joined, f-strings with {} for their fields)."""
    source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    parts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            parts.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            parts.append("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values))
    return parts


def _python_pieces(where, source) -> list[Piece]:
    return [Piece(where, source)] + [Piece(f"{where}, a string literal", s) for s in _string_literals(source)]


def notebook_pieces(chapter) -> list[Piece]:
    pieces = []
    for path in sorted((ROOT / "notebooks" / chapter).iterdir()):
        if path.name == GIVEN_CODE or path.name.startswith(".") or not path.is_file():
            continue
        rel = path.relative_to(ROOT).as_posix()
        if path.suffix == ".ipynb":
            for index, cell in enumerate(nbformat.read(str(path), as_version=4).cells):
                where = f"{rel} cell {index} ({nb_meta(cell).get('grade_id') or cell.cell_type})"
                pieces += _python_pieces(where, cell.source) if cell.cell_type == "code" else [Piece(where, cell.source)]
                for output in cell.get("outputs", []):
                    text = output.get("text") or "\n".join(str(v) for v in output.get("data", {}).values())
                    pieces.append(Piece(f"{where}, its output", str(text)))
        elif path.suffix == ".py":
            pieces += _python_pieces(rel, path.read_text())
        else:
            pieces.append(Piece(rel, path.read_text(errors="replace")))
    return pieces


def library_pieces() -> list[Piece]:
    pieces = []
    for path in sorted((ROOT / "dlcourse").rglob("*.py")):
        pieces += _python_pieces(path.relative_to(ROOT).as_posix(), path.read_text())
    return pieces


def feedback_hint_pieces(chapter) -> list[Piece]:
    """The ``hint`` and ``hints`` of every graded item of the chapter: what feedback tells a learner."""
    from grader.judge.items import chapter_items

    pieces = []
    for name, item in sorted(chapter_items(chapter).items()):
        for attribute in ("hint", "hints"):
            value = getattr(item, attribute, None)
            if isinstance(value, str):
                pieces.append(Piece(f"{name}.{attribute}", value))
            elif isinstance(value, dict):
                pieces += [Piece(f"{name}.{attribute}[{k!r}]", v) for k, v in value.items() if isinstance(v, str)]
            elif isinstance(value, (list, tuple)):
                pieces += [Piece(f"{name}.{attribute}[{k}]", v) for k, v in enumerate(value) if isinstance(v, str)]
    return pieces


def _given_on_purpose(line: AnswerLine, piece: Piece) -> bool:
    return any(chapter == line.chapter and normalise(text) == line.key and marker in piece.text
               for chapter, text, marker, _ in GIVEN_ON_PURPOSE)


def leaks(chapter, pieces) -> list[str]:
    lines = answer_lines(chapter)
    found = []
    for piece in pieces:
        text = normalise(piece.text)
        found += [f"{piece.where} holds {line}" for line in lines
                  if line.key in text and not _given_on_purpose(line, piece)]
    return found


def _report(chapter, found, what):
    return (f"{len(found)} line(s) of {chapter}'s own answers in {what}; a hint names the quantity, the axis, the "
            f"convention or the section, never a line of the solution:\n  " + "\n  ".join(found))


# --- the rule itself --------------------------------------------------------------------------------

def test_a_line_is_found_however_it_is_formatted():
    line = AnswerLine("ch", "f_answer", "dw = x_flat.T @ dout", normalise("dw = x_flat.T @ dout"))
    for hint in ["Hint: dw = x_flat.T@dout.", "dw=x_flat.T @ dout", "use\n  dw = x_flat.T\n  @ dout"]:
        assert line.key in normalise(hint)
    assert normalise("cfg['learning_rate']") == normalise('cfg["learning_rate"]')
    assert line.key not in normalise("dw has w's shape (D, M): it pairs every input feature with every output's "
                                     "upstream gradient, summed over the batch.")


def test_trivial_lines_are_the_documented_ones():
    for statement in ["return out", "pass", "else:", "for t in range(T):", "with torch.no_grad():",
                      "loss.backward()", "super().__init__()", "N, C, H, W = x.shape", "d = q.shape[-1]", ")))]"]:
        assert trivial(statement, stubs=""), statement
    for statement in ["dw = x_flat.T @ dout", "db = dout.sum(axis=0)", "return correct / total",
                      "losses.append(loss.item())", "if self.transform is not None: image = self.transform(image)"]:
        assert not trivial(statement, stubs=""), statement
    assert trivial("next_h = np.tanh(x @ Wx + prev_h @ Wh + b)",
                   stubs=normalise('"""Returns next_h = np.tanh(x @ Wx + prev_h @ Wh + b)."""'))


def test_a_statement_over_several_lines_is_one_line_and_comments_are_dropped():
    body = "    out = f(a,\n            b)   # why\n    # a comment line\n    return out\n"
    assert logical_lines(body) == ["out = f(a, b)", "return out"]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_has_answer_lines_to_look_for(chapter):
    assert len(answer_lines(chapter)) >= 5, f"{chapter}: the rule leaves (almost) nothing of its answers to check"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_exemption_names_a_real_answer_line_and_a_real_place(chapter):
    keys = {line.key for line in answer_lines(chapter)}
    pieces = notebook_pieces(chapter) + library_pieces()
    for ch, text, marker, reason in GIVEN_ON_PURPOSE:
        if ch == chapter:
            assert normalise(text) in keys, f"GIVEN_ON_PURPOSE: {text!r} is not a counted line of {chapter}"
            assert any(marker in p.text and normalise(text) in normalise(p.text) for p in pieces), \
                f"GIVEN_ON_PURPOSE: {text!r} is no longer where {marker!r} is: remove the exemption ({reason})"


# --- the learner material ---------------------------------------------------------------------------

@pytest.mark.parametrize("chapter", CHAPTERS)
def test_learner_notebook_holds_no_answer_line(chapter):
    found = leaks(chapter, notebook_pieces(chapter))
    assert not found, _report(chapter, found, f"notebooks/{chapter}")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_learner_library_holds_no_answer_line(chapter):
    found = leaks(chapter, library_pieces())
    assert not found, _report(chapter, found, "the dlcourse package")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_feedback_hints_hold_no_answer_line(chapter):
    found = leaks(chapter, feedback_hint_pieces(chapter))
    assert not found, _report(chapter, found, "the grader's feedback hints")

"""Graded items: for each graded function, how to make cases and how to judge outputs.

Each chapter module (``grader/judge/items/ch02_backprop.py`` ...) defines one ``Item``
subclass per graded function and registers it with ``@register``. An item never
runs learner code itself: ``cases`` describes calls, the sandboxed kernel (or
``run_in_process`` in tests) performs them, and ``check`` judges the recorded
outputs against the trusted references in ``grader/judge/references``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from ..cases import Streams
from ..checks import Failure
from ..protocol import Case, Result, run_in_process

CHAPTER_MODULES = {
    "01_mlp_xor": "grader.judge.items.ch01_mlp_xor",
    "02_backprop": "grader.judge.items.ch02_backprop",
    "03_initialization": "grader.judge.items.ch03_initialization",
    "04_batchnorm": "grader.judge.items.ch04_batchnorm",
    "05_dropout_regularization": "grader.judge.items.ch05_dropout_regularization",
    "06_cnn": "grader.judge.items.ch06_cnn",
    "07_pytorch": "grader.judge.items.ch07_pytorch",
    "08_vae_gan": "grader.judge.items.ch08_vae_gan",
    "09_rnn_attention": "grader.judge.items.ch09_rnn_attention",
    "10_segmentation": "grader.judge.items.ch10_segmentation",
}

_REGISTRY: dict[str, dict[str, "Item"]] = {}

NOT_IMPLEMENTED_HINT = "This function still raises NotImplementedError: replace that line with your code."


class Item:
    """One graded function. Subclasses set ``name`` and implement ``cases`` and ``check``.

    Faults are charged where they are. A case may call other learner functions before this
    item's own (a backward's case calls the learner's forward first); ``judge`` charges this
    item only for what its own calls did:

    - an input changed in place by an earlier call (the forward) is that function's fault: its
      own item loses its points on its own cases, and this item is judged on its outputs alone;
    - when this item's outputs are wrong (or it could not run) and an earlier call of the same
      case raised, changed its input or gave a wrong result (``prerequisite_fault``), or a
      graded function this one is built from (``requires``, probed with that item's own cases)
      is wrong, the message says "fix <that function> first" instead of blaming this one. The
      item still scores 0: its outputs were not right, and points are only ever given for
      outputs that match the trusted reference, so pairing a wrong forward with a matching
      wrong backward earns nothing.
    """

    name: str = ""
    chapter: str = ""
    requires: tuple = ()     # graded functions of the same chapter this one is built from (probed for feedback)

    def cases(self, streams: Streams) -> list[Case]:
        raise NotImplementedError

    def check(self, case: Case, outputs: dict) -> None:
        """Raise ``Failure`` with a learner-facing message if ``outputs`` are wrong."""
        raise NotImplementedError

    def source_problem(self, source: str) -> str | None:
        """A learner-facing message when a fact of the contract that only the code shows is missing from
        ``source`` (the submitted definition, read by the grader itself), else None."""
        return None

    def prerequisite_fault(self, case: Case, outputs: dict) -> tuple[str, str] | None:
        """(function, what it did wrong) when an earlier call of ``case`` gave a wrong result, else None.

        Consulted only after this item's own outputs failed, to say what to fix first.
        """
        return None

    def probe_cases(self, streams: Streams, keep=None) -> list[Case]:
        """The cases of every item in ``requires``, tagged as probes: they never change this item's
        score, they only name a broken building block when this item fails. ``keep(case)`` filters."""
        probes = []
        for name in self.requires:
            other = find_item(name, self.chapter)
            for case in other.cases(streams):
                if PROBE not in case.context and (keep is None or keep(case)):
                    case.context[PROBE] = name
                    probes.append(case)
        return probes


PROBE = "probe_of"     # Case.context key of a probe case: the item whose function it checks


def register(chapter):
    """Class decorator: instantiate the item and file it under ``chapter``."""
    def add(cls):
        instance = cls()
        instance.chapter = chapter
        _REGISTRY.setdefault(chapter, {})[instance.name] = instance
        return cls
    return add


def chapter_items(chapter) -> dict[str, Item]:
    """The items of a chapter folder name such as '02_backprop', by function name."""
    if chapter not in CHAPTER_MODULES:
        raise KeyError(f"unknown chapter {chapter!r}; known: {', '.join(CHAPTER_MODULES)}")
    importlib.import_module(CHAPTER_MODULES[chapter])
    return dict(_REGISTRY.get(chapter, {}))


def find_item(name, chapter=None) -> Item:
    chapters = [chapter] if chapter else list(CHAPTER_MODULES)
    for ch in chapters:
        items = chapter_items(ch)
        if name in items:
            return items[name]
    raise KeyError(f"no graded item named {name!r}")


@dataclass
class Verdict:
    item: str
    passed: bool
    message: str
    review: tuple = ()        # lines of the submitted source that hold this item for review (grader.judge.review)


def _error_message(item, error):
    function = error.get("function") or item
    kind = error.get("type", "Error")
    text = str(error.get("message", ""))[:600]
    where = error.get("where") or ""
    if kind == "WrongReturn":
        return f"{item}: {text}."
    if kind == "NameError" and "is not defined" in text:
        return f"{item}: {text}."
    lead = f"{item}: " if function == item else f"{item} could not be checked because "
    msg = f"{lead}{function} raised {kind}" + (f": {text}" if text else "") + (f" ({where})" if where else "") + "."
    if kind == "NotImplementedError":
        msg += f"\nHint: {NOT_IMPLEMENTED_HINT}"
    return msg


def _foreign(case: Case, function, item) -> bool:
    """True when ``function`` is another learner function that ``case`` calls before ``item``'s own."""
    return function != item.name and any((getattr(step, "label", "") or step.function) == function
                                         and not step.builtin for step in case.steps)


def _mutation_message(item_name, m):
    copy = ("x = x.clone(), or operations that return a new tensor instead of the in-place ones: methods "
            "ending in _ and assignments into x[...]") if m.get("tensor") else "x = x.copy() or dx = dout.copy()"
    return (f"{item_name}: {m.get('function', item_name)} changed its input `{m.get('argument', '?')}` in place."
            f"\nHint: leave inputs untouched; work on a copy (e.g. {copy}) or build a new "
            f"{'tensor' if m.get('tensor') else 'array'}.")


def _own_problem(item, case, result):
    """The learner-facing message of what this item's own calls got wrong in ``case``, or None."""
    if result.error:
        return _error_message(item.name, result.error)
    for m in result.mutated:
        if not _foreign(case, m.get("function"), item):
            return _mutation_message(item.name, m)
    try:
        item.check(case, result.outputs)
    except Failure as failure:
        return str(failure)
    except Exception as exc:  # noqa: BLE001 - malformed output must not crash grading
        return f"{item.name}: could not check the output ({type(exc).__name__}: {str(exc)[:200]})."
    return None


def _probe_fault(item, probes):
    """(function, reason) for the first building block in ``requires`` that fails one of its own cases."""
    for case, result in probes:
        name = case.context[PROBE]
        other = find_item(name, item.chapter)
        if result.error and result.error.get("type") == "NameError":
            continue                      # not defined at all: this item cannot have used it
        if _own_problem(other, case, result) is not None:
            return name, "fails its own hidden test"
    return None


def _blame(item, case, result, probes):
    """(function, reason) for an earlier call or building block that explains this item's failure, or None."""
    error = result.error or {}
    step = error.get("step")
    if error and isinstance(step, int) and 0 <= step < len(case.steps) and _foreign(case, error.get("function"), item):
        kind = error.get("type", "Error")
        return error["function"], f"raised {kind}" + (f": {str(error.get('message'))[:200]}"
                                                        if error.get("message") else "")
    for m in result.mutated:
        if _foreign(case, m.get("function"), item):
            return m["function"], f"changed its input `{m.get('argument', '?')}` in place"
    if not error:
        try:
            fault = item.prerequisite_fault(case, result.outputs)
        except Exception:  # noqa: BLE001 - a malformed forward output is itself a prerequisite fault
            fault = (None, "")
        if fault is not None and fault[0]:
            return fault
    return _probe_fault(item, probes)


def judge(item: Item, cases: list[Case], results: list[Result] | None, source: str | None = None) -> Verdict:
    """The verdict for one item from the recorded results of its cases (see ``Item`` for who is charged),
    and, where an item needs it, from ``source``: the submitted definition as the grader read it."""
    if results is None:
        return Verdict(item.name, False,
                       f"{item.name}: no answers were recorded for this hidden test.")
    if len(results) != len(cases):
        return Verdict(item.name, False, f"{item.name}: the recorded answers are incomplete.")
    pairs = list(zip(cases, results))
    own = [(c, r) for c, r in pairs if PROBE not in c.context]
    probes = [(c, r) for c, r in pairs if PROBE in c.context]
    notes = []
    for case, result in own:
        problem = _own_problem(item, case, result)
        if problem is not None:
            # An unwritten stub is the item's own problem, whatever its building blocks do.
            own_stub = bool(result.error) and result.error.get("type") == "NotImplementedError" and \
                str(result.error.get("where", "")).startswith(f"in {item.name},")
            blame = None if own_stub else _blame(item, case, result, probes)
            if blame is None:
                return Verdict(item.name, False, problem)
            function, reason = blame
            message = (f"{item.name}: cannot be judged{case.label} because {function} {reason}. "
                       f"Fix {function} first (its own hidden test says what is wrong); then this item is "
                       f"checked on its own.")
            if not result.error and reason not in problem:
                seen = problem.split("\n")[0]
                seen = seen[len(item.name) + 2:] if seen.startswith(f"{item.name}: ") else seen
                message += f"\n(What the check saw: {seen})"
            return Verdict(item.name, False, message)
        for m in result.mutated:
            note = (f"{m.get('function')} changed its input `{m.get('argument', '?')}` in place (that costs "
                    f"{m.get('function')}'s points, not these)")
            if note not in notes:
                notes.append(note)
    if source is not None:
        problem = item.source_problem(source)
        if problem is not None:
            return Verdict(item.name, False, problem)
    message = f"{item.name}: correct on {len(own)} fresh random test cases."
    if notes:
        message += " Note: " + "; ".join(notes) + "."
    return Verdict(item.name, True, message)


def grade_in_process(name, namespace, chapter=None, seed=None) -> Verdict:
    """Grade ``namespace[name]`` here and now (the project's tests use this); its source, where Python
    can find it, is read as the autograder reads the submitted definition."""
    import inspect
    import textwrap

    item = find_item(name, chapter)
    cases = item.cases(Streams.from_seed(seed))
    try:
        source = textwrap.dedent(inspect.getsource(namespace[name]))
    except (KeyError, TypeError, OSError):
        source = None
    return judge(item, cases, run_in_process(item.name, cases, namespace), source)


def known_mistake(got, mistakes, tol=1e-9):
    """The hint of the first known mistake whose result ``got`` matches, or None.

    ``mistakes`` is a list of (zero-argument function giving what the mistake computes, hint). Used after a
    value failed its check, to replace a general hint by the one for the mistake actually made (an eps in
    the wrong place gives errors around 1e-6 that a general hint does not explain).
    """
    from ..numerics import rel_error

    for compute, hint in mistakes:
        try:
            expected = np.asarray(compute(), dtype=np.float64)
        except Exception:  # noqa: BLE001 - a mistake that cannot be computed here simply does not match
            continue
        if isinstance(got, np.ndarray) and got.shape == expected.shape and rel_error(got, expected) < tol:
            return hint
    return None

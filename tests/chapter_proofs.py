"""The proofs every chapter's hidden tests owe (shared/DESIGN.md section 8), written once.

A chapter's test module (tests/test_chNN_items.py) lists the typical wrong implementations of
each graded function and some alternative correct ones, then takes these tests::

    globals().update(chapter_proofs(CHAPTER, WRONG, ALTERNATIVES))

- the solution notebook defines every graded function and scores full marks on several seeds;
- every item has at least three typical wrong implementations, and each one loses exactly its
  own item, with a message that names the function (and a hint where the item has hints);
- alternative correct implementations get full marks.

WRONG maps an item to functions, or to (function, fragment) pairs when the message must also
contain ``fragment``; ALTERNATIVES maps a label to {item: function}. The module also gets the
``solution`` fixture (the solution notebook's namespace) and ``grade_all(namespace, seed)``.
"""
from __future__ import annotations

import warnings

import nbformat
import pytest

from grader.judge.items import chapter_items, grade_in_process
from grader.workflow.earlier_chapters import solution_namespace
from grader.judge.review import course_notebook, review_notebook, review_object

from conftest import solution_notebook

SEEDS = (0, 1, 2, 3, 4)
WRONG_SEEDS = (11, 12)


def has_hints(item):
    return bool(getattr(item, "hint", "") or getattr(item, "hints", {}))


def grade_chapter(chapter, namespace, seed):
    """Every item of a chapter graded in-process against ``namespace``: {item: Verdict}."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # overflowing wrong answers are expected to warn
        return {name: grade_in_process(name, namespace, chapter, seed=seed) for name in chapter_items(chapter)}


def chapter_proofs(chapter, wrong, alternatives):
    """{name: test function or fixture} for a test module's globals."""
    items = chapter_items(chapter)
    wrong_cases = [(item, *(fn if isinstance(fn, tuple) else (fn, ""))) for item, fns in wrong.items() for fn in fns]

    @pytest.fixture(scope="module")
    def solution():
        return solution_namespace(solution_notebook(chapter))

    def grade_all(namespace, seed):
        return grade_chapter(chapter, namespace, seed)

    def test_solution_notebook_defines_every_graded_function(solution):
        missing = [name for name in items if not callable(solution.get(name))]
        assert not missing, f"the solution notebook defines no {missing}"

    @pytest.mark.parametrize("seed", SEEDS)
    def test_solutions_score_full_marks(solution, seed):
        failed = {name: v.message for name, v in grade_all(solution, seed).items() if not v.passed}
        assert not failed, f"seed {seed}: the solution fails {failed}"

    def test_every_item_has_at_least_three_wrong_implementations():
        thin = [item for item in items if len(wrong.get(item, [])) < 3]
        assert not thin, f"items with fewer than three wrong implementations: {thin}"

    @pytest.mark.parametrize("item, wrong_fn, fragment", wrong_cases,
                             ids=[f"{item}-{fn.__name__}" for item, fn, _ in wrong_cases])
    def test_wrong_implementation_loses_only_its_own_item(solution, item, wrong_fn, fragment):
        namespace = dict(solution, **{item: wrong_fn})
        for seed in WRONG_SEEDS:
            verdicts = grade_all(namespace, seed)
            verdict = verdicts[item]
            assert not verdict.passed, f"seed {seed}: {wrong_fn.__name__} passes {item}"
            assert verdict.message.startswith(f"{item}:"), verdict.message
            if has_hints(items[item]):
                assert "Hint" in verdict.message, f"no hint in: {verdict.message}"
            assert fragment in verdict.message, f"{wrong_fn.__name__}: expected {fragment!r} in: {verdict.message}"
            others = {name: v.message for name, v in verdicts.items() if name != item and not v.passed}
            assert not others, f"seed {seed}: replacing {item} with {wrong_fn.__name__} also fails {others}"

    @pytest.mark.parametrize("label", list(alternatives))
    def test_alternative_correct_implementation_scores_full_marks(solution, label):
        namespace = dict(solution, **alternatives[label])
        for seed in SEEDS[:3]:
            failed = {name: v.message for name, v in grade_all(namespace, seed).items() if not v.passed}
            assert not failed, f"{label}, seed {seed}: {failed}"

    def test_worked_solutions_and_alternatives_are_not_held_for_review():
        """grader.judge.review reads submitted sources for delegation and tampering: honest code is never flagged."""
        nb = nbformat.read(str(solution_notebook(chapter)), as_version=4)
        flags = review_notebook(chapter, nb, course_notebook(chapter), list(items))
        assert not flags, {item: [f.describe() for f in found] for item, found in flags.items()}
        for label, implementations in alternatives.items():
            for item, implementation in implementations.items():
                try:
                    found = review_object(chapter, implementation, [item])
                except (OSError, TypeError):
                    continue                      # made at run time (a partial, a rebound clone): no source
                assert not found, f"{label}: {[f.describe() for f in found.get(item, [])]}"

    return {name: value for name, value in locals().items() if name.startswith("test_")} | {
        "solution": solution, "grade_all": grade_all}


# --- faults charged where they are (grader.judge.items.Item) ----------------------------------------

def grade_items(chapter, namespace, seed, names):
    """Only the named items of a chapter, graded in-process: {item: Verdict}."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {name: grade_in_process(name, namespace, chapter, seed=seed) for name in names}


def mutates_its_inputs(fn):
    """``fn`` computed on copies, after which every float array argument is changed in place.

    Its out and cache are right: only the in-place change is wrong, and only ``fn``'s item may pay for it.
    """
    import numpy as np

    def mutating(*args, **kwargs):
        result = fn(*[a.copy() if isinstance(a, np.ndarray) else a for a in args], **kwargs)
        for a in args:
            if isinstance(a, np.ndarray) and a.dtype.kind == "f":
                a *= -3.0
        return result

    mutating.__name__ = f"{getattr(fn, '__name__', 'forward')}_mutating_its_inputs"
    return mutating


def raises_not_implemented(*args, **kwargs):
    raise NotImplementedError()


def rebind(fn, **names):
    """``fn`` with some of the globals it calls replaced (a solution function built on a wrong building block)."""
    import types

    clone = types.FunctionType(fn.__code__, dict(fn.__globals__, **names), fn.__name__, fn.__defaults__,
                               fn.__closure__)
    clone.__kwdefaults__ = fn.__kwdefaults__
    return clone


def fault_proofs(chapter, forwards, games=None):
    """Tests that a backward is charged only for its own faults.

    ``forwards`` maps a backward item to the learner function its cases call first; ``games`` maps a label to
    (backward item, {function: replacement}) pairs of a wrong forward with a backward made to match it.
    """
    games = games or {}
    items = chapter_items(chapter)
    pairs = sorted(forwards.items())

    @pytest.mark.parametrize("backward, forward", pairs, ids=[b for b, _ in pairs])
    def test_correct_backward_keeps_its_points_beside_a_mutating_forward(solution, backward, forward):
        namespace = dict(solution, **{forward: mutates_its_inputs(solution[forward])})
        names = [backward] + ([forward] if forward in items else [])
        for seed in SEEDS:
            verdicts = grade_items(chapter, namespace, seed, names)
            assert verdicts[backward].passed, f"seed {seed}: {verdicts[backward].message}"
            assert f"{forward} changed its input" in verdicts[backward].message, verdicts[backward].message
            if forward in items:
                assert not verdicts[forward].passed and "changed its input" in verdicts[forward].message, \
                    verdicts[forward].message

    @pytest.mark.parametrize("backward, forward", pairs, ids=[b for b, _ in pairs])
    def test_backward_beside_a_broken_forward_is_told_to_fix_it_first(solution, backward, forward):
        namespace = dict(solution, **{forward: raises_not_implemented})
        for seed in SEEDS:
            verdict = grade_items(chapter, namespace, seed, [backward])[backward]
            assert not verdict.passed
            assert verdict.message.startswith(f"{backward}: cannot be judged"), verdict.message
            assert f"Fix {forward} first" in verdict.message, verdict.message

    @pytest.mark.parametrize("label", sorted(games))
    def test_a_wrong_forward_with_a_matching_backward_earns_nothing(solution, label):
        backward, replacements = games[label]
        namespace = dict(solution, **replacements)
        forward = forwards[backward]
        for seed in SEEDS:
            verdict = grade_items(chapter, namespace, seed, [backward])[backward]
            assert not verdict.passed, f"seed {seed}: {label} earns {backward}'s points"
            assert f"Fix {forward} first" in verdict.message, verdict.message

    return {name: value for name, value in locals().items() if name.startswith("test_")}

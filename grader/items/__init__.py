"""Graded items: for each graded function, how to make cases and how to judge outputs.

Each chapter module (``grader/items/ch02_backprop.py`` ...) defines one ``Item``
subclass per graded function and registers it with ``@register``. An item never
runs learner code itself: ``cases`` describes calls, the sandboxed kernel (or
``run_in_process`` in tests) performs them, and ``check`` judges the recorded
outputs against the trusted references in ``grader/references``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..cases import Streams
from ..checks import Failure
from ..protocol import Case, Result, run_in_process

CHAPTER_MODULES = {
    "01_mlp_xor": "grader.items.ch01_mlp_xor",
    "02_backprop": "grader.items.ch02_backprop",
    "03_initialization": "grader.items.ch03_initialization",
    "04_batchnorm": "grader.items.ch04_batchnorm",
    "05_dropout_regularization": "grader.items.ch05_dropout_regularization",
    "06_cnn": "grader.items.ch06_cnn",
    "07_pytorch": "grader.items.ch07_pytorch",
    "08_vae_gan": "grader.items.ch08_vae_gan",
    "09_rnn_attention": "grader.items.ch09_rnn_attention",
}

_REGISTRY: dict[str, dict[str, "Item"]] = {}

NOT_IMPLEMENTED_HINT = "This function still raises NotImplementedError: replace that line with your code."


class Item:
    """One graded function. Subclasses set ``name`` and implement ``cases`` and ``check``."""

    name: str = ""
    chapter: str = ""

    def cases(self, streams: Streams) -> list[Case]:
        raise NotImplementedError

    def check(self, case: Case, outputs: dict) -> None:
        """Raise ``Failure`` with a learner-facing message if ``outputs`` are wrong."""
        raise NotImplementedError


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


def judge(item: Item, cases: list[Case], results: list[Result] | None) -> Verdict:
    """The verdict for one item from the recorded results of its cases."""
    if results is None:
        return Verdict(item.name, False,
                       f"{item.name}: no answers were recorded: the notebook stopped before this hidden test "
                       f"ran, or its test cell was removed.")
    if len(results) != len(cases):
        return Verdict(item.name, False, f"{item.name}: the recorded answers are incomplete.")
    for case, result in zip(cases, results):
        if result.error:
            return Verdict(item.name, False, _error_message(item.name, result.error))
        if result.mutated:
            m = result.mutated[0]
            return Verdict(item.name, False,
                           f"{item.name}: {m.get('function', item.name)} changed its input "
                           f"`{m.get('argument', '?')}` in place.\nHint: leave inputs untouched; work on a copy "
                           f"(e.g. dx = dout.copy()) or build a new array.")
        try:
            item.check(case, result.outputs)
        except Failure as failure:
            return Verdict(item.name, False, str(failure))
        except Exception as exc:  # noqa: BLE001 - malformed output must not crash grading
            return Verdict(item.name, False, f"{item.name}: could not check the output ({type(exc).__name__}: "
                                             f"{str(exc)[:200]}).")
    return Verdict(item.name, True, f"{item.name}: correct on {len(cases)} fresh random test cases.")


def grade_in_process(name, namespace, chapter=None, seed=None) -> Verdict:
    """Grade ``namespace[name]`` here and now (the project's tests use this)."""
    item = find_item(name, chapter)
    cases = item.cases(Streams.from_seed(seed))
    return judge(item, cases, run_in_process(item.name, cases, namespace))

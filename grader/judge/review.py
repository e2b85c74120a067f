"""Reading the submitted source: delegation and tampering, found outside the kernel.

The kernel only records numbers; the grader decides (shared/DESIGN.md section 6). Numbers on fresh
inputs cannot be forged without computing them, but two things can still earn points without doing
the exercise, and neither shows in the numbers:

- **delegation**: handing the work to torch's own solution of the item (``F.scaled_dot_product_attention``
  inside your attention, autograd inside a hand-written ``backward``; the chapter tests' alternatives,
  such as ``torch.distributions``' ``rsample`` for the reparameterization, are accepted answers, not this);
- **tampering**: changing what the grading relies on in the learner's own process (the recorder
  ``course_harness``, a torch or NumPy function the hidden tests hand over, ``sys.modules``, frames,
  the garbage collector, hooks, torch's dispatch overrides).

So before grading, the grader reads every code cell the learner could write (answer cells, and any
other cell whose source is not the course's own) with Python's ``ast`` (after IPython's own
transformation of magics, whose code strings are read too) and flags:

- per item, references to torch's built-in solution of that item (``DELEGATION``);
- for every item of the notebook, references to the grading machinery, monkeypatching (an
  assignment to, or ``setattr`` / ``delattr`` on, an attribute of something imported), computed
  attribute access (``getattr`` with a name that is not a literal, ``__dict__``, ``__globals__``),
  dynamic code (``exec``, ``eval``, ``compile``, ``__import__``, ``importlib``) and magics that run
  code this module cannot read (``TAMPERING`` and ``_Reader``).

A flagged item is held for review: it scores 0 until the instructor looks at the line, its status
is ``review`` in ``course status``, the CSV and the report, and the learner's feedback names the rule.
The worked solutions and every alternative correct implementation in the chapter tests are proven
free of flags (tests/chapter_proofs.py).
"""
from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass

ALL_ITEMS = "*"

# Torch's own solution of an item: an attribute, imported name or string naming one of these in any
# learner cell flags the item ("in_backward": only inside a method named backward).
_AUTOGRAD = {"autograd", "backward", "enable_grad", "set_grad_enabled", "func", "functorch", "vjp", "jvp",
             "jacrev", "jacfwd", "jacobian", "vmap", "conv2d_input", "conv2d_weight"}
_ATTENTION = {"scaled_dot_product_attention", "multi_head_attention_forward", "MultiheadAttention",
              "_native_multi_head_attention", "_scaled_dot_product_attention_math",
              "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention"}


@dataclass(frozen=True)
class Delegation:
    names: frozenset
    what: str                        # what the learner is asked to write instead
    in_backward: bool = False        # only inside ``def backward`` of a class
    bare_names_allowed: bool = False  # a bare Name may be the learner's own function of that name
    attribute_only: frozenset = frozenset()   # names that count only as an attribute (``loss.backward()``)


DELEGATION = {
    "07_pytorch": {
        item: Delegation(frozenset(_AUTOGRAD), "the gradient formulas of backward, without autograd", in_backward=True,
                         attribute_only=frozenset({"backward", "func"}))
        for item in ("AffineFunction", "ReLUFunction", "Conv2dFunction")
    },
    "09_rnn_attention": {
        item: Delegation(frozenset(_ATTENTION), "attention with matrix products and a softmax",
                         bare_names_allowed=True)
        for item in ("scaled_dot_product_attention", "MultiHeadAttention")
    },
    # Chapter 10 is NumPy but for UNet: torch's, torchvision's, torchmetrics' and scikit-learn's own versions
    # of an item, called inside the learner's code, hand the exercise to a library. Bare names are allowed:
    # the learner's own box_iou inside their nms is their code.
    "10_segmentation": {
        # (not nn.ConvTranspose2d: the learner's UNet is made of it; its forward calls conv_transpose2d by name)
        **{item: Delegation(frozenset({"conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "conv2d_input",
                                       "conv2d_weight", "autograd", "vjp", "jacobian", "_conv_forward"}),
                            "the transposed convolution with NumPy loops or products", bare_names_allowed=True)
           for item in ("conv_transpose_forward", "conv_transpose_backward")},
        **{item: Delegation(frozenset({"max_unpool1d", "max_unpool2d", "max_unpool3d", "MaxUnpool1d", "MaxUnpool2d",
                                       "MaxUnpool3d"}), "max unpooling with NumPy indexing", bare_names_allowed=True)
           for item in ("max_unpool_forward", "max_unpool_backward")},
        **{item: Delegation(frozenset({"jaccard_index", "JaccardIndex", "MulticlassJaccardIndex", "jaccard_score",
                                       "MeanIoU", "mean_iou", "accuracy_score", "MulticlassAccuracy",
                                       "multiclass_accuracy", "multiclass_jaccard_index"}),
                            "the metric by counting pixels", bare_names_allowed=True)
           for item in ("pixel_accuracy", "mean_iou")},
        **{item: Delegation(frozenset({"box_iou", "nms", "batched_nms", "generalized_box_iou", "complete_box_iou",
                                       "distance_box_iou", "torchvision"}),
                            "box overlaps and suppression with NumPy", bare_names_allowed=True)
           for item in ("box_iou", "nms")},
    },
}
# Importing from these modules hands a hand-written backward to autograd.
_AUTOGRAD_MODULES = ("torch.autograd", "torch.func", "functorch")

# Grading machinery and ways of reaching it: any attribute, name or imported module of these flags
# every item (what each one gives access to, for the message).
_MACHINERY = {
    "course_harness": "the grading harness", "run_hidden_test": "the grading harness",
    "COURSE_GRADING_DIR": "the grading files", "_getframe": "the caller's frame",
    "settrace": "tracing of other code", "setprofile": "tracing of other code", "meta_path": "the import system",
    "path_hooks": "the import system", "addaudithook": "the interpreter's audit hooks",
    "f_back": "the caller's frame", "f_globals": "another frame's variables", "f_locals": "another frame's variables",
    "f_builtins": "another frame's builtins", "tb_frame": "another frame", "gi_frame": "another frame",
    "currentframe": "the caller's frame", "getouterframes": "the caller's frames",
    "get_objects": "every object in the process", "get_referrers": "other code's objects",
    "get_referents": "other code's objects", "__globals__": "another function's globals",
    "__code__": "another function's code", "__closure__": "another function's variables",
    "__builtins__": "the builtins", "__subclasses__": "every subclass in the process",
    "__torch_function__": "torch's dispatch", "__torch_dispatch__": "torch's dispatch",
    "TorchFunctionMode": "torch's dispatch", "TorchDispatchMode": "torch's dispatch",
    "DisableTorchFunction": "torch's dispatch", "DisableTorchFunctionSubclass": "torch's dispatch",
    "_DisableTorchDispatch": "torch's dispatch",
    "saved_tensors_hooks": "autograd's saved tensors", "register_module_forward_hook": "every module's forward",
}
_QUALIFIED = {("sys", "modules"): "the loaded modules", ("inspect", "stack"): "the callers' frames",
              ("torch", "overrides"): "torch's dispatch", ("torch", "ops"): "torch's internal operators",
              ("torch", "_C"): "torch's internals"}
_MODULES = {"course_harness": "the grading harness", "gc": "the garbage collector (every object in the process)",
            "inspect": "frames and other code", "ctypes": "raw memory", "importlib": "dynamic imports",
            "builtins": "the builtins", "torch.overrides": "torch's dispatch", "torch._C": "torch's internals",
            "torch.ops": "torch's internal operators"}
_DYNAMIC_CALLS = {"exec": "runs code from a string", "eval": "runs code from a string",
                  "compile": "builds code from a string", "__import__": "imports by a computed name",
                  "breakpoint": "stops the grading"}
_SAFE_MAGICS = {"time", "timeit", "matplotlib", "capture", "prun", "precision", "who", "whos", "pwd", "load_ext",
                "autoreload", "config"}
# Well-known module aliases: assigning to an attribute under one of these patches a library.
_MODULE_ROOTS = {"torch", "np", "numpy", "nn", "F", "optim", "math", "plt", "sys", "os", "dlcourse",
                 "earlier_chapters", "course_harness", "builtins", "random", "scipy", "sklearn"}


@dataclass(frozen=True)
class Flag:
    """One line that breaks a rule: ``item`` is a graded function, or ALL_ITEMS."""

    item: str
    rule: str            # "delegation" or "tampering"
    cell: str            # where: "the answer cell of softmax", "an added cell"
    line: int
    text: str
    reason: str

    def describe(self) -> str:
        return f"{self.cell}, line {self.line}: `{self.text}`: {self.reason}"


def _ipython_source(source: str) -> str:
    """The Python code IPython runs for a cell (magics become get_ipython() calls)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - without IPython the plain source is read
        return source


def _root(node):
    """The Name at the bottom of an attribute chain (torch in torch.optim.SGD.step), or None."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


class _Reader(ast.NodeVisitor):
    """Collects the flags of one cell."""

    def __init__(self, chapter, cell, lines, imported, depth=0):
        self.chapter, self.cell, self.lines, self.imported, self.depth = chapter, cell, lines, imported, depth
        self.flags: list[Flag] = []
        self.backward_depth = 0
        self.classes: list[str] = []
        self.delegation = DELEGATION.get(chapter, {})

    # --- recording -----------------------------------------------------------------------------------
    def flag(self, node, item, rule, reason):
        line = getattr(node, "lineno", 1)
        text = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        self.flags.append(Flag(item, rule, self.cell, line, text[:160], reason))

    def tamper(self, node, reason):
        self.flag(node, ALL_ITEMS, "tampering", reason)

    def name_seen(self, node, name, bare=False):
        """A name used as an attribute, an imported name, a bare name or inside a string."""
        if name in _MACHINERY:
            self.tamper(node, f"reaches {_MACHINERY[name]}, which grading relies on; answers must only compute")
        for item, rule in self.delegation.items():
            if name not in rule.names or (bare and (rule.bare_names_allowed or name in rule.attribute_only)):
                continue
            if rule.in_backward and not self.backward_depth:
                continue
            if rule.in_backward and self.classes and self.classes[-1] in self.delegation and self.classes[-1] != item:
                continue                    # the backward of another graded Function
            self.flag(node, item, "delegation",
                      f"uses torch's own {name} for {item}; the exercise is {rule.what}")

    # --- visitors --------------------------------------------------------------------------------------
    def visit_Import(self, node):
        for alias in node.names:
            self.imported.add((alias.asname or alias.name).split(".")[0])
            self._module(node, alias.name)
            self.name_seen(node, alias.name.split(".")[-1])

    def visit_ImportFrom(self, node):
        module = node.module or ""
        self._module(node, module)
        if module.startswith(_AUTOGRAD_MODULES) and any(a.name != "Function" for a in node.names):
            for item, rule in self.delegation.items():
                if rule.in_backward:
                    self.flag(node, item, "delegation", f"imports from {module} for {item}; the exercise is {rule.what}")
        for alias in node.names:
            self.imported.add(alias.asname or alias.name)
            self._module(node, f"{module}.{alias.name}")
            self.name_seen(node, alias.name)

    def _module(self, node, module):
        for name, what in _MODULES.items():
            if module == name or module.startswith(name + "."):
                self.tamper(node, f"imports {module}, which gives access to {what}")
                return

    def visit_Attribute(self, node):
        qualified = _dotted(node).split(".")
        if len(qualified) >= 2 and tuple(qualified[-2:]) in _QUALIFIED:
            self.tamper(node, f"reaches {_QUALIFIED[tuple(qualified[-2:])]}, which grading relies on")
        if node.attr.startswith("register_") and "hook" in node.attr:
            self.tamper(node, f"installs a hook ({node.attr}) that runs inside code the grader calls")
        self.name_seen(node, node.attr)
        self.generic_visit(node)

    def visit_Name(self, node):
        self.name_seen(node, node.id, bare=True)

    def visit_ClassDef(self, node):
        for base in node.bases:
            if _dotted(base).split(".")[-1] == "Tensor":
                self.tamper(node, "subclasses torch.Tensor: such a tensor can report anything about itself")
        self.classes.append(node.name)
        self.generic_visit(node)
        self.classes.pop()

    def visit_FunctionDef(self, node):
        inside = node.name == "backward"
        self.backward_depth += inside
        self.generic_visit(node)
        self.backward_depth -= inside

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node):
        name = node.func.id if isinstance(node.func, ast.Name) else ""
        if name in _DYNAMIC_CALLS:
            self.tamper(node, f"calls {name}, which {_DYNAMIC_CALLS[name]} that the grader cannot read")
        if name in ("getattr", "setattr", "delattr", "hasattr") and len(node.args) >= 2:
            target, attribute = node.args[0], node.args[1]
            if isinstance(attribute, ast.Constant) and isinstance(attribute.value, str):
                owner = _dotted(target).split(".")[-1]
                if (owner, attribute.value) in _QUALIFIED:
                    self.tamper(node, f"reaches {_QUALIFIED[(owner, attribute.value)]}, which grading relies on")
                self.name_seen(node, attribute.value)
            else:
                if not (name in ("getattr", "hasattr") and isinstance(target, ast.Name) and target.id == "self"):
                    self.tamper(node, f"{name} with a computed attribute name hides what it reaches")
            if name in ("setattr", "delattr") and self._is_library(target):
                self.tamper(node, f"{name} on {_dotted(target) or 'a library object'} changes a library the "
                                  f"grading uses")
        if name == "vars" and node.args:
            self.tamper(node, "vars(...) reads another object's attributes by computed names")
        if isinstance(node.func, ast.Attribute) and node.func.attr in ("run_line_magic", "run_cell_magic") \
                and node.args and isinstance(node.args[0], ast.Constant):
            self._magic(node)
        if isinstance(node.func, ast.Attribute) and node.func.attr == "system" and _root(node.func) == "get_ipython":
            self.tamper(node, "runs a shell command (!...), which the grader cannot read")
        self.generic_visit(node)

    def _magic(self, node):
        magic = str(node.args[0].value)
        code = [a.value for a in node.args[1:] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if magic not in _SAFE_MAGICS:
            self.tamper(node, f"the magic %{magic} runs code the grader cannot read")
            return
        if self.depth < 3:
            for text in code:
                try:
                    sub = ast.parse(textwrap.dedent(_ipython_source(text)))
                except SyntaxError:
                    continue
                reader = _Reader(self.chapter, self.cell, self.lines, self.imported, self.depth + 1)
                reader.visit(sub)
                self.flags += [Flag(f.item, f.rule, f.cell, node.lineno, f.text or self.lines[node.lineno - 1].strip(),
                                    f.reason) for f in reader.flags]

    def _is_library(self, node):
        root = _root(node)
        return root is not None and (root in self.imported or root in _MODULE_ROOTS)

    def _assigned(self, target):
        if isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self._assigned(t)
        elif isinstance(target, (ast.Attribute, ast.Subscript)) and self._is_library(target):
            shown = _dotted(target if isinstance(target, ast.Attribute) else target.value)
            if isinstance(target, ast.Subscript) and not shown.endswith(("__dict__", "modules")):
                return                          # np.something[...] = ... changes data, not behaviour
            self.tamper(target, f"assigns to {shown}, changing a library the grading uses (its behaviour "
                                f"changes for the hidden tests too)")

    def visit_Assign(self, node):
        for target in node.targets:
            self._assigned(target)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._assigned(node.target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        self._assigned(node.target)
        self.generic_visit(node)

    def visit_Delete(self, node):
        for target in node.targets:
            self._assigned(target)
        self.generic_visit(node)


def review_source(chapter: str, source: str, cell: str, imported: set | None = None) -> list[Flag]:
    """The flags of one cell's source. ``imported`` collects names bound by imports across cells."""
    imported = set() if imported is None else imported
    python = _ipython_source(source)
    try:
        tree = ast.parse(python)
    except SyntaxError:
        return []          # it cannot run either: its item fails on its own
    reader = _Reader(chapter, cell, python.splitlines(), imported)
    reader.visit(tree)
    unique, seen = [], set()
    for f in reader.flags:
        key = (f.item, f.line, f.reason)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _normalised(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def learner_cells(nb, course_sources: set[str]) -> list[tuple[str, str]]:
    """(where, source) of every code cell the learner could have written: answer cells, and cells that are
    neither locked nor one of the course's own (``course_sources``: the chapter's unlocked code cells)."""
    from .notebooks import nb_meta

    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = nb_meta(cell)
        if meta.get("solution"):
            name = str(meta.get("grade_id", "")).removesuffix("_answer")
            cells.append((f"the answer cell of {name}", cell.source))
        elif not meta.get("locked") and not meta.get("grade") and _normalised(cell.source) not in course_sources:
            cells.append((f"code cell {index + 1} (not the course's)", cell.source))
    return cells


def course_sources(course_nb) -> set[str]:
    """The sources of the course's own unlocked code cells (set-up, demos), as a released notebook has them."""
    from .notebooks import nb_meta

    return {_normalised(c.source) for c in course_nb.cells
            if c.get("cell_type") == "code" and not nb_meta(c).get("solution") and not nb_meta(c).get("grade")}


def course_notebook(chapter: str):
    """The chapter's source notebook, read from the grader's own copy (never from the submission)."""
    from .notebooks import chapter_notebook, read

    return read(chapter_notebook(chapter))


def review_notebook(chapter: str, nb, course_nb, items) -> dict[str, list[Flag]]:
    """{item: flags} for the graded ``items`` of a submitted notebook (items without flags are left out).

    A line that is one of the course's own (a demo cell the learner changed elsewhere) is not flagged:
    only what the learner wrote is."""
    imported: set = set()
    flags = []
    sources = course_sources(course_nb)
    own_lines = {line.strip() for source in sources for line in source.splitlines() if line.strip()}
    for where, source in learner_cells(nb, sources):
        flags += [f for f in review_source(chapter, source, where, imported) if f.text not in own_lines]
    return assign(flags, items)


def definition_sources(nb) -> dict[str, str]:
    """{name: source} of every top-level ``def`` and ``class`` in the notebook's code cells; a later
    definition of a name replaces an earlier one, as it does when the notebook runs."""
    found = {}
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        python = _ipython_source(cell.source)
        try:
            tree = ast.parse(python)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found[node.name] = ast.get_source_segment(python, node) or ""
    return found


def assign(flags, items) -> dict[str, list[Flag]]:
    """Spread flags over the items they concern (ALL_ITEMS: every one)."""
    out: dict[str, list[Flag]] = {}
    for f in flags:
        for item in items:
            if f.item in (ALL_ITEMS, item):
                out.setdefault(item, []).append(f)
    return out


def review_object(chapter: str, obj, items=None) -> dict[str, list[Flag]]:
    """The flags of a function or class's own source (the chapter tests' implementations)."""
    source = textwrap.dedent(inspect.getsource(obj))
    label = f"the source of {getattr(obj, '__name__', 'it')}"
    flags = review_source(chapter, source, label)
    if items is None:
        items = sorted({f.item for f in flags if f.item != ALL_ITEMS}) or [ALL_ITEMS]
    return assign(flags, items)


def review_message(item: str, flags: list[Flag]) -> str:
    """What the learner and the instructor read for a flagged item."""
    rules = sorted({f.rule for f in flags})
    lead = ("uses torch's own solution instead of yours" if rules == ["delegation"]
            else "contains code that changes or reaches into the grading" if rules == ["tampering"]
            else "uses torch's own solution and reaches into the grading")
    lines = "\n".join(f"- {f.describe()}" for f in flags[:5])
    more = f"\n(and {len(flags) - 5} more)" if len(flags) > 5 else ""
    return (f"{item}: held for review by your instructor (0 points until then): your notebook {lead}.\n"
            f"{lines}{more}\nWrite the computation yourself and leave libraries and the grading alone.")

"""Chapter 07's pictures and sliders: the autograd graph of an expression, and training with live curves.

``draw_autograd_graph(out, names)`` walks ``out.grad_fn`` back to the leaves and draws the
graph torch recorded, with chapter 02's drawing code. ``autograd_graph_explorer`` lets you
type an expression in ``x`` and ``y`` and shows its graph and gradients; ``training_explorer``
retrains a small model with *your* ``train_one_epoch`` and ``evaluate`` for the learning rate
and batch size you pick.
"""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from . import graph_drawing, runtime


SHORT_LABELS = {"Add": "+", "Sub": "\u2212", "Mul": "\u00d7", "Div": "\u00f7", "Neg": "neg", "Reciprocal": "1/u",
                "Pow": "**", "Exp": "exp", "Log": "log", "Sin": "sin", "Cos": "cos", "Tanh": "tanh",
                "Sigmoid": "\u03c3", "Relu": "ReLU", "Mm": "@", "Addmm": "+@", "Sum": "\u03a3", "Mean": "mean"}


def _op_label(fn):
    name = type(fn).__name__
    for suffix in ("Backward0", "Backward1", "Backward"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return SHORT_LABELS.get(name, name[:5])


def autograd_graph(out, names=None):
    """The graph behind ``out``: (nodes, edges) in ``graph_drawing.draw_graph``'s format.

    names: {leaf tensor: name} for the inputs (default "input 0", ...). An op sits at its longest
    distance from the output (output on the right), a leaf one step left of its furthest consumer.
    """
    names = {id(t): n for t, n in (names or {}).items()}
    depth, parents, kind, label, order = {}, {}, {}, {}, []
    stack = [(out.grad_fn, 0, None)]
    while stack:
        fn, d, parent = stack.pop()
        if fn is None:
            continue
        if parent is not None:
            parents.setdefault(fn, set()).add(parent)
        if depth.get(fn, -1) >= d:
            continue
        if fn not in depth:
            order.append(fn)
        depth[fn] = d
        if type(fn).__name__ == "AccumulateGrad":
            kind[fn] = "value"
            label[fn] = names.setdefault(id(fn.variable), f"input {len(names)}")
            continue
        kind[fn], label[fn] = "op", _op_label(fn)
        stack += [(c, d + 1, fn) for c, _ in fn.next_functions if c is not None]
    by_level = {}
    for fn in order:
        by_level.setdefault(depth[fn], []).append(fn)
    y = {}
    for level in sorted(by_level):              # each level ordered by where its consumers are
        fns = by_level[level]
        wanted = {fn: float(np.mean([y[p] for p in parents.get(fn, ()) if p in y] or [0.0])) for fn in fns}
        fns.sort(key=lambda f: (wanted[f], label[f]))
        centre = float(np.mean(list(wanted.values())))
        for i, fn in enumerate(fns):
            y[fn] = centre + (i - (len(fns) - 1) / 2) * 1.1
    nodes, key = {"out": (1.4, y[out.grad_fn], "out", "value")}, {}
    for fn in order:
        key[fn] = f"n{len(key)}"
        nodes[key[fn]] = (-1.4 * depth[fn], y[fn], label[fn], kind[fn])
    edges = [(key[c], key[p], "", "") for c, ps in parents.items() for p in ps]
    edges.append((key[out.grad_fn], "out", "", ""))
    return nodes, edges


def draw_autograd_graph(out, names=None, ax=None, title="The graph autograd recorded (out.grad_fn and its inputs)"):
    nodes, edges = autograd_graph(out, names)
    return graph_drawing.draw_graph(nodes, edges, ax=ax, title=title, legend=False, fontsize=8)


def autograd_graph_explorer(expression="2 / torch.sin(torch.exp(-x)) + x * y"):
    """Type an expression in x and y (torch functions as torch.*): its graph, value and gradients."""
    def show(expression):
        x = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        y = torch.tensor(-1.5, dtype=torch.float64, requires_grad=True)
        try:
            out = eval(expression, {"torch": torch, "__builtins__": {}}, {"x": x, "y": y})  # your own input
            if not isinstance(out, torch.Tensor) or out.grad_fn is None:
                raise ValueError("the expression must use x or y and give a tensor")
            grads = torch.autograd.grad(out, [x, y], allow_unused=True)
        except Exception as exc:  # noqa: BLE001 - a typo should show a message, not a traceback
            print(f"cannot use {expression!r}: {type(exc).__name__}: {exc}")
            return
        ax = draw_autograd_graph(out, {x: "x", y: "y"})
        ax.figure.set_size_inches(8, 3.6)
        text = ", ".join(f"d out/d{n} = {g.item():.4g}" if g is not None else f"d out/d{n} = None (unused)"
                         for n, g in zip("xy", grads))
        ax.set_title(f"out = {expression} at x = 0.5, y = -1.5: out = {out.item():.4g}\n{text}", fontsize=9)
        plt.show()

    return runtime.interact(show, expression=widgets.Text(value=expression, description="out =",
                                                          continuous_update=False,
                                                          layout=widgets.Layout(width="420px")))


def training_explorer(make_model, train_one_epoch, evaluate, train_set, val_loader, device, epochs=8):
    """Sliders over the learning rate (log scale) and batch size; retrains a fresh model each time."""
    from torch.utils.data import DataLoader

    def show(log10_lr, batch_size):
        torch.manual_seed(0)
        model = make_model().to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=10.0 ** log10_lr)
        loader = DataLoader(train_set, batch_size=int(batch_size), shuffle=True,
                            generator=torch.Generator().manual_seed(0))
        losses, accuracies = [], []
        for _ in range(epochs):
            losses.append(train_one_epoch(model, loader, torch.nn.CrossEntropyLoss(), optimizer, device))
            accuracies.append(evaluate(model, val_loader, device))
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
        ax1.plot(np.arange(1, epochs + 1), losses, marker="o")
        ax1.set(title=f"training loss, lr = {10.0 ** log10_lr:.3g}, batch {int(batch_size)}", xlabel="epoch",
                ylabel="mean cross-entropy")
        ax2.plot(np.arange(1, epochs + 1), accuracies, marker="o", color="tab:green")
        ax2.set(title=f"validation accuracy (last: {accuracies[-1]:.1%})", xlabel="epoch", ylabel="accuracy",
                ylim=(0, 1))
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
        fig.tight_layout()
        plt.show()

    return runtime.interact(show,
                            log10_lr=widgets.FloatSlider(value=-1.0, min=-4.0, max=0.5, step=0.25,
                                                         description="log10 lr", continuous_update=False),
                            batch_size=widgets.SelectionSlider(options=[8, 16, 32, 64, 128, 256], value=32,
                                                               description="batch", continuous_update=False))

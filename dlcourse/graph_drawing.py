"""Drawing small computational graphs: forward values above the edges, gradients below.

Pure matplotlib. The drawings take the numbers (or formulas) to print as
arguments, plus one tiny chain-rule tracer (``trace_chain``) for graphs that are
a single chain of one-input operations, each given with its local derivative.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch

FORWARD_COLOR = "#1a7f37"
BACKWARD_COLOR = "#c2185b"
NODE_RADIUS = 0.33


def _fmt(value):
    return f"{value:.3g}" if isinstance(value, (int, float, np.floating, np.integer)) else str(value)


def draw_graph(nodes, edges, ax=None, title=None, legend=True, fontsize=10):
    """Draw a computational graph.

    nodes: {name: (x, y, label, kind)} with kind "op" (drawn as a circle) or
        "value" (an input or output, drawn as plain text).
    edges: [(src, dst, forward_text, backward_text)]; the forward text is written
        above the edge (green), the backward text below it (red). Either may be "".
    Returns the Axes.
    """
    if ax is None:
        xs = [n[0] for n in nodes.values()]
        ys = [n[1] for n in nodes.values()]
        width = 1.3 * (max(xs) - min(xs)) + 2.0
        height = 1.2 * (max(ys) - min(ys)) + 2.2
        ax = plt.subplots(figsize=(min(9.0, width), min(6.0, height)))[1]

    def radius(name):
        return NODE_RADIUS if nodes[name][3] == "op" else 0.18

    for name, (x, y, label, kind) in nodes.items():
        if kind == "op":
            ax.add_patch(Circle((x, y), NODE_RADIUS, facecolor="#f4f4f4", edgecolor="#333333", lw=1.4, zorder=3))
            ax.text(x, y, label, ha="center", va="center", fontsize=fontsize + 2, zorder=4)
        else:
            ax.text(x, y, label, ha="center", va="center", fontsize=fontsize + 2, fontweight="bold", zorder=4)

    for src, dst, forward_text, backward_text in edges:
        (x0, y0), (x1, y1) = nodes[src][:2], nodes[dst][:2]
        d = np.array([x1 - x0, y1 - y0], dtype=float)
        length = np.hypot(*d)
        u = d / length
        start = np.array([x0, y0]) + u * radius(src)
        end = np.array([x1, y1]) - u * radius(dst)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, lw=1.3,
                                     color="#555555", zorder=2))
        normal = np.array([-u[1], u[0]])
        if normal[1] < 0:            # keep "above" meaning above on the page
            normal = -normal
        mid = (start + end) / 2
        angle = np.degrees(np.arctan2(u[1], u[0]))
        if abs(angle) > 90:          # never write upside down
            angle -= 180 * np.sign(angle)
        if forward_text:
            ax.text(*(mid + 0.08 * normal), forward_text, color=FORWARD_COLOR, ha="center", va="bottom",
                    fontsize=fontsize, rotation=angle, rotation_mode="anchor")
        if backward_text:
            ax.text(*(mid - 0.08 * normal), backward_text, color=BACKWARD_COLOR, ha="center", va="top",
                    fontsize=fontsize, rotation=angle, rotation_mode="anchor")

    xs = [n[0] for n in nodes.values()]
    ys = [n[1] for n in nodes.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.9, max(ys) + 0.7)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=fontsize + 2)
    if legend:
        handles = [Line2D([], [], color=FORWARD_COLOR, lw=3, label="forward: value on the edge"),
                   Line2D([], [], color=BACKWARD_COLOR, lw=3, label="backward: gradient of f w.r.t. it")]
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=2, fontsize=fontsize - 1,
                  frameon=False)
    return ax


def draw_add_multiply(x, y, z, ax=None):
    """The graph of f = (x + y) * z with numbers: the add node copies its upstream
    gradient to both inputs, the multiply node hands each input the *other* input."""
    q = x + y
    f = q * z
    nodes = {"x": (0, 2.2, "x", "value"), "y": (0, 0.3, "y", "value"), "z": (0, -1.3, "z", "value"),
             "add": (2.4, 1.2, "+", "op"), "mul": (5.0, 0.0, "×", "op"), "f": (7.0, 0.0, "f", "value")}
    edges = [("x", "add", f"x = {_fmt(x)}", f"∂f/∂x = {_fmt(z)}"),
             ("y", "add", f"y = {_fmt(y)}", f"∂f/∂y = {_fmt(z)}"),
             ("add", "mul", f"q = {_fmt(q)}", f"∂f/∂q = z = {_fmt(z)}"),
             ("z", "mul", f"z = {_fmt(z)}", f"∂f/∂z = q = {_fmt(q)}"),
             ("mul", "f", f"f = {_fmt(f)}", "1")]
    return draw_graph(nodes, edges, ax=ax, title="f = (x + y) · z")


def trace_chain(x0, stages):
    """Forward and backward values along a chain of one-input operations.

    stages: [(label, forward, local_derivative)], applied left to right to the scalar x0.
    Returns (values, grads): values[0] = x0, values[k+1] = stage k's output;
    grads[k] = d(final value) / d(values[k]), computed right to left as the
    upstream gradient times each stage's local derivative.
    """
    values = [float(x0)]
    for _, forward, _ in stages:
        values.append(float(forward(values[-1])))
    grads = [1.0]
    for (_, _, local), value in zip(reversed(stages), reversed(values[:-1])):
        grads.append(grads[-1] * float(local(value)))
    return values, grads[::-1]


def draw_chain(op_labels, forward_texts, backward_texts, ax=None, title=None, names=None, fontsize=10):
    """A chain x -> op_1 -> ... -> op_k -> f, with one forward and one backward text per edge.

    op_labels: k labels for the operation circles; forward_texts, backward_texts:
    k + 1 strings each (one per edge, left to right). names: k + 2 names of the
    values (default x, then blanks, then f); only the first and last are drawn.
    """
    k = len(op_labels)
    names = names or ["x"] + [""] * k + ["f"]
    step = 2.6
    nodes = {"in": (0.0, 0.0, names[0], "value")}
    for i, label in enumerate(op_labels):
        nodes[f"op{i}"] = (step * (i + 1), 0.0, label, "op")
    nodes["out"] = (step * (k + 1), 0.0, names[-1], "value")
    order = ["in"] + [f"op{i}" for i in range(k)] + ["out"]
    edges = [(a, b, fw, bw) for a, b, fw, bw in zip(order[:-1], order[1:], forward_texts, backward_texts)]
    if ax is None:
        ax = plt.subplots(figsize=(min(10.0, 1.9 * (k + 2)), 2.6))[1]
    return draw_graph(nodes, edges, ax=ax, title=title, fontsize=fontsize)


def draw_traced_chain(x0, stages, ax=None, title=None, value_names=None):
    """``trace_chain`` then ``draw_chain`` with the numbers on the edges."""
    values, grads = trace_chain(x0, stages)
    value_names = value_names or [""] * len(values)
    forward = [f"{n} = {_fmt(v)}" if n else _fmt(v) for n, v in zip(value_names, values)]
    backward = [_fmt(g) for g in grads]
    return draw_chain([s[0] for s in stages], forward, backward, ax=ax, title=title)

"""Trusted references for chapter 05 (dropout, optimizers, regularization).

Used only by hidden tests, in the grader's process. Dropout is random, so its
hidden tests check properties (see ``grader/judge/items/ch05_dropout_regularization.py``);
the references here say what a given mask must produce. The optimizers have two
independent references: small NumPy update rules written as in CS231n, and
``torch.optim`` driven with the same gradients in float64 (the oracle the hidden
tests compare with). The project's tests prove that both agree.
"""
from __future__ import annotations

import numpy as np

# Defaults of the graded update rules (the docstrings in the notebook state the same values).
DEFAULTS = {
    "sgd": {"learning_rate": 1e-2},
    "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "rmsprop": {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
    "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
    "adamw": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 1e-2},
}


# --- dropout: what a known mask must give -------------------------------------------------

def dropout_apply(x, keep, p):
    """Inverted dropout with a known boolean mask ``keep``: kept units scaled by 1 / (1 - p)."""
    return np.where(keep, x / (1.0 - p), 0.0)


# --- optimizers in NumPy (one step; config values filled from DEFAULTS) ----------------------

def _settings(name, config):
    return dict(DEFAULTS[name], **(config or {}))


def sgd(w, dw, config=None):
    c = _settings("sgd", config)
    return w - c["learning_rate"] * dw, c


def sgd_momentum(w, dw, config=None):
    c = _settings("sgd_momentum", config)
    v = c["momentum"] * c.get("velocity", np.zeros_like(w)) - c["learning_rate"] * dw
    c["velocity"] = v
    return w + v, c


def rmsprop(w, dw, config=None):
    c = _settings("rmsprop", config)
    cache = c["decay_rate"] * c.get("cache", np.zeros_like(w)) + (1 - c["decay_rate"]) * dw ** 2
    c["cache"] = cache
    return w - c["learning_rate"] * dw / (np.sqrt(cache) + c["epsilon"]), c


def _adam_step(c, w, dw):
    t = c.get("t", 0) + 1
    m = c["beta1"] * c.get("m", np.zeros_like(w)) + (1 - c["beta1"]) * dw
    v = c["beta2"] * c.get("v", np.zeros_like(w)) + (1 - c["beta2"]) * dw ** 2
    c.update(t=t, m=m, v=v)
    m_hat = m / (1 - c["beta1"] ** t)
    v_hat = v / (1 - c["beta2"] ** t)
    return c["learning_rate"] * m_hat / (np.sqrt(v_hat) + c["epsilon"])


def adam(w, dw, config=None):
    c = _settings("adam", config)
    return w - _adam_step(c, w, dw), c


def adamw(w, dw, config=None):
    """Decoupled weight decay (Loshchilov & Hutter; torch.optim.AdamW): the decay uses w before the step."""
    c = _settings("adamw", config)
    return w - c["learning_rate"] * c["weight_decay"] * w - _adam_step(c, w, dw), c


NUMPY_RULES = {"sgd": sgd, "sgd_momentum": sgd_momentum, "rmsprop": rmsprop, "adam": adam, "adamw": adamw}


def numpy_trajectory(name, w0, grads, config=None):
    """[w after step 1, w after step 2, ...] of the NumPy reference driven with ``grads``."""
    w, c = np.array(w0, dtype=np.float64), (dict(config) if config else None)
    path = []
    for dw in grads:
        w, c = NUMPY_RULES[name](w, np.asarray(dw, dtype=np.float64), c)
        path.append(w.copy())
    return path


# --- optimizers in torch: the independent oracle --------------------------------------------

def torch_trajectory(name, w0, grads, config=None):
    """[w after step 1, ...] of the matching ``torch.optim`` optimizer in float64, p.grad set to each gradient."""
    import torch

    c = _settings(name, config)
    p = torch.nn.Parameter(torch.tensor(np.asarray(w0, dtype=np.float64)))
    lr = c["learning_rate"]
    if name == "sgd":
        opt = torch.optim.SGD([p], lr=lr)
    elif name == "sgd_momentum":
        # torch keeps buf = momentum * buf + g and steps -lr * buf; CS231n's velocity is -lr * buf.
        opt = torch.optim.SGD([p], lr=lr, momentum=c["momentum"])
    elif name == "rmsprop":
        opt = torch.optim.RMSprop([p], lr=lr, alpha=c["decay_rate"], eps=c["epsilon"])
    elif name == "adam":
        opt = torch.optim.Adam([p], lr=lr, betas=(c["beta1"], c["beta2"]), eps=c["epsilon"])
    elif name == "adamw":
        opt = torch.optim.AdamW([p], lr=lr, betas=(c["beta1"], c["beta2"]), eps=c["epsilon"],
                                weight_decay=c["weight_decay"])
    else:
        raise KeyError(name)
    path = []
    for dw in grads:
        p.grad = torch.tensor(np.asarray(dw, dtype=np.float64))
        opt.step()
        path.append(p.detach().numpy().copy())
    return path

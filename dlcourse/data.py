"""Small offline datasets: generated (XOR, spirals) or shipped with scikit-learn (digits)."""
from __future__ import annotations

import numpy as np


def make_xor(n=200, noise=0.15, rng=0):
    """Points around the four corners of [-1, 1]^2; label 1 where x1 * x2 < 0 (the XOR of the signs).

    Returns X of shape (n, 2) float64 and y of shape (n,) int64.
    """
    rng = np.random.default_rng(rng)
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=float)
    which = rng.integers(0, 4, size=n)
    X = corners[which] + rng.normal(0.0, noise, size=(n, 2))
    y = (corners[which, 0] * corners[which, 1] < 0).astype(np.int64)
    return X, y


def make_spirals(n_per_class=100, classes=3, noise=0.2, rng=0):
    """Interleaved spiral arms, one per class: not separable by any line.

    Returns X of shape (n_per_class * classes, 2) and y of shape (n_per_class * classes,).
    """
    rng = np.random.default_rng(rng)
    X, y = [], []
    for k in range(classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        theta = np.linspace(k * 2 * np.pi / classes, k * 2 * np.pi / classes + 4.0, n_per_class)
        theta = theta + rng.normal(0.0, noise, size=n_per_class)
        X.append(np.column_stack([r * np.sin(theta), r * np.cos(theta)]))
        y.append(np.full(n_per_class, k))
    return np.concatenate(X), np.concatenate(y).astype(np.int64)


def load_digits_split(test_fraction=0.25, rng=0):
    """scikit-learn's 8x8 handwritten digits (1797 images, shipped with the package, no download).

    Pixels are scaled to [0, 1]. Returns X_train (N, 64), y_train (N,), X_test, y_test,
    split at random with a fixed seed so everyone sees the same split.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(rng).permutation(len(X))
    n_test = int(round(test_fraction * len(X)))
    test, train = order[:n_test], order[n_test:]
    return X[train], y[train], X[test], y[test]


class ArrayDataset:
    """A map-style dataset over two arrays: ``len(ds)`` samples, ``ds[i] -> (X[i], y[i])``.

    X: (N, ...) inputs, y: (N,) targets with the same first dimension. The arrays are
    kept as they are (no copy), so building a dataset is free.
    """

    def __init__(self, X, y):
        X, y = np.asarray(X), np.asarray(y)
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} samples but y has {len(y)}")
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, index):
        return self.X[index], self.y[index]

    def __repr__(self):
        return f"ArrayDataset({len(self)} samples, x of shape {self.X.shape[1:]}, y of shape {self.y.shape[1:]})"

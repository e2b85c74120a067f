"""Chapter 01 (MLP and XOR): the hidden tests, proven in-process against the solution notebook.

- every graded item passes with the solution's functions, on several seeds;
- each typical wrong implementation loses exactly its own item, with a message that
  names the function (and gives a hint where one helps);
- alternative correct implementations (loops, other formulas, other return types,
  other ways to write an iterator) get full marks;
- right values in the wrong shape are caught.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.judge.items import chapter_items
from grader.workflow.earlier_chapters import solution_namespace

from chapter_proofs import grade_chapter
from conftest import solution_notebook

pytestmark = pytest.mark.ch01

CHAPTER = "01_mlp_xor"
NOTEBOOK = solution_notebook(CHAPTER)
ITEMS = chapter_items(CHAPTER)
SEEDS = [0, 1, 2, 3, 4]
WRONG_SEEDS = [11, 12]


@pytest.fixture(scope="module")
def solution():
    return solution_namespace(NOTEBOOK)


def grade_all(namespace, seed):
    return grade_chapter(CHAPTER, namespace, seed)


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(x):
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


# --- wrong implementations -------------------------------------------------------------------

def xor_features_no_product(X):
    return np.column_stack([X[:, 0], X[:, 1]])


def xor_features_sum_instead_of_product(X):
    return np.column_stack([X[:, 0], X[:, 1], X[:, 0] + X[:, 1]])


def xor_features_transposed(X):
    return np.vstack([X[:, 0], X[:, 1], X[:, 0] * X[:, 1]])


def xor_features_product_of_row_with_itself(X):
    return np.column_stack([X[:, 0], X[:, 1], X[:, 0] * X[:, 0]])


def sigmoid_overflows_for_large_x(x):
    return np.exp(x) / (1 + np.exp(x))


def sigmoid_sign_error(x):
    return 1 / (1 + np.exp(x))


def sigmoid_tanh_confusion(x):
    return 0.5 * (1 + np.tanh(x))


def sigmoid_clips_input(x):
    return 1 / (1 + np.exp(-np.clip(x, -10, 10)))


def relu_mutates_input(x):
    x[x < 0] = 0
    return x


def relu_abs(x):
    return np.abs(x)


def relu_min(x):
    return np.minimum(0, x)


def relu_leaky(x):
    return np.maximum(0.01 * x, x)


def softmax_no_max_subtraction(x):
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def softmax_over_columns(x):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def softmax_divides_by_total(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum()


def softmax_global_max(x):
    e = np.exp(x - x.max())
    return e / e.sum(axis=1, keepdims=True)


def softmax_squeezed(x):
    # np.squeeze "to tidy up": a batch of one row, or one class, loses an axis. Only the degenerate cases
    # (x of shape (1, C) and (N, 1)) catch it; the random cases have N, C >= 2.
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return np.squeeze(e / e.sum(axis=1, keepdims=True))


def xor_features_squeezed(X):
    # Only the single-sample case catches it.
    return np.squeeze(np.column_stack([X[:, 0], X[:, 1], X[:, 0] * X[:, 1]]))


def ce_squeezed_logits(logits, y):
    # np.squeeze on the logits: for a batch of one they become (C,), the row max runs over the wrong axis and
    # the indexing fails. Only the N = 1 case catches it.
    z = np.squeeze(logits)
    z = z - np.max(z, axis=-1, keepdims=True)
    log_probs = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return float(-np.mean(log_probs[np.arange(logits.shape[0]), y]))


def ce_sum_instead_of_mean(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.sum(lp[np.arange(len(y)), y]))


def ce_unstable_log_softmax(logits, y):
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def ce_wrong_indexing(logits, y):
    lp = np.log(_softmax(logits))
    return float(-np.mean(lp[:, y]))


def ce_forgets_minus(logits, y):
    lp = np.log(_softmax(logits))
    return float(np.mean(lp[np.arange(len(y)), y]))


def ce_per_sample(logits, y):
    lp = np.log(_softmax(logits))
    return -lp[np.arange(len(y)), y]


def mlp_relu_on_output(X, W1, b1, W2, b2):
    return np.maximum(0, np.maximum(0, X @ W1 + b1) @ W2 + b2)


def mlp_no_hidden_activation(X, W1, b1, W2, b2):
    return (X @ W1 + b1) @ W2 + b2


def mlp_bias_after_relu(X, W1, b1, W2, b2):
    return (np.maximum(0, X @ W1) + b1) @ W2 + b2


def mlp_sigmoid_hidden(X, W1, b1, W2, b2):
    return _sigmoid(X @ W1 + b1) @ W2 + b2


def mlp_softmax_output(X, W1, b1, W2, b2):
    return _softmax(np.maximum(0, X @ W1 + b1) @ W2 + b2)


def metrics_divides_by_zero(y_true, y_pred):
    tp = np.sum((y_pred == 1) & (y_true == 1))
    fp = np.sum((y_pred == 1) & (y_true == 0))
    fn = np.sum((y_pred == 0) & (y_true == 1))
    return float(np.mean(y_true == y_pred)), tp / (tp + fp), tp / (tp + fn)


def metrics_nan_when_undefined(y_true, y_pred):
    tp = np.sum((y_pred == 1) & (y_true == 1))
    fp = np.sum((y_pred == 1) & (y_true == 0))
    fn = np.sum((y_pred == 0) & (y_true == 1))
    precision = tp / (tp + fp) if tp + fp else float("nan")
    return float(np.mean(y_true == y_pred)), precision, tp / (tp + fn)


def metrics_precision_recall_swapped(y_true, y_pred):
    tp = np.sum((y_pred == 1) & (y_true == 1))
    fp = np.sum((y_pred == 1) & (y_true == 0))
    fn = np.sum((y_pred == 0) & (y_true == 1))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return float(np.mean(y_true == y_pred)), recall, precision


def metrics_accuracy_as_count(y_true, y_pred):
    tp = np.sum((y_pred == 1) & (y_true == 1))
    fp = np.sum((y_pred == 1) & (y_true == 0))
    fn = np.sum((y_pred == 0) & (y_true == 1))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return int(np.sum(y_true == y_pred)), precision, recall


def metrics_returns_a_list(y_true, y_pred):
    tp = np.sum((y_pred == 1) & (y_true == 1))
    fp = np.sum((y_pred == 1) & (y_true == 0))
    fn = np.sum((y_pred == 0) & (y_true == 1))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return [float(np.mean(y_true == y_pred)), precision, recall]


def cm_fancy_index_increment(y_true, y_pred, num_classes):
    cm = np.zeros((num_classes, num_classes), dtype=int)
    cm[y_true, y_pred] += 1                     # a repeated (true, predicted) pair is counted once
    return cm


def cm_transposed(y_true, y_pred, num_classes):
    cm = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(cm, (y_pred, y_true), 1)          # rows are the predicted class
    return cm


def cm_sized_by_largest_label(y_true, y_pred, num_classes):
    C = int(max(y_true.max(), y_pred.max())) + 1
    cm = np.zeros((C, C), dtype=int)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def cm_rows_normalised(y_true, y_pred, num_classes):
    cm = np.zeros((num_classes, num_classes))
    np.add.at(cm, (y_true, y_pred), 1)
    return cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)


class _LoaderBase:
    """Correct storage and stacking; subclasses get one thing wrong."""

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, rng=None):
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.rng = rng if rng is not None else np.random.default_rng()

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self):
        n = len(self.dataset)
        return self.rng.permutation(n) if self.shuffle else np.arange(n)

    def _batch(self, indices):
        samples = [self.dataset[int(i)] for i in indices]
        return np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples])

    def __iter__(self):
        order = self._order()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self._batch(order[start:start + self.batch_size])


class LoaderAlwaysDropsLast(_LoaderBase):
    def __len__(self):
        return len(self.dataset) // self.batch_size


class LoaderIgnoresDropLast(_LoaderBase):
    def __len__(self):
        return math.ceil(len(self.dataset) / self.batch_size)


class LoaderShufflesOnceInInit(_LoaderBase):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.order = self.rng.permutation(len(self.dataset)) if self.shuffle else np.arange(len(self.dataset))

    def _order(self):
        return self.order


class LoaderShufflesXAndYSeparately(_LoaderBase):
    def __iter__(self):
        n = len(self.dataset)
        X = np.stack([self.dataset[i][0] for i in range(n)])
        y = np.stack([self.dataset[i][1] for i in range(n)])
        if self.shuffle:
            X, y = X[self.rng.permutation(n)], y[self.rng.permutation(n)]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield X[start:start + self.batch_size], y[start:start + self.batch_size]


class LoaderIgnoresShuffle(_LoaderBase):
    def _order(self):
        return np.arange(len(self.dataset))


class LoaderSamplesWithReplacement(_LoaderBase):
    def _order(self):
        n = len(self.dataset)
        return self.rng.integers(0, n, size=n) if self.shuffle else np.arange(n)


class LoaderLenCountsSamples(_LoaderBase):
    def __len__(self):
        return len(self.dataset)

    def __iter__(self):
        n = len(self.dataset)
        order = self._order()
        stop = n // self.batch_size * self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            yield self._batch(order[start:start + self.batch_size])


class LoaderYieldsLists(_LoaderBase):
    def _batch(self, indices):
        samples = [self.dataset[int(i)] for i in indices]
        return [s[0] for s in samples], [s[1] for s in samples]


class LoaderLenOneTooMany(_LoaderBase):
    """n // batch_size + 1 batches without drop_last: wrong only when batch_size divides n. The random cases
    always have a partial last batch, so only the degenerate cases (batch_size=1) catch it."""

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else n // self.batch_size + 1

    def __iter__(self):                 # the batches themselves are right
        n, order = len(self.dataset), self._order()
        stop = n // self.batch_size * self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            yield self._batch(order[start:start + self.batch_size])


class LoaderSqueezesBatches(_LoaderBase):
    """A batch of one sample loses its batch axis. The degenerate cases (batch_size=1, one sample) catch it on
    every seed; the random cases only when their last batch happens to hold one sample."""

    def _batch(self, indices):
        x, y = super()._batch(indices)
        return np.squeeze(x), np.squeeze(y)


# Shuffles whose orders are permutations, new on every pass, never sorted: the checks of one or two passes
# cannot tell them from a uniform shuffle. Only the distribution case (who shares a batch over 48 passes) can.

class LoaderShufflesBatchOrder(_LoaderBase):
    """Shuffles the order of the batches, not the samples: a batch's samples always stay together."""

    def _order(self):
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        starts = self.rng.permutation(np.arange(0, n, self.batch_size))
        return np.concatenate([np.arange(s, min(s + self.batch_size, n)) for s in starts])


class LoaderShufflesWithinBatches(_LoaderBase):
    """Shuffles inside each batch only: samples of different batches never meet."""

    def _order(self):
        n = len(self.dataset)
        order = np.arange(n)
        if self.shuffle:
            for s in range(0, n, self.batch_size):
                order[s:s + self.batch_size] = self.rng.permutation(order[s:s + self.batch_size])
        return order


class LoaderRotatesOrder(_LoaderBase):
    """Starts the dataset order at a random offset: every sample has a uniformly random position, but samples
    half the dataset apart never share a batch."""

    def _order(self):
        n = len(self.dataset)
        return np.roll(np.arange(n), -int(self.rng.integers(n))) if self.shuffle else np.arange(n)


# (item, wrong implementation, must the message contain "Hint"?)
WRONG = [
    ("xor_features", xor_features_no_product, True),
    ("xor_features", xor_features_sum_instead_of_product, True),
    ("xor_features", xor_features_transposed, False),
    ("xor_features", xor_features_product_of_row_with_itself, True),
    ("xor_features", xor_features_squeezed, False),
    ("sigmoid", sigmoid_overflows_for_large_x, True),
    ("sigmoid", sigmoid_sign_error, True),
    ("sigmoid", sigmoid_tanh_confusion, True),
    ("sigmoid", sigmoid_clips_input, True),
    ("relu", relu_mutates_input, True),
    ("relu", relu_abs, True),
    ("relu", relu_min, True),
    ("relu", relu_leaky, True),
    ("softmax", softmax_no_max_subtraction, True),
    ("softmax", softmax_over_columns, True),
    ("softmax", softmax_divides_by_total, True),
    ("softmax", softmax_global_max, True),
    ("softmax", softmax_squeezed, True),
    ("cross_entropy_from_logits", ce_sum_instead_of_mean, True),
    ("cross_entropy_from_logits", ce_unstable_log_softmax, True),
    ("cross_entropy_from_logits", ce_wrong_indexing, True),
    ("cross_entropy_from_logits", ce_forgets_minus, True),
    ("cross_entropy_from_logits", ce_per_sample, True),
    ("cross_entropy_from_logits", ce_squeezed_logits, False),     # raises: no hint
    ("mlp_forward", mlp_relu_on_output, True),
    ("mlp_forward", mlp_no_hidden_activation, True),
    ("mlp_forward", mlp_bias_after_relu, True),
    ("mlp_forward", mlp_sigmoid_hidden, True),
    ("mlp_forward", mlp_softmax_output, True),
    ("classification_metrics", metrics_divides_by_zero, True),
    ("classification_metrics", metrics_nan_when_undefined, True),
    ("classification_metrics", metrics_precision_recall_swapped, True),
    ("classification_metrics", metrics_accuracy_as_count, True),
    ("classification_metrics", metrics_returns_a_list, False),
    ("confusion_matrix", cm_fancy_index_increment, True),
    ("confusion_matrix", cm_transposed, True),
    ("confusion_matrix", cm_sized_by_largest_label, True),
    ("confusion_matrix", cm_rows_normalised, True),
    ("DataLoader", LoaderAlwaysDropsLast, True),
    ("DataLoader", LoaderIgnoresDropLast, True),
    ("DataLoader", LoaderShufflesOnceInInit, True),
    ("DataLoader", LoaderShufflesXAndYSeparately, True),
    ("DataLoader", LoaderIgnoresShuffle, True),
    ("DataLoader", LoaderSamplesWithReplacement, True),
    ("DataLoader", LoaderLenCountsSamples, True),
    ("DataLoader", LoaderYieldsLists, False),
    ("DataLoader", LoaderLenOneTooMany, True),
    ("DataLoader", LoaderSqueezesBatches, True),
    ("DataLoader", LoaderShufflesBatchOrder, True),
    ("DataLoader", LoaderShufflesWithinBatches, True),
    ("DataLoader", LoaderRotatesOrder, True),
]


# --- alternative correct implementations -----------------------------------------------------

def xor_features_loop(X):
    out = np.zeros((X.shape[0], 3))
    for i, (a, b) in enumerate(X):
        out[i] = a, b, a * b
    return out


def xor_features_hstack(X):
    return np.hstack([X, np.prod(X, axis=1, keepdims=True)])


def sigmoid_textbook(x):
    # Right values everywhere (exp(1000) = inf gives 1 / inf = 0), only a RuntimeWarning.
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def sigmoid_via_tanh(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def sigmoid_masks(x):
    out = np.empty(x.shape)
    pos = x >= 0
    out[pos] = 1 / (1 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1 + e)
    return out


def relu_where(x):
    return np.where(x > 0, x, 0.0)


def relu_mask_product(x):
    return x * (x > 0)


def relu_copy_then_clip(x):
    out = x.copy()
    out[out < 0] = 0
    return out


def softmax_row_loop(x):
    out = np.empty_like(x, dtype=float)
    for i, row in enumerate(x):
        e = np.exp(row - row.max())
        out[i] = e / e.sum()
    return out


def softmax_via_log_sum_exp(x):
    m = x.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    return np.exp(x - lse)


def ce_loop(logits, y):
    total = 0.0
    for row, label in zip(logits, y):
        m = max(row)
        total += m + math.log(sum(math.exp(v - m) for v in row)) - row[label]
    return total / len(y)


def ce_numpy_scalar(logits, y):
    lse = np.logaddexp.reduce(logits, axis=1)
    return np.mean(lse - logits[np.arange(len(y)), y])          # np.float64, not a Python float


def ce_one_hot(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    one_hot = np.eye(logits.shape[1])[y]
    return -np.sum(one_hot * log_probs) / logits.shape[0]


def mlp_loops(X, W1, b1, W2, b2):
    out = np.zeros((X.shape[0], W2.shape[1]))
    for n in range(X.shape[0]):
        hidden = [max(0.0, float(X[n] @ W1[:, j] + b1[j])) for j in range(W1.shape[1])]
        out[n] = np.array(hidden) @ W2 + b2
    return out


def mlp_einsum(X, W1, b1, W2, b2):
    h = np.einsum("nd,dh->nh", X, W1) + b1
    return np.einsum("nh,hc->nc", h * (h > 0), W2) + b2


def metrics_loop(y_true, y_pred):
    tp = fp = fn = correct = 0
    for t, p in zip(y_true, y_pred):
        correct += t == p
        tp += t == 1 and p == 1
        fp += t == 0 and p == 1
        fn += t == 1 and p == 0
    return correct / len(y_true), tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0


def metrics_numpy_scalars(y_true, y_pred):
    predicted, actual = y_pred == 1, y_true == 1
    tp = np.sum(predicted & actual)
    precision = tp / np.sum(predicted) if predicted.any() else np.float64(0.0)
    recall = tp / np.sum(actual) if actual.any() else np.float64(0.0)
    return np.mean(y_true == y_pred), precision, recall


def cm_loop(y_true, y_pred, num_classes):
    cm = [[0] * num_classes for _ in range(num_classes)]
    for t, p in zip(y_true, y_pred):
        cm[t][p] += 1
    return np.array(cm)


def cm_bincount(y_true, y_pred, num_classes):
    return np.bincount(num_classes * y_true + y_pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def cm_float_one_hot(y_true, y_pred, num_classes):
    eye = np.eye(num_classes)
    return eye[y_true].T @ eye[y_pred]          # float counts from one-hot rows


class LoaderPrebuiltBatches:
    """Builds a pass's batches as a list in __iter__ (no generator), with np.array_split."""

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, rng=None):
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.rng = np.random.default_rng() if rng is None else rng

    def __len__(self):
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self):
        n = len(self.dataset)
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        chunks = [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.drop_last and len(chunks[-1]) < self.batch_size:
            chunks.pop()
        batches = []
        for chunk in chunks:
            xs, ys = zip(*(self.dataset[int(i)] for i in chunk))
            batches.append((np.array(xs), np.array(ys)))
        return iter(batches)


class LoaderIterator:
    """An explicit iterator: __iter__ resets the state and returns self, __next__ gives one batch."""

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, rng=None):
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.rng = rng or np.random.default_rng()

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        self.order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        self.batch_index = 0
        return self

    def __next__(self):
        if self.batch_index >= len(self):
            raise StopIteration
        idx = self.order[self.batch_index * self.batch_size:(self.batch_index + 1) * self.batch_size]
        self.batch_index += 1
        return (np.stack([self.dataset[int(i)][0] for i in idx]),
                np.array([self.dataset[int(i)][1] for i in idx]))


class LoaderShuffleInPlace(_LoaderBase):
    """Shuffles a list of indices in place with rng.shuffle at the start of each pass."""

    def _order(self):
        order = np.arange(len(self.dataset))
        if self.shuffle:
            self.rng.shuffle(order)
        return order


ALTERNATIVES = [
    ("xor_features", xor_features_loop),
    ("xor_features", xor_features_hstack),
    ("sigmoid", sigmoid_textbook),
    ("sigmoid", sigmoid_via_tanh),
    ("sigmoid", sigmoid_masks),
    ("relu", relu_where),
    ("relu", relu_mask_product),
    ("relu", relu_copy_then_clip),
    ("softmax", softmax_row_loop),
    ("softmax", softmax_via_log_sum_exp),
    ("cross_entropy_from_logits", ce_loop),
    ("cross_entropy_from_logits", ce_numpy_scalar),
    ("cross_entropy_from_logits", ce_one_hot),
    ("mlp_forward", mlp_loops),
    ("mlp_forward", mlp_einsum),
    ("classification_metrics", metrics_loop),
    ("classification_metrics", metrics_numpy_scalars),
    ("confusion_matrix", cm_loop),
    ("confusion_matrix", cm_bincount),
    ("confusion_matrix", cm_float_one_hot),
    ("DataLoader", LoaderPrebuiltBatches),
    ("DataLoader", LoaderIterator),
    ("DataLoader", LoaderShuffleInPlace),
]


# --- right values, wrong shape -------------------------------------------------------------------

def cm_flattened(y_true, y_pred, num_classes):
    return np.bincount(num_classes * y_true + y_pred, minlength=num_classes ** 2)


def sigmoid_flattened(x):
    return _sigmoid(x).ravel()


def softmax_flattened(x):
    return _softmax(x).reshape(-1)


def xor_features_product_column_kept_2d(X):
    return np.stack([X[:, :1], X[:, 1:], X[:, :1] * X[:, 1:]], axis=1)      # (N, 3, 1)


def mlp_extra_axis(X, W1, b1, W2, b2):
    return (np.maximum(0, X @ W1 + b1) @ W2 + b2)[:, :, None]


def ce_one_element_array(logits, y):
    lp = np.log(_softmax(logits))
    return np.array([-np.mean(lp[np.arange(len(y)), y])])


class LoaderColumnLabels(_LoaderBase):
    def _batch(self, indices):
        x, y = super()._batch(indices)
        return x, y[:, None]                    # (B, 1) instead of (B,)


WRONG_SHAPE = [
    ("xor_features", xor_features_product_column_kept_2d),
    ("sigmoid", sigmoid_flattened),
    ("softmax", softmax_flattened),
    ("mlp_forward", mlp_extra_axis),
    ("cross_entropy_from_logits", ce_one_element_array),
    ("confusion_matrix", cm_flattened),
    ("DataLoader", LoaderColumnLabels),
]


# --- tests -------------------------------------------------------------------------------------

def test_every_item_has_at_least_three_wrong_implementations():
    counts = {name: sum(1 for item, _, _ in WRONG if item == name) for name in ITEMS}
    assert all(c >= 3 for c in counts.values()), counts


@pytest.mark.parametrize("seed", SEEDS)
def test_solution_scores_full_marks(solution, seed):
    verdicts = grade_all(solution, seed)
    failed = {name: v.message for name, v in verdicts.items() if not v.passed}
    assert not failed, failed


@pytest.mark.parametrize("item, wrong, wants_hint", WRONG, ids=[f"{i}-{w.__name__}" for i, w, _ in WRONG])
@pytest.mark.parametrize("seed", WRONG_SEEDS)
def test_wrong_implementation_loses_only_its_item(solution, item, wrong, wants_hint, seed):
    verdicts = grade_all(dict(solution, **{item: wrong}), seed)
    assert not verdicts[item].passed, f"{wrong.__name__} passed {item}"
    message = verdicts[item].message
    assert message.startswith(item) or f"{item}:" in message, message
    if wants_hint:
        assert "Hint" in message, message
    others = {name: v.message for name, v in verdicts.items() if name != item and not v.passed}
    assert not others, others


@pytest.mark.parametrize("item, alternative", ALTERNATIVES, ids=[f"{i}-{a.__name__}" for i, a in ALTERNATIVES])
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_alternative_correct_implementation_gets_full_marks(solution, item, alternative, seed):
    verdicts = grade_all(dict(solution, **{item: alternative}), seed)
    failed = {name: v.message for name, v in verdicts.items() if not v.passed}
    assert not failed, failed


@pytest.mark.parametrize("item, wrong", WRONG_SHAPE, ids=[f"{i}-{w.__name__}" for i, w in WRONG_SHAPE])
def test_right_values_in_the_wrong_shape_lose_the_item(solution, item, wrong):
    verdict = grade_all(dict(solution, **{item: wrong}), 21)[item]
    assert not verdict.passed, f"{wrong.__name__} passed {item}"
    assert "shape" in verdict.message or "single number" in verdict.message, verdict.message


def test_a_function_that_raises_loses_only_its_item_with_a_readable_message(solution):
    def softmax(x):
        raise NotImplementedError()

    verdicts = grade_all(dict(solution, softmax=softmax), 5)
    assert not verdicts["softmax"].passed
    assert "NotImplementedError" in verdicts["softmax"].message and "Hint" in verdicts["softmax"].message
    assert all(v.passed for name, v in verdicts.items() if name != "softmax")


def test_notebook_points_match_the_stated_total():
    import nbformat

    from grader.judge.notebooks import graded_items

    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    points = graded_items(nb)
    assert set(points) == set(ITEMS)
    total = int(sum(points.values()))
    assert f"**Points:** {total} in total" in nb.cells[0].source


def test_shuffle_checks_fail_a_correct_loader_with_probability_below_1e_9():
    import itertools

    from grader.judge.cases import Streams
    from grader.judge.items import ch01_mlp_xor as items

    # together_probability against brute force over every order of 5 samples in batches of 2 (sizes 2, 2, 1)
    together = [sum(1 for k in range(0, 5, 2) if {0, 1} <= set(order[k:k + 2]))
                for order in itertools.permutations(range(5))]
    assert items.together_probability(5, 2) == pytest.approx(np.mean(together))
    q = items.together_probability(items.SHUFFLE_N, items.SHUFFLE_BATCH)
    assert items.PAIR_FALSE_ALARM == pytest.approx(math.comb(items.SHUFFLE_N, 2)
                                                   * (q ** items.SHUFFLE_PASSES + (1 - q) ** items.SHUFFLE_PASSES))
    for seed in range(20):
        cases = ITEMS["DataLoader"].cases(Streams.from_seed(seed))
        ordered = [c for c in cases if c.context["shuffle"] and c.context["n"] >= items.MIN_ORDER_N]
        assert sum(c.context["passes"] == items.SHUFFLE_PASSES for c in cases) == 1
        assert len(ordered) == 2          # the two random shuffled cases; the distribution case has n = 10
        per_run = items.PAIR_FALSE_ALARM + len(ordered) * items.ORDER_FALSE_ALARM
        assert per_run < 1e-9, per_run
        assert {(c.context["n"], c.context["batch"]) for c in cases} >= {(1, 1)}

"""Hidden tests of chapter 01 (MLP and XOR): forward computations, metrics, a data loader.

Values are compared with the trusted references at relative error < 1e-7. The
data loader is checked by properties (sizes, coverage, pairing, shuffling), so
any correct order of batches passes.
"""
from __future__ import annotations

import math

import numpy as np

from ..cases import away_from_kinks, small_dims
from ..checks import Failure, describe, expect_array, expect_close, expect_equal, expect_scalar, shape_phrase
from ..protocol import Call, Case, arr, dataset, lit, ref, rng
from ..references import ch01_mlp_xor as R
from . import Item, register

CHAPTER = "01_mlp_xor"
TOL = 1e-7


class ElementwiseItem(Item):
    """``name(*arrays) -> array`` compared with a reference; subclasses add edge cases."""

    reference = None
    hint = ""

    def make_inputs(self, s) -> dict:
        raise NotImplementedError

    def extra_cases(self) -> list[dict]:
        return []

    def cases(self, s):
        inputs = [self.make_inputs(s) for _ in range(3)] + self.extra_cases()
        return [Case(steps=[Call(self.name, [arr(n) for n in a], save="out")], arrays=a, returns=("out",),
                     label=shape_phrase(**{n: v for n, v in a.items()})) for a in inputs]

    def check(self, case, out):
        expected = np.asarray(type(self).reference(*case.arrays.values()), dtype=np.float64)
        if expected.shape == ():
            got = expect_scalar(self.name, "the result", out["out"], case.label, self.hint)
        else:
            got = expect_array(self.name, "the result", out["out"], expected.shape, case.label, self.hint)
        expect_close(self.name, "the result", got, expected, TOL, case.label, self.hint)


@register(CHAPTER)
class XorFeatures(ElementwiseItem):
    name = "xor_features"
    reference = R.xor_features
    hint = "return the columns [x1, x2, x1 * x2], shape (N, 3): np.column_stack is handy."

    def make_inputs(self, s):
        return {"X": s.inputs.normal(size=(int(s.inputs.integers(3, 9)), 2))}


@register(CHAPTER)
class Sigmoid(ElementwiseItem):
    name = "sigmoid"
    reference = R.sigmoid
    hint = "1 / (1 + exp(-x)) overflows for very negative x; there use exp(x) / (1 + exp(x))."

    def make_inputs(self, s):
        return {"x": s.inputs.normal(0, 3, size=small_dims(s.inputs, (2, 5), (2, 5)))}

    def extra_cases(self):
        return [{"x": np.array([[-1000.0, -40.0, 0.0, 40.0, 1000.0]])}]


@register(CHAPTER)
class Relu(ElementwiseItem):
    name = "relu"
    reference = R.relu
    hint = "np.maximum(0, x) keeps positive entries and zeroes the rest."

    def make_inputs(self, s):
        return {"x": away_from_kinks(s.inputs, small_dims(s.inputs, (2, 5), (2, 5)))}


@register(CHAPTER)
class Softmax(ElementwiseItem):
    name = "softmax"
    reference = R.softmax
    hint = ("subtract each row's maximum before exp (np.max(x, axis=1, keepdims=True)) and divide by the "
            "row sums, not the total sum.")

    def make_inputs(self, s):
        return {"x": s.inputs.normal(0, 2, size=small_dims(s.inputs, (2, 6), (2, 6)))}

    def extra_cases(self):
        return [{"x": np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1002.0, -1001.0]])}]


@register(CHAPTER)
class CrossEntropyFromLogits(Item):
    name = "cross_entropy_from_logits"
    hint = ("use log-softmax: z - log(sum(exp(z))) with z = logits - row max, pick column y[i] of row i, "
            "and average over the batch.")

    def cases(self, s):
        cases = []
        for shift in (0.0, 0.0, 0.0, 800.0):
            N, C = small_dims(s.inputs, (2, 6), (2, 5))
            logits = s.inputs.normal(0, 2, size=(N, C)) + shift
            y = s.inputs.integers(0, C, size=N)
            label = " on logits around 800" if shift else shape_phrase(logits=logits)
            cases.append(Case(steps=[Call(self.name, [arr("logits"), arr("y")], save="loss")],
                              arrays={"logits": logits, "y": y}, returns=("loss",), label=label))
        return cases

    def check(self, case, out):
        expected = R.cross_entropy_from_logits(case.arrays["logits"], case.arrays["y"])
        loss = expect_scalar(self.name, "the loss", out["loss"], case.label, self.hint)
        expect_close(self.name, "the loss", loss, expected, TOL, case.label, self.hint)


@register(CHAPTER)
class MlpForward(Item):
    name = "mlp_forward"
    hint = "hidden = relu(X @ W1 + b1); logits = hidden @ W2 + b2 (no activation on the output layer)."

    def cases(self, s):
        cases = []
        for _ in range(3):
            N, D, H, C = small_dims(s.inputs, (2, 6), (2, 4), (3, 8), (1, 4))
            a = {"X": s.inputs.normal(size=(N, D)), "W1": s.inputs.normal(size=(D, H)),
                 "b1": s.inputs.normal(size=(H,)), "W2": s.inputs.normal(size=(H, C)),
                 "b2": s.inputs.normal(size=(C,))}
            cases.append(Case(steps=[Call(self.name, [arr(n) for n in a], save="logits")], arrays=a,
                              returns=("logits",), label=shape_phrase(X=a["X"], W1=a["W1"])))
        return cases

    def check(self, case, out):
        expected = R.mlp_forward(**case.arrays)
        got = expect_array(self.name, "logits", out["logits"], expected.shape, case.label, self.hint)
        expect_close(self.name, "logits", got, expected, TOL, case.label, self.hint)


@register(CHAPTER)
class ClassificationMetrics(Item):
    name = "classification_metrics"
    hint = ("precision = TP / (TP + FP), recall = TP / (TP + FN); return 0.0 when the denominator is 0 "
            "(e.g. no positive predictions).")

    def cases(self, s):
        cases = []
        for kind in ("random", "random", "no_positive_predictions"):
            n = int(s.inputs.integers(8, 30))
            y_true = s.inputs.integers(0, 2, size=n)
            y_true[0] = 1
            y_pred = np.zeros(n, dtype=int) if kind != "random" else s.inputs.integers(0, 2, size=n)
            cases.append(Case(steps=[Call(self.name, [arr("y_true"), arr("y_pred")], save=("accuracy", "precision",
                                                                                           "recall"))],
                              arrays={"y_true": y_true, "y_pred": y_pred}, returns=("accuracy", "precision", "recall"),
                              label=" when nothing is predicted positive" if kind != "random" else
                              f" on {n} random labels"))
        return cases

    def check(self, case, out):
        expected = R.classification_metrics(case.arrays["y_true"], case.arrays["y_pred"])
        for name, want in zip(("accuracy", "precision", "recall"), expected):
            got = expect_scalar(self.name, name, out[name], case.label, self.hint)
            expect_close(self.name, name, got, want, TOL, case.label, self.hint)


@register(CHAPTER)
class ConfusionMatrix(Item):
    """Counts compared exactly; cases repeat (true, predicted) pairs and leave the last class unused."""

    name = "confusion_matrix"
    hint = ("entry [t, p] counts the samples of true class t predicted as p (rows: true class); "
            "cm[y_true, y_pred] += 1 counts a repeated pair only once: use np.add.at or a loop.")

    def cases(self, s):
        cases = []
        for kind in ("random", "random", "random", "last_class_unused"):
            C = int(s.inputs.integers(2, 6))
            n = int(s.inputs.integers(3 * C * C, 4 * C * C + 8))      # many repeated (true, predicted) pairs
            used = C - 1 if kind == "last_class_unused" else C
            y_true = s.inputs.integers(0, used, size=n)
            y_pred = np.where(s.inputs.random(n) < 0.6, y_true, s.inputs.integers(0, used, size=n))
            label = (f" with num_classes={C} when class {C - 1} never occurs" if kind != "random"
                     else f" on {n} labels of {C} classes")
            cases.append(Case(steps=[Call(self.name, [arr("y_true"), arr("y_pred"), lit(C)], save="cm")],
                              arrays={"y_true": y_true, "y_pred": y_pred}, context={"C": C}, returns=("cm",),
                              label=label))
        return cases

    def check(self, case, out):
        expected = R.confusion_matrix(case.arrays["y_true"], case.arrays["y_pred"], case.context["C"])
        got = expect_array(self.name, "the matrix", out["cm"], expected.shape, case.label, self.hint)
        expect_close(self.name, "the matrix", got, expected.astype(np.float64), TOL, case.label, self.hint)


@register(CHAPTER)
class DataLoader(Item):
    """Checked by properties: batch sizes, coverage of every sample once, x/y pairing, shuffling."""

    name = "DataLoader"
    hint = ""

    def cases(self, s):
        cases = []
        for shuffle, drop_last in ((False, False), (False, True), (True, False), (True, True)):
            n = int(s.inputs.integers(10, 23))
            batch = int(s.inputs.integers(2, 6))
            if n % batch == 0:
                n += 1          # make sure there is a partial last batch to keep or drop
            X = np.arange(n * 2, dtype=float).reshape(n, 2) + s.inputs.normal(size=(n, 2)) * 0.01
            y = np.arange(n) * 10
            steps = [Call("DataLoader", [dataset("X", "y")],
                          {"batch_size": lit(batch), "shuffle": lit(shuffle), "drop_last": lit(drop_last),
                           "rng": rng(s.seeds.integers(2**31))}, save="loader"),
                     Call("len", [ref("loader")], save="length", builtin=True),
                     Call("list", [ref("loader")], save="epoch1", builtin=True),
                     Call("list", [ref("loader")], save="epoch2", builtin=True)]
            cases.append(Case(steps=steps, arrays={"X": X, "y": y}, returns=("length", "epoch1", "epoch2"),
                              context={"n": n, "batch": batch, "shuffle": shuffle, "drop_last": drop_last},
                              label=f" with {n} samples, batch_size={batch}, shuffle={shuffle}, drop_last={drop_last}"))
        return cases

    def check(self, case, out):
        n, batch, shuffle, drop_last = (case.context[k] for k in ("n", "batch", "shuffle", "drop_last"))
        X = case.arrays["X"]
        where = case.label
        expected_batches = n // batch if drop_last else math.ceil(n / batch)
        length = expect_scalar(self.name, "len(loader)", out["length"], where,
                               "len() is the number of batches: ceil(N / batch_size), or floor with drop_last.")
        expect_close(self.name, "len(loader)", length, expected_batches, 1e-12, where,
                     "len() is the number of batches: ceil(N / batch_size), or floor with drop_last.")
        orders = []
        for epoch in ("epoch1", "epoch2"):
            batches = out[epoch]
            if not isinstance(batches, list):
                raise Failure(f"{self.name}: iterating over the loader should give batches, got {describe(batches)}.")
            if len(batches) != expected_batches:
                raise Failure(f"{self.name}: one pass gave {len(batches)} batches, expected {expected_batches}{where}."
                              f"\nHint: {'drop the last, smaller batch' if drop_last else 'keep the last, smaller batch'}"
                              f" when drop_last={drop_last}.")
            rows = []
            for i, b in enumerate(batches):
                if not isinstance(b, tuple | list) or len(b) != 2:
                    raise Failure(f"{self.name}: each batch should be a pair (X_batch, y_batch), got {describe(b)}.")
                size = batch if (i < len(batches) - 1 or drop_last or n % batch == 0) else n % batch
                xb = expect_array(self.name, f"X_batch {i}", b[0], (size, 2), where,
                                  "stack the samples of a batch into one array (np.stack).")
                yb = expect_array(self.name, f"y_batch {i}", b[1], (size,), where,
                                  "stack the labels of a batch into one array.")
                idx = np.rint(yb / 10).astype(int)
                if np.any(np.abs(yb - idx * 10) > 0) or np.any(idx < 0) or np.any(idx >= n):
                    raise Failure(f"{self.name}: y_batch {i} contains labels that are not in the dataset{where}.")
                if not np.allclose(xb, X[idx]):
                    raise Failure(f"{self.name}: in batch {i} the inputs do not belong to their labels{where}."
                                  "\nHint: shuffle indices once and use the same indices for X and y.")
                rows.extend(idx.tolist())
            if len(set(rows)) != len(rows):
                raise Failure(f"{self.name}: a pass repeats some samples{where}.\nHint: shuffle a permutation of "
                              "the indices (rng.permutation), do not draw with replacement.")
            if not drop_last and len(rows) != n:
                raise Failure(f"{self.name}: a pass covers {len(rows)} of {n} samples{where}.")
            if not shuffle:
                expect_equal(self.name, "the sample order", rows, list(range(len(rows))), where,
                             "without shuffle, batches follow the dataset order.")
            orders.append(rows)
        if shuffle and orders[0] == orders[1] and orders[0] == sorted(orders[0]):
            # Probability that a correct shuffle leaves >= 10 samples in order twice: < 1 / 10!^2.
            raise Failure(f"{self.name}: shuffle=True left the samples in their original order{where}.\n"
                          "Hint: draw a new permutation at the start of every pass (in __iter__).")
        if shuffle and orders[0] == orders[1]:
            # A correct loader repeats the same order with probability < 1 / 10! per case.
            raise Failure(f"{self.name}: two passes gave the same order{where}.\n"
                          "Hint: draw a new permutation at the start of every pass (in __iter__), not in __init__.")

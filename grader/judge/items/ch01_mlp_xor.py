"""Hidden tests of chapter 01 (MLP and XOR): forward computations, metrics, a data loader.

Values are compared with the trusted references at relative error < 1e-7. On every
seed the cases include the degenerate sizes the contracts allow (a batch of one, one
class, one feature), so a ``squeeze()`` or code that only works for N > 1 loses its item.
The data loader is checked by properties (sizes, coverage, pairing, shuffling), so
any correct order of batches passes; its degenerate cases are a dataset of one sample,
batch_size=1 and a batch_size larger than the dataset (one batch, or none with
drop_last). Its shuffle is judged by its distribution, see ``DataLoader``.
"""
from __future__ import annotations

import math

import numpy as np

from ..cases import at_kinks, away_from_kinks, small_dims
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

    def edge_inputs(self, s) -> list[dict]:
        """Inputs of the degenerate sizes the contract allows (a batch of one, ...), drawn on every seed."""
        return []

    def cases(self, s):
        inputs = [self.make_inputs(s) for _ in range(3)] + self.extra_cases() + self.edge_inputs(s)
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

    def edge_inputs(self, s):
        return [{"X": s.inputs.normal(size=(1, 2))}]         # a single sample


@register(CHAPTER)
class Sigmoid(ElementwiseItem):
    name = "sigmoid"
    reference = R.sigmoid
    hint = "1 / (1 + exp(-x)) overflows for very negative x; there use exp(x) / (1 + exp(x))."

    def make_inputs(self, s):
        return {"x": s.inputs.normal(0, 3, size=small_dims(s.inputs, (2, 5), (2, 5)))}

    def extra_cases(self):
        return [{"x": np.array([[-1000.0, -40.0, 0.0, 40.0, 1000.0]])}]

    def edge_inputs(self, s):
        return [{"x": s.inputs.normal(0, 3, size=(1, 1))}]   # a single entry


@register(CHAPTER)
class Relu(ElementwiseItem):
    name = "relu"
    reference = R.relu
    hint = "np.maximum(0, x) keeps positive entries and zeroes the rest."

    def make_inputs(self, s):
        return {"x": away_from_kinks(s.inputs, small_dims(s.inputs, (2, 5), (2, 5)))}

    def edge_inputs(self, s):
        # One row, with some entries exactly at the kink (relu(0) = 0); then a single entry.
        return [{"x": at_kinks(s.inputs, (1, int(s.inputs.integers(3, 7))))},
                {"x": away_from_kinks(s.inputs, (1, 1))}]


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

    def edge_inputs(self, s):
        # A batch of one row, and one class (every probability is 1).
        return [{"x": s.inputs.normal(0, 2, size=(1, int(s.inputs.integers(2, 6))))},
                {"x": s.inputs.normal(0, 2, size=(int(s.inputs.integers(2, 6)), 1))}]


@register(CHAPTER)
class CrossEntropyFromLogits(Item):
    name = "cross_entropy_from_logits"
    hint = ("use log-softmax: z - log(sum(exp(z))) with z = logits - row max, pick column y[i] of row i, "
            "and average over the batch.")

    def cases(self, s):
        cases = []
        # After the random cases and the large logits: a batch of one, and one class (the loss is 0).
        for shift, edge in ((0.0, None), (0.0, None), (0.0, None), (800.0, None), (0.0, "N"), (0.0, "C")):
            N, C = small_dims(s.inputs, (2, 6), (2, 5))
            N, C = {"N": (1, C), "C": (N, 1)}.get(edge, (N, C))
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
        for index in range(5):
            N, D, H, C = small_dims(s.inputs, (2, 6), (2, 4), (3, 8), (1, 4))
            if index == 3:
                N = 1                               # a single sample
            elif index == 4:
                D, H, C = 1, 1, 1                   # one input feature, one hidden unit, one output
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
        labels = {"random": None, "no_positive_predictions": " when nothing is predicted positive",
                  "one_sample": " on a single sample"}
        for kind in ("random", "random", "no_positive_predictions", "one_sample"):
            n = int(s.inputs.integers(8, 30)) if kind != "one_sample" else 1
            y_true = s.inputs.integers(0, 2, size=n)
            if kind != "one_sample":
                y_true[0] = 1
            y_pred = np.zeros(n, dtype=int) if kind == "no_positive_predictions" else s.inputs.integers(0, 2, size=n)
            label = labels[kind] or f" on {n} random labels"
            if kind == "one_sample":
                label += f" (y_true = {y_true.tolist()}, y_pred = {y_pred.tolist()})"
            cases.append(Case(steps=[Call(self.name, [arr("y_true"), arr("y_pred")], save=("accuracy", "precision",
                                                                                           "recall"))],
                              arrays={"y_true": y_true, "y_pred": y_pred}, returns=("accuracy", "precision", "recall"),
                              label=label))
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
        for kind in ("random", "random", "random", "last_class_unused", "one_sample"):
            C = int(s.inputs.integers(2, 6))
            n = int(s.inputs.integers(3 * C * C, 4 * C * C + 8))      # many repeated (true, predicted) pairs
            n = 1 if kind == "one_sample" else n
            used = C - 1 if kind == "last_class_unused" else C
            y_true = s.inputs.integers(0, used, size=n)
            y_pred = np.where(s.inputs.random(n) < 0.6, y_true, s.inputs.integers(0, used, size=n))
            label = {"last_class_unused": f" with num_classes={C} when class {C - 1} never occurs",
                     "one_sample": f" on a single sample (y_true = {y_true.tolist()}, y_pred = {y_pred.tolist()}) "
                                   f"with num_classes={C}"}.get(kind, f" on {n} labels of {C} classes")
            cases.append(Case(steps=[Call(self.name, [arr("y_true"), arr("y_pred"), lit(C)], save="cm")],
                              arrays={"y_true": y_true, "y_pred": y_pred}, context={"C": C}, returns=("cm",),
                              label=label))
        return cases

    def check(self, case, out):
        expected = R.confusion_matrix(case.arrays["y_true"], case.arrays["y_pred"], case.context["C"])
        got = expect_array(self.name, "the matrix", out["cm"], expected.shape, case.label, self.hint)
        expect_close(self.name, "the matrix", got, expected.astype(np.float64), TOL, case.label, self.hint)


# --- the data loader's shuffle, judged by its distribution ------------------------------------------
# A correct loader draws a fresh, uniformly random order on every pass (independently of earlier passes).
# - Two passes in the same order: probability 1 / n! per case. Only cases with n >= MIN_ORDER_N = 14 samples
#   are checked for it: 1 / 14! < 1.2e-11 per case, two such cases per grading run.
# - Who shares a batch with whom: in the distribution case the loader makes SHUFFLE_PASSES = 48 passes over
#   SHUFFLE_N = 10 samples in batches of SHUFFLE_BATCH = 5. In one pass two given samples share a batch with
#   probability q = 4/9 (``together_probability``), independently across passes, so a pair that is never
#   together in 48 passes has probability (1 - q)^48 and one that is always together q^48. By the union bound
#   over the 45 pairs a correct loader fails this check with probability 45 ((5/9)^48 + (4/9)^48) < 3e-11
#   (``PAIR_FALSE_ALARM``). Shuffling only the order of the batches (some pair always together), shuffling
#   only within each batch (some pair never together) or rotating the order by a random offset (samples 0
#   and 5 never together) fail it on every run.
# A correct loader fails a grading run with probability < 6e-11 in all.
MIN_ORDER_N = 14
SHUFFLE_N, SHUFFLE_BATCH, SHUFFLE_PASSES = 10, 5, 48


def together_probability(n, batch):
    """P(two given samples share a batch) in one pass of a uniformly shuffled loader without drop_last."""
    sizes = [batch] * (n // batch) + ([n % batch] if n % batch else [])
    return sum(k * (k - 1) for k in sizes) / (n * (n - 1))


_Q = together_probability(SHUFFLE_N, SHUFFLE_BATCH)
PAIR_FALSE_ALARM = math.comb(SHUFFLE_N, 2) * (_Q ** SHUFFLE_PASSES + (1 - _Q) ** SHUFFLE_PASSES)
ORDER_FALSE_ALARM = 1 / math.factorial(MIN_ORDER_N)
SHUFFLE_HINT = ("draw a fresh permutation of ALL the indices at the start of every pass (rng.permutation over "
                "range(N)) and cut it into consecutive batches: shuffling only the order of the batches, only "
                "within each batch, or rotating the order keeps some samples always (or never) together.")


@register(CHAPTER)
class DataLoader(Item):
    """Checked by properties: batch sizes, coverage of every sample once, x/y pairing, shuffling.

    Degenerate cases on every seed: a dataset of one sample, batch_size=1, and a batch_size larger than the
    dataset (one batch; none with drop_last). The shuffle is judged by its distribution (the bounds above):
    a new order on every pass, and over 48 passes every two samples sometimes share a batch and sometimes not.
    """

    name = "DataLoader"
    hint = ""

    def _case(self, s, n, batch, shuffle, drop_last, passes=2, note=""):
        X = np.arange(n * 2, dtype=float).reshape(n, 2) + s.inputs.normal(size=(n, 2)) * 0.01
        y = np.arange(n) * 10
        steps = [Call("DataLoader", [dataset("X", "y")],
                      {"batch_size": lit(batch), "shuffle": lit(shuffle), "drop_last": lit(drop_last),
                       "rng": rng(s.seeds.integers(2**31))}, save="loader"),
                 Call("len", [ref("loader")], save="length", builtin=True)]
        steps += [Call("list", [ref("loader")], save=f"epoch{k}", builtin=True) for k in range(1, passes + 1)]
        return Case(steps=steps, arrays={"X": X, "y": y},
                    returns=("length",) + tuple(f"epoch{k}" for k in range(1, passes + 1)),
                    context={"n": n, "batch": batch, "shuffle": shuffle, "drop_last": drop_last, "passes": passes},
                    label=f" with {n} sample{'s' if n > 1 else ''}, batch_size={batch}, shuffle={shuffle}, "
                          f"drop_last={drop_last}{note}")

    def cases(self, s):
        cases = []
        for shuffle, drop_last in ((False, False), (False, True), (True, False), (True, True)):
            n = int(s.inputs.integers(MIN_ORDER_N, 23))
            batch = int(s.inputs.integers(2, 6))
            if n % batch == 0:
                n += 1          # make sure there is a partial last batch to keep or drop
            cases.append(self._case(s, n, batch, shuffle, drop_last))
        # Degenerate sizes: one sample; batches of one; a batch larger than the dataset, kept or dropped.
        small = int(s.inputs.integers(3, 7))
        bigger = small + int(s.inputs.integers(1, 4))
        for n, batch, shuffle, drop_last in ((1, 1, True, False), (small, 1, False, True),
                                             (small, bigger, True, False), (small, bigger, False, True)):
            cases.append(self._case(s, n, batch, shuffle, drop_last))
        cases.append(self._case(s, SHUFFLE_N, SHUFFLE_BATCH, True, False, passes=SHUFFLE_PASSES,
                                note=f", over {SHUFFLE_PASSES} passes"))
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
        for k in range(1, case.context["passes"] + 1):
            batches = out[f"epoch{k}"]
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
                                  "stack the samples of a batch into one array (np.stack), also when it holds one "
                                  "sample: its shape is (batch size, 2).")
                yb = expect_array(self.name, f"y_batch {i}", b[1], (size,), where,
                                  "stack the labels of a batch into one array of shape (batch size,), also when it "
                                  "holds one label.")
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
        if shuffle and n >= MIN_ORDER_N and orders[0] == orders[1] and orders[0] == sorted(orders[0]):
            raise Failure(f"{self.name}: shuffle=True left the samples in their original order{where}.\n"
                          "Hint: draw a new permutation at the start of every pass (in __iter__).")
        if shuffle and n >= MIN_ORDER_N and orders[0] == orders[1]:
            raise Failure(f"{self.name}: two passes gave the same order{where} (a correct shuffle repeats an order "
                          f"of {n} samples with probability 1/{n}! < {ORDER_FALSE_ALARM:.0e}).\n"
                          "Hint: draw a new permutation at the start of every pass (in __iter__), not in __init__.")
        if case.context["passes"] > 2:
            self._check_pairs(case, out)

    def _check_pairs(self, case, out):
        """Every two samples share a batch in some passes and not in others (bounds above the class)."""
        n, passes = case.context["n"], case.context["passes"]
        together = np.zeros((n, n), dtype=int)
        for k in range(1, passes + 1):
            for b in out[f"epoch{k}"]:
                idx = np.rint(np.asarray(b[1], dtype=float) / 10).astype(int)
                together[np.ix_(idx, idx)] += 1
        q = together_probability(n, case.context["batch"])
        for count, what in ((0, "never"), (passes, "always")):
            pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if together[i, j] == count]
            if pairs:
                i, j = pairs[0]
                chance = (1 - q) ** passes if count == 0 else q ** passes
                raise Failure(
                    f"{self.name}: samples {i} and {j} were {what} in the same batch{case.label} "
                    f"({len(pairs)} pair{'s' if len(pairs) > 1 else ''} like that). With a uniformly random order "
                    f"two samples share a batch with probability {q:.3f} in each pass, so a correct shuffle does "
                    f"this with probability {chance:.0e} per pair (false-alarm probability {PAIR_FALSE_ALARM:.0e} "
                    f"for all {math.comb(n, 2)} pairs).\nHint: {SHUFFLE_HINT}")

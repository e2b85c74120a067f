"""Chapter 07 (PyTorch): the hidden tests, proven in-process.

- every graded item passes with the solution's functions and classes, on several seeds;
- each typical wrong implementation (gradients in the wrong order, no None for a non-tensor input,
  save_for_backward misuse, dw not transposed, float32 results, a Dataset with float labels or an
  off-by-one length, an epoch without zero_grad or model.train(), evaluate without eval() or no_grad,
  results left as tensors) loses exactly its own item, with a message that names it and gives a hint;
- alternative correct implementations (other caches, nn.ReLU modules, tensors built once in
  __init__, inference_mode, example-weighted means) get full marks;
- the messages say which input and index is wrong, and why.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from grader.workflow import earlier_chapters
from grader.judge.items import find_item, grade_in_process

from chapter_proofs import chapter_proofs

pytestmark = pytest.mark.ch07

CHAPTER = "07_pytorch"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The learner code graded here runs tiny models: one thread is fastest (the autograder sets one too)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- AffineFunction ---------------------------------------------------------------------------------

class AffineWrongOrder(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return x.reshape(x.shape[0], -1) @ w + b

    @staticmethod
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        x_flat = x.reshape(x.shape[0], -1)
        return x_flat.T @ dout, (dout @ w.T).reshape(x.shape), dout.sum(0)


class AffineDwNotTransposed(AffineWrongOrder):
    @staticmethod
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        x_flat = x.reshape(x.shape[0], -1)
        return (dout @ w.T).reshape(x.shape), dout.T @ x_flat, dout.sum(0)


class AffineDbMean(AffineWrongOrder):
    @staticmethod
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        x_flat = x.reshape(x.shape[0], -1)
        return (dout @ w.T).reshape(x.shape), x_flat.T @ dout, dout.mean(0)


class AffineSavesThreeUnpacksTwo(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w, b)
        return x.reshape(x.shape[0], -1) @ w + b

    @staticmethod
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        return (dout @ w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T @ dout, dout.sum(0)


class AffineFloat32(AffineWrongOrder):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return x.reshape(x.shape[0], -1).float() @ w.float() + b.float()


class AffineNoBias(AffineWrongOrder):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return x.reshape(x.shape[0], -1) @ w + 0 * b


class AffineByAutograd:
    """Not a Function: plain torch operations, differentiated by autograd instead of a backward of its own."""

    @staticmethod
    def apply(x, w, b):
        return x.reshape(x.shape[0], -1) @ w + b


class ReluByAutograd:
    @staticmethod
    def apply(x):
        return torch.relu(x)


class AffineOtherCache(torch.autograd.Function):
    """Alternative: the flattened x saved, the original shape kept on ctx as a plain attribute."""

    @staticmethod
    def forward(ctx, x, w, b):
        x_flat = x.view(x.shape[0], -1)
        ctx.save_for_backward(x_flat, w, b)
        ctx.x_shape = x.shape
        return torch.addmm(b, x_flat, w)

    @staticmethod
    def backward(ctx, dout):
        x_flat, w, _ = ctx.saved_tensors
        return torch.matmul(dout, w.t()).view(ctx.x_shape), torch.matmul(x_flat.t(), dout), torch.sum(dout, dim=0)


# --- ReLUFunction ---------------------------------------------------------------------------------

class ReluPassesDout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, dout):
        return dout.clone()


class ReluMaskFromDout(ReluPassesDout):
    @staticmethod
    def backward(ctx, dout):
        return dout * (dout > 0)


class ReluInPlace(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        mask = x > 0
        ctx.save_for_backward(mask)
        x.clamp_(min=0)
        return x.clone()

    @staticmethod
    def backward(ctx, dout):
        (mask,) = ctx.saved_tensors
        return dout * mask


class ReluThroughNumPy(ReluPassesDout):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.Tensor(np.maximum(x.detach().numpy(), 0))        # torch.Tensor(...) is float32

    @staticmethod
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        return dout * (x > 0)


class ReluSavesOutput(torch.autograd.Function):
    """Alternative: the mask read off the output."""

    @staticmethod
    def forward(ctx, x):
        out = torch.where(x > 0, x, torch.zeros_like(x))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, dout):
        (out,) = ctx.saved_tensors
        return dout * (out > 0).to(dout.dtype)


# --- Conv2dFunction (conv_forward_im2col / conv_backward_im2col come from the solution's given code) ------

@functools.cache
def _given():
    """The chapter's given code (chapter 06's conv_forward_im2col / conv_backward_im2col), as the solution gets it."""
    namespace = {}
    exec(earlier_chapters.generate(CHAPTER), namespace)
    return namespace


def _conv_class(label, forward=None, backward=None):
    """A Conv2dFunction around the given conv code, with ``forward`` or ``backward`` replaced."""

    def default_forward(ctx, x, w, b, stride, pad, conv):
        out, ctx.cache = conv(x.detach().numpy(), w.detach().numpy(), b.detach().numpy(),
                              {"stride": stride, "pad": pad})
        return torch.from_numpy(out)

    def default_backward(ctx, dout, conv):
        dx, dw, db = conv(dout.numpy(), ctx.cache)
        return torch.from_numpy(dx), torch.from_numpy(dw), torch.from_numpy(db), None, None

    class Conv2dFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, b, stride, pad):
            return (forward or default_forward)(ctx, x, w, b, stride, pad, conv=_given()["conv_forward_im2col"])

        @staticmethod
        def backward(ctx, dout):
            return (backward or default_backward)(ctx, dout, conv=_given()["conv_backward_im2col"])

    Conv2dFunction.__name__ = label
    return Conv2dFunction


def conv_no_none(ctx, dout, conv):
    dx, dw, db = conv(dout.numpy(), ctx.cache)
    return torch.from_numpy(dx), torch.from_numpy(dw), torch.from_numpy(db)


def conv_saves_cache_for_backward(ctx, x, w, b, stride, pad, conv):
    out, cache = conv(x.detach().numpy(), w.detach().numpy(), b.detach().numpy(), {"stride": stride, "pad": pad})
    ctx.save_for_backward(cache)
    return torch.from_numpy(out)


def conv_numpy_gradients(ctx, dout, conv):
    dx, dw, db = conv(dout.numpy(), ctx.cache)
    return dx, dw, db, None, None


def conv_float32(ctx, x, w, b, stride, pad, conv):
    out, ctx.cache = conv(x.detach().numpy(), w.detach().numpy(), b.detach().numpy(), {"stride": stride, "pad": pad})
    return torch.from_numpy(out).float()


def conv_dx_dw_swapped(ctx, dout, conv):
    dx, dw, db = conv(dout.numpy(), ctx.cache)
    return torch.from_numpy(dw), torch.from_numpy(dx), torch.from_numpy(db), None, None


def conv_as_tensor(ctx, dout, conv):
    """Alternative: torch.as_tensor, and the None for stride and pad written as a tuple."""
    grads = conv(dout.detach().cpu().numpy(), ctx.cache)
    return tuple(torch.as_tensor(g) for g in grads) + (None, None)


ConvNoNone = _conv_class("ConvNoNone", backward=conv_no_none)
ConvSavesCacheForBackward = _conv_class("ConvSavesCacheForBackward", forward=conv_saves_cache_for_backward)
ConvNumPyGradients = _conv_class("ConvNumPyGradients", backward=conv_numpy_gradients)
ConvFloat32 = _conv_class("ConvFloat32", forward=conv_float32)
ConvDxDwSwapped = _conv_class("ConvDxDwSwapped", backward=conv_dx_dw_swapped)
ConvAsTensor = _conv_class("ConvAsTensor", backward=conv_as_tensor)


# --- TwoLayerNet ------------------------------------------------------------------------------------

class NetBase(nn.Module):
    def __init__(self, input_dim, hidden_dim, num_classes):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, num_classes)


class NetSigmoid(NetBase):
    def forward(self, x):
        return self.fc2(torch.sigmoid(self.fc1(x.flatten(1))))


class NetSoftmax(NetBase):
    def forward(self, x):
        return torch.softmax(self.fc2(torch.relu(self.fc1(x.flatten(1)))), dim=1)


class NetNoFlatten(NetBase):
    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class NetRenamed(nn.Module):
    def __init__(self, input_dim, hidden_dim, num_classes):
        super().__init__()
        self.layer1 = nn.Linear(input_dim, hidden_dim)
        self.layer2 = nn.Linear(hidden_dim, num_classes)

    def forward(self, x):
        return self.layer2(torch.relu(self.layer1(x.flatten(1))))


class NetNoActivation(NetBase):
    def forward(self, x):
        return self.fc2(self.fc1(x.flatten(1)))


class NetWithModules(nn.Module):
    """Alternative: an nn.ReLU submodule (no parameters, so the state_dict is the same) and view."""

    def __init__(self, input_dim, hidden_dim, num_classes):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden_dim, num_classes)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x.reshape(len(x), -1))))


# --- DigitsDataset --------------------------------------------------------------------------------

class DatasetBase(Dataset):
    def __init__(self, images, labels, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def image(self, i):
        image = torch.tensor(self.images[i], dtype=torch.float32).unsqueeze(0)
        return self.transform(image) if self.transform is not None else image


class DatasetFloatLabels(DatasetBase):
    def __getitem__(self, i):
        return self.image(i), float(self.labels[i])


class DatasetFloat32LabelTensor(DatasetBase):
    def __getitem__(self, i):
        return self.image(i), torch.tensor(self.labels[i], dtype=torch.float32)


class DatasetOffByOne(DatasetBase):
    def __len__(self):
        return len(self.images) - 1

    def __getitem__(self, i):
        return self.image(i), int(self.labels[i])


class DatasetNoChannel(DatasetBase):
    def __getitem__(self, i):
        image = torch.tensor(self.images[i], dtype=torch.float32)
        return (self.transform(image) if self.transform else image), int(self.labels[i])


class DatasetIgnoresTransform(DatasetBase):
    def __getitem__(self, i):
        return torch.tensor(self.images[i], dtype=torch.float32).unsqueeze(0), int(self.labels[i])


class DatasetFloat64Images(DatasetBase):
    def __getitem__(self, i):
        image = torch.from_numpy(self.images[i]).unsqueeze(0)
        return (self.transform(image) if self.transform else image), int(self.labels[i])


class DatasetTensorsUpFront(Dataset):
    """Alternative: everything converted once in __init__; labels as int64 tensors."""

    def __init__(self, images, labels, transform=None):
        self.x = torch.as_tensor(images, dtype=torch.float32)[:, None]
        self.y = torch.as_tensor(labels, dtype=torch.long)
        self.transform = transform

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        x = self.x[i]
        return (x if self.transform is None else self.transform(x)), self.y[i]


# --- train_one_epoch ------------------------------------------------------------------------------

def _batches(loader, device):
    for x, y in loader:
        yield x.to(device), y.to(device)


def toe_no_zero_grad(model, loader, loss_fn, optimizer, device):
    model.train()
    losses = []
    for x, y in _batches(loader, device):
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses) / len(losses)


def toe_no_train(model, loader, loss_fn, optimizer, device):
    losses = []
    for x, y in _batches(loader, device):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses) / len(losses)


def toe_returns_tensor(model, loader, loss_fn, optimizer, device):
    model.train()
    losses = []
    for x, y in _batches(loader, device):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss)
    return torch.stack(losses).mean()


def toe_last_loss(model, loader, loss_fn, optimizer, device):
    model.train()
    for x, y in _batches(loader, device):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    return loss.item()


def toe_step_before_backward(model, loader, loss_fn, optimizer, device):
    model.train()
    losses = []
    for x, y in _batches(loader, device):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        optimizer.step()
        loss.backward()
        losses.append(loss.item())
    return sum(losses) / len(losses)


def toe_under_no_grad(model, loader, loss_fn, optimizer, device):
    model.train()
    losses = []
    with torch.no_grad():
        for x, y in _batches(loader, device):
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return sum(losses) / len(losses)


def toe_weighted_mean(model, loader, loss_fn, optimizer, device):
    """Alternative: the mean over examples (equal to the batch mean when batches are full), model.zero_grad()."""
    model.train()
    total, count = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        model.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(x)
        count += len(x)
    return total / count


# --- evaluate -------------------------------------------------------------------------------------

def ev_no_eval(model, loader, device):
    correct = total = 0
    with torch.no_grad():
        for x, y in _batches(loader, device):
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    return correct / total


def ev_no_no_grad(model, loader, device):
    model.eval()
    correct = total = 0
    for x, y in _batches(loader, device):
        correct += (model(x).argmax(1) == y).sum().item()
        total += len(y)
    return correct / total


def ev_percentage(model, loader, device):
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in _batches(loader, device):
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    return 100.0 * correct / total


def ev_returns_tensor(model, loader, device):
    model.eval()
    correct, total = torch.tensor(0), 0
    with torch.no_grad():
        for x, y in _batches(loader, device):
            correct = correct + (model(x).argmax(1) == y).sum()
            total += len(y)
    return correct / total


def ev_mean_of_batch_accuracies(model, loader, device):
    model.eval()
    accuracies = []
    with torch.no_grad():
        for x, y in _batches(loader, device):
            accuracies.append((model(x).argmax(1) == y).double().mean().item())
    return sum(accuracies) / len(accuracies)


def ev_inference_mode(model, loader, device):
    """Alternative: inference_mode, and the dataset's length as the total."""
    model.eval()
    correct = 0
    with torch.inference_mode():
        for x, y in loader:
            correct += int((model(x.to(device)).argmax(dim=1) == y.to(device)).sum())
    return float(correct) / len(loader.dataset)


WRONG = {
    "AffineFunction": [(AffineWrongOrder, "in the same order"),
                       (AffineDwNotTransposed, "the gradient for w has shape ("),
                       (AffineDbMean, "the gradient for b is wrong at index"),
                       (AffineSavesThreeUnpacksTwo, "too many values to unpack"),
                       (AffineFloat32, "float32 is the usual cause"),
                       (AffineNoBias, "the output of forward has relative error"),
                       (AffineByAutograd, "must subclass torch.autograd.Function")],
    "ReLUFunction": [(ReluPassesDout, "the gradient for x is wrong at index"),
                     (ReluMaskFromDout, "the gradient for x is wrong"),
                     (ReluInPlace, "x = x.clone()"),
                     (ReluThroughNumPy, "is float32"),
                     (ReluByAutograd, "must subclass torch.autograd.Function")],
    "Conv2dFunction": [(ConvNoNone, "forward takes 5 arguments after ctx"),
                       (ConvSavesCacheForBackward, "save_for_backward is for tensors only"),
                       (ConvNumPyGradients, "is a NumPy array"),
                       (ConvFloat32, "is float32"),
                       (ConvDxDwSwapped, "in the same order")],
    "TwoLayerNet": [(NetSigmoid, "the scores has relative error"),
                    (NetSoftmax, "no softmax"),
                    (NetNoFlatten, "TwoLayerNet raised RuntimeError"),
                    (NetRenamed, "it has no fc1.weight, fc1.bias, fc2.weight, fc2.bias"),
                    (NetNoActivation, "relative error")],
    "DigitsDataset": [(DatasetFloatLabels, "the label is a float"),
                      (DatasetFloat32LabelTensor, "dtype float32"),
                      (DatasetOffByOne, "len(dataset) is"),
                      (DatasetNoChannel, "expected (1, "),
                      (DatasetIgnoresTransform, "relative error"),
                      (DatasetFloat64Images, "is float64, expected float32")],
    "train_one_epoch": [(toe_no_zero_grad, "call optimizer.zero_grad() before every loss.backward()"),
                        (toe_no_train, "the model ran in evaluation mode"),
                        (toe_returns_tensor, ".item()"),
                        (toe_last_loss, "the returned mean loss"),
                        (toe_step_before_backward, "differs from one epoch of SGD"),
                        (toe_under_no_grad, "RuntimeError")],
    "evaluate": [(ev_no_eval, "what the model gives in training mode"),
                 (ev_no_no_grad, "gradients on"),
                 (ev_percentage, "not a percentage"),
                 (ev_returns_tensor, ".item()"),
                 (ev_mean_of_batch_accuracies, "the accuracy is")],
}

ALTERNATIVES = {
    "affine with the flat x and the shape on ctx": {"AffineFunction": AffineOtherCache},
    "relu with the mask read off the output": {"ReLUFunction": ReluSavesOutput},
    "conv through torch.as_tensor": {"Conv2dFunction": ConvAsTensor},
    "two-layer net with an nn.ReLU module": {"TwoLayerNet": NetWithModules},
    "dataset converted to tensors in __init__": {"DigitsDataset": DatasetTensorsUpFront},
    "epoch mean over examples, model.zero_grad()": {"train_one_epoch": toe_weighted_mean},
    "evaluate under inference_mode": {"evaluate": ev_inference_mode},
}

globals().update(chapter_proofs(CHAPTER, WRONG, ALTERNATIVES))


def test_a_wrong_gradient_names_the_input_the_index_and_both_values(solution):
    verdict = grade_in_process("AffineFunction", dict(solution, AffineFunction=AffineDbMean), CHAPTER, seed=0)
    first_line = verdict.message.splitlines()[0]
    assert first_line.startswith("AffineFunction: the gradient for b is wrong at index "), first_line
    assert "your backward gives" in first_line and "the numerical gradient is" in first_line
    assert "must be < 1e-07" in first_line
    assert verdict.message.endswith("Hint: " + find_item("AffineFunction", CHAPTER).hints["db"])


def test_grading_does_not_depend_on_torchs_random_stream(solution):
    verdicts = []
    for torch_seed in (0, 1):
        torch.manual_seed(torch_seed)
        verdicts.append({n: v.message for n, v in grade_all(solution, 5).items()})  # noqa: F821
    assert verdicts[0] == verdicts[1]

"""Hostile submissions to the torch chapters: each is contained (scores 0) or held for review.

Every submission below is what a learner could put in the cells of chapters 07-09: a wrong or
delegated answer plus code that forges what the kernel reports, does the work with autograd or a
patched library, or games a statistical check. Each is graded as the autograder grades it: the
submitted cells are read by grader.judge.review (in this process), and executed on top of the worked
solutions in a fresh Python process (hostile code patches torch and the recorder in the process it
runs in), where the hidden tests run through the same recorder and judge. A submission passes this
test only if its item scores 0 or is flagged for review, with the rule named.

Classes of weakness (issue "no verdict rests on what the learner's kernel says about itself"):
1. facts the kernel reports (a grad_fn name, grad mode, a recorded dtype, delegation counters);
2. computation done in the kernel with learner objects (hooks, autograd inside backward, patched optimizers);
3. statistics too weak to tell (noise that has the right mean and variance);
4. the grader's own resources (tests/test_untrusted_results.py).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader.judge.items import chapter_items
from grader.judge.review import assign, review_source

pytestmark = pytest.mark.grader
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Hostile:
    label: str
    weakness: int           # 1, 2 or 3 (see the module docstring)
    chapter: str
    item: str
    cells: str              # what the learner wrote, run after the worked solutions' answer cells
    expect: str = "either"  # "zero": its numbers fail; "review": flagged; "either"


HOSTILE = [
    # --- 1. facts reported by the kernel ------------------------------------------------------------
    Hostile("identity Function around torch.relu", 1, "07_pytorch", "ReLUFunction", """
        class _Identity(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.view_as(x)

            @staticmethod
            def backward(ctx, dout):
                return dout

        class ReLUFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return torch.relu(x)

            @staticmethod
            def backward(ctx, dout):
                return dout

            @staticmethod
            def apply(x):
                return _Identity.apply(torch.relu(x))
        """, expect="zero"),
    Hostile("a Tensor subclass that names any grad_fn", 1, "07_pytorch", "AffineFunction", """
        class Liar(torch.Tensor):
            @property
            def grad_fn(self):
                class AffineFunctionBackward:
                    pass
                return AffineFunctionBackward()

        class AffineFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w, b):
                return (x.reshape(len(x), -1) @ w + b).as_subclass(Liar)

            @staticmethod
            def backward(ctx, dout):
                return None, None, None

            @staticmethod
            def apply(x, w, b):
                return (x.reshape(len(x), -1) @ w + b).as_subclass(Liar)
        """),
    Hostile("evaluate without no_grad, grad mode reported off", 1, "07_pytorch", "evaluate", """
        torch.is_grad_enabled = lambda: False

        def evaluate(model, loader, device):
            model.eval()
            correct = total = 0
            for x, y in loader:
                correct += int((model(x.to(device)).argmax(dim=1) == y.to(device)).sum())
                total += len(y)
            return correct / total
        """),
    Hostile("evaluate without eval(), the probe told otherwise", 1, "07_pytorch", "evaluate", """
        import course_harness

        def evaluate(model, loader, device):
            model.log = []
            with torch.no_grad():
                correct = total = 0
                for x, y in loader:
                    correct += int((model(x).argmax(dim=1) == y).sum())
                    total += len(y)
            model.records = lambda: [[False, False]]
            return correct / total
        """),
    Hostile("float64 images reported as float32 by a rebound recorder", 1, "07_pytorch", "DigitsDataset", """
        import course_harness
        _encode = course_harness._encode_tensor

        def _forged(value, key, out, budget):
            record = _encode(value, key, out, budget)
            if isinstance(record, dict) and record.get("dtype") == "float64":
                record["dtype"] = "float32"
            return record

        course_harness._encode_tensor = _forged

        class DigitsDataset(torch.utils.data.Dataset):
            def __init__(self, images, labels, transform=None):
                self.images, self.labels, self.transform = images, labels, transform

            def __len__(self):
                return len(self.images)

            def __getitem__(self, i):
                x = torch.tensor(self.images[i], dtype=torch.float64).unsqueeze(0)
                if self.transform is not None:
                    x = self.transform(x)
                return x, int(self.labels[i])
        """, expect="review"),
    Hostile("attention through torch.ops.aten", 1, "09_rnn_attention", "scaled_dot_product_attention", """
        def scaled_dot_product_attention(q, k, v, mask=None):
            attn_mask = None if mask is None else mask.bool()
            out, weights = torch.ops.aten._scaled_dot_product_attention_math(q, k, v, attn_mask)
            return out, weights
        """, expect="review"),
    Hostile("attention with the counters switched off", 1, "09_rnn_attention", "scaled_dot_product_attention", """
        def scaled_dot_product_attention(q, k, v, mask=None):
            with torch._C.DisableTorchFunction():
                scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
                if mask is not None:
                    scores = scores.masked_fill(~mask.bool(), float("-inf"))
                weights = torch.softmax(scores, dim=-1)
                return F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.bool()), weights
        """, expect="review"),
    Hostile("multi-head attention by a computed name", 1, "09_rnn_attention", "MultiHeadAttention", """
        _name = "Multihead" + "Attention"

        class MultiHeadAttention(nn.Module):
            def __init__(self, embed_dim, num_heads):
                super().__init__()
                self.inner = getattr(nn, _name)(embed_dim, num_heads, batch_first=True)
                self.in_proj_weight, self.in_proj_bias = self.inner.in_proj_weight, self.inner.in_proj_bias
                self.out_proj = self.inner.out_proj

            def forward(self, query, key, value, mask=None):
                return self.inner(query, key, value, attn_mask=None if mask is None else ~mask.bool(),
                                  average_attn_weights=False)
        """, expect="review"),
    # --- 2. computation done in the kernel with the learner's objects ---------------------------------
    Hostile("backward returns zeros, a hook fixes the gradients", 2, "07_pytorch", "ReLUFunction", """
        class ReLUFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x.clamp(min=0)

            @staticmethod
            def backward(ctx, dout):
                return torch.zeros_like(dout)

            @staticmethod
            def apply(x):
                out = torch.relu(x)
                return out
        """, expect="zero"),
    Hostile("backward hands its work to torch.autograd.grad", 2, "07_pytorch", "AffineFunction", """
        class AffineFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w, b):
                ctx.save_for_backward(x, w, b)
                return x.reshape(len(x), -1) @ w + b

            @staticmethod
            def backward(ctx, dout):
                x, w, b = [t.detach().requires_grad_() for t in ctx.saved_tensors]
                with torch.enable_grad():
                    out = x.reshape(len(x), -1) @ w + b
                    return torch.autograd.grad(out, (x, w, b), dout)
        """, expect="review"),
    Hostile("conv backward through torch.nn.grad", 2, "07_pytorch", "Conv2dFunction", """
        class Conv2dFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w, b, stride, pad):
                ctx.save_for_backward(x, w)
                ctx.stride, ctx.pad = stride, pad
                return F.conv2d(x, w, b, stride=stride, padding=pad)

            @staticmethod
            def backward(ctx, dout):
                x, w = ctx.saved_tensors
                dx = torch.nn.grad.conv2d_input(x.shape, w, dout, stride=ctx.stride, padding=ctx.pad)
                dw = torch.nn.grad.conv2d_weight(x, w.shape, dout, stride=ctx.stride, padding=ctx.pad)
                return dx, dw, dout.sum(dim=(0, 2, 3)), None, None
        """, expect="review"),
    Hostile("no zero_grad, the optimizer patched to clear gradients", 2, "07_pytorch", "train_one_epoch", """
        _step = torch.optim.SGD.step

        def _step_and_clear(self, closure=None):
            result = _step(self, closure)
            self.zero_grad()
            return result

        torch.optim.SGD.step = _step_and_clear

        def train_one_epoch(model, loader, loss_fn, optimizer, device):
            model.train()
            losses = []
            for x, y in loader:
                loss = loss_fn(model(x.to(device)), y.to(device))
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            return sum(losses) / len(losses)
        """, expect="review"),
    Hostile("no zero_grad, an optimizer hook clears gradients", 2, "07_pytorch", "train_one_epoch", """
        def train_one_epoch(model, loader, loss_fn, optimizer, device):
            model.train()
            optimizer.register_step_post_hook(lambda opt, args, kwargs: opt.zero_grad())
            losses = []
            for x, y in loader:
                loss = loss_fn(model(x.to(device)), y.to(device))
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            return sum(losses) / len(losses)
        """, expect="review"),
    Hostile("a detached loss, the recorder's gradient step replaced", 2, "08_vae_gan", "kl_divergence", """
        import course_harness

        def kl_divergence(mu, logvar):
            value = 0.5 * (torch.exp(logvar) + mu ** 2 - 1 - logvar).sum(dim=1).mean()
            return value.detach()

        def _forged_grad(out, dout, inputs):
            mu, logvar = inputs
            n = mu.shape[0]
            return (float(dout) * mu / n, float(dout) * 0.5 * (torch.exp(logvar) - 1) / n)

        course_harness.BUILTINS["grad"] = _forged_grad
        """),
    Hostile("the harness found through sys.modules", 2, "08_vae_gan", "generator_loss", """
        import sys

        def generator_loss(logits_fake):
            return torch.log1p(torch.exp(-logits_fake)).mean()

        sys.modules["course_harness"].MAX_RETURNED_BYTES = 10
        """, expect="review"),
    Hostile("a detached KL passed off as carrying a graph", 2, "08_vae_gan", "kl_divergence", """
        torch.Tensor.requires_grad = property(lambda self: True)

        def kl_divergence(mu, logvar):
            kl = 0.5 * (torch.exp(logvar) + mu ** 2 - 1 - logvar).sum(dim=1).mean()
            return torch.tensor(kl.item(), dtype=torch.float64)
        """),
    # --- 3. statistics too weak to tell ---------------------------------------------------------------
    Hostile("+-1 noise (right mean and variance)", 3, "08_vae_gan", "reparameterize", """
        def reparameterize(mu, logvar):
            eps = torch.randint(0, 2, mu.shape, dtype=mu.dtype) * 2 - 1
            return mu + torch.exp(0.5 * logvar) * eps
        """, expect="zero"),
    Hostile("uniform noise of variance 1", 3, "08_vae_gan", "reparameterize", """
        def reparameterize(mu, logvar):
            eps = (torch.rand_like(mu) * 2 - 1) * 3 ** 0.5
            return mu + torch.exp(0.5 * logvar) * eps
        """, expect="zero"),
    Hostile("antithetic noise (eps, -eps) on consecutive rows", 3, "08_vae_gan", "reparameterize", """
        def reparameterize(mu, logvar):
            half = torch.randn((mu.shape[0] + 1) // 2, *mu.shape[1:], dtype=mu.dtype)
            eps = torch.stack([half, -half], dim=1).reshape(-1, *mu.shape[1:])[:mu.shape[0]]
            return mu + torch.exp(0.5 * logvar) * eps
        """, expect="zero"),
    Hostile("one noise column shared by every latent dimension", 3, "08_vae_gan", "reparameterize", """
        def reparameterize(mu, logvar):
            eps = torch.randn(mu.shape[0], 1, dtype=mu.dtype).expand_as(mu)
            return mu + torch.exp(0.5 * logvar) * eps
        """, expect="zero"),
    Hostile("a GAN step without detach whose generator gradients are cleared by order", 3, "08_vae_gan",
            "gan_training_step", """
        def gan_training_step(generator, discriminator, g_optimizer, d_optimizer, real, z):
            d_loss = discriminator_loss(discriminator(real), discriminator(generator(z)))
            d_optimizer.zero_grad()
            d_loss.backward()
            d_optimizer.step()
            g_optimizer.zero_grad()
            g_loss = generator_loss(discriminator(generator(z)))
            g_loss.backward()
            g_optimizer.step()
            return d_loss.item(), g_loss.item()
        """, expect="zero"),
    Hostile("a VAE step that replaces the optimizer's update", 2, "08_vae_gan", "vae_training_step", """
        def _frozen(self, closure=None):
            return None

        torch.optim.SGD.step = _frozen

        def vae_training_step(model, optimizer, x, eps, loss_fn=None):
            mu, logvar = model.encode(x)
            loss = vae_loss(model.decode(mu), x, mu, logvar)
            return loss.item()
        """, expect="review"),
    Hostile("ReLU backward with x >= 0 (an honest bug at the kink)", 3, "07_pytorch", "ReLUFunction", """
        class ReLUFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x.clamp(min=0)

            @staticmethod
            def backward(ctx, dout):
                (x,) = ctx.saved_tensors
                return dout * (x >= 0)
        """, expect="zero"),
]


CHILD = r"""
import json, sys, textwrap, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, "tests")
import torch
torch.set_num_threads(1)
from conftest import solution_notebook
from grader.judge.cases import Streams
from grader.judge.items import find_item, judge
from grader.workflow.earlier_chapters import solution_namespace
from grader.judge.protocol import run_in_process
from grader.judge.review import definition_sources
import nbformat

job = json.loads(sys.stdin.read())
namespace = solution_namespace(solution_notebook(job["chapter"]))
source = textwrap.dedent(job["cells"])
exec(compile(source, "<learner cell>", "exec"), namespace)
item = find_item(job["item"], job["chapter"])
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
results = []
for seed in (11,):
    cases = item.cases(Streams.from_seed(seed))
    verdict = judge(item, cases, run_in_process(item.name, cases, namespace),
                    definition_sources(nb).get(job["item"]))
    results.append({"passed": verdict.passed, "message": verdict.message})
print("VERDICTS " + json.dumps(results))
"""


def grade_hostile(case: Hostile):
    """(verdict on a fresh seed, flags) for a hostile submission: graded in a fresh process, read here."""
    job = json.dumps({"chapter": case.chapter, "item": case.item, "cells": case.cells})
    proc = subprocess.run([sys.executable, "-c", CHILD], input=job, capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("VERDICTS ")]
    assert lines, f"{case.label}: the grading process failed:\n{proc.stderr[-3000:]}"
    verdicts = json.loads(lines[-1][len("VERDICTS "):])
    flags = assign(review_source(case.chapter, textwrap.dedent(case.cells), "an answer cell"),
                   list(chapter_items(case.chapter)))
    return verdicts, flags.get(case.item, [])


@pytest.fixture(scope="module")
def outcomes():
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([h.label for h in HOSTILE], pool.map(grade_hostile, HOSTILE)))


def test_at_least_twenty_hostile_submissions_cover_every_class_of_weakness():
    assert len(HOSTILE) >= 20
    for weakness in (1, 2, 3):
        assert sum(h.weakness == weakness for h in HOSTILE) >= 2, weakness
    assert {h.chapter for h in HOSTILE} == {"07_pytorch", "08_vae_gan", "09_rnn_attention"}


@pytest.mark.parametrize("case", HOSTILE, ids=[h.label for h in HOSTILE])
def test_hostile_submission_scores_zero_or_is_held_for_review(outcomes, case):
    verdicts, flags = outcomes[case.label]
    contained = not any(v["passed"] for v in verdicts)
    assert contained or flags, f"{case.label}: full marks and no flag: {verdicts[0]['message']}"
    if case.expect == "zero":
        assert contained, f"{case.label}: its numbers pass: {verdicts[0]['message']}"
    if case.expect == "review":
        assert flags, f"{case.label}: not flagged"
    for flag in flags:
        assert flag.line >= 1 and flag.text and flag.reason

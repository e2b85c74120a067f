"""Trusted references for chapter 08 (autoencoders, VAE, GAN, cycle consistency).

Used only by hidden tests, in the grader's process, in float64 on the CPU. Every function
takes NumPy arrays (what the kernel recorded) and returns NumPy values, so that
``grader.judge.numerics`` can take centered differences of them; inside, the arithmetic is torch
in float64. The losses are written from their formulas, not with ``torch.nn.functional``'s
losses, so that a learner who calls those gets compared with an independent computation.

``reparameterize`` is random and has no reference value: its hidden tests check the
statistics of many draws and the gradients through one draw
(``grader/judge/items/ch08_vae_gan.py``); ``reparameterize_with_noise`` says what a given noise
must produce.
"""
from __future__ import annotations

import numpy as np
import torch


def _t(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def _softplus(t):
    """log(1 + exp(t)) without overflow: max(t, 0) + log1p(exp(-|t|))."""
    return torch.clamp(t, min=0) + torch.log1p(torch.exp(-torch.abs(t)))


def reparameterize_with_noise(mu, logvar, eps):
    """z = mu + exp(logvar / 2) * eps for a known standard-normal ``eps`` (same shape as mu)."""
    return (_t(mu) + torch.exp(0.5 * _t(logvar)) * _t(eps)).numpy()


def kl_divergence(mu, logvar):
    """KL(N(mu, diag(exp(logvar))) || N(0, I)), summed over the latent dims (axis 1), averaged over the batch.

    Per example: 0.5 * sum_j (exp(logvar_j) + mu_j**2 - 1 - logvar_j).
    """
    mu, logvar = _t(mu), _t(logvar)
    per_example = 0.5 * torch.sum(torch.exp(logvar) + mu ** 2 - 1.0 - logvar, dim=1)
    return float(per_example.mean())


def reconstruction_bce(x_recon, x):
    """Binary cross-entropy of the decoder's probabilities ``x_recon`` against pixels ``x`` in [0, 1],
    summed over the pixels (every axis after the first) and averaged over the batch."""
    p, x = _t(x_recon), _t(x)
    per_pixel = -(x * torch.log(p) + (1.0 - x) * torch.log1p(-p))
    return float(per_pixel.reshape(per_pixel.shape[0], -1).sum(dim=1).mean())


def vae_loss(x_recon, x, mu, logvar):
    """The negative ELBO per example: reconstruction_bce(x_recon, x) + kl_divergence(mu, logvar)."""
    return reconstruction_bce(x_recon, x) + kl_divergence(mu, logvar)


def mean_bce_with_logits(logits, target):
    """Mean over all entries of -[t log sigmoid(l) + (1 - t) log(1 - sigmoid(l))], computed stably:
    -log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) = softplus(l)."""
    logits = _t(logits)
    return float(torch.mean(target * _softplus(-logits) + (1.0 - target) * _softplus(logits)))


def discriminator_loss(logits_real, logits_fake):
    """Mean BCE-with-logits of the real logits against 1 plus that of the fake logits against 0."""
    return mean_bce_with_logits(logits_real, 1.0) + mean_bce_with_logits(logits_fake, 0.0)


def generator_loss(logits_fake):
    """The non-saturating generator loss: mean BCE-with-logits of the fake logits against 1,
    i.e. mean(-log D(G(z)))."""
    return mean_bce_with_logits(logits_fake, 1.0)


def saturating_generator_loss(logits_fake):
    """The minimax generator loss mean(log(1 - D(G(z)))) = -mean(softplus(logits)) (what the tests reject)."""
    return -float(torch.mean(_softplus(_t(logits_fake))))


def cycle_consistency_loss(x, x_cycled, y, y_cycled):
    """mean |x - F(G(x))| + mean |y - G(F(y))|, each mean over all of its entries."""
    return float(torch.mean(torch.abs(_t(x) - _t(x_cycled))) + torch.mean(torch.abs(_t(y) - _t(y_cycled))))


# --- training steps ------------------------------------------------------------------------------------
# Run on the very modules and optimizers the kernel was handed (course_harness builds both), in float64 with
# one thread, so that a correct step matches to round-off. ``mistake`` computes what a typical wrong step
# computes, so that a failing check can name the cause.

GAN_MISTAKES = ("generator first", "no detach", "no zero_grad", "saturating generator loss")
VAE_MISTAKES = ("no zero_grad", "no noise", "noise times the variance")


def _loss_tensor(logits, target):
    """Mean BCE-with-logits as a torch tensor (kept in the graph), from softplus."""
    return torch.mean(target * _softplus(-logits) + (1.0 - target) * _softplus(logits))


def _states(*modules):
    return [{k: v.detach().double().numpy().copy() for k, v in m.state_dict().items()} for m in modules]


def gan_training_steps(g_layers, g_state, d_layers, d_state, reals, zs, g_lr, d_lr, momentum, mistake=None):
    """``len(reals)`` GAN steps on trusted modules with SGD: per step, D on its loss with the fake detached, then
    G on the non-saturating loss against the updated D. Returns ([(d_loss, g_loss) per step], G state, D state)."""
    import course_harness
    from .ch07_pytorch import _one_thread

    with _one_thread():
        G = course_harness.build_sequential(g_layers, g_state)
        D = course_harness.build_sequential(d_layers, d_state)
        opt_g = torch.optim.SGD(G.parameters(), lr=g_lr, momentum=momentum)
        opt_d = torch.optim.SGD(D.parameters(), lr=d_lr, momentum=momentum)
        losses = []
        for real, z in zip(reals, zs):
            real, z = _t(real), _t(z)

            def d_step(fake):
                d_loss = _loss_tensor(D(real), 1.0) + _loss_tensor(D(fake), 0.0)
                if mistake != "no zero_grad":
                    opt_d.zero_grad()
                d_loss.backward()
                opt_d.step()
                return d_loss.item()

            def g_step():
                logits = D(G(z))
                g_loss = -torch.mean(_softplus(logits)) if mistake == "saturating generator loss" \
                    else _loss_tensor(logits, 1.0)
                if mistake not in ("no zero_grad", "no detach"):
                    opt_g.zero_grad()
                g_loss.backward()
                opt_g.step()
                return g_loss.item()

            if mistake == "generator first":
                g = g_step()
                d = d_step(G(z).detach())
            elif mistake == "no detach":          # both gradients reset at the top, D's loss reaches G
                opt_g.zero_grad()
                d = d_step(G(z))
                g = g_step()
            else:
                d = d_step(G(z).detach())
                g = g_step()
            losses.append((d, g))
        return (losses, *_states(G, D))


def vae_training_steps(encoder, decoder, state, xs, epss, lr, momentum, mistake=None):
    """``len(xs)`` VAE steps on a trusted VAE (``course_harness.build_vae``) with SGD: z = mu + exp(logvar / 2)
    * eps, loss = vae_loss (BCE summed over pixels + KL, both averaged over the batch). Returns
    ([loss per step], state)."""
    import course_harness
    from .ch07_pytorch import _one_thread

    with _one_thread():
        model = course_harness.build_vae(encoder, decoder, state)
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        losses = []
        for x, eps in zip(xs, epss):
            x, eps = _t(x), _t(eps)
            mu, logvar = model.encode(x)
            if mistake == "no noise":
                z = mu
            elif mistake == "noise times the variance":
                z = mu + torch.exp(logvar) * eps
            else:
                z = mu + torch.exp(0.5 * logvar) * eps
            p = model.decode(z)
            n = x.shape[0]
            recon = -(x * torch.log(p) + (1.0 - x) * torch.log1p(-p)).reshape(n, -1).sum(dim=1).mean()
            kl = 0.5 * torch.sum(torch.exp(logvar) + mu ** 2 - 1.0 - logvar, dim=1).mean()
            loss = recon + kl
            if mistake != "no zero_grad":
                opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses, _states(model)[0]

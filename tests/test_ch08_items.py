"""Chapter 08 (VAE, GAN, cycle consistency): the hidden tests, proven in-process.

- every graded item passes with the solution's functions, on several seeds;
- each typical wrong implementation loses exactly its own item, with a message that names
  the function and gives a hint;
- alternative correct implementations (torch.distributions' rsample, softplus forms, the KL
  written with std, reductions written out) get full marks;
- the references agree with torch.nn.functional's losses, and the statistical checks of
  reparameterize have the false-alarm probability their comment states.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from grader.judge.items import ch08_vae_gan as items
from grader.judge.references import ch08_vae_gan as R

from chapter_proofs import chapter_proofs

pytestmark = pytest.mark.ch08

CHAPTER = "08_vae_gan"


# --- wrong implementations, keyed by the item they must lose -----------------------------------------

def rep_logvar_as_std(mu, logvar):
    return mu + logvar * torch.randn_like(mu)


def rep_variance_as_std(mu, logvar):
    return mu + torch.exp(logvar) * torch.randn_like(mu)


def rep_no_reparameterization(mu, logvar):
    return torch.normal(mu.detach(), torch.exp(0.5 * logvar).detach())


def rep_sample_not_rsample(mu, logvar):
    return torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).sample()


def rep_mu_without_noise_gradient(mu, logvar):
    """Correct samples, but the noise term is detached: only mu gets a gradient."""
    return mu + (torch.exp(0.5 * logvar) * torch.randn_like(mu)).detach()


def rep_forgets_mu(mu, logvar):
    return torch.exp(0.5 * logvar) * torch.randn_like(mu)


def rep_reseeds(mu, logvar):
    torch.manual_seed(0)
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def rep_uniform_noise(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.rand_like(mu)


def rep_one_noise_per_column(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape[1], dtype=mu.dtype)


def _kl_terms(mu, logvar):
    return torch.exp(logvar) + mu ** 2 - 1.0 - logvar


def kl_sign_flipped(mu, logvar):
    return -0.5 * torch.sum(_kl_terms(mu, logvar), dim=1).mean()


def kl_averaged_over_latent_dims(mu, logvar):
    return 0.5 * torch.mean(_kl_terms(mu, logvar))


def kl_summed_over_batch(mu, logvar):
    return 0.5 * torch.sum(_kl_terms(mu, logvar))


def kl_std_for_variance(mu, logvar):
    return 0.5 * torch.sum(torch.exp(0.5 * logvar) + mu ** 2 - 1.0 - logvar, dim=1).mean()


def kl_without_half(mu, logvar):
    return torch.sum(_kl_terms(mu, logvar), dim=1).mean()


def kl_per_example(mu, logvar):
    return 0.5 * torch.sum(_kl_terms(mu, logvar), dim=1)


def kl_detached(mu, logvar):
    return torch.tensor(float(0.5 * torch.sum(_kl_terms(mu, logvar), dim=1).mean()), dtype=mu.dtype)


def _kl(mu, logvar):
    return 0.5 * torch.sum(_kl_terms(mu, logvar)) / mu.shape[0]


def vae_mean_over_pixels(x_recon, x, mu, logvar):
    return F.binary_cross_entropy(x_recon, x) + _kl(mu, logvar)


def vae_mse(x_recon, x, mu, logvar):
    return F.mse_loss(x_recon, x, reduction="sum") / x.shape[0] + _kl(mu, logvar)


def vae_no_kl(x_recon, x, mu, logvar):
    return F.binary_cross_entropy(x_recon, x, reduction="sum") / x.shape[0]


def vae_elbo_sign(x_recon, x, mu, logvar):
    return F.binary_cross_entropy(x_recon, x, reduction="sum") / x.shape[0] - _kl(mu, logvar)


def vae_summed_over_batch(x_recon, x, mu, logvar):
    return F.binary_cross_entropy(x_recon, x, reduction="sum") + 0.5 * torch.sum(_kl_terms(mu, logvar))


def vae_sum_over_dim1_only(x_recon, x, mu, logvar):
    per = -(x * torch.log(x_recon) + (1 - x) * torch.log(1 - x_recon))
    return per.sum(dim=1).mean() + _kl(mu, logvar)


def _bce(logits, target):
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def d_labels_swapped(logits_real, logits_fake):
    return _bce(logits_real, 0.0) + _bce(logits_fake, 1.0)


def d_naive_log_sigmoid(logits_real, logits_fake):
    return -torch.mean(torch.log(torch.sigmoid(logits_real))) - torch.mean(torch.log(1 - torch.sigmoid(logits_fake)))


def d_one_mean_over_both(logits_real, logits_fake):
    logits = torch.cat([logits_real.reshape(-1), logits_fake.reshape(-1)])
    target = torch.cat([torch.ones(logits_real.numel()), torch.zeros(logits_fake.numel())]).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, target)


def d_fake_term_missing(logits_real, logits_fake):
    return _bce(logits_real, 1.0)


def d_minimax_value(logits_real, logits_fake):
    """The value V(D, G) that D maximises, returned as if it were D's loss."""
    return -(_bce(logits_real, 1.0) + _bce(logits_fake, 0.0))


def d_targets_of_shape_n(logits_real, logits_fake):
    real = F.binary_cross_entropy_with_logits(logits_real, torch.ones(len(logits_real), dtype=logits_real.dtype))
    fake = F.binary_cross_entropy_with_logits(logits_fake, torch.zeros(len(logits_fake), dtype=logits_fake.dtype))
    return real + fake


def g_saturating(logits_fake):
    return torch.mean(torch.log(1 - torch.sigmoid(logits_fake)))


def g_saturating_stable(logits_fake):
    return -torch.mean(F.softplus(logits_fake))


def g_labels_zero(logits_fake):
    return _bce(logits_fake, 0.0)


def g_summed(logits_fake):
    return F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake), reduction="sum")


def g_sigmoid_then_bce_with_logits(logits_fake):
    """The logits squashed twice: BCE-with-logits already applies the sigmoid."""
    probabilities = torch.sigmoid(logits_fake)
    return F.binary_cross_entropy_with_logits(probabilities, torch.ones_like(probabilities))


def cycle_one_direction(x, x_cycled, y, y_cycled):
    return torch.mean(torch.abs(x - x_cycled))


def cycle_squared(x, x_cycled, y, y_cycled):
    return torch.mean((x - x_cycled) ** 2) + torch.mean((y - y_cycled) ** 2)


def cycle_sums(x, x_cycled, y, y_cycled):
    return torch.sum(torch.abs(x - x_cycled)) + torch.sum(torch.abs(y - y_cycled))


def cycle_one_mean_over_both(x, x_cycled, y, y_cycled):
    return torch.mean(torch.cat([torch.abs(x - x_cycled).reshape(-1), torch.abs(y - y_cycled).reshape(-1)]))


def cycle_mixed_pairs(x, x_cycled, y, y_cycled):
    """|x - y_cycled|: the wrong partners (it only runs where the shapes agree)."""
    if x.shape != y_cycled.shape:
        return torch.mean(torch.abs(x - x_cycled)) + torch.mean(torch.abs(y - y_cycled))
    return torch.mean(torch.abs(x - y_cycled)) + torch.mean(torch.abs(y - x_cycled))


# The training steps below score with these losses (right ones: a wrong step must lose its own item only).

def _d_loss(logits_real, logits_fake):
    return _bce(logits_real, 1.0) + _bce(logits_fake, 0.0)


def _g_loss(logits_fake):
    return _bce(logits_fake, 1.0)


def _vae_loss(x_recon, x, mu, logvar):
    return F.binary_cross_entropy(x_recon, x, reduction="sum") / x.shape[0] + _kl(mu, logvar)


def gan_no_detach(generator, discriminator, g_optimizer, d_optimizer, real, z):
    """Both gradients reset at the top, the fake not detached: D's loss reaches G's update."""
    d_optimizer.zero_grad()
    g_optimizer.zero_grad()
    fake = generator(z)
    d_loss = _d_loss(discriminator(real), discriminator(fake))
    d_loss.backward()
    d_optimizer.step()
    g_loss = _g_loss(discriminator(generator(z)))
    g_loss.backward()
    g_optimizer.step()
    return d_loss.item(), g_loss.item()


def gan_no_detach_one_fake(generator, discriminator, g_optimizer, d_optimizer, real, z):
    """No detach and one generated batch for both losses: the second backward finds the graph freed."""
    fake = generator(z)
    d_loss = _d_loss(discriminator(real), discriminator(fake))
    d_optimizer.zero_grad()
    d_loss.backward()
    d_optimizer.step()
    g_loss = _g_loss(discriminator(fake))
    g_optimizer.zero_grad()
    g_loss.backward()
    g_optimizer.step()
    return d_loss.item(), g_loss.item()


def gan_no_detach_cleared_by_order(generator, discriminator, g_optimizer, d_optimizer, real, z):
    """No detach, but G's gradients are reset after D's update: right numbers, wasted work (read from the code)."""
    d_loss = _d_loss(discriminator(real), discriminator(generator(z)))
    d_optimizer.zero_grad()
    d_loss.backward()
    d_optimizer.step()
    g_optimizer.zero_grad()
    g_loss = _g_loss(discriminator(generator(z)))
    g_loss.backward()
    g_optimizer.step()
    return d_loss.item(), g_loss.item()


def gan_generator_first(generator, discriminator, g_optimizer, d_optimizer, real, z):
    g_loss = _g_loss(discriminator(generator(z)))
    g_optimizer.zero_grad()
    g_loss.backward()
    g_optimizer.step()
    d_loss = _d_loss(discriminator(real), discriminator(generator(z).detach()))
    d_optimizer.zero_grad()
    d_loss.backward()
    d_optimizer.step()
    return d_loss.item(), g_loss.item()


def gan_no_zero_grad(generator, discriminator, g_optimizer, d_optimizer, real, z):
    fake = generator(z)
    d_loss = _d_loss(discriminator(real), discriminator(fake.detach()))
    d_loss.backward()
    d_optimizer.step()
    g_loss = _g_loss(discriminator(fake))
    g_loss.backward()
    g_optimizer.step()
    return d_loss.item(), g_loss.item()


def gan_saturating(generator, discriminator, g_optimizer, d_optimizer, real, z):
    fake = generator(z)
    d_loss = _d_loss(discriminator(real), discriminator(fake.detach()))
    d_optimizer.zero_grad()
    d_loss.backward()
    d_optimizer.step()
    g_loss = -F.softplus(discriminator(fake)).mean()          # minimax: mean log(1 - D(G(z)))
    g_optimizer.zero_grad()
    g_loss.backward()
    g_optimizer.step()
    return d_loss.item(), g_loss.item()


def gan_wrong_optimizer(generator, discriminator, g_optimizer, d_optimizer, real, z):
    """The discriminator's update steps the generator's optimizer."""
    fake = generator(z)
    d_loss = _d_loss(discriminator(real), discriminator(fake.detach()))
    d_optimizer.zero_grad()
    d_loss.backward()
    g_optimizer.step()
    g_loss = _g_loss(discriminator(fake))
    g_optimizer.zero_grad()
    g_loss.backward()
    g_optimizer.step()
    return d_loss.item(), g_loss.item()


def gan_returns_tensors(generator, discriminator, g_optimizer, d_optimizer, real, z):
    fake = generator(z)
    d_loss = _d_loss(discriminator(real), discriminator(fake.detach()))
    d_optimizer.zero_grad()
    d_loss.backward()
    d_optimizer.step()
    g_loss = _g_loss(discriminator(fake))
    g_optimizer.zero_grad()
    g_loss.backward()
    g_optimizer.step()
    return d_loss, g_loss


def _vae_step(model, optimizer, x, eps, std_of=lambda logvar: torch.exp(0.5 * logvar), zero_grad=True, loss=None):
    mu, logvar = model.encode(x)
    value = (loss or _vae_loss)(model.decode(mu + std_of(logvar) * eps), x, mu, logvar)
    if zero_grad:
        optimizer.zero_grad()
    value.backward()
    optimizer.step()
    return value.item()


def vae_step_no_zero_grad(model, optimizer, x, eps, loss_fn=None):
    return _vae_step(model, optimizer, x, eps, zero_grad=False)


def vae_step_decodes_mu(model, optimizer, x, eps, loss_fn=None):
    return _vae_step(model, optimizer, x, eps, std_of=lambda logvar: 0.0 * logvar)


def vae_step_variance_as_std(model, optimizer, x, eps, loss_fn=None):
    return _vae_step(model, optimizer, x, eps, std_of=torch.exp)


def vae_step_mean_over_pixels(model, optimizer, x, eps, loss_fn=None):
    return _vae_step(model, optimizer, x, eps, loss=vae_mean_over_pixels)


def vae_step_loss_after_update(model, optimizer, x, eps, loss_fn=None):
    _vae_step(model, optimizer, x, eps)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        return _vae_loss(model.decode(mu + torch.exp(0.5 * logvar) * eps), x, mu, logvar).item()


def vae_step_no_step(model, optimizer, x, eps, loss_fn=None):
    mu, logvar = model.encode(x)
    value = _vae_loss(model.decode(mu + torch.exp(0.5 * logvar) * eps), x, mu, logvar)
    optimizer.zero_grad()
    value.backward()
    return value.item()


WRONG = {
    "gan_training_step": [(gan_no_detach, "cut off from the generator"), (gan_no_detach_one_fake, "raised"),
                          (gan_no_detach_cleared_by_order, "detach"), (gan_generator_first, "updated first"),
                          (gan_no_zero_grad, "reset an optimizer"), (gan_saturating, "non-saturating"),
                          gan_wrong_optimizer, (gan_returns_tensors, "Python number")],
    "vae_training_step": [(vae_step_no_zero_grad, "reset the optimizer"), (vae_step_decodes_mu, "not mu"),
                          (vae_step_variance_as_std, "exp of half"), vae_step_mean_over_pixels,
                          (vae_step_loss_after_update, "before the update"), vae_step_no_step],
    "reparameterize": [(rep_logvar_as_std, "variance"), (rep_variance_as_std, "variance"),
                       (rep_no_reparameterization, "gradient"), (rep_sample_not_rsample, "gradient"),
                       (rep_mu_without_noise_gradient, "logvar"), (rep_forgets_mu, "variance"), rep_reseeds,
                       (rep_uniform_noise, "mean"), (rep_one_noise_per_column, "variance")],
    "kl_divergence": [kl_sign_flipped, kl_averaged_over_latent_dims, kl_summed_over_batch, kl_std_for_variance,
                      kl_without_half, (kl_per_example, "shape"), (kl_detached, "no gradient")],
    "vae_loss": [vae_mean_over_pixels, vae_mse, vae_no_kl, vae_elbo_sign, vae_summed_over_batch,
                 vae_sum_over_dim1_only],
    "discriminator_loss": [d_labels_swapped, (d_naive_log_sigmoid, "NaN or infinity"), d_one_mean_over_both,
                           d_fake_term_missing, d_minimax_value, (d_targets_of_shape_n, "raised")],
    "generator_loss": [g_saturating, g_saturating_stable, g_labels_zero, g_summed, g_sigmoid_then_bce_with_logits],
    "cycle_consistency_loss": [cycle_one_direction, cycle_squared, cycle_sums, cycle_one_mean_over_both,
                               cycle_mixed_pairs],
}


# --- alternative correct implementations -----------------------------------------------------------------

def rep_rsample(mu, logvar):
    return torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).rsample()


def rep_sqrt_of_variance(mu, logvar):
    eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device)
    return eps * torch.sqrt(logvar.exp()) + mu


def kl_with_std(mu, logvar):
    std = torch.exp(0.5 * logvar)
    return torch.mean(torch.sum(0.5 * (std ** 2 + mu ** 2) - 0.5 - torch.log(std), dim=-1))


def kl_distributions(mu, logvar):
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return torch.distributions.kl_divergence(q, p).sum(dim=1).mean()


def vae_written_out(x_recon, x, mu, logvar):
    n = x.shape[0]
    recon = -(x * torch.log(x_recon) + (1 - x) * torch.log1p(-x_recon)).reshape(n, -1).sum(dim=1)
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
    return (recon + kl).mean()


def d_softplus(logits_real, logits_fake):
    return F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean()


def d_logsigmoid(logits_real, logits_fake):
    return -F.logsigmoid(logits_real).mean() - F.logsigmoid(-logits_fake).mean()


def g_softplus(logits_fake):
    return F.softplus(-logits_fake).mean()


def g_bce_module(logits_fake):
    return torch.nn.BCEWithLogitsLoss()(logits_fake, torch.ones_like(logits_fake))


def cycle_l1_loss(x, x_cycled, y, y_cycled):
    return F.l1_loss(x_cycled, x) + F.l1_loss(y_cycled, y)


def gan_fake_under_no_grad(generator, discriminator, g_optimizer, d_optimizer, real, z):
    """The fake for D's update made without a graph, then made again for G's update."""
    with torch.no_grad():
        fake = generator(z)
    d_optimizer.zero_grad()
    d_loss = _d_loss(discriminator(real), discriminator(fake))
    d_loss.backward()
    d_optimizer.step()
    g_optimizer.zero_grad()
    g_loss = _g_loss(discriminator(generator(z)))
    g_loss.backward()
    g_optimizer.step()
    return d_loss.item(), g_loss.item()


def gan_one_discriminator_pass(generator, discriminator, g_optimizer, d_optimizer, real, z):
    """Real and fake through D in one batch, the logits split afterwards."""
    fake = generator(z)
    logits = discriminator(torch.cat([real, fake.detach()]))
    d_loss = _d_loss(logits[:len(real)], logits[len(real):])
    d_optimizer.zero_grad(set_to_none=False)
    d_loss.backward()
    d_optimizer.step()
    g_loss = _g_loss(discriminator(fake))
    g_optimizer.zero_grad(set_to_none=False)
    g_loss.backward()
    g_optimizer.step()
    return d_loss.item(), g_loss.item()


def vae_step_addcmul(model, optimizer, x, eps, loss_fn=None):
    optimizer.zero_grad()
    mu, logvar = model.encode(x)
    z = torch.addcmul(mu, logvar.mul(0.5).exp(), eps)
    value = (loss_fn or _vae_loss)(model.decode(z), x, mu, logvar)
    value.backward()
    optimizer.step()
    return float(value.detach())


ALTERNATIVES = {
    "the fake made under no_grad, made again for G": {"gan_training_step": gan_fake_under_no_grad},
    "one discriminator pass over real and fake": {"gan_training_step": gan_one_discriminator_pass},
    "addcmul, zero_grad first": {"vae_training_step": vae_step_addcmul},
    "rsample": {"reparameterize": rep_rsample},
    "sqrt of the variance": {"reparameterize": rep_sqrt_of_variance},
    "KL with std": {"kl_divergence": kl_with_std},
    "torch.distributions KL": {"kl_divergence": kl_distributions},
    "written-out vae_loss": {"vae_loss": vae_written_out},
    "softplus forms": {"discriminator_loss": d_softplus, "generator_loss": g_softplus},
    "logsigmoid, BCEWithLogitsLoss": {"discriminator_loss": d_logsigmoid, "generator_loss": g_bce_module},
    "F.l1_loss": {"cycle_consistency_loss": cycle_l1_loss},
}

globals().update(chapter_proofs(CHAPTER, WRONG, ALTERNATIVES))   # the standard proofs: tests/chapter_proofs.py


# --- tests ---------------------------------------------------------------------------------------------------

def test_references_agree_with_torch_functional():
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(5, 7))
    p = 1 / (1 + np.exp(-rng.normal(size=(5, 7))))
    mu, logvar = rng.normal(size=(5, 3)), rng.uniform(-2, 1, size=(5, 3))
    t = torch.as_tensor
    assert math.isclose(R.reconstruction_bce(p, x), float(F.binary_cross_entropy(t(p), t(x), reduction="sum")) / 5,
                        rel_tol=1e-12)
    q = torch.distributions.Normal(t(mu), t(np.exp(0.5 * logvar)))
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(dim=1).mean()
    assert math.isclose(R.kl_divergence(mu, logvar), float(kl), rel_tol=1e-12)
    real, fake = rng.normal(0, 3, size=(6, 1)), rng.normal(0, 3, size=(4, 1))
    expected = float(F.binary_cross_entropy_with_logits(t(real), torch.ones(6, 1, dtype=torch.float64))
                     + F.binary_cross_entropy_with_logits(t(fake), torch.zeros(4, 1, dtype=torch.float64)))
    assert math.isclose(R.discriminator_loss(real, fake), expected, rel_tol=1e-12)
    assert math.isclose(R.generator_loss(fake), float(F.binary_cross_entropy_with_logits(
        t(fake), torch.ones(4, 1, dtype=torch.float64))), rel_tol=1e-12)
    assert math.isclose(R.generator_loss(np.array([45.0, -45.0])), (np.log1p(np.exp(-45.0)) + 45.0) / 2, rel_tol=1e-12)


def test_reparameterize_false_alarm_bounds_hold_as_stated():
    n = items.N_DRAWS
    t = items.mean_tolerance(n)
    assert 2 * math.exp(-n * t ** 2 / 2) <= items.FALSE_ALARM * (1 + 1e-9)
    low, high = items.variance_bounds(n)
    assert 0.85 < low < 1 < high < 1.15
    assert 2 * math.exp(-2 * n * items.cdf_tolerance(n) ** 2) <= items.FALSE_ALARM * (1 + 1e-9)
    m = n // 2
    assert 2 * math.exp(-2 * m * items.sign_tolerance(m) ** 2) <= items.FALSE_ALARM * (1 + 1e-9)
    tests_per_run = (6 * 5 + 5) * 2                 # mean, 2 variance tails, DKW, row signs per column; column pairs
    assert tests_per_run * items.FALSE_ALARM < 1e-10
    # the DKW band rejects the classic wrong noises outright
    grid = np.linspace(-4, 4, 20001)
    phi = 0.5 * (1 + np.vectorize(math.erf)(grid / math.sqrt(2)))
    uniform = np.clip((grid + math.sqrt(3)) / (2 * math.sqrt(3)), 0, 1)
    assert np.max(np.abs(uniform - phi)) > 1.3 * items.cdf_tolerance(n)
    assert 0.5 * (1 + math.erf(-1 / math.sqrt(2))) > 3 * items.cdf_tolerance(n)      # +-1 noise: F jumps at -1
    # the two classic mistakes change the variance of (z - mu) / std by a factor of at least 1.8 in every band,
    # far outside the variance bounds
    for lo, hi in items.LOGVAR_BANDS:
        for logvar in np.linspace(lo, hi, 50):
            std = math.exp(logvar / 2)
            for wrong_std in (abs(logvar), math.exp(logvar)):
                ratio = (wrong_std / std) ** 2
                assert ratio > 1.8 or ratio < 1 / 1.8, (logvar, wrong_std)


def test_solution_reparameterize_stays_inside_the_bounds_on_many_draws(solution):
    """A correct reparameterize never comes close to the bounds: 50 batches of N_DRAWS draws."""
    n = items.N_DRAWS
    t, (low, high) = items.mean_tolerance(n), items.variance_bounds(n)
    mu = torch.zeros(n, 50, dtype=torch.float64)
    logvar = torch.full((n, 50), 1.3, dtype=torch.float64)
    eps = (solution["reparameterize"](mu, logvar) - mu) / torch.exp(0.5 * logvar)
    assert eps.mean(dim=0).abs().max().item() < t / 1.5
    var = eps.var(dim=0)
    assert low + (1 - low) / 3 < var.min().item() and var.max().item() < high - (high - 1) / 3

"""Models, data, training loops and plots of chapter 08 (autoencoders, VAE, GAN, cycle consistency).

The loops take *your* functions as arguments (``vae_training_step``, ``gan_training_step``,
``discriminator_loss``, ``generator_loss``, ``cycle_consistency_loss``) and only run them: batches,
noise, optimizers, snapshots and timing are here; the steps that update the networks are yours. Everything trains on the device that
``dlcourse.devices.pick_device`` chose and shrinks under the autograder (``runtime.budget``).
"""
from __future__ import annotations

import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import runtime
from .data import load_digits_split
from .devices import synchronize
from .torch_training import progress

# --- data ----------------------------------------------------------------------------------------------

def digits(device, test_fraction=0.25):
    """scikit-learn's 8x8 digits as float32 tensors on ``device``: X_train (N, 64) in [0, 1], y_train, X_test, y_test."""
    X_train, y_train, X_test, y_test = load_digits_split(test_fraction=test_fraction, rng=0)
    to = lambda a, dtype=torch.float32: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    return to(X_train), to(y_train, torch.int64), to(X_test), to(y_test, torch.int64)


def moon_images(phases, size=16, rng=0, jitter=True):
    """Pictures of the moon, ``size`` x ``size`` pixels in [0, 1], one per phase in ``phases``.

    phase 0 is a half moon (the right half of the disc lit), phase 1 a full moon; in between the
    terminator is a half-ellipse and the moon is gibbous. With ``jitter`` every picture gets its own
    small shift and radius, like photos taken on different nights. Returns an array (len(phases), size * size).
    """
    rng = np.random.default_rng(rng)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    images = []
    for phase in np.atleast_1d(phases):
        cx, cy = size / 2 + (rng.uniform(-1.5, 1.5, size=2) if jitter else np.zeros(2))
        r = size * (rng.uniform(0.3, 0.36) if jitter else 0.33)
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2
        lit_left = ((xx - cx) / max(phase * r, 1e-9)) ** 2 + ((yy - cy) / r) ** 2 <= 1.0
        images.append((inside & ((xx >= cx) | lit_left)).astype(np.float64).reshape(-1))
    return np.array(images)


def closest_on_path(path, target):
    """The smallest mean |image - target| per pixel over the pictures of ``path`` (K, D), and its index: how near a
    decoded path ever gets to ``target``."""
    path, target = (np.asarray(_as_numpy(a), dtype=np.float64) for a in (path, target))
    d = np.abs(path - target.reshape(1, -1)).mean(axis=1)
    return float(d.min()), int(d.argmin())


def pixel_distance(a, b):
    """Mean |a - b| per pixel."""
    return float(np.mean(np.abs(np.asarray(_as_numpy(a), dtype=np.float64) - np.asarray(_as_numpy(b), dtype=np.float64))))


def eight_gaussians(n, radius=2.0, std=0.05, rng=0):
    """n points from a mixture of eight Gaussians (std ``std``) evenly spaced on a circle. Returns (n, 2)."""
    rng = np.random.default_rng(rng)
    angles = 2 * np.pi * rng.integers(0, 8, size=n) / 8
    centres = radius * np.column_stack([np.cos(angles), np.sin(angles)])
    return centres + rng.normal(0.0, std, size=(n, 2))


def eight_centres(radius=2.0):
    angles = 2 * np.pi * np.arange(8) / 8
    return radius * np.column_stack([np.cos(angles), np.sin(angles)])


def modes_covered(samples, radius=2.0, std=0.05, min_share=0.02):
    """How many of the eight modes get at least ``min_share`` of the samples within 4 std of their centre,
    and the share of samples that land near no mode at all."""
    d = np.linalg.norm(np.asarray(samples)[:, None, :] - eight_centres(radius)[None], axis=2)
    near = d.min(axis=1) < 4 * std
    nearest = d.argmin(axis=1)
    shares = np.array([np.mean(near & (nearest == k)) for k in range(8)])
    return int(np.sum(shares >= min_share)), float(1 - near.mean())


# --- models ----------------------------------------------------------------------------------------------

def mlp(sizes, activation=nn.ReLU, out_activation=None):
    """Linear layers of the given sizes with ``activation`` between them (and ``out_activation`` at the end)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    if out_activation is not None:
        layers.append(out_activation())
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """x (N, D) -> code (N, code_dim) -> reconstruction (N, D) in [0, 1] (sigmoid output)."""

    def __init__(self, input_dim=64, code_dim=8, hidden=128):
        super().__init__()
        self.encoder = mlp([input_dim, hidden, code_dim])
        self.decoder = mlp([code_dim, hidden, input_dim], out_activation=nn.Sigmoid)

    def forward(self, x):
        return self.decoder(self.encoder(x))


class VAE(nn.Module):
    """Encoder x -> (mu, logvar) of q(z | x); decoder z -> pixel probabilities of p(x | z).

    ``forward(x, reparameterize)`` samples z with the function you pass in and returns
    (x_recon, mu, logvar).
    """

    def __init__(self, input_dim=64, latent_dim=2, hidden=256):
        super().__init__()
        self.latent_dim = latent_dim
        self.body = mlp([input_dim, hidden, hidden])
        self.body.append(nn.ReLU())
        self.to_mu = nn.Linear(hidden, latent_dim)
        self.to_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = mlp([latent_dim, hidden, hidden, input_dim], out_activation=nn.Sigmoid)

    def encode(self, x):
        h = self.body(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x, reparameterize):
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar


class Generator(nn.Module):
    """Noise (N, noise_dim) -> samples (N, out_dim); sigmoid output for images, none for points."""

    def __init__(self, noise_dim=2, out_dim=2, hidden=128, image=False):
        super().__init__()
        self.noise_dim = noise_dim
        self.net = mlp([noise_dim, hidden, hidden, out_dim], out_activation=nn.Sigmoid if image else None)

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    """Samples (N, in_dim) -> one logit each, shape (N, 1): large means "real"."""

    def __init__(self, in_dim=2, hidden=128):
        super().__init__()
        self.net = mlp([in_dim, hidden, hidden, 1], activation=lambda: nn.LeakyReLU(0.2))

    def forward(self, x):
        return self.net(x)


# --- training loops -------------------------------------------------------------------------------------------

def _batches(n, batch_size, generator, device):
    order = torch.randperm(n, generator=generator).to(device)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def train_autoencoder(model, X, epochs=60, batch_size=64, lr=2e-3, seed=0, desc="autoencoder"):
    """Minimise the mean binary cross-entropy between x and its reconstruction (Adam). Returns the epoch losses
    and the wall-clock seconds."""
    device = X.device
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses, start = [], time.perf_counter()
    for _ in progress(range(epochs), desc=desc):
        total = 0.0
        for idx in _batches(len(X), batch_size, g, device):
            loss = F.binary_cross_entropy(model(X[idx]), X[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(X))
    synchronize(device)
    return {"loss": losses, "seconds": time.perf_counter() - start}


def train_vae(model, X, training_step, epochs=80, batch_size=64, lr=1e-3, seed=0, desc="VAE", loss_fn=None):
    """Minibatch epochs of ``training_step(model, optimizer, x, eps, loss_fn)`` (your ``vae_training_step``) with
    Adam; eps is fresh standard-normal noise for every batch. Returns {"loss": per epoch, "seconds"}."""
    device = X.device
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses, start = [], time.perf_counter()
    for _ in progress(range(epochs), desc=desc):
        total = 0.0
        for idx in _batches(len(X), batch_size, g, device):
            eps = torch.randn(len(idx), model.latent_dim, generator=g).to(device)
            total += training_step(model, opt, X[idx], eps, loss_fn) * len(idx)
        losses.append(total / len(X))
    synchronize(device)
    return {"loss": losses, "seconds": time.perf_counter() - start}


def pretrain_discriminator(D, sample_real, d_loss_fn, steps=500, batch_size=256, extent=3.0, lr=1e-3, seed=0):
    """Teach D (on 2-D points) to tell real points from points spread uniformly over [-extent, extent]^2, with
    your ``d_loss_fn``: afterwards D's logit is highest where the real data is densest."""
    device = next(D.parameters()).device
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    for _ in range(steps):
        background = (torch.rand(batch_size, 2, generator=g) * 2 - 1).to(device) * extent
        loss = d_loss_fn(D(sample_real(batch_size)), D(background))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return D


def train_gan(G, D, sample_real, training_step, steps=3000, batch_size=256, lr=1e-3, betas=(0.5, 0.999),
              snapshots=10, n_show=1000, seed=0, desc="GAN", d_lr=None):
    """``steps`` calls of ``training_step(G, D, opt_g, opt_d, real, z)`` (your ``gan_training_step``) with Adam,
    on real batches from ``sample_real(n) -> (n, dim) tensor`` and fresh noise z.

    Returns {"steps": [...], "samples": [(n_show, dim) arrays of G on one fixed noise batch], "d_loss",
    "g_loss" (every step), "seconds"}, with ``snapshots`` + 1 snapshots evenly spaced from step 0. ``d_lr``: the
    discriminator's own learning rate (``lr`` when None; 0 freezes it).
    """
    device = next(G.parameters()).device
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    fixed = torch.randn(n_show, G.noise_dim, generator=g).to(device)
    opt_d = torch.optim.Adam(D.parameters(), lr=lr if d_lr is None else d_lr, betas=betas)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
    marks = set(np.linspace(0, steps, snapshots + 1).round().astype(int).tolist())
    out = {"steps": [], "samples": [], "d_loss": [], "g_loss": []}

    def snapshot(step):
        with torch.no_grad():
            out["steps"].append(step)
            out["samples"].append(G(fixed).cpu().numpy())

    start = time.perf_counter()
    snapshot(0)
    for step in progress(range(1, steps + 1), desc=desc):
        z = torch.randn(batch_size, G.noise_dim, generator=g).to(device)
        d_loss, g_loss = training_step(G, D, opt_g, opt_d, sample_real(batch_size), z)
        out["d_loss"].append(d_loss)
        out["g_loss"].append(g_loss)
        if step in marks:
            snapshot(step)
    synchronize(device)
    out["seconds"] = time.perf_counter() - start
    return out


def train_cycle(G, F_, D_x, D_y, X, Y, d_loss_fn, g_loss_fn, cycle_loss_fn, lam=10.0, steps=2000, batch_size=128,
                lr=1e-3, seed=0, desc="CycleGAN"):
    """A two-dimensional CycleGAN: G maps domain X to Y, F_ maps Y to X, D_x and D_y tell real from translated.

    X, Y: (n, 2) tensors of *unpaired* samples. Each step updates both discriminators with your
    ``d_loss_fn``, then G and F_ together with your ``g_loss_fn`` on both translations plus ``lam`` times your
    ``cycle_loss_fn(x, F_(G(x)), y, G(F_(y)))``. Returns the per-step cycle losses and the seconds.
    """
    device = X.device
    torch.manual_seed(seed)
    opt_d = torch.optim.Adam(list(D_x.parameters()) + list(D_y.parameters()), lr=lr, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(list(G.parameters()) + list(F_.parameters()), lr=lr, betas=(0.5, 0.999))
    cycle, start = [], time.perf_counter()
    for _ in progress(range(steps), desc=desc):
        x = X[torch.randint(len(X), (batch_size,), device=device)]
        y = Y[torch.randint(len(Y), (batch_size,), device=device)]
        fake_y, fake_x = G(x), F_(y)
        d_loss = d_loss_fn(D_y(y), D_y(fake_y.detach())) + d_loss_fn(D_x(x), D_x(fake_x.detach()))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        c = cycle_loss_fn(x, F_(fake_y), y, G(fake_x))
        g_loss = g_loss_fn(D_y(fake_y)) + g_loss_fn(D_x(fake_x)) + lam * c
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        cycle.append(c.item())
    synchronize(device)
    return {"cycle": cycle, "seconds": time.perf_counter() - start}


# --- plots: autoencoders and VAEs -------------------------------------------------------------------------------

def _as_numpy(images):
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    return np.asarray(images)


def image_rows(rows, side=8, row_labels=None, title=None, col_labels=None, cell=0.75):
    """A grid of small images: ``rows`` is a list of (K, side * side) arrays or tensors, one row each."""
    rows = [_as_numpy(r).reshape(len(r), side, side) for r in rows]
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(cell * ncols + (1.2 if row_labels else 0.2),
                                                        cell * len(rows) + (0.5 if title else 0.1)), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(ncols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(row):
                ax.imshow(row[j], cmap="gray_r", vmin=0, vmax=1)
            if i == 0 and col_labels is not None and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=7)
        if row_labels:
            axes[i, 0].set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.3)
    return fig


def bottleneck_explorer(results, X_show, side=8):
    """A slider over the code widths in ``results`` ({width: trained Autoencoder}); shows the reconstructions
    of ``X_show`` (K, D) under the originals, and the mean per-pixel error on them."""
    widths = sorted(results)

    def show(code_width=widths[len(widths) // 2]):
        model = results[code_width]
        with torch.no_grad():
            recon = model(X_show)
        err = torch.mean(torch.abs(recon - X_show)).item()
        image_rows([X_show, recon], side=side, row_labels=["input", f"code {code_width}"],
                   title=f"Autoencoder with a {code_width}-number code: mean |x - x_recon| = {err:.3f} per pixel")
        plt.show()

    return runtime.interact(show, code_width=widgets.SelectionSlider(options=widths, value=widths[len(widths) // 2],
                                                                     description="code width",
                                                                     continuous_update=False))


def plot_latent_scatter(codes, labels, ax=None, title="Latent codes of the test digits", xlabel="$z_1$",
                        ylabel="$z_2$"):
    """The first two latent coordinates of every example, coloured by its digit."""
    codes, labels = _as_numpy(codes), _as_numpy(labels)
    ax = ax or plt.subplots(figsize=(5, 4.3))[1]
    cmap = plt.get_cmap("tab10")
    for k in range(10):
        ax.scatter(*codes[labels == k, :2].T, s=6, color=cmap(k), label=str(k), alpha=0.8)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(title="digit", fontsize=7, markerscale=2, ncol=2, loc="best")
    return ax


def interpolate(a, b, steps=9):
    """Points on the segment from a to b (two vectors), shape (steps, len(a))."""
    t = torch.linspace(0, 1, steps, device=a.device, dtype=a.dtype)[:, None]
    return (1 - t) * a[None] + t * b[None]


def plot_latent_map(decode, extent=2.5, n=12, side=8, title="Decoded grid of the 2-D latent space"):
    """Decode an n x n grid of latent points in [-extent, extent]^2 and tile the images (a 1-pixel gap
    between them) into one picture whose axes are the latent coordinates."""
    params = list(decode.parameters()) if isinstance(decode, nn.Module) else []
    device = params[0].device if params else "cpu"
    coords = np.linspace(-extent, extent, n)
    zz = torch.tensor([[a, b] for b in coords[::-1] for a in coords], dtype=torch.float32, device=device)
    with torch.no_grad():
        imgs = _as_numpy(decode(zz)).reshape(n, n, side, side)
    cell = side + 1
    canvas = np.full((n * cell - 1, n * cell - 1), np.nan)
    for i in range(n):
        for j in range(n):
            canvas[i * cell:i * cell + side, j * cell:j * cell + side] = imgs[i, j]
    half = extent + extent / (n - 1)
    fig, ax = plt.subplots(figsize=(6, 6))
    cmap = plt.get_cmap("gray_r").copy()
    cmap.set_bad("white")
    ax.imshow(canvas, cmap=cmap, vmin=0, vmax=1, extent=(-half, half, -half, half))
    ax.set(title=title, xlabel="$z_1$", ylabel="$z_2$")
    return fig


def plot_kl_term(ax=None, means=(0.0, 0.5, 1.0)):
    """The per-dimension KL to N(0, 1) in the course notes' form exp(s) - (1 + s) + m^2 (s = log-variance,
    twice the KL), against s, for a few means m: each curve is lowest at s = 0, i.e. variance 1."""
    ax = ax or plt.subplots(figsize=(5, 3.4))[1]
    s = np.linspace(-3, 3, 301)
    for m in means:
        ax.plot(s, np.exp(s) - (1 + s) + m ** 2, label=f"m = {m:g}")
    ax.axvline(0, color="gray", ls=":", lw=1)
    ax.set(title="exp(s) - (1 + s) + m$^2$ is smallest at s = 0", xlabel="s = log-variance of one latent dimension",
           ylabel="2 x KL to N(0, 1)", ylim=(0, 8))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def beta_explorer(results, X_show, side=8):
    """A slider over beta ({beta: (trained VAE, {"recon": ..., "kl": ...})}): reconstructions of X_show, samples
    from the prior, and the two terms of the loss on the test set."""
    betas = sorted(results)

    def show(beta=1.0 if 1.0 in results else betas[0]):
        model, terms = results[beta]
        device = X_show.device
        with torch.no_grad():
            mu, _ = model.encode(X_show)
            recon = model.decode(mu)
            samples = model.decode(torch.randn(len(X_show), model.latent_dim, generator=torch.Generator().manual_seed(0))
                                   .to(device))
        image_rows([X_show, recon, samples], side=side, row_labels=["input", "reconstructed", "prior sample"],
                   title=f"beta = {beta:g}: reconstruction {terms['recon']:.1f} nats, KL {terms['kl']:.2f} nats "
                         f"per test digit")
        plt.show()

    return runtime.interact(show, beta=widgets.SelectionSlider(options=betas, value=1.0 if 1.0 in results else betas[0],
                                                               description="beta", continuous_update=False))


def plot_beta_tradeoff(results, ax=None):
    """Reconstruction term against KL term on the test set, one point per beta."""
    ax = ax or plt.subplots(figsize=(4.8, 3.5))[1]
    betas = sorted(results)
    kl = [results[b][1]["kl"] for b in betas]
    recon = [results[b][1]["recon"] for b in betas]
    ax.plot(kl, recon, marker="o")
    for b, k, r in zip(betas, kl, recon):
        ax.annotate(f"beta {b:g}", (k, r), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set(title="The beta trade-off (test digits)", xlabel="KL term (nats per digit)",
           ylabel="reconstruction term (nats per digit)")
    ax.grid(alpha=0.3)
    return ax


def plot_infinite_mixture(decoder_mean, sigma=0.12, n_components=40, ax=None):
    """p(x) = integral of N(x; g(z), sigma^2 I) N(z; 0, 1) dz for a 1-D latent z and a curve g: R -> R^2.

    Draws the means g(z) of some components (circles of radius sigma, shaded by their prior weight) over the
    density of the whole mixture, evaluated on a grid by averaging over many z.
    """
    ax = ax or plt.subplots(figsize=(5, 4))[1]
    xs, ys = np.meshgrid(np.linspace(-3.5, 3.5, 175), np.linspace(-2.2, 2.2, 110))
    grid = np.column_stack([xs.ravel(), ys.ravel()])
    z = np.linspace(-3.5, 3.5, 300)
    weights = np.exp(-z ** 2 / 2)
    weights /= weights.sum()
    means = decoder_mean(z)
    density = np.zeros(len(grid))
    for w, m in zip(weights, means):
        density += w * np.exp(-np.sum((grid - m) ** 2, axis=1) / (2 * sigma ** 2)) / (2 * np.pi * sigma ** 2)
    ax.contourf(xs, ys, density.reshape(xs.shape), levels=20, cmap="Blues")
    show = np.linspace(-2.5, 2.5, n_components)
    for zk, m in zip(show, decoder_mean(show)):
        ax.add_patch(plt.Circle(m, sigma, fill=False, color="tab:red", lw=0.8, alpha=float(np.exp(-zk ** 2 / 2))))
    ax.plot(*decoder_mean(np.linspace(-3, 3, 200)).T, color="tab:red", lw=0.8, ls="--", label="means g(z)")
    ax.set(title="A VAE's p(x): infinitely many Gaussians", xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    ax.legend(fontsize=8, loc="lower right")
    return ax


# --- plots: GANs ---------------------------------------------------------------------------------------------------

def plot_gan_gradients(d_values, grads, ax=None):
    """|d loss / d logit| of each generator loss against D(G(z)) ({label: array of gradients})."""
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    for label, g in grads.items():
        ax.plot(d_values, np.abs(_as_numpy(g)), label=label)
    ax.axvspan(0, 0.1, color="tab:red", alpha=0.08, label="early training: D rejects the fakes")
    ax.set(title="How hard each generator loss pushes", xlabel="D(G(z)), the discriminator's belief that a fake is real",
           ylabel="|d loss / d logit| per sample", yscale="log", ylim=(1e-3, 2))
    ax.legend(fontsize=7, loc="lower center")
    ax.grid(alpha=0.3, which="both")
    return ax


def plot_points_snapshot(samples, real, step, ax=None, centres=None):
    ax = ax or plt.subplots(figsize=(4.2, 4.2))[1]
    ax.scatter(*real[:1000].T, s=3, color="lightgray", label="real data")
    ax.scatter(*samples.T, s=3, color="tab:blue", alpha=0.5, label="generated")
    covered, off = modes_covered(samples)
    ax.set(title=f"step {step}: {covered} of 8 modes covered, {off:.0%} off every mode", xlabel="$x_1$",
           ylabel="$x_2$", xlim=(-3, 3), ylim=(-3, 3), aspect="equal")
    ax.legend(fontsize=7, loc="upper right", markerscale=3)
    return ax


def gan_steps_explorer(run, real):
    """A slider over the snapshots of ``train_gan`` on 2-D points: generated vs real points at that step."""
    steps = run["steps"]

    def show(step=steps[-1]):
        plot_points_snapshot(run["samples"][steps.index(step)], real, step)
        plt.show()

    return runtime.interact(show, step=widgets.SelectionSlider(options=steps, value=steps[-1], description="step",
                                                               continuous_update=False))


def plot_mode_coverage(runs, ax=None):
    """Modes covered at every snapshot, one line per run ({label: result of train_gan on eight_gaussians})."""
    ax = ax or plt.subplots(figsize=(5.5, 3.2))[1]
    for label, run in runs.items():
        ax.plot(run["steps"], [modes_covered(s)[0] for s in run["samples"]], marker="o", label=label)
    ax.set(title="Modes covered during training", xlabel="training step", ylabel="modes covered (of 8)",
           ylim=(-0.2, 8.4))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


# --- forward vs reverse KL -------------------------------------------------------------------------------------

def bimodal_density(x, separation=4.0, weight=0.5, std=0.6):
    """A mixture of two Gaussians at -separation / 2 and +separation / 2 (the left one with ``weight``)."""
    def normal(x, m, s):
        return np.exp(-(x - m) ** 2 / (2 * s ** 2)) / np.sqrt(2 * np.pi * s ** 2)
    return weight * normal(x, -separation / 2, std) + (1 - weight) * normal(x, separation / 2, std)


def fit_one_gaussian(p, x, direction):
    """The Gaussian N(m, s^2) that minimises KL(p || q) ("forward") or KL(q || p) ("reverse") for a density p
    on the grid x, found by searching a grid of (m, s). Returns (m, s, KL)."""
    dx = x[1] - x[0]
    p = np.maximum(p, 1e-300)
    ms = np.linspace(x.min() / 1.5, x.max() / 1.5, 121)
    ss = np.geomspace(0.1, (x.max() - x.min()) / 3, 60)
    M, S = np.meshgrid(ms, ss, indexing="ij")
    q = np.exp(-(x[None, None] - M[..., None]) ** 2 / (2 * S[..., None] ** 2)) / np.sqrt(2 * np.pi * S[..., None] ** 2)
    q = np.maximum(q, 1e-300)
    if direction == "forward":
        kl = np.sum(p * (np.log(p) - np.log(q)), axis=-1) * dx
    else:
        kl = np.sum(q * (np.log(q) - np.log(p)), axis=-1) * dx
    i, j = np.unravel_index(np.argmin(kl), kl.shape)
    return float(M[i, j]), float(S[i, j]), float(kl[i, j])


def kl_direction_explorer():
    """Sliders for the target's mode separation and weight; the best single Gaussian under each KL direction."""
    x = np.linspace(-8, 8, 321)

    def show(separation=4.0, weight=0.5):
        p = bimodal_density(x, separation, weight)
        fig, ax = plt.subplots(figsize=(6, 3.4))
        ax.fill_between(x, p, color="lightgray", label="target p (two modes)")
        for direction, color, what in (("forward", "tab:blue", "KL(p||q): covers both modes"),
                                       ("reverse", "tab:red", "KL(q||p): picks one mode")):
            m, s, kl = fit_one_gaussian(p, x, direction)
            q = np.exp(-(x - m) ** 2 / (2 * s ** 2)) / np.sqrt(2 * np.pi * s ** 2)
            ax.plot(x, q, color=color, lw=2, label=f"{what} (m = {m:.2f}, s = {s:.2f}, KL = {kl:.2f})")
        ax.set(title=f"One Gaussian q fitted to p: separation {separation:g}, left weight {weight:g}",
               xlabel="x", ylabel="density", ylim=(0, max(0.9, 1.2 * p.max())))
        ax.legend(fontsize=7, loc="upper left")
        plt.show()

    return runtime.interact(
        show,
        separation=widgets.FloatSlider(value=4.0, min=0.0, max=7.0, step=0.5, continuous_update=False,
                                       description="separation"),
        weight=widgets.FloatSlider(value=0.5, min=0.1, max=0.9, step=0.1, continuous_update=False,
                                   description="left weight"))


# --- cycle consistency in two dimensions ---------------------------------------------------------------------------

def ring(n, radius=1.0, centre=(0.0, 0.0), squash=1.0, rotate=0.0, noise=0.03, rng=0):
    """n points near an ellipse: angle uniform, radius ``radius`` (and ``radius * squash`` on the second axis),
    rotated by ``rotate`` radians and shifted to ``centre``. Returns (points (n, 2), angles (n,))."""
    rng = np.random.default_rng(rng)
    angles = rng.uniform(0, 2 * np.pi, size=n)
    pts = np.column_stack([radius * np.cos(angles), radius * squash * np.sin(angles)])
    c, s = np.cos(rotate), np.sin(rotate)
    pts = pts @ np.array([[c, s], [-s, c]]) + np.asarray(centre)
    return pts + rng.normal(0, noise, size=pts.shape), angles


def off_data_fraction(samples, data, radius=0.15):
    """The share of ``samples`` (n, 2) farther than ``radius`` from every point of ``data`` (m, 2)."""
    samples, data = np.asarray(samples), np.asarray(data)
    nearest = np.min(np.linalg.norm(samples[:, None, :] - data[None, :, :], axis=2), axis=1)
    return float(np.mean(nearest > radius))


def plot_translation(X, angles, G, F_, Y, ax_pair=None, title=""):
    """Left: domain X coloured by angle, and F(G(x)). Right: domain Y (gray) and G(x), coloured like its x."""
    device = next(G.parameters()).device
    with torch.no_grad():
        gx = G(torch.as_tensor(X, dtype=torch.float32, device=device))
        back = F_(gx).cpu().numpy()
        gx = gx.cpu().numpy()
    axes = ax_pair if ax_pair is not None else plt.subplots(1, 2, figsize=(8.5, 3.8))[1]
    axes[0].scatter(*X.T, c=angles, cmap="hsv", s=6, label="x")
    axes[0].scatter(*back.T, c=angles, cmap="hsv", s=6, marker="x", alpha=0.5, label="F(G(x))")
    axes[0].set(title="domain X: x (dots) and F(G(x)) (crosses)", xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    axes[1].scatter(*Y.T, color="lightgray", s=6, label="real y")
    axes[1].scatter(*gx.T, c=angles, cmap="hsv", s=6, label="G(x)")
    axes[1].set(title="domain Y: G(x), coloured like its x", xlabel="$y_1$", ylabel="$y_2$", aspect="equal")
    for ax in axes:
        ax.legend(fontsize=7, loc="upper right")
    if title:
        axes[0].figure.suptitle(title, fontsize=10)
    axes[0].figure.tight_layout()
    return axes

"""The learner-side library: the training loop's contract and the explorers' behaviour under the autograder."""
import ipywidgets
import numpy as np
import pytest

from dlcourse import runtime, training

pytestmark = pytest.mark.library


def _linear_model(batch_sizes):
    def loss_and_grads(params, X, y):
        batch_sizes.append(len(X))
        residual = X @ params["w"] - y
        return float(np.mean(residual ** 2)), {"w": 2 * X.T @ residual / len(X)}
    return loss_and_grads


def test_train_fits_a_linear_model_with_plain_gradient_descent():
    rng = np.random.default_rng(0)
    X, w_true = rng.normal(size=(200, 3)), np.array([1.0, -2.0, 0.5])
    params = {"w": np.zeros(3)}
    history = training.train(_linear_model([]), params, X, X @ w_true, learning_rate=0.1, epochs=30, batch_size=20,
                             progress=False)
    assert np.allclose(params["w"], w_true, atol=1e-3), params["w"]
    assert history["epoch_loss"][-1] < 1e-6 < history["epoch_loss"][0]


def test_drop_last_keeps_every_minibatch_full():
    sizes = []
    X = np.ones((103, 2))
    training.train(_linear_model(sizes), {"w": np.zeros(2)}, X, np.zeros(103), epochs=2, batch_size=10,
                   drop_last=True, progress=False)
    assert sizes == [10] * 20, sizes
    sizes.clear()
    training.train(_linear_model(sizes), {"w": np.zeros(2)}, X, np.zeros(103), epochs=1, batch_size=10,
                   progress=False)
    assert sizes == [10] * 10 + [3], sizes


def test_an_update_rule_keeps_its_own_config_per_parameter_and_sees_the_decayed_learning_rate():
    seen = []

    def counting_update(w, dw, config):
        config["steps"] = config.get("steps", 0) + 1
        seen.append((config["steps"], config["learning_rate"], config["momentum"]))
        return w - config["learning_rate"] * dw, config

    params = {"a": np.zeros(2), "b": np.zeros(2)}

    def loss_and_grads(p, X, y):
        return 0.0, {"a": np.ones(2), "b": np.ones(2)}

    training.train(loss_and_grads, params, np.zeros((4, 1)), np.zeros(4), learning_rate=1.0, epochs=2, batch_size=2,
                   lr_decay=0.5, update=counting_update, config={"momentum": 0.9}, progress=False)
    assert [s for s, _, _ in seen] == [1, 1, 2, 2, 3, 3, 4, 4], "each parameter needs a config of its own"
    assert [lr for _, lr, _ in seen] == [1.0] * 4 + [0.5] * 4
    assert np.allclose(params["a"], -3.0) and np.allclose(params["b"], -3.0)


def test_evaluate_is_recorded_once_per_epoch():
    history = training.train(_linear_model([]), {"w": np.zeros(2)}, np.ones((8, 2)), np.zeros(8), epochs=3,
                             batch_size=4, evaluate=lambda p: {"val": float(p["w"].sum())}, progress=False)
    assert len(history["val"]) == 3 and len(history["loss"]) == 6


def test_explorers_draw_once_without_widgets_under_the_autograder(monkeypatch):
    calls = []
    controls = dict(x=ipywidgets.FloatSlider(value=1.5), kind=ipywidgets.Dropdown(options=["a", "b"], value="b"))
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert runtime.interact(lambda x, kind: calls.append((x, kind)), **controls) is None
    assert calls == [(1.5, "b")]
    monkeypatch.delenv("NBGRADER_EXECUTION")
    assert runtime.interact(lambda x, kind: calls.append((x, kind)), **controls) is None, \
        "an explorer on a cell's last line must print nothing under its sliders"
    assert calls == [(1.5, "b"), (1.5, "b")], "interactively the widget draws once at start, too"


def test_an_explorers_caption_gives_each_value_as_its_control_shows_it():
    controls = dict(rho=ipywidgets.FloatSlider(value=0.75, step=0.05, description="spectral radius"),
                    scale=ipywidgets.FloatLogSlider(value=1e-3, base=10, min=-4, max=0),
                    n=ipywidgets.IntSlider(value=40),
                    beta=ipywidgets.SelectionSlider(options=[("small", 0.1), ("large", 4.0)], value=4.0),
                    kind=ipywidgets.Dropdown(options=["tanh", "relu"], value="relu"))
    values = {name: control.value for name, control in controls.items()}
    assert runtime.caption(controls, values) == ("spectral radius = 0.75   scale = 0.001   n = 40   beta = large   "
                                                 "kind = relu")
    assert runtime.caption(controls, dict(values, rho=1.05)).startswith("spectral radius = 1.05"), \
        "the caption states the value the figure was drawn for"


# --- the torch chapters' device choice and epoch loop -------------------------------------------

def test_pick_device_follows_the_environment_variable_and_names_the_fix_when_it_cannot(monkeypatch):
    import torch

    from dlcourse import devices

    monkeypatch.setenv(devices.DEVICE_ENV, "cpu")
    assert devices.pick_device() == torch.device("cpu")
    assert devices.describe_device().startswith("cpu (")
    monkeypatch.delenv(devices.DEVICE_ENV)
    assert devices.pick_device().type == devices.available_devices()[0]
    assert devices.available_devices()[-1] == "cpu"
    monkeypatch.setenv(devices.DEVICE_ENV, "tpu-please")
    with pytest.raises(ValueError, match="not a device name"):
        devices.pick_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv(devices.DEVICE_ENV, "cuda")
        with pytest.raises(ValueError, match="unset COURSE_DEVICE or set it to cpu"):
            devices.pick_device()


def test_fit_calls_the_learners_epoch_functions_and_times_every_epoch():
    import torch

    from dlcourse import torch_training

    calls = []

    def train_one_epoch(model, loader, loss_fn, optimizer, device):
        calls.append(("train", device))
        return torch.tensor(0.5)

    def evaluate(model, loader, device):
        calls.append(("eval", device))
        return 0.75

    model = torch.nn.Linear(2, 1)
    history = torch_training.fit(model, [], None, None, "cpu", epochs=3, train_one_epoch=train_one_epoch,
                                 evaluate=evaluate, val_loader=[])
    assert calls == [("train", "cpu"), ("eval", "cpu")] * 3
    assert history["loss"] == [0.5] * 3 and history["val_accuracy"] == [0.75] * 3
    assert len(history["epoch_seconds"]) == 3 and all(t >= 0 for t in history["epoch_seconds"])
    assert torch_training.count_parameters(model) == 3


# --- chapter 08's generative models: data, fits and loops that call the learner's functions ---------------

def test_moon_images_light_half_the_disc_at_phase_0_and_all_of_it_at_phase_1():
    from dlcourse import generative

    half, gibbous, full = generative.moon_images([0.0, 0.5, 1.0], size=32, jitter=False)
    assert set(np.unique(full)) == {0.0, 1.0}
    assert 0.45 < half.sum() / full.sum() < 0.55
    assert 0.7 < gibbous.sum() / full.sum() < 0.8       # half disc + half an ellipse of half the width


def test_eight_gaussians_cover_eight_modes_and_one_mode_covers_one():
    from dlcourse import generative

    points = generative.eight_gaussians(4000, rng=1)
    assert generative.modes_covered(points) == (8, 0.0)
    one = generative.eight_centres()[3] + np.random.default_rng(2).normal(0, 0.05, size=(500, 2))
    assert generative.modes_covered(one)[0] == 1


def test_forward_kl_fit_matches_the_moments_and_reverse_kl_sits_on_one_mode():
    from dlcourse import generative

    x = np.linspace(-8, 8, 801)
    p = generative.bimodal_density(x, separation=5.0, weight=0.5, std=0.6)
    m, s, _ = generative.fit_one_gaussian(p, x, "forward")
    assert abs(m) < 0.1 and abs(s - np.sqrt(0.6 ** 2 + 2.5 ** 2)) < 0.1     # the mixture's mean and std
    m, s, _ = generative.fit_one_gaussian(p, x, "reverse")
    assert abs(abs(m) - 2.5) < 0.1 and abs(s - 0.6) < 0.1


def test_the_training_loops_use_the_functions_they_are_given():
    import torch

    from dlcourse import generative

    calls = {"rep": 0, "loss": 0, "d": 0, "g": 0, "cyc": 0}

    def reparameterize(mu, logvar):
        calls["rep"] += 1
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def vae_loss(x_recon, x, mu, logvar):
        calls["loss"] += 1
        return ((x_recon - x) ** 2).sum() + (mu ** 2).sum()

    def d_loss(real, fake):
        calls["d"] += 1
        return torch.nn.functional.softplus(-real).mean() + torch.nn.functional.softplus(fake).mean()

    def g_loss(fake):
        calls["g"] += 1
        return torch.nn.functional.softplus(-fake).mean()

    def cycle(x, xc, y, yc):
        calls["cyc"] += 1
        return (x - xc).abs().mean() + (y - yc).abs().mean()

    X = torch.rand(40, 64)
    def vae_step(model, optimizer, x, eps, loss_fn=None):
        calls["rep"] += 1
        assert eps.shape == (len(x), model.latent_dim) and loss_fn is None
        mu, logvar = model.encode(x)
        return vae_loss(model.decode(mu + torch.exp(0.5 * logvar) * eps), x, mu, logvar).item()

    def gan_step(G, D, opt_g, opt_d, real, z):
        assert z.shape == (len(real), G.noise_dim)
        return d_loss(D(real), D(G(z))).item(), g_loss(D(G(z))).item()

    history = generative.train_vae(generative.VAE(latent_dim=2, hidden=16), X, vae_step, epochs=2, batch_size=20)
    assert calls["rep"] == calls["loss"] == 4 and len(history["loss"]) == 2
    run = generative.train_gan(generative.Generator(hidden=8), generative.Discriminator(hidden=8),
                               lambda n: torch.randn(n, 2), gan_step, steps=6, batch_size=8, snapshots=3, n_show=5)
    assert calls["d"] == calls["g"] == 6 and run["steps"] == [0, 2, 4, 6] and run["samples"][0].shape == (5, 2)
    nets = [generative.Generator(hidden=8) for _ in range(2)] + [generative.Discriminator(hidden=8) for _ in range(2)]
    out = generative.train_cycle(*nets, torch.randn(30, 2), torch.randn(30, 2), d_loss, g_loss, cycle, steps=3,
                                 batch_size=8)
    assert calls["cyc"] == 3 and len(out["cycle"]) == 3


def test_autograd_graph_has_one_node_per_operation_and_the_leaves_by_name():
    import torch

    from dlcourse import torch_explorer

    x = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    nodes, edges = torch_explorer.autograd_graph(torch.exp(-x) * y, {x: "x", y: "y"})
    labels = sorted(label for _, _, label, _ in nodes.values())
    assert labels == sorted(["out", "x", "y", "neg", "exp", "\u00d7"]), labels
    assert len(edges) == 5


def test_gradcheck_helper_names_a_float32_input():
    import torch

    from dlcourse import checks, torch_checks

    with pytest.raises(checks.CheckFailed, match="input 0 is torch.float32"):
        torch_checks.check_gradcheck("f", torch.sin, (torch.ones(2, requires_grad=True),))


def test_the_speed_benchmark_compares_the_same_network_in_numpy_and_torch():
    import torch

    from dlcourse import torch_speed
    from grader.judge.references import ch02_backprop as R2, ch06_cnn as R6

    params = torch_speed.init_cnn_params(rng=3)
    X = np.random.default_rng(4).normal(size=(5, 1, 8, 8))
    pooled = R6.max_pool_forward(R2.relu_forward(R6.conv_forward(X, params["W1"], params["b1"], {"stride": 1, "pad": 1})),
                                 {"pool_height": 2, "pool_width": 2, "stride": 2})
    numpy_scores = R2.affine_forward(pooled, params["W2"], params["b2"])
    model = torch_speed.load_numpy_params(torch_speed.torch_cnn().double(), params)
    with torch.no_grad():
        torch_scores = model(torch.from_numpy(X)).numpy()
    assert np.allclose(torch_scores, numpy_scores, rtol=1e-12, atol=1e-12)


def test_chapter_09_recurrent_matrix_has_the_asked_spectral_radius_and_one_hot_rows_pick_words():
    from dlcourse import sequences

    W = sequences.recurrent_matrix(12, 1.3, rng=0)
    assert np.allclose(np.abs(np.linalg.eigvals(W)), 1.3)
    vocab = ["a", "b", "c"]
    assert np.array_equal(sequences.one_hot(["c", "a", "c"], vocab), [[0, 0, 1], [1, 0, 0], [0, 0, 1]])


def test_chapter_09_reversal_task_and_positional_encoding():
    import torch

    from dlcourse import sequence_models

    x, y = sequence_models.reversal_batch(4, 7, torch.Generator().manual_seed(0))
    assert torch.equal(y, x[:, torch.arange(6, -1, -1)])
    pe = sequence_models.sinusoidal_encoding(10, 8)
    assert pe.shape == (10, 8) and torch.allclose(pe[0], torch.tensor([0.0, 1.0] * 4, dtype=torch.float64))
    assert torch.allclose(pe[:, 0::2] ** 2 + pe[:, 1::2] ** 2, torch.ones(10, 4, dtype=torch.float64))


def test_chapter_09_transformer_runs_the_attention_class_it_is_given():
    import torch

    from dlcourse import sequence_models

    calls = []

    class UniformAttention(torch.nn.Module):           # the chapter's contract: (out, weights per head)
        def __init__(self, dim, heads):
            super().__init__()
            self.heads, self.proj = heads, torch.nn.Linear(dim, dim)

        def forward(self, query, key, value, mask=None):
            calls.append(query.shape)
            N, L, _ = query.shape
            weights = torch.full((N, self.heads, L, L), 1.0 / L)
            return self.proj(value.mean(dim=1, keepdim=True).expand_as(query)), weights

    model = sequence_models.TransformerTagger(UniformAttention, dim=8, heads=2, layers=2, hidden=16)
    logits, maps = model(torch.zeros(3, 5, dtype=torch.long), return_weights=True)
    assert logits.shape == (3, 5, sequence_models.VOCAB) and len(maps) == 2 and len(calls) == 2
    history = sequence_models.train_reversal(model, 5, "cpu", steps=3)
    assert len(history["loss"]) == 3 and 0.0 <= history["token_accuracy"] <= 1.0


def test_chapter_09_encoder_decoder_attends_with_the_function_it_is_given_from_more_queries_than_keys():
    import torch

    from dlcourse import sequence_models

    calls = []

    def attention(q, k, v, mask=None):                  # the chapter's contract, with uniform weights
        calls.append((tuple(q.shape), tuple(k.shape)))
        weights = torch.full(q.shape[:-1] + (k.shape[-2],), 1.0 / k.shape[-2])
        return weights @ v, weights

    src, target = sequence_models.seq2seq_reversal_batch(3, 6, torch.Generator().manual_seed(0))
    assert torch.equal(target[:, :6], src.flip(1)) and (target[:, 6] == sequence_models.END).all()
    model = sequence_models.AttentionSeq2Seq(attention, dim=8, hidden=16)
    logits, weights = model(src, target)
    assert logits.shape == (3, 7, sequence_models.VOCAB + 2) and weights.shape == (3, 7, 6)
    assert calls == [((3, 7, 16), (3, 6, 16))], "one cross-attention call: 7 queries (L + 1 tokens) over 6 keys"
    tokens, weights = model.generate(src, 7)
    assert tokens.shape == (3, 7) and weights.shape == (3, 7, 6) and len(calls) == 1 + 7
    history = sequence_models.train_seq2seq(model, 6, "cpu", steps=2)
    assert len(history["loss"]) == 2 and 0.0 <= history["sequence_accuracy"] <= history["token_accuracy"] <= 1.0


def test_chapter_07_speed_report_reads_the_measured_times_whichever_way_they_fall():
    from dlcourse import torch_speed

    slow32 = torch_speed.what_the_times_say({"NumPy, your layers (float64)": 0.1, "torch CPU (float64)": 1.0,
                                             "torch CPU (float32)": 1.6})
    assert "torch on the CPU (float64) is slower than your NumPy layers (0.10x its speed)" in slow32
    assert "float32 is slower than float64 (0.62x its speed)" in slow32 and "no CUDA GPU here" in slow32
    fast32 = torch_speed.what_the_times_say({"NumPy, your layers (float64)": 0.13, "torch CPU (float64)": 0.046,
                                             "torch CPU (float32)": 0.023, "torch GPU (float32)": 0.055})
    assert "float32 is 2.00x as fast as float64 on the CPU: half the bytes" in fast32
    assert "the GPU is slower than the CPU (float32)" in fast32 and "kernel launches" in fast32
    even = torch_speed.what_the_times_say({"NumPy, your layers (float64)": 0.1287, "torch CPU (float64)": 0.0456,
                                           "torch CPU (float32)": 0.0584, "torch GPU (float32)": 0.0547})
    assert "the GPU is about as fast as the CPU (float32) (1.07x)" in even and "kernel launches" in even


def test_quick_mode_shrinks_cells_to_their_autograder_size_and_keeps_the_sliders(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setenv(runtime.QUICK_ENV, "1")
    assert runtime.budget(full=600, autograde=10) == 10 and not runtime.is_autograding()
    monkeypatch.setenv(runtime.QUICK_ENV, "0")
    assert runtime.budget(full=600, autograde=10) == 600

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
    assert runtime.interact(lambda x, kind: calls.append((x, kind)), **controls) is not None
    assert calls == [(1.5, "b"), (1.5, "b")], "interactively the widget draws once at start, too"


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

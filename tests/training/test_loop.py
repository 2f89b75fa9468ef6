import dataclasses
import json

import numpy as np
import pytest

from scratchvae import VAE, VAEConfig
from scratchvae.training import checkpoint
from scratchvae.data.datasets import Dataset, load_digits
from scratchvae.training.loop import TrainConfig, TrainingDiverged, kl_weight, load_checkpoint, save_checkpoint, train

KEYS = {"epoch", "train_elbo", "valid_elbo", "valid_elbo_se", "valid_recon", "valid_kl", "valid_n", "lr", "seconds"}


def tiny_digits(n_train=300, n_test=60):
    d = load_digits()
    return Dataset("digits", d.train_x[:n_train], d.train_y[:n_train], d.test_x[:n_test], d.test_y[:n_test],
                   d.image_shape, d.max_value)


def run(tmp_path, epochs=3, latent=2, seed=0, **kw):
    model = VAE(VAEConfig(data_dim=64, latent_dim=latent, hidden=(32,)), np.random.default_rng(seed))
    cfg = TrainConfig(epochs=epochs, batch_size=50, seed=seed, **kw)
    history = train(model, tiny_digits(), cfg, str(tmp_path), progress=False, log=lambda s: None)
    return model, history


def test_run_folder_is_complete(tmp_path):
    model, history = run(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"metrics.jsonl", "model.npz", "best.npz", "reconstructions.png", "samples.png", "curves.png",
            "latent.png", "manifold.png"} <= names
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and KEYS <= set(rows[0])
    assert rows == history
    for r in rows:
        assert r["valid_elbo"] == pytest.approx(r["valid_recon"] - r["valid_kl"])
        assert r["valid_kl"] > 0 and r["valid_n"] == 30  # 10% of the 300 training images held out
        assert not any(k.startswith("test") for k in r)  # the test split is not read while training
    assert rows[-1]["valid_elbo"] > rows[0]["valid_elbo"]  # it learns
    for png in ("samples.png", "curves.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_bits(tmp_path):
    a, ha = run(tmp_path / "a", epochs=2)
    b, hb = run(tmp_path / "b", epochs=2)
    assert all(a.params[k].tobytes() == b.params[k].tobytes() for k in a.params)
    assert [r["valid_elbo"] for r in ha] == [r["valid_elbo"] for r in hb]


def test_checkpoint_restores_model_and_optimizer(tmp_path):
    model, history = run(tmp_path, epochs=1)
    loaded, opt, state = load_checkpoint(tmp_path / "model.npz")
    assert loaded.config == model.config and state["epoch"] == 1
    assert all(np.array_equal(loaded.params[k], model.params[k]) for k in model.params)
    assert opt.name == "adam" and opt.t == 6 and set(opt.state) == {f"{s}.{k}" for s in "mv" for k in model.params}


def test_checkpoint_that_does_not_fit_its_architecture_is_refused(tmp_path):
    model, _ = run(tmp_path, epochs=1)
    header, arrays = checkpoint.load(tmp_path / "model.npz")
    arrays["param/enc.0.W"] = arrays["param/enc.0.W"][:, :5]
    checkpoint.save(tmp_path / "bad.npz", {k: header[k] for k in ("architecture", "optimizer", "training")}, arrays)
    with pytest.raises(checkpoint.CheckpointError, match="enc.0.W"):
        load_checkpoint(tmp_path / "bad.npz")


@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_divergence_stops_with_epoch_and_step(objective, backend, tmp_path):
    model = VAE(VAEConfig(data_dim=64, latent_dim=2, hidden=(8,)), np.random.default_rng(0))
    model.params["dec.1.b"][0] = np.nan
    with pytest.raises(TrainingDiverged, match="in the loss at epoch 1, step 1; no checkpoint"):
        train(model, tiny_digits(), TrainConfig(epochs=1, batch_size=50, objective=objective, backend=backend),
              str(tmp_path), progress=False, log=lambda s: None)
    assert not (tmp_path / "model.npz").exists()


def test_a_value_error_of_a_finite_model_is_not_taken_for_a_divergence(tmp_path, monkeypatch):
    """The epoch's evaluation may refuse what a diverged model computed; with every parameter finite a
    ValueError is a bug, and it must reach the caller as itself (the command reports it as an internal error)."""
    from scratchvae.training import loop

    def broken(*a, **k):
        raise ValueError("broken on purpose")
    monkeypatch.setattr(loop, "evaluate", broken)
    with pytest.raises(ValueError, match="broken on purpose"):
        run(tmp_path, epochs=1, backend="reference")


def test_kl_warmup_schedule():
    assert kl_weight(1.0, 0, 1) == 1.0
    assert [kl_weight(2.0, 4, s) for s in (1, 2, 4, 9)] == [0.5, 1.0, 2.0, 2.0]


def test_warmup_and_beta_are_logged(tmp_path):
    _, history = run(tmp_path, epochs=2, warmup_epochs=4, beta=1.0)
    assert history[0]["beta"] == pytest.approx(6 / 24) and history[1]["beta"] == pytest.approx(12 / 24)


@pytest.mark.parametrize("kw", [dict(epochs=0), dict(batch_size=-3), dict(samples=0), dict(beta=-1.0),
                                dict(lr=0.0), dict(optimizer="lbfgs"), dict(binarize="otsu")])
def test_bad_train_config(kw):
    with pytest.raises(ValueError):
        TrainConfig(**kw)


def test_save_then_load_round_trips_every_optimizer(tmp_path):
    from scratchvae.optim import make_optimizer

    model = VAE(VAEConfig(data_dim=4, latent_dim=2, hidden=(3,)), np.random.default_rng(0))
    for name in ("sgd", "adagrad", "adam"):
        opt = make_optimizer(name)
        x = np.full((2, 4), 0.5, np.float32)
        _, g = model.elbo(x, model.noise(np.random.default_rng(0), 2))
        opt.step(model.params, g)
        config = dataclasses.asdict(TrainConfig(epochs=1, optimizer=name, backend="reference"))
        state = {"epoch": 1, "step": 1, "config": config, "dataset": "digits", "binarize": "dynamic",
                 "rng": np.random.default_rng(0).bit_generator.state, "history": [{"epoch": 1, "test_elbo": -1.0}]}
        save_checkpoint(tmp_path / f"{name}.npz", model, opt, state)
        _, opt2, _ = load_checkpoint(tmp_path / f"{name}.npz")
        assert opt2.hyperparams() == opt.hyperparams()
        assert all(np.array_equal(opt2.state[k], v) for k, v in opt.state.items())


@pytest.mark.parametrize("terminal", [False, True])
def test_the_progress_bar_is_drawn_only_on_a_terminal_by_default(terminal, tmp_path, monkeypatch):
    """progress=None (the default) follows stderr: a bar on a terminal, none in a log file or a pipe."""
    from scratchvae.training import loop

    asked = []
    monkeypatch.setattr(loop, "_progress", lambda total, desc, enabled: asked.append(enabled))
    monkeypatch.setattr(loop.sys.stderr, "isatty", lambda: terminal, raising=False)
    model = VAE(VAEConfig(data_dim=64, latent_dim=2, hidden=(8,)), np.random.default_rng(0))
    train(model, tiny_digits(), TrainConfig(epochs=1, batch_size=100), str(tmp_path), log=lambda s: None,
          plots=False)
    assert asked == [terminal]


def test_a_refused_size_names_the_fields_for_a_python_caller_and_the_options_for_the_command_line():
    from scratchvae.training.loop import check_run_size

    c = VAEConfig(data_dim=64, latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match=r"^batch_size 100 with samples 1000000000 would need") as e:
        check_run_size(c, TrainConfig(samples=10**9), 300)
    assert "--" not in str(e.value)
    with pytest.raises(ValueError, match=r"^--batch-size 100 with --k 1000000000 would need"):
        check_run_size(c, TrainConfig(objective="iwae", k=10**9), 300, {"batch_size": "--batch-size", "k": "--k"})


def test_a_refused_run_folder_names_the_arguments_for_a_python_caller_and_the_options_for_the_command_line(
        tmp_path, capsys):
    from scratchvae.cli import main
    from scratchvae.training.runs import RunFolderRefused

    run(tmp_path, epochs=1)
    with pytest.raises(RunFolderRefused) as e:
        run(tmp_path, epochs=1)
    assert "out_dir" in str(e.value) and 'mode="overwrite"' in str(e.value) and "--" not in str(e.value)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderRefused, match=r'mode="overwrite" removes only a run\'s files.*notes.txt') as e:
        model = VAE(VAEConfig(data_dim=64, latent_dim=2, hidden=(32,)), np.random.default_rng(0))
        train(model, tiny_digits(), TrainConfig(epochs=1), str(tmp_path), progress=False, log=lambda s: None,
              mode="overwrite")
    assert "--" not in str(e.value)
    assert main(["train", "--out", str(tmp_path), "--epochs", "1", "--hidden", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"scratchvae: error: --out {tmp_path}:") and "--overwrite" in err and "\n" not in err

"""Model selection without the test split: the validation split carved from the training split, best.npz,
early stopping, the final test, the learning-rate schedule, the presets and the defaults of large images."""
import dataclasses
import json
import math

import numpy as np
import pytest

from scratchvae import VAE, VAEConfig
from scratchvae.data.datasets import Dataset, load_digits
from scratchvae.training import checkpoint, loop
from scratchvae.training.config import TrainConfig
from scratchvae.training.evaluate import evaluate
from scratchvae.training.loop import learning_rate, load_checkpoint, train
from scratchvae.training.sources import Subset, split_indices

# Learning rates from a handful of float multiplications and one cosine: a few ulps.
LR_RTOL = 1e-12


def tiny_digits(n_train=300, n_test=60):
    d = load_digits()
    return Dataset("digits", d.train_x[:n_train], d.train_y[:n_train], d.test_x[:n_test], d.test_y[:n_test],
                   d.image_shape, d.max_value)


def tiny_model(seed=0):
    return VAE(VAEConfig(data_dim=64, latent_dim=2, hidden=(8,)), np.random.default_rng(seed))


def quiet_train(model, config, out, **kw):
    return train(model, tiny_digits(), config, str(out), log=lambda s: None, plots=False, progress=False, **kw)


# ------------------------------------------------------------------ the split
def test_the_validation_split_is_fixed_disjoint_and_independent_of_the_training_seed():
    fit, held = split_indices(300, 0.1, 20160)
    assert len(held) == 30 and len(fit) == 270
    assert sorted(np.concatenate([fit, held]).tolist()) == list(range(300))  # disjoint, and nothing lost
    again_fit, again_held = split_indices(300, 0.1, 20160)
    assert np.array_equal(held, again_held) and np.array_equal(fit, again_fit)
    assert not np.array_equal(split_indices(300, 0.1, 1)[1], held)  # the seed chooses the points
    assert not np.array_equal(held, np.arange(270, 300))  # a permutation, not the tail of the file (sorted by class?)
    assert len(split_indices(300, 50, 0)[1]) == 50  # a count


@pytest.mark.parametrize("validation, match", [(300, "validation 300 leaves no training data of the 300"),
                                               (0.001, "validation 0.001 leaves no validation data")])
def test_a_split_that_leaves_nothing_is_refused_naming_the_field(validation, match):
    with pytest.raises(ValueError, match=match):
        split_indices(300, validation, 0)


def test_training_evaluates_only_validation_points_and_the_test_split_only_when_asked(tmp_path, monkeypatch):
    seen = []

    def spy(model, source, **kw):
        seen.append((type(source).__name__, len(source)))
        return evaluate(model, source, **kw)
    monkeypatch.setattr(loop, "evaluate", spy)
    quiet_train(tiny_model(), TrainConfig(epochs=2, batch_size=100), tmp_path / "a")
    assert seen == [("Subset", 30), ("Subset", 30)]  # the 30 held-out training points, once an epoch
    seen.clear()
    history = quiet_train(tiny_model(), TrainConfig(epochs=2, batch_size=100, final_test=True), tmp_path / "b")
    assert seen == [("Subset", 30), ("Subset", 30), ("BatchSource", 60)]  # then the test split, once
    assert history[-1]["split"] == "test" and history[-1]["test_n"] == 60


# ------------------------------------------------------------------ best.npz, early stopping, resume
def scripted(values):
    """An evaluate that returns the validation ELBOs ``values`` in turn, so the best epoch is known."""
    values = list(values)

    def fake(model, source, **kw):
        v = values.pop(0)
        return {"elbo": v, "elbo_se": 0.5, "recon": v - 1.0, "kl": 1.0, "n": len(source)}
    return fake


def epoch_of(path):
    return checkpoint.read_header(path)["training"]["epoch"]


def test_best_npz_holds_the_best_validation_epoch_and_model_npz_the_last(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "evaluate", scripted([-50.0, -40.0, -45.0, -42.0]))
    history = quiet_train(tiny_model(), TrainConfig(epochs=4, batch_size=100), tmp_path)
    assert [r["valid_elbo"] for r in history] == [-50.0, -40.0, -45.0, -42.0]
    assert epoch_of(tmp_path / "best.npz") == 2  # not replaced by the later, worse epochs 3 and 4
    assert epoch_of(tmp_path / "model.npz") == 4
    best, _, _ = load_checkpoint(tmp_path / "best.npz")
    last, _, _ = load_checkpoint(tmp_path / "model.npz")
    assert any(not np.array_equal(best.params[k], last.params[k]) for k in best.params)


def test_patience_stops_after_that_many_epochs_without_a_better_validation_elbo(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "evaluate", scripted([-50.0, -40.0, -45.0, -42.0, -30.0, -20.0]))
    history = quiet_train(tiny_model(), TrainConfig(epochs=6, batch_size=100, patience=2), tmp_path)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]  # epochs 3 and 4 no better than 2: stop
    assert epoch_of(tmp_path / "best.npz") == 2


def test_resume_carries_the_best_so_far_and_the_patience_count(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "evaluate", scripted([-50.0, -40.0, -45.0]))
    quiet_train(tiny_model(), TrainConfig(epochs=3, batch_size=100, patience=2), tmp_path)
    model, opt, state = load_checkpoint(tmp_path / "model.npz")
    # epoch 4 (-46) is worse than epoch 2's -40 though better than anything a fresh count would have seen
    monkeypatch.setattr(loop, "evaluate", scripted([-46.0, -10.0, -10.0]))
    config = dataclasses.replace(TrainConfig(**state["config"]), epochs=6)
    history = quiet_train(model, config, tmp_path, optimizer=opt, resume=state)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]  # two epochs (3, 4) past the best: stopped
    assert epoch_of(tmp_path / "best.npz") == 2


def test_a_run_killed_and_resumed_agrees_bit_for_bit_with_one_under_a_schedule(tmp_path, monkeypatch):
    """The cosine schedule with a warm-up depends on the step and the run's length: a resume must take both
    from the checkpoint, not restart them or read the last rate off the saved optimizer."""
    config = TrainConfig(epochs=3, batch_size=100, lr_schedule="cosine", lr_warmup=0.5, lr=0.01)
    straight = tiny_model()
    h_straight = quiet_train(straight, config, tmp_path / "straight")
    calls = []

    def killed_in_epoch_3(model, source, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return evaluate(model, source, **kw)
    monkeypatch.setattr(loop, "evaluate", killed_in_epoch_3)
    with pytest.raises(loop.TrainingInterrupted):
        quiet_train(tiny_model(), config, tmp_path / "split")
    monkeypatch.undo()
    model, opt, state = load_checkpoint(tmp_path / "split" / "model.npz")
    assert state["epoch"] == 2
    h_split = quiet_train(model, TrainConfig(**state["config"]), tmp_path / "split", optimizer=opt, resume=state)
    assert all(straight.params[k].tobytes() == model.params[k].tobytes() for k in model.params)
    assert [r["lr"] for r in h_split] == [r["lr"] for r in h_straight]
    assert h_split[-1]["valid_elbo"] == h_straight[-1]["valid_elbo"]


def test_the_final_test_is_the_best_checkpoint_on_the_test_split(tmp_path):
    history = quiet_train(tiny_model(), TrainConfig(epochs=2, batch_size=100, final_test=True), tmp_path)
    final = history[-1]
    best, _, state = load_checkpoint(tmp_path / "best.npz")
    want = evaluate(best, tiny_digits(), iw_samples=1, split="test", batch_size=500, diagnostics=False)
    assert final["checkpoint"] == "best.npz" and final["checkpoint_epoch"] == state["epoch"]
    assert final["test_elbo"] == want["elbo"] and final["test_elbo_se"] == want["elbo_se"]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == history  # the final test is the last line of metrics.jsonl, after the epochs
    assert all("test_elbo" not in r for r in lines[:-1])


def test_without_a_validation_split_there_is_no_best_and_no_patience(tmp_path):
    history = quiet_train(tiny_model(), TrainConfig(epochs=1, batch_size=100, validation=0), tmp_path)
    assert "valid_elbo" not in history[0] and not (tmp_path / "best.npz").exists()
    with pytest.raises(ValueError, match="patience .* needs a validation split"):
        TrainConfig(validation=0, patience=3)


def test_a_checkpoint_from_before_the_validation_split_loads_as_it_trained(tmp_path):
    quiet_train(tiny_model(), TrainConfig(epochs=1, batch_size=100), tmp_path)
    header, arrays = checkpoint.load(tmp_path / "model.npz")
    for key in ("validation", "validation_seed", "patience", "final_test", "lr_schedule", "lr_step", "lr_gamma",
                "lr_warmup", "dequantize"):
        del header["training"]["config"][key]
    checkpoint.save(tmp_path / "old.npz", {k: header[k] for k in ("architecture", "optimizer", "training")}, arrays)
    _, _, state = load_checkpoint(tmp_path / "old.npz")
    config = TrainConfig(**state["config"])
    assert (config.validation, config.lr_schedule, config.dequantize) == (0, "constant", "none")


# ------------------------------------------------------------------ the learning-rate schedule
def schedule(**kw):
    return TrainConfig(epochs=kw.pop("epochs", 4), **kw)


def test_learning_rates_of_each_schedule_worked_by_hand():
    """Base lr 0.1, 10 steps an epoch, 4 epochs (40 steps); e = (step − 1)/10 epochs done before the step."""
    lr = lambda config, step, spe=10: learning_rate(config, 0.1, step, spe)  # noqa: E731
    constant = schedule()
    assert [lr(constant, s) for s in (1, 17, 40)] == [0.1, 0.1, 0.1]
    # step: halved after every epoch: steps 1-10 at 0.1, 11-20 at 0.05, 31-40 at 0.0125
    step = schedule(lr_schedule="step", lr_step=1, lr_gamma=0.5)
    assert [lr(step, s) for s in (1, 10, 11, 20, 21, 31, 40)] == [0.1, 0.1, 0.05, 0.05, 0.025, 0.0125, 0.0125]
    # every 2 epochs times 0.1: 0.1 up to step 20, 0.01 from step 21
    assert [lr(schedule(lr_schedule="step", lr_step=2), s) for s in (20, 21)] == pytest.approx([0.1, 0.01], LR_RTOL)
    # cosine: 0.1 · ½(1 + cos(π e / 4)): e = 0 → 0.1; e = 2 → 0.05; e = 3 → 0.05 (1 − 1/√2) = 0.0146446609
    cosine = schedule(lr_schedule="cosine")
    assert [lr(cosine, s) for s in (1, 21, 31)] == pytest.approx([0.1, 0.05, 0.05 * (1 - 2 ** -0.5)], LR_RTOL)
    assert lr(cosine, 31) == pytest.approx(0.0146446609, abs=1e-10)
    # warm-up over 2 epochs (20 steps) on top of the constant rate: 0.1 · step / 20, then 0.1
    warm = schedule(lr_warmup=2)
    assert [lr(warm, s) for s in (1, 5, 20, 21)] == pytest.approx([0.005, 0.025, 0.1, 0.1], LR_RTOL)


def test_the_burda_schedule_worked_by_hand():
    """Burda et al.: stage i (i = 0..7) at 0.1 · 10^(−i/7) for 3^i of 3,280 parts; stage i starts after
    (3^i − 1)/2 parts: 0, 1, 4, 13, 40, 121, 364, 1093. With 3,280 one-step epochs each part is a step."""
    paper = schedule(lr_schedule="burda2015", epochs=3280)
    at = lambda config, step, spe=1: learning_rate(config, 0.1, step, spe)  # noqa: E731
    stage = lambda i: 0.1 * 10 ** (-i / 7)  # noqa: E731
    for step, i in ((1, 0), (2, 1), (4, 1), (5, 2), (13, 2), (14, 3), (41, 4), (122, 5), (365, 6), (1093, 6),
                    (1094, 7), (3280, 7)):
        assert at(paper, step) == pytest.approx(stage(i), rel=LR_RTOL), step
    assert at(paper, 1094) == pytest.approx(0.01, rel=LR_RTOL)  # the last stage: a tenth of the first
    # scaled to 80 epochs of 41 steps (the preset): the same 3,280 steps, the same stages
    scaled = schedule(lr_schedule="burda2015", epochs=80)
    assert [at(scaled, s, 41) for s in (1, 2, 5, 1094, 3280)] == [at(paper, s) for s in (1, 2, 5, 1094, 3280)]


def test_the_schedule_drives_the_optimizer_and_is_logged(tmp_path):
    history = quiet_train(tiny_model(), TrainConfig(epochs=2, batch_size=100, lr=0.01, lr_schedule="step",
                                                    lr_step=1, lr_gamma=0.5), tmp_path)
    assert [r["lr"] for r in history] == [0.01, 0.005]  # the last step of each epoch
    _, opt, state = load_checkpoint(tmp_path / "model.npz")
    assert state["config"]["lr_schedule"] == "step" and opt.lr == 0.005


@pytest.mark.parametrize("kw, match", [(dict(lr_schedule="step"), "needs lr_step"),
                                       (dict(lr_schedule="linear"), "unknown lr_schedule"),
                                       (dict(lr_gamma=1.5), "lr_gamma"), (dict(validation=1.5), "validation"),
                                       (dict(patience=-1), "patience"), (dict(dequantize="gaussian"), "dequantize")])
def test_bad_selection_and_schedule_fields_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


# ------------------------------------------------------------------ presets and the defaults of large images
def options(*argv, data_dim=64):
    from scratchvae.cli import _size_defaults, build_parser, train_options

    args = build_parser().parse_args(["train", *argv])
    return _size_defaults(train_options(args), args, data_dim)


def test_presets_train_what_their_papers_trained():
    burda = options("--preset", "burda2015", data_dim=784)
    assert (burda["objective"], burda["k"], burda["lr_schedule"], burda["epochs"]) == ("iwae", 5, "burda2015", 80)
    assert (burda["hidden"], burda["latent"], burda["activation"], burda["batch_size"]) == ((200, 200), 50, "tanh", 20)
    assert options("--preset", "kingma2013", data_dim=784)["epochs"] == 100
    assert options("--preset", "pytorch-example", data_dim=784)["epochs"] == 10
    assert options("--preset", "burda2015", "--k", "50")["k"] == 50  # the command line wins


def test_large_images_without_a_preset_get_the_784_400_20_default_and_digits_keep_the_demo():
    big = options(data_dim=784)
    assert (big["hidden"], big["latent"], big["epochs"], big["batch_size"]) == ((400,), 20, 20, 128)
    assert options("--epochs", "3", data_dim=784)["epochs"] == 3
    demo = options()
    assert (demo["hidden"], demo["latent"], demo["epochs"]) == ((256,), 8, 200)


# ------------------------------------------------------------------ the command line
def test_the_command_line_refuses_a_split_or_early_stopping_that_cannot_work(tmp_path, capsys):
    from scratchvae.cli import main

    assert main(["train", "--validation", "2000", "--out", str(tmp_path / "a"), "--no-progress"]) == 2
    assert "--validation 2000 leaves no training data of the 1498 training points" in capsys.readouterr().err
    assert main(["train", "--validation", "0", "--patience", "2", "--out", str(tmp_path / "b")]) == 2
    assert "patience" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before a folder is made


def test_evaluate_reads_the_validation_split_a_run_held_out(tmp_path, capsys):
    from scratchvae.cli import main

    from scratchvae.cli import _train_summary

    run = tmp_path / "run"
    history = train(tiny_model(), load_digits(), TrainConfig(epochs=1), str(run), log=lambda s: None, plots=False)
    summary = _train_summary(history, str(run))  # the last line of scratchvae train
    assert summary.startswith(f"validation ELBO {history[0]['valid_elbo']:.3f} nats") and "test ELBO" not in summary
    assert main(["evaluate", str(run / "best.npz"), "--split", "valid", "--iw-samples", "2", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["split"] == "valid" and result["n"] == 150  # 10% of the 1,498 training digits
    assert math.isfinite(result["elbo_se"]) and math.isfinite(result["iwae_se"])
    train(tiny_model(), load_digits(), TrainConfig(epochs=1, validation=0), str(tmp_path / "none"),
          log=lambda s: None, plots=False)
    assert main(["evaluate", str(tmp_path / "none" / "model.npz"), "--split", "valid"]) == 2
    assert "held out no validation split" in capsys.readouterr().err


def test_split_indices_back_the_subsets_training_reads():
    from scratchvae.training.sources import run_sources

    train_src, valid_src = run_sources(tiny_digits(), "none", "none", np.float32, 0.1, 20160)
    fit, held = split_indices(300, 0.1, 20160)
    assert isinstance(valid_src, Subset) and np.array_equal(valid_src.idx, held)
    np.testing.assert_array_equal(valid_src.batch(np.arange(3)), tiny_digits().train_x[held[:3]] / np.float32(16))

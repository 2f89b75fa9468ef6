"""Divergence, on both kernel sets and both objectives: a NaN injected at every step of an epoch (in the loss, in
a gradient while the loss stays finite, in the parameters or the optimizer state after the update) or in the
test evaluation stops training with one line naming the epoch and step, the last good checkpoint kept; a real
divergence through the command exits 1 with no NumPy warning on the terminal."""
import os
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest

from tests.hostile.helpers import TINY, cli, expect, strict_json_lines

BACKENDS = ("reference", "numba")
OBJECTIVES = ("elbo", "iwae")
STEPS = 6  # 300 training points in batches of 50


def _tiny_digits():
    from scratchvae.data.datasets import Dataset, load_digits

    d = load_digits()
    return Dataset("digits", d.train_x[:300], d.train_y[:300], d.test_x[:60], d.test_y[:60], d.image_shape,
                   d.max_value)


def _poisoned_kernels(backend, opt, target):
    """The backend's kernel table with ``bias_act_backward`` (the backward of a hidden layer, whose output dout
    feeds the weight gradient xᵀ dout) writing one NaN into dout during the ``target``-th step: a NaN in a
    gradient while the loss, computed before the backward, stays finite."""
    if backend == "numba":
        from scratchvae._fast.kernels import KERNELS
    else:
        from scratchvae.reference import KERNELS
    real = KERNELS["bias_act_backward"]

    def bias_act_backward(dx, db, dout, *rest):
        real(dx, db, dout, *rest)
        if opt.t == target - 1:  # the optimizer has made target - 1 updates: this is step `target`
            dx[0, 0] = np.nan
    return mock.patch.dict(KERNELS, bias_act_backward=bias_act_backward)


def diverge(tmp, backend, objective, where, position, epoch=2):
    """Train 3 epochs with a NaN injected at ``position`` (1..STEPS) of ``epoch``, ``where`` one of "loss",
    "gradient", "params" (after the update), "state" (the optimizer's, after the update), or "eval" (the test
    ELBO, ``position`` None); check the message, the checkpoint and metrics.jsonl left behind."""
    from scratchvae import VAE, VAEConfig
    from scratchvae.optim import make_optimizer
    from scratchvae.training import loop as train_module
    from scratchvae.training.loop import TrainConfig, TrainingDiverged, load_checkpoint, train

    folder = os.path.join(tmp, "run")
    model = VAE(VAEConfig(data_dim=64, latent_dim=2, hidden=(8,)), np.random.default_rng(0))
    config = TrainConfig(epochs=3, batch_size=50, objective=objective, k=3, backend=backend)
    target = (epoch - 1) * STEPS + (position or 0)
    evals = {"n": 0}
    opt = make_optimizer("adam")

    class Poisoned(train_module.FusedStep):  # every step of every objective runs on the fused engine
        def forward_backward(self, x, eps, beta=1.0):
            out = super().forward_backward(x, eps, beta)
            if where == "loss" and opt.t == target - 1:
                out[0][...] = np.nan  # the ELBO's recon, or the IWAE's log weights
            return out

        def update(self):
            super().update()
            if opt.t == target and where == "params":
                self.model.params["dec.0.W"][0, 0] = np.nan
            if opt.t == target and where == "state":
                opt.state["v.enc.0.b"][0] = np.inf
    real_eval = train_module.evaluate

    def evaluate(*a, **k):
        evals["n"] += 1
        out = real_eval(*a, **k)
        return {**out, "elbo": float("nan")} if where == "eval" and evals["n"] == epoch else out
    with mock.patch.object(train_module, "evaluate", evaluate), \
            mock.patch.object(train_module, "FusedStep", Poisoned), \
            _poisoned_kernels(backend, opt, target if where == "gradient" else -10):
        with pytest.raises(TrainingDiverged) as e:
            train(model, _tiny_digits(), config, folder, optimizer=opt, progress=False, log=lambda s: None,
                  plots=False)
    msg = str(e.value)
    if where in ("loss", "gradient"):
        step_no = target
    elif where == "params" and position < STEPS:
        step_no = target + 1  # the next step's loss is the first thing the NaN reaches
    else:
        step_no = epoch * STEPS  # found by the check before the checkpoint
    assert f"epoch {epoch}, step {step_no}" in msg, msg
    if where == "gradient":
        assert "NaN or Inf in the gradient" in msg, msg
    assert "\n" not in msg
    path = os.path.join(folder, "model.npz")
    if epoch == 1:
        assert not os.path.exists(path) and "no checkpoint" in msg, msg
    else:
        _, _, state = load_checkpoint(path)  # validated: finite
        assert state["epoch"] == epoch - 1 and f"checkpoint of epoch {epoch - 1}" in msg, msg
    rows = strict_json_lines(os.path.join(folder, "metrics.jsonl"))
    assert [r["epoch"] for r in rows] == list(range(1, epoch))


INJECTED = []
for _backend in BACKENDS:
    for _objective in OBJECTIVES:
        for _where in ("loss", "gradient", "params", "state"):
            what = "a gradient (finite loss)" if _where == "gradient" else f"the {_where}"
            INJECTED += [pytest.param(_backend, _objective, _where, p, 2, id=f"{_backend}, {_objective}: NaN in "
                                      f"{what} at step {p} of epoch 2") for p in range(1, STEPS + 1)]
            INJECTED.append(pytest.param(_backend, _objective, _where, STEPS, 1, id=f"{_backend}, {_objective}: "
                                         f"NaN in {what} at the last step of epoch 1"))
        INJECTED += [pytest.param(_backend, _objective, "eval", None, e, id=f"{_backend}, {_objective}: NaN in "
                                  f"the test ELBO of epoch {e}") for e in (2, 1)]


@pytest.mark.parametrize("backend, objective, where, position, epoch", INJECTED)
def test_an_injected_nan_stops_training_and_keeps_the_last_good_checkpoint(backend, objective, where, position,
                                                                           epoch, tmp_path):
    diverge(str(tmp_path), backend, objective, where, position, epoch)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_a_real_divergence_exits_1_with_no_warning(objective, backend, tmp_path):
    folder = tmp_path / "run"
    r = subprocess.run([sys.executable, "-W", "default", "-m", "scratchvae", "train", "--out", folder,
                        "--epochs", "3", "--optimizer", "sgd", "--lr", "1e30", "--objective", objective,
                        "--backend", backend] + TINY, capture_output=True, text=True, cwd=tmp_path)
    expect(r.returncode, 1, r.stderr, "NaN or Inf", "at epoch 1, step")
    assert "RuntimeWarning" not in r.stderr
    strict_json_lines(folder / "metrics.jsonl")


def test_resume_after_a_divergence_does_not_loop_on_a_nan_checkpoint(run_copy):
    from scratchvae.training.loop import load_checkpoint

    folder = run_copy()
    rc, _, err = cli(["train", "--resume", folder, "--epochs", "3", "--no-progress"])
    assert rc == 0, err
    model, _, _ = load_checkpoint(os.path.join(folder, "model.npz"))
    assert all(np.isfinite(p).all() for p in model.params.values())

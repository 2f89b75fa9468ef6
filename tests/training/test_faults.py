"""Training that survives faults: resume bit for bit, SIGKILL at any moment, Ctrl-C, damaged checkpoints."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from scratchvae.cli import main
from scratchvae.training.loop import load_checkpoint

SMALL = ["--hidden", "32", "--latent", "2", "--batch-size", "100", "--no-progress"]


def params_of(run_dir):
    model, opt, state = load_checkpoint(os.path.join(run_dir, "model.npz"))
    return model.params, opt.state, state


def assert_same_bits(a, b):
    pa, oa, sa = params_of(a)
    pb, ob, sb = params_of(b)
    assert sa["epoch"] == sb["epoch"] and sa["rng"] == sb["rng"]
    assert all(pa[k].tobytes() == pb[k].tobytes() for k in pa)
    assert all(oa[k].tobytes() == ob[k].tobytes() for k in oa)
    la = [json.loads(x)["valid_elbo"] for x in open(os.path.join(a, "metrics.jsonl"))]
    lb = [json.loads(x)["valid_elbo"] for x in open(os.path.join(b, "metrics.jsonl"))]
    assert la == lb


def test_resume_is_bit_identical(tmp_path):
    full, part = str(tmp_path / "full"), str(tmp_path / "part")
    assert main(["train", "--epochs", "4", "--out", full, "--warmup", "3"] + SMALL) == 0
    assert main(["train", "--epochs", "2", "--out", part, "--warmup", "3"] + SMALL) == 0
    assert main(["train", "--resume", part, "--epochs", "4", "--no-progress"]) == 0
    assert_same_bits(full, part)


def test_resume_refuses_changed_options(tmp_path, capsys):
    run = str(tmp_path / "r")
    assert main(["train", "--epochs", "1", "--out", run] + SMALL) == 0
    assert main(["train", "--resume", run, "--epochs", "3", "--lr", "0.1"]) == 2
    assert "--lr" in capsys.readouterr().err


def _start(args, cwd):
    # SIGINT back to its default: a child of a background job would inherit it ignored and miss the Ctrl-C test
    return subprocess.Popen([sys.executable, "-m", "scratchvae", "train"] + args, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_epochs(run_dir, n, proc, timeout=60):
    path = os.path.join(run_dir, "metrics.jsonl")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and sum(1 for _ in open(path)) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("training did not reach the epoch in time")


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    total = "60"
    killed, full = str(tmp_path / "killed"), str(tmp_path / "full")
    proc = _start(["--epochs", total, "--out", killed] + SMALL, tmp_path)
    _wait_for_epochs(killed, 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, _, state = params_of(killed)  # the checkpoint left by a kill at an arbitrary moment loads
    assert 3 <= state["epoch"] < int(total)
    assert main(["train", "--resume", killed, "--no-progress"]) == 0  # --epochs defaults to the run's total
    assert main(["train", "--epochs", total, "--out", full] + SMALL) == 0
    assert_same_bits(full, killed)
    assert not [f for f in os.listdir(killed) if f.startswith(".tmp-")]  # a kill's leftover is swept on resume
    assert sorted(json.loads(x)["epoch"] for x in open(os.path.join(killed, "metrics.jsonl"))) == \
        list(range(1, int(total) + 1))


def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    run = str(tmp_path / "run")
    proc = _start(["--epochs", "100000", "--out", run] + SMALL, tmp_path)
    _wait_for_epochs(run, 2, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted" in err and f"--resume {run}" in err
    _, _, state = params_of(run)
    assert state["epoch"] >= 2 and f"the checkpoint of epoch {state['epoch']} " in err
    assert os.path.exists(os.path.join(run, "curves.png"))


def test_damaged_checkpoint_on_resume_is_one_line_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(run)] + SMALL) == 0
    data = (run / "model.npz").read_bytes()
    (run / "model.npz").write_bytes(data[: len(data) // 2])
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "model.npz" in err


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    from scratchvae.data.datasets import load_digits
    from scratchvae.training.loop import TrainConfig, TrainingDiverged, train

    run = str(tmp_path / "run")
    assert main(["train", "--epochs", "2", "--out", run] + SMALL) == 0
    good, _, _ = params_of(run)
    model, opt, state = load_checkpoint(os.path.join(run, "model.npz"))
    model.params["dec.1.W"][0, 0] = np.inf  # the loss turns non-finite at the first step of epoch 3
    with pytest.raises(TrainingDiverged, match=r"at epoch 3, step 29"):
        train(model, load_digits(), TrainConfig(**{**state["config"], "epochs": 4}), run, optimizer=opt,
              resume=state, progress=False, log=lambda s: None)
    after, _, after_state = params_of(run)
    assert after_state["epoch"] == 2
    assert all(after[k].tobytes() == good[k].tobytes() for k in good)


@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_cli_reports_divergence_with_epoch_and_step(objective, backend, tmp_path, capsys):
    rc = main(["train", "--epochs", "3", "--out", str(tmp_path), "--optimizer", "sgd", "--lr", "1e30",
               "--objective", objective, "--backend", backend] + SMALL)
    err = capsys.readouterr().err
    assert rc == 1 and "NaN or Inf" in err and "at epoch 1, step" in err and len(err.strip().splitlines()) == 1


STEPS_PER_EPOCH = 15  # the digits' 1,498 training images in batches of 100 (SMALL)


@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_a_nan_gradient_under_a_finite_loss_stops_with_exit_1_and_keeps_the_checkpoint(objective, backend,
                                                                                       tmp_path, monkeypatch, capsys):
    """The backward of a hidden layer writes one NaN into its dout at step 20 (epoch 2): the loss, computed
    before the backward, is finite; every gradient is not. The numba step proves gradients finite from the
    products' inputs instead of reading them (Engine.gradients_surely_finite): the proof must see the NaN."""
    from scratchvae import reference
    from scratchvae._fast import kernels
    from scratchvae.training import loop

    table = (kernels if backend == "numba" else reference).KERNELS
    real_backward, real_weight = table["bias_act_backward"], loop.kl_weight
    target, seen = STEPS_PER_EPOCH + 5, {}

    def kl_weight(beta, warmup_steps, step):  # called once per training step, with its number
        seen["step"] = step
        return real_weight(beta, warmup_steps, step)

    def bias_act_backward(dx, db, dout, *rest):
        real_backward(dx, db, dout, *rest)
        if seen.get("step") == target:
            dx[0, 0] = np.nan
    monkeypatch.setattr(loop, "kl_weight", kl_weight)
    monkeypatch.setitem(table, "bias_act_backward", bias_act_backward)
    run = tmp_path / "run"
    rc = main(["train", "--epochs", "3", "--out", str(run), "--objective", objective, "--backend", backend] + SMALL)
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"NaN or Inf in the gradient of the parameters at epoch 2, step {target};" in err, err
    assert "the checkpoint of epoch 1" in err
    params, _, state = params_of(run)
    assert state["epoch"] == 1 and all(np.isfinite(p).all() for p in params.values())

"""SIGKILL at random moments, then resume: the same bits as a run never killed; Ctrl-C: exit 130 and one line
naming the epoch the checkpoint on disk holds, or that there is none yet."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.hostile.helpers import INTERRUPTIBLE, TINY, cli, expect, strict_json_lines, train_tiny, wait_for

KILL_EPOCHS = 40


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run the killed ones must match bit for bit: KILL_EPOCHS epochs, never stopped."""
    return train_tiny(tmp_path_factory.mktemp("uninterrupted") / "full", KILL_EPOCHS)


def _start(folder, cwd, epochs, **pipes):
    return subprocess.Popen(**INTERRUPTIBLE, **pipes, args=[sys.executable, "-m", "scratchvae", "train", "--out",
                                                            folder, "--epochs", str(epochs), "--backend",
                                                            "reference"] + TINY, cwd=cwd)


@pytest.mark.parametrize("delay", [float(d) for d in np.random.default_rng(10).uniform(0.0, 0.25, 3)],
                         ids=lambda d: f"{d * 1000:.0f} ms after the first checkpoint")
def test_sigkill_then_resume_matches_the_uninterrupted_run(delay, uninterrupted, tmp_path):
    from scratchvae.training.loop import load_checkpoint

    folder = tmp_path / "run"
    p = _start(folder, tmp_path, KILL_EPOCHS, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: (folder / "model.npz").exists(), p)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait()
    _, _, state = load_checkpoint(folder / "model.npz")
    if state["epoch"] < KILL_EPOCHS:
        rc, _, err = cli(["train", "--resume", folder, "--no-progress"])
        assert rc == 0, err
    a, oa, sa = load_checkpoint(folder / "model.npz")
    b, ob, sb = load_checkpoint(os.path.join(uninterrupted, "model.npz"))
    assert sa["rng"] == sb["rng"] and sa["epoch"] == sb["epoch"]
    assert all(a.params[k].tobytes() == b.params[k].tobytes() for k in a.params)
    assert all(oa.state[k].tobytes() == ob.state[k].tobytes() for k in oa.state)
    rows = strict_json_lines(folder / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(1, KILL_EPOCHS + 1))
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")]


def test_ctrl_c_names_the_epoch_the_checkpoint_holds(tmp_path):
    from scratchvae.training.loop import load_checkpoint

    folder = tmp_path / "run"
    p = _start(folder, tmp_path, 100000, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (folder / "model.npz").exists(), p)
    time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    expect(p.returncode, 130, err, f"--resume {folder}")
    _, _, state = load_checkpoint(folder / "model.npz")
    assert f"checkpoint of epoch {state['epoch']} " in err, err


def test_ctrl_c_in_the_first_epoch_says_there_is_no_checkpoint(tmp_path):
    folder = tmp_path / "run"
    p = subprocess.Popen(**INTERRUPTIBLE, args=[sys.executable, "-m", "scratchvae", "train", "--out", folder,
                                                "--epochs", "2", "--batch-size", "1", "--backend", "reference",
                                                "--hidden", "8", "--latent", "2"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = p.stdout.readline()  # "training on ..." is printed, flushed, as the first epoch starts
    assert first.startswith("training on"), first
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    expect(p.returncode, 130, err, "no checkpoint")
    assert not (folder / "model.npz").exists()

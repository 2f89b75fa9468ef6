"""Bad command lines and impossible sizes: one line naming the option, exit 2, no run folder with a checkpoint."""
import os
import subprocess
import sys

import pytest

from tests.hostile.helpers import cli, expect

# name: (the options after "train --out DIR --epochs 1 --no-progress", a phrase the message must hold)
BAD_TRAIN_LINES = {
    "--epochs 0": (["--epochs", "0"], "--epochs"),
    "--epochs -1": (["--epochs", "-1"], "--epochs"),
    "--epochs 1.5": (["--epochs", "1.5"], "--epochs"),
    "--epochs x": (["--epochs", "x"], "--epochs"),
    "--batch-size 0": (["--batch-size", "0"], "--batch-size"),
    "--batch-size 1e3": (["--batch-size", "1e3"], "--batch-size"),
    "--latent 0": (["--latent", "0"], "--latent"),
    "--latent -3": (["--latent", "-3"], "--latent"),
    "--latent 1000000000": (["--latent", "1000000000"], "would need"),
    "--hidden 1000000000": (["--hidden", "1000000000"], "would need"),
    "--hidden 100000,100000": (["--hidden", "100000,100000,100000"], "would need"),
    "--hidden 8,,8": (["--hidden", "8,,8"], "--hidden"),
    "--hidden 0": (["--hidden", "0"], "--hidden"),
    "--hidden -8": (["--hidden", "-8"], "--hidden"),
    "--hidden x": (["--hidden", "x"], "--hidden"),
    "--samples 0": (["--samples", "0"], "--samples"),
    "--samples 10^9 with batch 100": (["--samples", "1000000000"], "would need"),
    "--k 10^9 iwae": (["--objective", "iwae", "--k", "1000000000"], "would need"),
    "--k 0": (["--objective", "iwae", "--k", "0"], "--k"),
    "--beta -1": (["--beta", "-1"], "--beta"),
    "--beta nan": (["--beta", "nan"], "--beta"),
    "--beta inf": (["--beta", "inf"], "--beta"),
    "--beta 1e400": (["--beta", "1e400"], "--beta"),
    "--beta x": (["--beta", "x"], "--beta"),
    "--warmup 1e308": (["--warmup", "1e308"], "--warmup"),
    "--warmup -1": (["--warmup", "-1"], "--warmup"),
    "--warmup inf": (["--warmup", "inf"], "--warmup"),
    "--lr 0": (["--lr", "0"], "--lr"),
    "--lr -1": (["--lr", "-1"], "--lr"),
    "--lr nan": (["--lr", "nan"], "--lr"),
    "--lr inf": (["--lr", "inf"], "--lr"),
    "--fixed-logvar nan": (["--fixed-logvar", "nan"], "--fixed-logvar"),
    "--seed -1": (["--seed", "-1"], "--seed"),
    "--seed 2**64": (["--seed", str(2**64)], "--seed"),
    "--seed x": (["--seed", "x"], "--seed"),
    "--optimizer lbfgs": (["--optimizer", "lbfgs"], "--optimizer"),
    "--activation softmax": (["--activation", "softmax"], "--activation"),
    "--likelihood poisson": (["--likelihood", "poisson"], "--likelihood"),
    "--dtype float16": (["--dtype", "float16"], "--dtype"),
    "--binarize otsu": (["--binarize", "otsu"], "--binarize"),
    "--objective vimco": (["--objective", "vimco"], "--objective"),
    "--dataset cifar": (["--dataset", "cifar"], "--dataset"),
    "--preset nope": (["--preset", "nope"], "--preset"),
    "--backend cuda": (["--backend", "cuda"], "--backend"),
    "unknown option": (["--bogus"], "unrecognized"),
    "missing value": (["--epochs"], "--epochs"),
    "mnist not present": (["--dataset", "mnist", "--data-dir", "/nonexistent-dir"], "mnist not found"),
}


@pytest.mark.parametrize("argv, needle", BAD_TRAIN_LINES.values(), ids=[f"train {k}" for k in BAD_TRAIN_LINES])
def test_a_bad_train_line_is_one_line_exit_2(argv, needle, tmp_path):
    out = tmp_path / "out"
    rc, _, err = cli(["train", "--out", out, "--epochs", "1", "--no-progress"] + argv)
    expect(rc, 2, err, needle)
    assert not (out / "model.npz").exists()


OTHER_LINES = {
    "no command": ([], "required"),
    "unknown command": (["frobnicate"], "invalid choice"),
    "evaluate without model": (["evaluate"], "required"),
    "evaluate --iw-samples 0": (["evaluate", "m.npz", "--iw-samples", "0"], "--iw-samples"),
    "evaluate --limit -1": (["evaluate", "m.npz", "--limit", "-1"], "--limit"),
    "evaluate --batch-size x": (["evaluate", "m.npz", "--batch-size", "x"], "--batch-size"),
    "evaluate --seed -1": (["evaluate", "m.npz", "--seed", "-1"], "--seed"),
    "evaluate --split validation": (["evaluate", "m.npz", "--split", "validation"], "--split"),
    "gradcheck --seed -1": (["gradcheck", "--seed", "-1"], "--seed"),
    "datasets download cifar": (["datasets", "download", "cifar"], "invalid choice"),
    "datasets nothing": (["datasets"], "required"),
    "resume with --lr": (["train", "--resume", "RUN", "--lr", "0.1"], "--lr"),
    "resume with --latent": (["train", "--resume", "RUN", "--latent", "3"], "--latent"),
    "resume of a missing folder": (["train", "--resume", "/nonexistent-run"], "/nonexistent-run"),
}


@pytest.mark.parametrize("argv, needle", OTHER_LINES.values(), ids=OTHER_LINES.keys())
def test_a_bad_line_of_another_command_is_one_line_exit_2(argv, needle):
    rc, _, err = cli(argv)
    expect(rc, 2, err, needle)


def test_the_real_command_prints_no_traceback_and_exits_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "scratchvae", "train", "--seed", "-1"], capture_output=True, text=True,
                       cwd=tmp_path)
    expect(r.returncode, 2, r.stderr, "--seed")


def test_resume_with_epochs_below_the_reached_epoch_changes_nothing(run_copy):
    folder = run_copy()
    before = open(os.path.join(folder, "model.npz"), "rb").read()
    rc, out, err = cli(["train", "--resume", folder, "--epochs", "1"])
    assert rc == 0 and "2 epochs already" in out, err
    assert open(os.path.join(folder, "model.npz"), "rb").read() == before

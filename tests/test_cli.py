import json
import subprocess
import sys

import pytest

from scratchvae.cli import main
from tests.conftest import needs_openblas


def test_gradcheck_command(capsys):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("max relative error: ")
    assert float(out[-1].split(": ")[1]) <= 1e-6
    assert any("ELBO gaussian (predicted variance)" in line for line in out)


def test_train_command_writes_the_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--epochs", "2", "--hidden", "16,16", "--latent", "2", "--batch-size", "200",
               "--samples", "2", "--beta", "0.5", "--dtype", "float64", "--optimizer", "adagrad", "--lr", "0.05",
               "--no-progress", "--out", str(out)])
    assert rc == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[-1]["beta"] == 0.5
    assert "weighted by beta=0.5 (not a bound)" in capsys.readouterr().out
    for name in ("model.npz", "reconstructions.png", "samples.png", "curves.png", "manifold.png"):
        assert (out / name).exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "0"], "positive integer"),
    (["train", "--hidden", "a,b"], "layer widths"),
    (["train", "--hidden", "4,-1"], "positive"),
    (["train", "--lr", "-1"], "argument --lr: expected a positive number"),
    (["train", "--beta", "nan"], "beta"),
    (["train", "--likelihood", "poisson"], "invalid choice"),
    (["train", "--bogus"], "unrecognized arguments"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert main(argv + (["--out", str(tmp_path)] if argv[:1] == ["train"] else [])) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


def test_no_traceback_from_the_real_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "scratchvae", "train", "--batch-size", "x"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["train", "gradcheck"])
def test_help_states_defaults(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "(default:" in capsys.readouterr().out


def test_evaluate_command(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "3", "--hidden", "16", "--latent", "2", "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run / "model.npz"), "--iw-samples", "50", "--limit", "40", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"elbo", "iwae", "iw_samples", "kl", "recon", "active_units", "n"} <= set(result)
    assert result["n"] == 40 and result["iw_samples"] == 50 and result["dataset"] == "digits"
    assert result["elbo"] <= result["iwae"]
    assert result["elbo"] == pytest.approx(result["recon"] - result["kl"])


def test_evaluate_refuses_a_damaged_model(tmp_path, capsys):
    bad = tmp_path / "m.npz"
    bad.write_bytes(b"PK\x03\x04garbage")
    assert main(["evaluate", str(bad)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# --------------------------------------------------------- sample, plot, figures, threads, optional pieces
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from scratchvae._fast import blas

    out = tmp_path_factory.mktemp("cli") / "run"
    before = blas.get_threads()
    try:
        assert main(["train", "--epochs", "3", "--hidden", "8", "--latent", "2", "--no-progress",
                     "--figures-every", "1", "--threads", "1", "--out", str(out)]) == 0
    finally:
        blas.set_threads(before)
    return out


def test_figures_every_epoch_and_the_thread_count_recorded(tiny_run):
    assert (tiny_run / "curves.png").read_bytes()[:8] == PNG
    rec = json.loads((tiny_run / "run.json").read_text())
    assert rec["blas_threads"] == 1  # recorded while the run held the count it was given
    log = (tiny_run / "train.log").read_text()
    assert "kernels ready in" in log and log.index("kernels ready") < log.index("epoch   1")


def test_figures_are_written_every_n_epochs_and_at_the_end(tmp_path, monkeypatch):
    from scratchvae.training import loop as train_module
    from scratchvae.data.datasets import load_digits
    from scratchvae.model import VAE, VAEConfig

    drawn = []
    monkeypatch.setattr(train_module, "_figures", lambda out, model, ds, src, history: drawn.append(len(history)))
    model = VAE(VAEConfig(data_dim=64, latent_dim=2, hidden=(8,)), __import__("numpy").random.default_rng(0))
    train_module.train(model, load_digits(), train_module.TrainConfig(epochs=5, backend="reference"),
                       str(tmp_path / "run"), progress=False, log=lambda line: None, figures_every=2)
    assert drawn == [2, 4, 5]  # after epochs 2 and 4, and once at the end


def test_sample_writes_images_and_arrays(tiny_run, tmp_path, capsys):
    import numpy as np

    model = str(tiny_run / "model.npz")
    assert main(["sample", model, "--n", "5", "--seed", "3", "--out", str(tmp_path / "s.png"),
                 "--npz", str(tmp_path / "s.npz")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG
    with np.load(tmp_path / "s.npz") as f:
        z, x = f["z"], f["x"]
    assert z.shape == (5, 2) and x.shape == (5, 64)
    np.testing.assert_array_equal(z, np.random.default_rng(3).standard_normal((5, 2), dtype=np.float32))
    assert ((x > 0) & (x < 1)).all()  # means of Bernoulli pixels
    assert main(["sample", model, "--n", "5", "--draw", "--npz", str(tmp_path / "d.npz")]) == 0
    with np.load(tmp_path / "d.npz") as f:
        assert set(np.unique(f["x"])) <= {0.0, 1.0}  # drawn pixels are 0 or 1
    capsys.readouterr()


def test_plot_draws_every_figure_again_and_a_traversal(tiny_run, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["plot", str(tiny_run), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"reconstructions.png", "samples.png", "curves.png", "latent.png", "manifold.png",
                     "traversal.png"}
    assert all((out / n).read_bytes()[:8] == PNG for n in names)
    capsys.readouterr()


@pytest.mark.parametrize("argv, message", [
    (["sample", "{run}/model.npz", "--n", "0"], "--n"),
    (["plot", "{tmp}/nowhere"], "nowhere"),
    (["train", "--threads", "0"], "--threads"),
])
def test_bad_sample_plot_threads_arguments(argv, message, tiny_run, tmp_path, capsys):
    argv = [a.format(run=tiny_run, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_without_matplotlib_a_run_says_so_and_writes_no_figure(tmp_path, monkeypatch, capsys):
    from scratchvae.training import plots

    monkeypatch.setattr(plots, "available", lambda: False)
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--hidden", "8", "--latent", "2", "--no-progress", "--out", str(out)]) == 0
    assert "matplotlib is not installed" in capsys.readouterr().out
    assert not list(out.glob("*.png"))
    assert main(["plot", str(out)]) == 2
    assert "matplotlib" in capsys.readouterr().err


def test_without_numba_one_line_and_the_reference_kernels(tmp_path, monkeypatch, capsys):
    from scratchvae import engine

    monkeypatch.delenv("SCRATCHVAE_BACKEND", raising=False)
    monkeypatch.setattr(engine, "numba_available", lambda: False)
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--hidden", "8", "--latent", "2", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "numba is not installed: running the reference kernels" in printed
    assert "preparing the Numba kernels" not in printed
    assert json.loads((out / "run.json").read_text())["training"]["backend"] == "reference"


@needs_openblas
def test_the_thread_count_is_chosen_said_and_kept_on_resume(tmp_path, capsys, monkeypatch):
    """Without --threads: one BLAS thread per idle CPU, said in one line; a resume takes the count the run was
    started with (a run and its resume agree bit for bit only on the same count), whatever is idle then."""
    from scratchvae._fast import blas

    before = blas.get_threads()
    for var in blas.THREAD_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(blas, "idle_cpus", lambda seconds=0.2: 1)  # another program busy on one of two CPUs
    monkeypatch.setattr(blas, "get_threads", lambda: 2)
    out = tmp_path / "run"
    try:
        assert main(["train", "--epochs", "1", "--hidden", "8", "--latent", "2", "--no-progress",
                     "--out", str(out)]) == 0
        assert "BLAS threads: 1 (1 of " in capsys.readouterr().out
        assert json.loads((out / "run.json").read_text())["blas_threads"] == 1
        monkeypatch.setattr(blas, "idle_cpus", lambda seconds=0.2: 2)  # now idle: the run's own count all the same
        for var in blas.THREAD_ENV:
            monkeypatch.delenv(var, raising=False)  # set_threads exported the count for child processes
        assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
        assert "BLAS threads: 1, as the run was started with" in capsys.readouterr().out
    finally:
        blas.set_threads(before)


# --------------------------------------------------------- whose fault: the user's input (2) or a bug (1)
TINY = ["--hidden", "8", "--latent", "2", "--no-progress", "--backend", "reference"]


def _one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("error", [ValueError, OverflowError, KeyError, TypeError])
def test_a_bug_while_training_is_an_internal_error_with_the_traceback_in_the_run_log(error, tmp_path, monkeypatch,
                                                                                      capsys):
    """A ValueError from a bug is exit 1, not "bad argument"; its traceback goes to train.log, not the terminal.
    (The loop's evaluation is where a ValueError once passed for a diverged model.)"""
    from scratchvae.training import loop

    def broken(*a, **k):
        raise error("broken on purpose")
    monkeypatch.setattr(loop, "evaluate", broken)
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(run)] + TINY) == 1
    line = _one_line(capsys.readouterr().err)
    log = run / "train.log"
    assert line.startswith(f"scratchvae: internal error: {error.__name__}: ") and "broken on purpose" in line
    assert line.endswith(f"; please report it with {log}")
    text = log.read_text()
    assert text.startswith("training on digits")  # the run's own log, the traceback appended
    assert "Traceback (most recent call last)" in text and "in broken" in text and "scratchvae train --epochs 1" in text


@pytest.mark.parametrize("where, argv", [
    ("scratchvae.testing.gradcheck.run_all", ["gradcheck"]),
    ("scratchvae.data.datasets.load_dataset", ["train", "--epochs", "1", "--out", "{tmp}/run"] + TINY),
])
def test_a_bug_without_a_run_log_writes_the_traceback_to_the_temp_folder(where, argv, tmp_path, monkeypatch, capsys):
    import importlib
    import tempfile

    module, name = where.rsplit(".", 1)

    def broken(*a, **k):
        raise ValueError("broken on purpose")
    monkeypatch.setattr(importlib.import_module(module), name, broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert main([a.format(tmp=tmp_path) for a in argv]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("scratchvae: internal error: ValueError: broken on purpose; please report it with ")
    [report] = (tmp_path / "tmp").iterdir()
    assert line.endswith(str(report)) and report.name.startswith("scratchvae-internal-error-")
    text = report.read_text()
    assert "Traceback (most recent call last)" in text and "in broken" in text and f"scratchvae {argv[0]}" in text
    assert not (tmp_path / "run").exists()  # no run folder was made for a run that never started


def test_an_internal_error_no_file_can_take_is_still_one_line(tmp_path, monkeypatch, capsys):
    import tempfile

    from scratchvae.testing import gradcheck

    monkeypatch.setattr(gradcheck, "run_all", lambda seed: {}["missing"])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    assert main(["gradcheck"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line == ("scratchvae: internal error: KeyError: 'missing'; "
                    "please report it (no file could take the traceback)")


def _mnist_like(folder):
    import numpy as np

    from scratchvae.data.idx import write_idx

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 3), ("t10k", 2)):
        write_idx(str(folder / f"{prefix}-images-idx3-ubyte"), rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(str(folder / f"{prefix}-labels-idx1-ubyte"), rng.integers(0, 10, n, dtype=np.uint8))


@pytest.mark.parametrize("argv, env, message", [
    (["evaluate", "{run}/model.npz", "--dataset", "mnist", "--data-dir", "{tmp}"], None,
     "the model expects 64 dimensions, mnist has 784"),
    (["plot", "{copy}", "--out", "{tmp}/figs", "--data-dir", "{tmp}"], None,
     "the model expects 64 dimensions, mnist has 784"),
    (["train", "--epochs", "1", "--out", "{tmp}/run", "--hidden", "8"], "cuda", "$SCRATCHVAE_BACKEND='cuda'"),
    (["evaluate", "{run}/model.npz"], "cuda", "$SCRATCHVAE_BACKEND='cuda'"),
    (["train", "--epochs", "1", "--out", "{tmp}/run", "--samples", "1000000000"], None,
     "--samples 1000000000 would need"),
])
def test_the_users_input_refused_by_a_validator_is_exit_2(argv, env, message, tiny_run, tmp_path, monkeypatch,
                                                          capsys):
    """Validators' ValueErrors about what the user gave (a data set that does not fit the model, an environment
    variable, a size that would not fit in memory) stay exit 2 with their message."""
    import shutil

    from scratchvae.training import checkpoint

    _mnist_like(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns(".lock"))
    header, arrays = checkpoint.load(copy / "model.npz")
    header["training"]["dataset"] = "mnist"  # a digits model that says it is for mnist
    checkpoint.save(copy / "model.npz", {k: header[k] for k in ("architecture", "optimizer", "training")}, arrays)
    if env:
        monkeypatch.setenv("SCRATCHVAE_BACKEND", env)
    rc = main([a.format(run=tiny_run, tmp=tmp_path, copy=copy) for a in argv])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith("scratchvae: error: ") and message in line, line
    assert not (tmp_path / "run" / "model.npz").exists()


def test_a_failed_download_is_a_failure_while_running_not_a_bad_argument(tmp_path, monkeypatch, capsys):
    from scratchvae.data import download

    def unreachable(name, dest, base_url=None, progress=True):
        raise download.DownloadError(f"{dest}/x.gz: download of https://example.org/x.gz failed: "
                                     "Temporary failure in name resolution")
    monkeypatch.setattr(download, "download_dataset", unreachable)
    assert main(["datasets", "download", "mnist", "--data-dir", str(tmp_path), "--no-progress"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("scratchvae: failed: ") and "name resolution" in line


def test_train_and_evaluate_on_a_folder_of_pngs_and_the_data_verified(tmp_path, capsys):
    """The user's own data end to end: 40 8x8 PNGs in two class folders; evaluate finds them from the checkpoint,
    and refuses them (exit 2, one line) once an image changed or the folder is gone."""
    import numpy as np

    from tests.data.test_user_data import write_png

    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8))
    for i, img in enumerate(images):
        write_png(str(tmp_path / "pngs" / "ab"[i % 2] / f"{i:02d}.png"), img)
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(tmp_path / "pngs"), "--epochs", "1", "--hidden", "16", "--latent", "2",
                 "--no-progress", "--threads", "1", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "pixels data, 36 train / 4 test examples of 64 values; --likelihood bernoulli" in out
    evaluate = ["evaluate", str(run / "model.npz"), "--iw-samples", "5", "--threads", "1", "--no-progress"]
    assert main(evaluate) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == str(tmp_path / "pngs") and result["n"] == 4  # the carved test split
    write_png(str(tmp_path / "pngs" / "a" / "00.png"), images[0] // 2)
    assert main(evaluate) == 2
    assert "the data changed since training" in _one_line(capsys.readouterr().err)
    write_png(str(tmp_path / "pngs" / "a" / "00.png"), images[0])  # as trained on again
    # the weights through safetensors and back: the imported checkpoint describes the same data
    assert main(["export", str(run), "--out", str(tmp_path / "w" / "vae.safetensors")]) == 0
    assert main(["import", str(tmp_path / "w" / "vae.safetensors"), "--out", str(tmp_path / "back" / "model.npz")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "back" / "model.npz")] + evaluate[2:]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"] == str(tmp_path / "pngs")
    (tmp_path / "pngs").rename(tmp_path / "gone")
    assert main(evaluate) == 2
    assert f"{tmp_path / 'pngs'}: no such file or folder" in _one_line(capsys.readouterr().err)


def test_a_refused_data_file_names_the_option(tmp_path, capsys):
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY garbage")
    assert main(["train", "--dataset", str(tmp_path / "x.npy"), "--out", str(tmp_path / "run")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"scratchvae: error: --dataset: {tmp_path / 'x.npy'}: ") and "npy header" in line
    assert not (tmp_path / "run").exists()

import json
import subprocess
import sys

import pytest

from scratchvae.cli import main


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

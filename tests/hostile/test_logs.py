"""What a person tailing the output sees: one flushed line per epoch on a pipe, the same lines in train.log,
a quiet end when the reader goes away, strict JSON metrics."""
import os
import signal
import subprocess
import sys

from tests.hostile.helpers import INTERRUPTIBLE, TINY, cli, strict_json_lines


def test_one_flushed_line_per_epoch_on_a_pipe_and_no_carriage_returns(tmp_path):
    p = subprocess.Popen(**INTERRUPTIBLE, args=[sys.executable, "-m", "scratchvae", "train", "--out",
                                                tmp_path / "run", "--epochs", "100000", "--backend", "reference",
                                                "--hidden", "8", "--latent", "2"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [p.stdout.readline() for _ in range(3)]  # read while the run goes on: they were flushed
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    assert lines[1].startswith("epoch   1") and lines[2].startswith("epoch   2"), lines
    assert "\r" not in "".join(lines) + err


def test_the_run_folder_holds_a_copy_of_the_log(tmp_path):
    folder = tmp_path / "run"
    rc, out, err = cli(["train", "--out", folder, "--epochs", "2"] + TINY)
    assert rc == 0, err
    log = (folder / "train.log").read_text().splitlines()
    assert log == out.splitlines()[:-1] and log[-1].startswith("epoch   2")


def test_train_into_head_2_ends_quietly_and_the_run_completes(tmp_path):
    from scratchvae.training.loop import load_checkpoint

    folder = tmp_path / "run"
    p = subprocess.Popen(**INTERRUPTIBLE, args=[sys.executable, "-m", "scratchvae", "train", "--out", folder,
                                                "--epochs", "30", "--backend", "reference"] + TINY,
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.readline()
    p.stdout.close()  # head -2 exits
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert p.returncode == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
    _, _, state = load_checkpoint(folder / "model.npz")
    assert state["epoch"] == 30


def test_metrics_are_strict_json_and_match_the_checkpoints_history(run_copy):
    from scratchvae.training.loop import load_checkpoint

    folder = run_copy()
    rc, _, err = cli(["train", "--resume", folder, "--epochs", "3", "--no-progress"])
    assert rc == 0, err
    rows = strict_json_lines(os.path.join(folder, "metrics.jsonl"))
    _, _, state = load_checkpoint(os.path.join(folder, "model.npz"))
    assert rows == state["history"]

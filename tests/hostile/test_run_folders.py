"""A run folder belongs to one run: an earlier run's folder is refused unless resumed or overwritten, a folder in
use by another process is refused naming it, default folders never collide, the record names the run."""
import json
import os
import shutil
import signal
import subprocess
import sys

from tests.hostile.helpers import INTERRUPTIBLE, TINY, cli, expect, strict_json_lines, wait_for


def test_a_new_run_into_an_old_runs_folder_is_refused_and_touches_nothing(run_copy):
    folder = run_copy()
    before = {n: open(os.path.join(folder, n), "rb").read() for n in os.listdir(folder) if n != ".lock"}
    rc, _, err = cli(["train", "--out", folder, "--epochs", "1"] + TINY)
    expect(rc, 2, err, "--resume", "--overwrite")
    after = {n: open(os.path.join(folder, n), "rb").read() for n in os.listdir(folder) if n != ".lock"}
    assert after == before


def test_overwrite_leaves_no_file_of_the_earlier_run(run_copy):
    folder = run_copy()
    assert os.path.exists(os.path.join(folder, "manifold.png"))  # latent 2 draws a manifold
    rc, _, err = cli(["train", "--out", folder, "--overwrite", "--epochs", "1", "--latent", "3", "--hidden", "8",
                      "--no-progress"])
    assert rc == 0, err
    assert not os.path.exists(os.path.join(folder, "manifold.png"))
    rows = strict_json_lines(os.path.join(folder, "metrics.jsonl"))
    assert [r["epoch"] for r in rows] == [1]


def test_overwrite_refuses_a_folder_with_other_files(run_copy):
    folder = run_copy()
    open(os.path.join(folder, "notes.txt"), "w").write("mine")
    rc, _, err = cli(["train", "--out", folder, "--overwrite", "--epochs", "1"] + TINY)
    expect(rc, 2, err, "notes.txt")
    assert os.path.exists(os.path.join(folder, "model.npz"))


def test_resume_into_another_folder_holding_a_run_is_refused(run_copy, tmp_path):
    folder = run_copy()
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    rc, _, err = cli(["train", "--resume", folder, "--out", other, "--epochs", "3"])
    expect(rc, 2, err, "other")


def test_default_folders_do_not_collide_and_latest_points_at_the_newest(tmp_path):
    for _ in range(2):
        rc, _, err = cli(["train", "--epochs", "1"] + TINY, cwd=tmp_path)
        assert rc == 0, err
    runs = sorted(n for n in os.listdir(tmp_path / "runs") if n != "latest")
    assert len(runs) == 2
    assert os.readlink(tmp_path / "runs" / "latest") in (runs[-1], max(runs, key=lambda n: (len(n), n)))


def test_the_run_record_names_version_command_line_configuration_and_threads(tmp_path):
    import scratchvae

    folder = tmp_path / "run"
    rc, _, err = cli(["train", "--out", folder, "--epochs", "1", "--beta", "0.5"] + TINY)
    assert rc == 0, err
    rec = json.loads((folder / "run.json").read_text())
    assert rec["version"] == scratchvae.__version__ and rec["training"]["beta"] == 0.5
    assert rec["architecture"]["latent_dim"] == 2 and "blas_threads" in rec and "command" in rec


def test_a_killed_writers_temporary_file_is_swept_only_by_the_lock_holder(run_copy):
    from scratchvae.training.runs import RunFolder

    folder = run_copy()
    leftover = os.path.join(folder, ".tmp-dead.npz")
    open(leftover, "wb").write(b"partial")
    with RunFolder(folder, "resume"):
        assert not os.path.exists(leftover)


# ----------------------------------------------------------------- two runs, one folder
def test_a_second_run_into_a_folder_in_use_is_refused_naming_the_process(run_copy):
    from scratchvae.training.runs import RunFolder

    folder = run_copy()
    theirs = os.path.join(folder, ".tmp-theirs.npz")
    with RunFolder(folder, "resume"):
        open(theirs, "wb").write(b"being written")  # the holder's temporary file
        for argv in (["train", "--resume", folder, "--epochs", "3", "--no-progress"],
                     ["train", "--out", folder, "--overwrite", "--epochs", "1"] + TINY):
            rc, _, err = cli(argv)
            expect(rc, 1, err, "in use", f"process {os.getpid()}")
        assert os.path.exists(theirs)  # not removed by the refused run
        assert os.path.exists(os.path.join(folder, "model.npz"))


def test_two_real_processes_into_one_folder(tmp_path):
    from scratchvae.training.loop import load_checkpoint

    folder = tmp_path / "run"
    a = subprocess.Popen(**INTERRUPTIBLE, args=[sys.executable, "-m", "scratchvae", "train", "--out", folder,
                                                "--epochs", "100000", "--backend", "reference"] + TINY,
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (folder / "model.npz").exists(), a)
        r = subprocess.run([sys.executable, "-m", "scratchvae", "train", "--resume", folder, "--no-progress"],
                           capture_output=True, text=True, cwd=tmp_path)
        expect(r.returncode, 1, r.stderr, "in use", f"process {a.pid}")
        assert a.poll() is None
    finally:
        a.send_signal(signal.SIGINT)
        a.communicate(timeout=60)
    assert a.returncode == 130
    load_checkpoint(folder / "model.npz")

"""`scratchvae export` against hostile outputs and faults: it never writes over a checkpoint or a run's record,
never writes into a run folder another process holds, and a full disk leaves the earlier export whole (exit 1)."""
import os
import resource
import shutil
import subprocess
import sys

import pytest

from scratchvae.training.runs import RunFolder
from tests.hostile.helpers import cli, expect, files_of, nothing_lost

FSIZE_LIMIT = 2_000  # bytes: below the 4.6 kB of the tiny run's export (64-8-2 in float32)


@pytest.mark.parametrize("out, code, needles", [
    pytest.param("{run}/model.npz", 2, ["--out", "model.npz", "run's own file"], id="the run's checkpoint"),
    pytest.param("{tmp}/other.npz", 2, ["--out", "other.npz", "is a checkpoint"], id="another checkpoint"),
    pytest.param("{run}/metrics.jsonl", 2, ["--out", "metrics.jsonl", "run's own file"], id="the run's metrics"),
    pytest.param("{run}", 2, ["--out", "is a folder"], id="a folder"),
    pytest.param("{tmp}/file/x.safetensors", 1, ["--out", "cannot create the folder"], id="under a file"),
])
def test_an_out_that_would_lose_something_is_refused(run_copy, tmp_path, out, code, needles):
    run = run_copy()
    shutil.copy(os.path.join(run, "model.npz"), tmp_path / "other.npz")
    (tmp_path / "file").write_text("x")
    before, before_tmp = files_of(run), files_of(tmp_path)
    rc, _, err = cli(["export", run, "--out", out.format(run=run, tmp=tmp_path)])
    expect(rc, code, err, *needles)
    nothing_lost(before, run)
    nothing_lost(before_tmp, tmp_path)


def test_a_missing_or_damaged_model_is_refused(tmp_path):
    rc, _, err = cli(["export", tmp_path / "none.npz"])
    expect(rc, 2, err, "none.npz", "no such checkpoint")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    rc, _, err = cli(["export", tmp_path / "bad.npz"])
    expect(rc, 2, err, "bad.npz")
    assert sorted(os.listdir(tmp_path)) == ["bad.npz"]  # nothing written


def test_a_run_folder_in_use_is_not_written(run_copy):
    run = run_copy()
    before = files_of(run)
    with RunFolder(run, mode="write"):  # as a training run holds it
        rc, _, err = cli(["export", run])
    expect(rc, 1, err, "in use", f"process {os.getpid()}")
    nothing_lost(before, run)
    assert not os.path.exists(os.path.join(run, "model.safetensors"))


def test_a_full_disk_exits_1_and_keeps_the_earlier_export_whole(run_copy, tmp_path):
    """A real write limit (RLIMIT_FSIZE, a full disk as the writer sees it) in a child process."""
    run = run_copy()
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"the earlier export")
    r = subprocess.run([sys.executable, "-m", "scratchvae", "export", run, "--out", out], capture_output=True,
                       text=True, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT,) * 2))
    expect(r.returncode, 1, r.stderr, str(out), "File too large")
    assert out.read_bytes() == b"the earlier export"
    assert sorted(os.listdir(tmp_path)) == ["run", "w.safetensors"]  # no temporary file


def test_an_export_into_the_run_folder_never_blocks_a_rerun(run_copy):
    run = run_copy()
    rc, out, err = cli(["export", os.path.join(run, "model.npz")])
    assert rc == 0, err
    assert f"wrote {os.path.join(run, 'model.safetensors')}" in out
    rc, _, err = cli(["train", "--out", run, "--overwrite", "--epochs", "1", "--hidden", "8", "--latent", "2",
                      "--no-progress"])
    assert rc == 0, err
    assert not os.path.exists(os.path.join(run, "model.safetensors"))  # derived from the model it replaced

"""`scratchvae sample` against hostile sizes, outputs and faults: no checkpoint or run file is replaced, the file
named is the file written, a size that cannot fit is refused up front, and a full disk leaves no truncated PNG."""
import os
import resource
import shutil
import subprocess
import sys

import pytest

from scratchvae.training.runs import RunFolder
from tests.hostile.helpers import cli, expect, files_of, nothing_lost

FSIZE_LIMIT = 10_000  # bytes: below the PNG of 400 samples (about 60 kB), above the lock and the file list


@pytest.mark.parametrize("argv, code, needles", [
    pytest.param(["--npz", "{run}/model.npz"], 2, ["--npz", "run's own file"], id="--npz the checkpoint"),
    pytest.param(["--npz", "{run}/model"], 2, ["--npz", "model.npz", "run's own file"],
                 id="--npz the checkpoint without its suffix"),
    pytest.param(["--npz", "{tmp}/other.npz"], 2, ["--npz", "is a checkpoint"], id="--npz another checkpoint"),
    pytest.param(["--out", "{tmp}/other.npz"], 2, ["--out", "is a checkpoint"], id="--out another checkpoint"),
    pytest.param(["--out", "{run}/run.json"], 2, ["--out", "run's own file"], id="--out the run record"),
    pytest.param(["--out", "{run}"], 2, ["--out", "is a folder"], id="--out a folder"),
    pytest.param(["--n", "10000000000"], 2, ["--n 10000000000", "would need", "allowed on this machine"],
                 id="--n too many for memory"),
    pytest.param(["--n", "0"], 2, ["--n", "positive integer"], id="--n zero"),
    pytest.param(["--seed", "-1"], 2, ["--seed", "integer in [0, 2**63)"], id="--seed negative"),
])
def test_a_hostile_argument_is_refused_and_nothing_is_lost(run_copy, tmp_path, argv, code, needles):
    run = run_copy()
    shutil.copy(os.path.join(run, "model.npz"), tmp_path / "other.npz")
    before, before_tmp = files_of(run), files_of(tmp_path)
    rc, _, err = cli(["sample", run] + [a.format(run=run, tmp=tmp_path) for a in argv])
    expect(rc, code, err, *needles)
    nothing_lost(before, run)
    nothing_lost(before_tmp, tmp_path)
    assert files_of(tmp_path).keys() == before_tmp.keys()  # and nothing new


def test_npz_reports_the_file_it_wrote(run_copy, tmp_path):
    rc, out, err = cli(["sample", run_copy(), "--n", "3", "--npz", tmp_path / "out"])
    assert rc == 0, err
    assert os.listdir(tmp_path) != [] and (tmp_path / "out.npz").is_file() and not (tmp_path / "out").exists()
    assert f"wrote {tmp_path / 'out.npz'}: z [3, 2], x [3, 64]" in out


def test_a_run_folder_in_use_is_not_written(run_copy):
    run = run_copy()
    before = files_of(run)
    with RunFolder(run, mode="write"):
        rc, _, err = cli(["sample", run, "--n", "4"])
    expect(rc, 1, err, "in use", f"process {os.getpid()}")
    nothing_lost(before, run)
    assert files_of(run).keys() == before.keys()


def test_a_full_disk_never_leaves_a_truncated_png(run_copy, tmp_path):
    """A real write limit (RLIMIT_FSIZE) in a child process; the PNG it would replace stays whole."""
    run = run_copy()
    png = tmp_path / "s.png"
    png.write_bytes(b"the earlier figure")
    r = subprocess.run([sys.executable, "-m", "scratchvae", "sample", run, "--n", "400", "--out", png],
                       capture_output=True, text=True,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT,) * 2))
    expect(r.returncode, 1, r.stderr, str(png), "File too large")
    assert png.read_bytes() == b"the earlier figure"
    assert sorted(os.listdir(tmp_path)) == ["run", "s.png"]  # no temporary file

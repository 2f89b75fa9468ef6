"""`scratchvae plot` against hostile outputs and faults, and the derived files of every command against a rerun:
figures replace only figures, never another run's; a full disk keeps the earlier figure; whatever the commands
wrote into a run folder, `train --overwrite` removes with the run, and nothing outside it."""
import errno
import os
import shutil

import pytest

from scratchvae.training.runs import DERIVED, RUN_FILES, RunFolder
from tests.hostile.helpers import TINY, cli, expect, files_of, nothing_lost


def test_a_checkpoint_path_is_taken_for_its_run_folder(run_copy):
    run = run_copy()
    rc, out, err = cli(["plot", os.path.join(run, "model.npz")])
    assert rc == 0, err
    assert os.path.join(run, "traversal.png") in out.split()


@pytest.mark.parametrize("out, code, needles", [
    pytest.param("{other}", 2, ["--out", "holds another run"], id="another run's folder"),
    pytest.param("{tmp}/file", 2, ["--out", "not a folder"], id="a file"),
])
def test_an_out_that_would_lose_something_is_refused(run_copy, tmp_path, out, code, needles):
    run = run_copy()
    other = tmp_path / "other"
    shutil.copytree(run, other)
    (tmp_path / "file").write_text("keep")
    before = files_of(tmp_path)
    rc, _, err = cli(["plot", run, "--out", out.format(other=other, tmp=tmp_path)])
    expect(rc, code, err, *needles)
    nothing_lost(before, tmp_path)


def test_a_missing_run_is_refused(tmp_path):
    rc, _, err = cli(["plot", tmp_path / "none"])
    expect(rc, 2, err, "none", "no such checkpoint")


def test_a_run_folder_in_use_is_not_written(run_copy):
    run = run_copy()
    before = files_of(run)
    with RunFolder(run, mode="write"):
        rc, _, err = cli(["plot", run])
    expect(rc, 1, err, "in use", f"process {os.getpid()}")
    nothing_lost(before, run)


def test_a_full_disk_exits_1_and_keeps_the_earlier_figures(run_copy, monkeypatch):
    run = run_copy()
    with open(os.path.join(run, "traversal.png"), "wb") as f:
        f.write(b"the earlier figure")
    before = files_of(run)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    rc, _, err = cli(["plot", run])
    monkeypatch.undo()
    expect(rc, 1, err, ".png", "No space left on device")
    nothing_lost(before, run)


def test_what_every_command_derives_never_blocks_a_rerun(run_copy, tmp_path):
    """The README's order: train, plot, sample into the run, export, encode...; then `make demo` again."""
    run = run_copy()
    outside = tmp_path / "mine.png"
    for argv in (["plot", run], ["sample", os.path.join(run, "model.npz"), "--n", "4"],
                 ["sample", run, "--n", "4", "--out", os.path.join(run, "more-samples.png")],
                 ["export", os.path.join(run, "model.npz")], ["encode", run, "--limit", "20"],
                 ["reconstruct", run, "--n", "3", "--npz", os.path.join(run, "deep", "er", "r.npz")],
                 ["interpolate", run, "--steps", "3"], ["sample", run, "--n", "2", "--out", outside]):
        rc, _, err = cli(argv)
        assert rc == 0, (argv, err)
    assert {"more-samples.png", "model.safetensors", "deep"} <= set(os.listdir(run))
    rc, _, err = cli(["train", "--out", run, "--overwrite", "--epochs", "1", "--backend", "reference"] + TINY)
    assert rc == 0, err
    left = set(os.listdir(run)) - {".lock"}
    assert left <= set(RUN_FILES) - {DERIVED, "traversal.png"}, left  # the new run's own files, nothing derived
    assert outside.is_file()  # outside the run: not the rerun's to remove


def test_a_file_of_the_user_in_the_run_folder_still_blocks_overwrite(run_copy):
    run = run_copy()
    with open(os.path.join(run, "notes.txt"), "w") as f:
        f.write("mine")
    rc, _, err = cli(["train", "--out", run, "--overwrite", "--epochs", "1"] + TINY)
    expect(rc, 2, err, "notes.txt", "choose another --out")
    assert open(os.path.join(run, "notes.txt")).read() == "mine"


FORGED = ["../victim.txt", "/ABS/victim.txt", "sub/../../victim.txt", "model.npz/../../victim.txt", "./../victim.txt"]


def test_a_forged_list_of_derived_files_removes_nothing_outside_the_run(run_copy, tmp_path):
    run = run_copy()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    with open(os.path.join(run, DERIVED), "w") as f:
        f.write("".join(entry.replace("/ABS", str(tmp_path)) + "\n" for entry in FORGED))
    rc, _, err = cli(["train", "--out", run, "--overwrite", "--epochs", "1"] + TINY)
    assert rc == 0, err
    assert victim.read_text() == "keep"

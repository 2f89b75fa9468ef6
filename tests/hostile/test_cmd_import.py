"""`scratchvae import` against hostile outputs and files: a trained checkpoint is replaced only with --overwrite,
never while a run holds its folder, and a hostile or unusable file writes nothing."""
import os

import pytest

from scratchvae.training.runs import RunFolder
from tests.hostile.helpers import cli, expect, files_of, nothing_lost


@pytest.fixture
def exported(run_copy, tmp_path_factory):
    """(a trained run to damage, a safetensors file exported from it)."""
    run = run_copy()
    out = tmp_path_factory.mktemp("exported") / "w.safetensors"
    rc, _, err = cli(["export", run, "--out", out])
    assert rc == 0, err
    return run, str(out)


@pytest.mark.parametrize("out", ["{run}/model.npz", "{run}"], ids=["the checkpoint", "its run folder"])
def test_a_trained_checkpoint_is_not_replaced_without_overwrite(exported, out):
    run, weights = exported
    before = files_of(run)
    rc, _, err = cli(["import", weights, "--out", out.format(run=run)])
    expect(rc, 2, err, "--out", "model.npz", "--overwrite")
    nothing_lost(before, run)


def test_not_even_with_overwrite_while_a_run_holds_the_folder(exported):
    run, weights = exported
    before = files_of(run)
    with RunFolder(run, mode="write"):  # as `train` holds it while it runs
        rc, _, err = cli(["import", weights, "--out", os.path.join(run, "model.npz"), "--overwrite"])
    expect(rc, 1, err, "in use", f"process {os.getpid()}")
    nothing_lost(before, run)


def test_with_overwrite_the_checkpoint_is_replaced_whole(exported):
    run, weights = exported
    rc, out, err = cli(["import", weights, "--out", os.path.join(run, "model.npz"), "--overwrite"])
    assert rc == 0, err
    from scratchvae.training.checkpoint import load_checkpoint

    _, _, state = load_checkpoint(os.path.join(run, "model.npz"))
    assert state["epoch"] == 0 and state["history"] == []  # the imported model, with a fresh state
    assert not [n for n in os.listdir(run) if n.startswith(".tmp-")]


def test_missing_folders_are_created(exported, tmp_path):
    _, weights = exported
    out = tmp_path / "runs" / "torch" / "model.npz"
    rc, _, err = cli(["import", weights, "--out", out])
    assert rc == 0, err
    assert out.is_file()


@pytest.mark.parametrize("damage, needles", [
    pytest.param(lambda b: b[:len(b) // 2], ["w.safetensors", "not a valid safetensors file"], id="truncated"),
    pytest.param(lambda b: b"\xff" * 8 + b[8:], ["w.safetensors", "header length"], id="huge header length"),
    pytest.param(lambda b: b"", ["w.safetensors", "shorter than"], id="empty"),
])
def test_a_hostile_file_writes_nothing(exported, tmp_path, damage, needles):
    _, weights = exported
    with open(weights, "rb") as f:
        blob = f.read()
    with open(weights, "wb") as f:
        f.write(damage(blob))
    rc, _, err = cli(["import", weights, "--out", tmp_path / "new" / "model.npz"])
    expect(rc, 2, err, *needles)
    assert not (tmp_path / "new").exists()


def test_an_out_under_a_file_fails_in_one_line(exported, tmp_path):
    _, weights = exported
    (tmp_path / "f").write_text("keep")
    rc, _, err = cli(["import", weights, "--out", tmp_path / "f" / "model.npz"])
    expect(rc, 1, err, "--out", "cannot create the folder")
    assert (tmp_path / "f").read_text() == "keep"


def test_a_full_disk_exits_1_and_keeps_the_earlier_checkpoint(exported, monkeypatch):
    import errno

    run, weights = exported
    before = files_of(run)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    rc, _, err = cli(["import", weights, "--out", os.path.join(run, "model.npz"), "--overwrite"])
    monkeypatch.undo()
    expect(rc, 1, err, "model.npz", "No space left on device")
    nothing_lost(before, run)

"""OS errors while training (disk full, read-only folders, names the OS refuses, a file-size limit), simulated or
real: one line naming the path and the reason, exit 1, the last good checkpoint kept, no temporary file left."""
import contextlib
import errno
import importlib
import os
import subprocess
import sys
import tempfile
from unittest import mock

import pytest

from tests.hostile.helpers import TINY, cli, expect, strict_json_lines


def test_an_out_that_is_a_file_is_refused_and_kept(tmp_path):
    f = tmp_path / "f"
    f.write_text("keep me")
    rc, _, err = cli(["train", "--out", f, "--epochs", "1"] + TINY)
    expect(rc, 2, err, str(f), "not a folder")
    assert f.read_text() == "keep me"


def test_an_out_under_a_file_fails(tmp_path):
    (tmp_path / "f").write_text("x")
    rc, _, err = cli(["train", "--out", tmp_path / "f" / "run", "--epochs", "1"] + TINY)
    expect(rc, 1, err, "f/run", "Not a directory")


def test_an_out_name_too_long_fails(tmp_path):
    rc, _, err = cli(["train", "--out", tmp_path / ("x" * 300), "--epochs", "1"] + TINY)
    expect(rc, 1, err, "File name too long")


@contextlib.contextmanager
def read_only(path_prefix):
    """os.open/open/tempfile.mkstemp refusing (EROFS) any path under ``path_prefix``: a read-only folder, root or
    not (the suite may run as root, where chmod stops nothing)."""
    real_os_open, real_open, real_mkstemp = os.open, open, tempfile.mkstemp

    def check(p):
        if os.path.abspath(os.fspath(p)).startswith(path_prefix):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(p))

    def os_open(p, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            check(p)
        return real_os_open(p, flags, *a, **k)

    def open_(p, mode="r", *a, **k):
        if isinstance(p, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            check(p)
        return real_open(p, mode, *a, **k)

    def mkstemp(*a, dir=None, **k):
        check(os.path.join(dir or "", "x"))
        return real_mkstemp(*a, dir=dir, **k)
    with mock.patch("os.open", os_open), mock.patch("builtins.open", open_), mock.patch("tempfile.mkstemp", mkstemp):
        yield


def test_a_read_only_folder_fails_a_new_run(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(os.path.abspath(folder)):
        rc, _, err = cli(["train", "--out", folder, "--epochs", "1"] + TINY)
    expect(rc, 1, err, "ro", "Read-only file system")


def test_a_read_only_folder_on_resume_keeps_the_checkpoint(run_copy):
    folder = run_copy()
    before = open(os.path.join(folder, "model.npz"), "rb").read()
    with read_only(os.path.abspath(folder)):
        rc, _, err = cli(["train", "--resume", folder, "--epochs", "4", "--no-progress"])
    expect(rc, 1, err, "Read-only file system")
    assert open(os.path.join(folder, "model.npz"), "rb").read() == before


def _disk_full_from(target, after_calls):
    """Patch ``target`` (module.attribute) to raise ENOSPC from its ``after_calls``+1-th call on."""
    module, attr = target.rsplit(".", 1)
    real = getattr(importlib.import_module(module), attr)
    calls = {"n": 0}

    def full(*a, **k):
        calls["n"] += 1
        if calls["n"] > after_calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **k)
    return mock.patch(target, full)


# (os.fsync: metrics.jsonl and run.json are written atomically first, each a file and a folder fsync; then each
# checkpoint fsyncs its file and its folder: the 7th call is the file of the 2nd checkpoint). No validation split,
# so that no best.npz is written between them (the count of best.npz's writes depends on the ELBO's course).
@pytest.mark.parametrize("target, after_calls, epochs_kept", [
    pytest.param("numpy.savez", 0, 0, id="writing the 1st checkpoint"),
    pytest.param("numpy.savez", 1, 1, id="writing the 2nd checkpoint"),
    pytest.param("numpy.savez", 2, 2, id="writing the 3rd checkpoint"),
    pytest.param("os.fsync", 6, 1, id="at fsync of the 2nd checkpoint"),
])
def test_disk_full_keeps_the_last_checkpoint(target, after_calls, epochs_kept, tmp_path):
    from scratchvae.training.loop import load_checkpoint

    folder = tmp_path / "run"
    with _disk_full_from(target, after_calls):
        rc, _, err = cli(["train", "--out", folder, "--epochs", "3", "--backend", "reference", "--validation", "0"]
                         + TINY)
    expect(rc, 1, err, "No space left on device")
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")]
    if epochs_kept:
        _, _, state = load_checkpoint(folder / "model.npz")
        assert state["epoch"] == epochs_kept and f"checkpoint of epoch {epochs_kept}" in err, err
        rows = strict_json_lines(folder / "metrics.jsonl")
        assert [r["epoch"] for r in rows][:epochs_kept] == list(range(1, epochs_kept + 1))
    else:
        assert not (folder / "model.npz").exists()


def test_disk_full_writing_the_figures_names_the_figure_and_the_checkpoint(tmp_path):
    folder = tmp_path / "run"
    full = OSError(errno.ENOSPC, "No space left on device", str(folder / "curves.png"))
    with mock.patch("scratchvae.training.loop._figures", side_effect=full):
        rc, _, err = cli(["train", "--out", folder, "--epochs", "2"] + TINY)
    expect(rc, 1, err, "curves.png", "No space left on device", "checkpoint of epoch 2")


def test_a_real_file_size_limit_fails_the_figures_not_the_checkpoint(tmp_path):
    import resource

    from scratchvae.training.loop import load_checkpoint

    folder = tmp_path / "run"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (40000, 40000))
    r = subprocess.run([sys.executable, "-m", "scratchvae", "train", "--out", folder, "--epochs", "2"] + TINY,
                       capture_output=True, text=True, preexec_fn=limit, cwd=tmp_path)
    expect(r.returncode, 1, r.stderr, "File too large")
    _, _, state = load_checkpoint(folder / "model.npz")
    assert state["epoch"] == 2

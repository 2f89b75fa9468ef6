"""Atomic writes (scratchvae/io/files.py): the new contents or the old, never a part; a user's permissions."""
import os
import stat

import pytest

from scratchvae.io import files
from scratchvae.io.files import atomic_file


def test_the_file_gets_the_permissions_of_an_ordinary_write_not_those_of_a_temporary_file(tmp_path, monkeypatch):
    for umask in (0o022, 0o027):
        monkeypatch.setattr(files, "UMASK", umask)
        path = tmp_path / f"out-{umask:o}.png"
        with atomic_file(str(path)) as f:
            f.write(b"data")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask  # mkstemp alone leaves 0600


def test_the_umask_read_at_import_is_the_processes():
    mask = os.umask(0o022)
    os.umask(mask)
    assert files.UMASK == mask


def test_an_error_in_the_block_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_file(str(path)) as f:
            f.write(b"new, half written")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.npz"]
    with atomic_file(str(path)) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["model.npz"]

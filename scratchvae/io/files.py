"""Atomic writes: a file appears whole under its name or not at all, the one place this is done.

Every file the package writes that a user keeps (checkpoints, safetensors
exports, the run record and metrics, downloads) goes through a temporary file
in the same folder (so the rename cannot cross file systems), flushed and
fsynced, then renamed over the target and the folder's entry fsynced: a kill
at any moment leaves either the old file or the new one. Temporary names start
with ``.tmp-``; only the process that made one removes it.
"""
import contextlib
import os
import tempfile


def fsync_dir(folder):
    """Flush a directory entry (a rename) to disk where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path, suffix=""):
    """A binary file object whose contents replace ``path`` only if the ``with`` block ends without an error."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(folder)

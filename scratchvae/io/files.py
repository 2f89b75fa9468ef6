"""Atomic writes: a file appears whole under its name or not at all, the one place this is done.

Every file the package writes that a user keeps (checkpoints, safetensors
exports, the run record and metrics, downloads) goes through a temporary file
in the same folder (so the rename cannot cross file systems), flushed and
fsynced, then renamed over the target and the folder's entry fsynced: a kill
at any moment leaves either the old file or the new one. Temporary names start
with ``.tmp-``; only the process that made one removes it. The file gets the
permissions an ordinary ``open(path, "w")`` would give (0666 less the umask),
not the 0600 of a temporary file.
"""
import contextlib
import os
import tempfile


def _umask():
    """The process's umask (read by setting it and back: call it before any thread starts writing files)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _umask()  # at import, while the process is still single-threaded


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
        os.fchmod(fd, 0o666 & ~UMASK)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename in (None, tmp):
            e.filename = path  # name the file the user knows, not the temporary one
        raise
    fsync_dir(folder)

"""The run folder: one run per folder, held by an exclusive lock.

A run folder holds ``model.npz`` (the checkpoint), ``metrics.jsonl`` (one
line per epoch), ``train.log`` (the log, line by line), ``run.json`` (the
resolved configuration, the package version, the command line and the BLAS
thread count) and the PNG figures. While a run trains it holds an exclusive
``flock`` on ``.lock`` in the folder, whose text is the owner's process id; a
second run into the same folder is refused with a message naming it. The lock
is released by the kernel when its owner exits, killed or not, so there are no
stale locks to clean up.

Only the holder of the lock writes in the folder, so only it removes the
temporary files (``.tmp-*``) a killed earlier owner left behind.
"""
import datetime
import errno
import fcntl
import json
import os
import sys

from .._fast.blas import get_threads
from ..io.files import atomic_file

LOCK_NAME = ".lock"
RUN_FILES = ("model.npz", "metrics.jsonl", "train.log", "run.json", "reconstructions.png", "samples.png",
             "curves.png", "latent.png", "manifold.png")
RUNS_DIR = "runs"
LATEST = "latest"


class RunFolderError(RuntimeError):
    """The run folder cannot be used: in use by another run, or an OS error (one line naming the path)."""


class RunFolderRefused(ValueError):
    """The run folder holds another run and the command line did not say what to do with it."""


def os_reason(e):
    """The reason of an OSError in words, without the path repeated."""
    return e.strerror or e.__class__.__name__


def fresh_run_dir(base=RUNS_DIR):
    """Create and return a new folder under ``base`` for a run started now: ``YYYYmmdd-HHMMSS-PID[-N]``.

    The folder is made with an exclusive ``mkdir``, so two runs never get the same one.
    """
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        os.makedirs(base, exist_ok=True)
        for n in range(1, 10**6):
            path = os.path.join(base, f"{stamp}-{os.getpid()}" + (f"-{n}" if n > 1 else ""))
            try:
                os.mkdir(path)
                return path
            except FileExistsError:
                continue
    except OSError as e:
        raise RunFolderError(f"{base}: cannot create a run folder: {os_reason(e)}") from None
    raise RunFolderError(f"{base}: no free run folder name")


def point_latest(run_dir, base=RUNS_DIR):
    """Make ``base/latest`` a symbolic link to ``run_dir`` (atomically). Returns False where it cannot."""
    link = os.path.join(base, LATEST)
    if os.path.exists(link) and not os.path.islink(link):
        return False  # a real folder from an older version: left alone
    tmp = os.path.join(base, f".{LATEST}-{os.getpid()}")
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.basename(os.path.normpath(run_dir)), tmp)
        os.replace(tmp, link)
        return True
    except OSError:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        return False


class RunFolder:
    """Hold ``path`` as the folder of one run.

    Parameters
    ----------
    path : str
    mode : "new" (the folder must be empty or absent), "resume" (it must hold a
        checkpoint; the run continues) or "overwrite" (an earlier run's files are
        removed first; a folder holding other files is still refused)
    """

    def __init__(self, path, mode="new"):
        if mode not in ("new", "resume", "overwrite"):
            raise ValueError(f"unknown run folder mode {mode!r}")
        self.path, self.mode, self.fd = os.fspath(path), mode, None

    def file(self, name):
        return os.path.join(self.path, name)

    def acquire(self):
        """Create the folder if needed, take the lock, and clear it as ``mode`` says."""
        path = self.path
        if os.path.exists(path) and not os.path.isdir(path):
            raise RunFolderRefused(f"--out {path}: exists and is not a folder")
        try:
            os.makedirs(path, exist_ok=True)
            fd = os.open(self.file(LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunFolderError(f"{path}: cannot create the run folder: {os_reason(e)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            other = _read_pid(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunFolderError(f"{path} is in use by another training run (process {other}); "
                                     f"wait for it or choose another --out") from None
            raise RunFolderError(f"{path}: cannot lock the run folder: {os_reason(e)}") from None
        self.fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._clear()
        except OSError as e:
            self.release()
            raise RunFolderError(f"{path}: cannot prepare the run folder: {os_reason(e)}") from None
        except BaseException:
            self.release()
            raise
        return self

    def _clear(self):
        names = set(os.listdir(self.path)) - {LOCK_NAME}
        temporary = {n for n in names if n.startswith(".tmp-")}  # left by a killed owner: the lock is ours now
        for n in temporary:
            os.unlink(self.file(n))
        names -= temporary
        if self.mode == "resume":
            return
        if not names:
            return
        foreign = sorted(n for n in names if n not in RUN_FILES)
        if self.mode == "new":
            what = "another run" if "model.npz" in names or "metrics.jsonl" in names else "files"
            raise RunFolderRefused(f"--out {self.path}: the folder holds {what} ({', '.join(sorted(names)[:4])}); "
                                   f"continue it with --resume {self.path}, replace it with --overwrite, "
                                   f"or choose another --out")
        if foreign:
            raise RunFolderRefused(f"--out {self.path}: --overwrite removes only a run's files, and the folder also "
                                   f"holds {', '.join(foreign[:4])}; choose another --out")
        for n in sorted(names, key=lambda n: n == "model.npz"):
            os.unlink(self.file(n))

    def release(self):
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self):
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc):
        self.release()


def _read_pid(fd):
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def write_atomic(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`scratchvae.io.files.atomic_file`)."""
    with atomic_file(path, suffix="-" + os.path.basename(path)) as f:
        f.write(text.encode("utf-8"))


def run_record(architecture, training, dataset):
    """The ``run.json`` of a run: what was trained, with what, how it was started."""
    from .. import __version__

    return {
        "version": __version__,
        "command": sys.argv,
        "architecture": architecture,
        "training": training,
        "dataset": dataset,
        "blas_threads": get_threads(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                  "NUMBA_NUM_THREADS") if k in os.environ},
        "python": sys.version.split()[0],
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def record_json(record):
    return json.dumps(record, indent=2, default=str) + "\n"

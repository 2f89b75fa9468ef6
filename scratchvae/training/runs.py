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

Other commands write files derived from the model into a run folder (figures,
samples, exports, latents): :func:`output_files` takes the folder's lock while
they write and lists each such file in ``.derived``, so ``train --overwrite``
removes them with the run they were derived from and a rerun is never blocked
by them. No command other than ``train`` (and ``import --overwrite``) replaces
a checkpoint or a run's record.
"""
import contextlib
import datetime
import errno
import fcntl
import json
import os
import sys

from .._fast.blas import get_threads
from ..io.files import atomic_file

LOCK_NAME = ".lock"
DERIVED = ".derived"  # the files other commands wrote into the run folder, one path (relative to it) per line
RECORD_FILES = ("model.npz", "best.npz", "metrics.jsonl", "train.log", "run.json")  # the run's record: never
RUN_FILES = RECORD_FILES + ("reconstructions.png", "samples.png", "curves.png",     # replaced by a derived file
                            "latent.png", "manifold.png", "traversal.png", DERIVED)
RUN_MARKS = (LOCK_NAME, "model.npz", "best.npz", "metrics.jsonl", "run.json")  # any one makes a folder a run's
RUNS_DIR = "runs"
LATEST = "latest"


class RunFolderError(RuntimeError):
    """The run folder cannot be used: in use by another run, or an OS error (one line naming the path)."""


class RunFolderRefused(ValueError):
    """The run folder holds another run and the caller did not say what to do with it.

    ``str(e)`` is phrased for a Python caller (``out_dir``, ``mode="overwrite"``); ``e.cli_message``, when
    set, names the command line's options instead.
    """

    def __init__(self, message, cli_message=None):
        super().__init__(message)
        self.cli_message = cli_message


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
        checkpoint; the run continues), "overwrite" (an earlier run's files and the
        files derived from it are removed first; a folder holding other files is
        still refused) or "write" (another command writes derived files; nothing
        is removed)
    option : the option that named the folder, for messages
    """

    def __init__(self, path, mode="new", option="--out"):
        if mode not in ("new", "resume", "overwrite", "write"):
            raise ValueError(f"unknown run folder mode {mode!r}")
        self.path, self.mode, self.option, self.fd = os.fspath(path), mode, option, None

    def file(self, name):
        return os.path.join(self.path, name)

    def acquire(self):
        """Create the folder if needed, take the lock, and clear it as ``mode`` says."""
        path = self.path
        if os.path.exists(path) and not os.path.isdir(path):
            raise RunFolderRefused(f"{self.option} {path}: exists and is not a folder")
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
                raise RunFolderError(f"{path} is in use by another training run or command (process {other}); "
                                     f"wait for it or choose another {self.option}") from None
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
        if self.mode in ("resume", "write"):
            return
        if not names:
            return
        derived = read_derived(self.path)
        owned = {d.split("/")[0] for d in derived}
        foreign = sorted(n for n in names if n not in RUN_FILES and n not in owned)
        if self.mode == "new":
            what = "another run" if "model.npz" in names or "metrics.jsonl" in names else "files"
            held = f"the folder holds {what} ({', '.join(sorted(names)[:4])})"
            raise RunFolderRefused(
                f"out_dir {self.path}: {held}; continue it with resume=<its checkpoint's state>, replace it with "
                f'mode="overwrite", or choose another out_dir',
                f"--out {self.path}: {held}; continue it with --resume {self.path}, replace it with --overwrite, "
                f"or choose another --out")
        if foreign:
            also = f"removes only a run's files, and the folder also holds {', '.join(foreign[:4])}"
            raise RunFolderRefused(f'out_dir {self.path}: mode="overwrite" {also}; choose another out_dir',
                                   f"--out {self.path}: --overwrite {also}; choose another --out")
        for d in derived:  # before the list itself, so that a kill here leaves them listed
            _remove_derived(self.path, d)
        for n in sorted(names & set(RUN_FILES), key=lambda n: n == "model.npz"):
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


def is_run_folder(path):
    """Whether ``path`` is a folder holding a run (a checkpoint, metrics, a run record or a run's lock)."""
    return os.path.isdir(path) and any(os.path.lexists(os.path.join(path, n)) for n in RUN_MARKS)


def run_folder_of(path):
    """The run folder a file ``path`` would sit in (its folder or the nearest ancestor that is one), or None."""
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        if is_run_folder(folder):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def read_derived(run_dir):
    """The paths listed in ``run_dir``/.derived, relative to it; entries that could leave the folder are ignored."""
    try:
        with open(os.path.join(run_dir, DERIVED), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [d for d in lines if d and not os.path.isabs(d) and d == os.path.normpath(d)
            and ".." not in d.split("/") and d.split("/")[0] not in RUN_FILES + (LOCK_NAME,)]


def _remove_derived(run_dir, rel):
    """Remove the derived file ``rel`` of ``run_dir`` and the folders of the run it leaves empty."""
    path = os.path.join(run_dir, rel)
    if os.path.isfile(path) or os.path.islink(path):
        os.unlink(path)
    folder = os.path.dirname(path)
    while os.path.abspath(folder) != os.path.abspath(run_dir):
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)


def _is_checkpoint(path):
    from .checkpoint import CheckpointError, read_header

    try:
        read_header(path)
        return True
    except (CheckpointError, OSError):
        return False


def check_output(path, option):
    """Refuse (RunFolderRefused, naming ``option``) an output file that is a folder, a checkpoint or a run's record."""
    if os.path.isdir(path):
        raise RunFolderRefused(f"{option} {path}: is a folder; name a file")
    run = run_folder_of(path)
    if os.path.basename(path) in RECORD_FILES and run == os.path.dirname(os.path.abspath(path)):
        raise RunFolderRefused(f"{option} {path}: is a run's own file; choose another {option}")
    if os.path.isfile(path) and _is_checkpoint(path):
        raise RunFolderRefused(f"{option} {path}: is a checkpoint, which this command never replaces; "
                               f"choose another {option}")


@contextlib.contextmanager
def output_files(outputs):
    """Write derived files safely: ``outputs`` is a list of ``(path, option)``.

    Each path is checked (:func:`check_output`); the run folder it falls in, if any, is locked for the duration
    (a training run there makes this fail with RunFolderError) and the path listed in its ``.derived``; missing
    parent folders are created. The caller writes each file atomically inside the ``with`` block.
    """
    for path, option in outputs:
        check_output(path, option)
    runs = {}
    for path, option in outputs:
        run = run_folder_of(path)
        if run is not None:
            runs.setdefault(run, []).append((path, option))
    held = []
    try:
        for run, files in runs.items():
            held.append(RunFolder(run, mode="write", option=files[0][1]).acquire())
            for path, option in files:
                check_output(path, option)  # again, now that no one else writes there
            add_derived(run, [path for path, _ in files])
        for path, option in outputs:
            make_parent(path, option)
        yield
    finally:
        for folder in held:
            folder.release()


def make_parent(path, option):
    """Create the missing folders above the file ``path``; RunFolderError naming ``option`` when the OS refuses."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"{option} {path}: cannot create the folder {folder}: {os_reason(e)}") from None


def add_derived(run_dir, paths):
    """List ``paths`` (files inside ``run_dir``) in its ``.derived``; the caller holds the folder's lock."""
    have = read_derived(run_dir)
    rel = [os.path.relpath(os.path.abspath(p), os.path.abspath(run_dir)).replace(os.sep, "/") for p in paths]
    new = [r for r in rel if r not in have and r.split("/")[0] not in RUN_FILES]
    if new:
        try:
            write_atomic(os.path.join(run_dir, DERIVED), "".join(f"{d}\n" for d in have + new))
        except OSError as e:
            raise RunFolderError(f"{run_dir}: cannot record the files written there: {os_reason(e)}") from None


@contextlib.contextmanager
def checkpoint_output(path, overwrite, option="--out"):
    """Write a checkpoint ``path`` made by another command than ``train`` (``import``).

    Refuses (RunFolderRefused) a folder, or an existing file without ``overwrite``; takes the lock of the folder
    it goes into (created if missing) so that it cannot write while a run trains there.
    """
    if os.path.isdir(path):
        raise RunFolderRefused(f"{option} {path}: is a folder; name a checkpoint file such as {path}/model.npz")
    make_parent(path, option)
    with RunFolder(os.path.dirname(os.path.abspath(path)), mode="write", option=option):
        if os.path.lexists(path) and not overwrite:
            what = "a checkpoint" if _is_checkpoint(path) else "a file"
            raise RunFolderRefused(f"{option} {path}: holds {what} already; give --overwrite to replace it, "
                                   f"or choose another {option}")
        yield


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

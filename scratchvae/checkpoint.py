"""Checkpoints: an .npz of plain arrays plus a JSON header, never pickle.

The header (architecture, optimizer, training state) is stored as a uint8
array ``__header__`` holding UTF-8 JSON, and lists the name, shape and dtype of
every other array, so a file whose arrays do not match its header is refused.
Writes are atomic: a temporary file in the same folder, flushed and fsynced,
then renamed over the target, so a kill at any moment leaves the previous
checkpoint intact.
"""
import json
import os
import tempfile

import numpy as np

FORMAT = "scratchvae-checkpoint"
VERSION = 1
HEADER_KEY = "__header__"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be trusted or read."""


def save(path, header, arrays):
    """Write ``arrays`` (dict name -> array) and ``header`` (JSON-able dict) atomically to ``path``."""
    path = os.fspath(path)
    manifest = {k: {"shape": list(np.shape(v)), "dtype": np.asarray(v).dtype.str} for k, v in arrays.items()}
    full = {"format": FORMAT, "version": VERSION, "arrays": manifest, **header}
    blob = np.frombuffer(json.dumps(full).encode("utf-8"), dtype=np.uint8)
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in payload.items():
        if v.dtype == object:
            raise CheckpointError(f"array {k!r} has dtype object; only plain numeric arrays are saved")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{HEADER_KEY: blob}, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


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


def _check_member_sizes(path):
    """Refuse, before anything is allocated, an array whose .npy header claims more bytes than its member holds."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(f)
                if dtype.hasobject:
                    raise CheckpointError(f"{path}: refused: {info.filename} holds Python objects (pickle)")
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if claimed > info.file_size:
                    raise CheckpointError(f"{path}: {info.filename} claims {claimed} bytes but holds {info.file_size}")


def load(path):
    """Read a checkpoint; return ``(header, arrays)``. Raises CheckpointError on any problem.

    Loading never executes code: ``np.load(allow_pickle=False)``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise CheckpointError(f"{path}: not an .npz checkpoint (not a zip archive)")
    try:
        _check_member_sizes(path)
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            if HEADER_KEY not in names:
                raise CheckpointError(f"{path}: not a scratchvae checkpoint (no header)")
            blob = npz[HEADER_KEY]
            if blob.dtype != np.uint8 or blob.ndim != 1:
                raise CheckpointError(f"{path}: corrupt checkpoint header")
            try:
                header = json.loads(blob.tobytes().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise CheckpointError(f"{path}: corrupt checkpoint header ({e.__class__.__name__})") from None
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a scratchvae checkpoint (wrong format tag)")
            if header.get("version") != VERSION:
                raise CheckpointError(f"{path}: unsupported checkpoint version {header.get('version')!r}")
            manifest = header.get("arrays")
            if not isinstance(manifest, dict):
                raise CheckpointError(f"{path}: checkpoint header has no array list")
            stored = set(names) - {HEADER_KEY}
            if stored != set(manifest):
                missing, extra = sorted(set(manifest) - stored), sorted(stored - set(manifest))
                raise CheckpointError(f"{path}: arrays do not match the header (missing {missing}, unexpected {extra})")
            arrays = {}
            for name, spec in manifest.items():
                a = npz[name]
                if not isinstance(spec, dict) or list(a.shape) != spec.get("shape") or a.dtype.str != spec.get("dtype"):
                    raise CheckpointError(f"{path}: array {name!r} does not match the header ({a.shape}, {a.dtype})")
                arrays[name] = a
    except CheckpointError:
        raise
    except ValueError as e:
        # np.load refuses object arrays (pickles) with a ValueError
        raise CheckpointError(f"{path}: refused: {str(e).splitlines()[0]}") from None
    except Exception as e:  # zipfile, zlib, struct, OS errors of a damaged file
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({e.__class__.__name__})") from None
    return header, arrays

"""Readers for the dataset file formats used by MNIST-like benchmarks.

IDX format (MNIST, Fashion-MNIST)
---------------------------------
An IDX file is a header followed by raw array data, all big-endian:

* bytes 0-1: zero;
* byte 2: type code of the elements -- ``0x08`` uint8, ``0x09`` int8,
  ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64;
* byte 3: number of dimensions ``ndim`` (1 for labels, 3 for images);
* ``ndim`` big-endian uint32 values: the size of each dimension;
* ``prod(dims) * itemsize`` bytes of data in C order.

The distributed files are usually gzip-compressed; :func:`read_idx` detects
compression from the gzip magic bytes ``1f 8b``, not from the file name.

AMAT format (binarized MNIST of Larochelle & Murray)
----------------------------------------------------
Plain text, one example per line, ``dim`` whitespace-separated tokens that
are each ``0`` or ``1``; read with :func:`read_amat`.

Every problem with a data file is raised as :class:`DataFileError`, whose
one-line message names the file and the problem.
"""

import contextlib
import gzip
import math
import os
import struct
import zlib

import numpy as np

__all__ = ["DataFileError", "read_idx", "read_amat", "write_idx", "MAX_PAYLOAD_BYTES"]

#: Largest payload (decoded bytes) a reader accepts before refusing the file.
MAX_PAYLOAD_BYTES = 2**31

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
# Exceptions a corrupt (gzip) stream can raise while being read.
_STREAM_ERRORS = (OSError, EOFError, zlib.error)


class DataFileError(ValueError):
    """A data file is missing, unreadable, corrupt or not in the expected format."""


def _error(path, problem):
    """Build a one-line :class:`DataFileError` naming ``path``."""
    message = f"{os.fspath(path)}: {problem}"
    return DataFileError(message.replace("\r", "\\r").replace("\n", "\\n"))


@contextlib.contextmanager
def _open(path, kind):
    """Open ``path`` for binary reading, transparently un-gzipping it.

    What goes wrong while the body of the ``with`` reads the file (a truncated
    or corrupt stream, not enough memory for the ``kind`` data) is raised as a
    one-line :class:`DataFileError` naming ``path``.

    Yields
    ------
    file : binary file object
    compressed : bool
        Whether the file starts with the gzip magic bytes.
    """
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise _error(path, "no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL byte in the path
        raise _error(path, f"cannot open: {getattr(exc, 'strerror', None) or exc}") from None
    with raw:
        try:
            magic = raw.read(2)
            raw.seek(0)
        except OSError as exc:
            raise _error(path, f"cannot read: {exc.strerror or exc}") from None
        try:
            if magic != _GZIP_MAGIC:
                yield raw, False
            else:
                with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                    yield f, True
        except MemoryError:
            raise _error(path, f"not enough memory to read the {kind} data") from None
        except _STREAM_ERRORS as exc:
            raise _stream_error(path, exc) from None


def _stream_error(path, exc):
    """:class:`DataFileError` for an exception raised while reading ``path``."""
    return _error(path, f"corrupt or unreadable file: {type(exc).__name__}: {exc}")


def _read_fully(f, n):
    """Read up to ``n`` bytes from ``f``, stopping early only at end of file."""
    chunks, remaining = [], n
    while remaining > 0:
        chunk = f.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _readinto_fully(f, buf):
    """Fill ``buf`` from ``f``; return the number of bytes read (short at EOF)."""
    view, pos = memoryview(buf), 0
    while pos < len(buf):
        n = f.readinto(view[pos:])
        if not n:
            break
        pos += n
    return pos


def _read_bounded(f, nbytes, chunk_size=1 << 24):
    """Read up to ``nbytes`` from ``f`` in chunks, so memory follows the real data."""
    buf = bytearray()
    while len(buf) < nbytes:
        chunk = f.read(min(chunk_size, nbytes - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _parse_idx_header(path, f, max_items, dtype_expected=None, shape=None):
    """Read and validate an IDX header; return ``(dtype, dims, payload_bytes)``.

    ``dtype_expected`` and ``shape`` (a tuple, None where any size goes) are
    checked here, from the header, before any of the body is read.
    """
    magic = _read_fully(f, 4)
    if len(magic) < 4:
        raise _error(path, f"truncated IDX header: {len(magic)} of 4 magic bytes")
    if magic[:2] != b"\x00\x00":
        raise _error(path, f"not an IDX file: bad magic bytes {magic.hex()}")
    dtype = _IDX_DTYPES.get(magic[2])
    if dtype is None:
        raise _error(path, f"unsupported IDX type code 0x{magic[2]:02x}")
    ndim = magic[3]
    if not 1 <= ndim <= 4:
        raise _error(path, f"unsupported IDX ndim {ndim} (expected 1 to 4)")
    raw_dims = _read_fully(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise _error(path, f"truncated IDX header: {len(raw_dims)} of {4 * ndim} dimension bytes")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    if 0 in dims:
        raise _error(path, f"IDX header has a zero dimension: {dims}")
    if dtype_expected is not None and dtype.newbyteorder("=") != np.dtype(dtype_expected):
        raise _error(path, f"IDX elements are {dtype.newbyteorder('=')}, expected {np.dtype(dtype_expected)}")
    if shape is not None and (len(dims) != len(shape) or any(s is not None and s != d for s, d in zip(shape, dims))):
        want = "x".join("N" if s is None else str(s) for s in shape)
        raise _error(path, f"IDX header describes an array of {'x'.join(map(str, dims))}, expected {want}")
    if max_items is not None and dims[0] > max_items:
        raise _error(path, f"IDX header claims {dims[0]} items, more than max_items={max_items}")
    nbytes = math.prod(dims) * dtype.itemsize
    if nbytes > MAX_PAYLOAD_BYTES:
        raise _error(path, f"IDX header claims {nbytes} bytes of data, more than the limit of {MAX_PAYLOAD_BYTES}")
    return dtype, dims, nbytes


def _read_idx_payload(path, f, nbytes, compressed):
    """Read exactly ``nbytes`` of payload from ``f`` and check nothing follows.

    A raw file's size is checked before any allocation; a gzip stream is read
    in chunks, so at most ``nbytes + 1`` decompressed bytes are ever held.
    """
    if compressed:
        buf = _read_bounded(f, nbytes)
        found = len(buf)
    else:
        available = os.fstat(f.fileno()).st_size - f.tell()
        if available > nbytes:
            extra = available - nbytes
            raise _error(path, f"{extra} trailing bytes after the {nbytes} bytes of data the IDX header describes")
        if available < nbytes:
            raise _error(path, f"truncated IDX file: header says {nbytes} bytes of data, found {max(available, 0)}")
        buf = bytearray(nbytes)
        found = _readinto_fully(f, buf)
    if found < nbytes:
        raise _error(path, f"truncated IDX file: header says {nbytes} bytes of data, found {found}")
    if f.read(1):
        raise _error(path, f"trailing bytes after the {nbytes} bytes of data the IDX header describes")
    return buf


def read_idx(path, max_items=None, dtype=None, shape=None):
    """Read an IDX file (raw or gzip-compressed) into a NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        File to read; gzip compression is detected from its magic bytes.
    max_items : int, optional
        Refuse files whose first dimension exceeds this (checked before the
        data is read or memory is allocated).
    dtype : numpy dtype, optional
        The element type the file must hold, checked from its header.
    shape : tuple, optional
        The shape the file must hold, None where any size goes, e.g.
        ``(None, 28, 28)``; checked from the header before the body is read.

    Returns
    -------
    numpy.ndarray
        Array of shape ``dims`` in native byte order (uint8 for MNIST).

    Raises
    ------
    DataFileError
        If the file is missing, corrupt, truncated, has trailing bytes, or its
        header is invalid or claims more than ``max_items`` items or more than
        :data:`MAX_PAYLOAD_BYTES` bytes.
    """
    if max_items is not None and (isinstance(max_items, bool) or int(max_items) != max_items or max_items < 1):
        raise ValueError(f"max_items must be a positive integer or None, got {max_items!r}")
    with _open(path, "IDX") as (f, compressed):
        dtype_, dims, nbytes = _parse_idx_header(path, f, max_items, dtype, shape)
        dtype = dtype_
        buf = _read_idx_payload(path, f, nbytes, compressed)
    array = np.frombuffer(buf, dtype=dtype).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path, array):
    """Write ``array`` as an IDX file, gzip-compressed if ``path`` ends in ``.gz``.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file (overwritten if present).
    array : array_like
        1 to 4 dimensional array, every dimension > 0, of dtype uint8, int8,
        int16, int32, float32 or float64.

    Raises
    ------
    ValueError
        If the array cannot be represented as an IDX file.
    """
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    if not 1 <= array.ndim <= 4 or 0 in array.shape:
        raise ValueError(f"IDX needs 1 to 4 non-empty dimensions, got shape {array.shape}")
    if max(array.shape) >= 2**32:
        raise ValueError(f"IDX dimensions must fit in uint32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    if os.fspath(path).endswith(".gz"):
        with gzip.GzipFile(path, "wb", compresslevel=6, mtime=0) as f:
            f.write(header + data)
    else:
        with open(path, "wb") as f:
            f.write(header + data)


def _parse_amat_line(path, lineno, line, dim):
    """Validate one AMAT line; return its ``dim`` characters ``0``/``1`` as bytes."""
    tokens = line.split()
    if len(tokens) != dim:
        raise _error(path, f"line {lineno}: expected {dim} values, found {len(tokens)}")
    digits = b"".join(tokens)
    if len(digits) != dim or digits.translate(None, b"01"):
        bad = next(i for i, t in enumerate(tokens) if t not in (b"0", b"1"))
        raise _error(path, f"line {lineno}: value {bad + 1} is {tokens[bad][:20]!r}, expected 0 or 1")
    return digits


def _read_amat_rows(path, f, dim):
    """Read all AMAT lines from ``f`` into one bytes buffer of ``0``/``1`` characters."""
    max_line = 8 * dim + 1024
    rows, lineno = bytearray(), 0
    while True:
        line = f.readline(max_line + 1)
        if not line:
            return rows
        lineno += 1
        if len(line) > max_line:
            raise _error(path, f"line {lineno}: longer than {max_line} bytes")
        if not line.strip():
            continue
        rows += _parse_amat_line(path, lineno, line, dim)
        if len(rows) > MAX_PAYLOAD_BYTES:
            raise _error(path, f"more than {MAX_PAYLOAD_BYTES} values")


def read_amat(path, dim=784):
    """Read a binarized-MNIST ``.amat`` text file.

    Parameters
    ----------
    path : str or os.PathLike
        File to read (plain text; gzip is also accepted, detected by magic).
    dim : int, default 784
        Number of values per line.

    Returns
    -------
    numpy.ndarray
        uint8 array of shape ``(N, dim)`` with values 0 and 1.

    Raises
    ------
    DataFileError
        If the file is missing or unreadable, has no data line, a line with
        other than ``dim`` values, or a value other than ``0`` or ``1``.
        Blank lines are ignored.
    """
    if isinstance(dim, bool) or int(dim) != dim or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    dim = int(dim)
    with _open(path, "AMAT") as (f, compressed):
        rows = _read_amat_rows(path, f, dim)
    if not rows:
        raise _error(path, "no data lines")
    array = np.frombuffer(rows, dtype=np.uint8).reshape(-1, dim)
    return array - np.uint8(ord("0"))

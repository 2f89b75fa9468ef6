"""The safetensors file format, read and written by hand with the standard library and NumPy.

A safetensors file (Hugging Face's format, the one PyTorch users share weights
in) is three parts:

1. 8 bytes: N, the length of the header, an unsigned 64-bit little-endian integer;
2. N bytes: the header, UTF-8 JSON, one object. Each key is a tensor name mapped
   to ``{"dtype": "F32", "shape": [400, 784], "data_offsets": [begin, end]}``,
   the offsets counted in bytes from the start of part 3, ``end`` one past the
   last byte; one optional key ``"__metadata__"`` maps strings to strings. The
   header may end with spaces (writers pad it so the data start on an 8-byte
   boundary);
3. the byte buffer: each tensor's elements, little-endian, row-major, packed.

Reading treats the file as hostile and follows the validation rules of the
reference implementation: the header length is at most 100,000,000 bytes and
fits in the file; the header is valid UTF-8 and a JSON object starting with
``{``, with no duplicate keys (the specification forbids them; the reference
library takes the last); every dtype is from the list below; each tensor's
byte count ``end - begin`` equals the dtype's size times the product of its
shape; sorted by offsets, the tensors' ranges follow one another from 0 with no
hole and no overlap, and the last one ends where the file ends. Every check is
made on the header's numbers before any array is made, so a header claiming
10¹² elements costs nothing: the only allocation is the file's own size. Every
refusal is a :class:`SafetensorsError` naming the file and the problem in one
line.

Dtypes of the format, with their NumPy types: BOOL, U8, I8, I16, U16, F16, I32,
U32, F32, F64, I64, U64 map one to one. BF16 is read as float32 (exact: a
bfloat16 is the upper half of a float32); F8_E5M2 and F8_E4M3 are valid in a
file but have no NumPy type, and reading one is refused with a message saying so.

Writing is atomic (a temporary file in the same folder, flushed and fsynced,
then renamed), sorts the tensors by element size (largest first) then name so
every tensor starts aligned to its element size, and pads the header with
spaces to a multiple of 8 bytes, as the reference writer does.

The functions have the signatures and return types of the ``safetensors``
package's NumPy API (``safetensors.numpy``): :func:`save_file` ``(tensors,
filename, metadata=None)``, :func:`load_file` ``(filename) -> dict``,
:func:`save` ``(tensors, metadata=None) -> bytes``, :func:`load` ``(data) ->
dict``; the metadata, which those functions do not return, is read by
:func:`read_metadata` (as ``safe_open(filename).metadata()`` does).
"""
import io
import json
import os
import struct

import numpy as np

MAX_HEADER_BYTES = 100_000_000  # the reference implementation's limit
METADATA_KEY = "__metadata__"
TENSOR_FIELDS = ("dtype", "shape", "data_offsets")

# dtype name -> (bytes per element, NumPy type of the stored bytes or None)
DTYPES = {
    "BOOL": (1, np.dtype("bool")),
    "U8": (1, np.dtype("u1")),
    "I8": (1, np.dtype("i1")),
    "F8_E5M2": (1, None),
    "F8_E4M3": (1, None),
    "I16": (2, np.dtype("<i2")),
    "U16": (2, np.dtype("<u2")),
    "F16": (2, np.dtype("<f2")),
    "BF16": (2, np.dtype("<u2")),  # widened to float32 on reading
    "I32": (4, np.dtype("<i4")),
    "U32": (4, np.dtype("<u4")),
    "F32": (4, np.dtype("<f4")),
    "F64": (8, np.dtype("<f8")),
    "I64": (8, np.dtype("<i8")),
    "U64": (8, np.dtype("<u8")),
}
# NumPy type (kind and size) -> dtype name, for writing
_NAMES = {(dt.kind, dt.itemsize): name for name, (_, dt) in DTYPES.items() if dt is not None and name != "BF16"}


class SafetensorsError(ValueError):
    """A safetensors file that cannot be trusted or read, or tensors that cannot be written."""


# --------------------------------------------------------------------- writing
def dtype_name(array):
    """The safetensors dtype name of a NumPy array's type, or SafetensorsError."""
    dt = np.asarray(array).dtype
    name = _NAMES.get((dt.kind, dt.itemsize))
    if name is None:
        raise SafetensorsError(f"arrays of dtype {dt} cannot be stored in safetensors "
                               f"(supported: {', '.join(sorted(_NAMES.values()))})")
    return name


def save(tensors, metadata=None):
    """The bytes of a safetensors file holding ``tensors`` (dict name -> array) and ``metadata``.

    Parameters
    ----------
    tensors : dict of str -> array-like of a supported type (any shape, 0-d and empty included)
    metadata : dict of str -> str, or None

    Returns
    -------
    bytes
    """
    if not isinstance(tensors, dict):
        raise SafetensorsError(f"tensors must be a dict of name -> array, got {type(tensors).__name__}")
    header = {}
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in metadata.items()):
            raise SafetensorsError("metadata must be a dict of str -> str")
        header[METADATA_KEY] = dict(metadata)
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or name == METADATA_KEY:
            raise SafetensorsError(f"tensor names must be strings other than {METADATA_KEY!r}, got {name!r}")
        a = np.asarray(value)
        kind = dtype_name(a)
        arrays[name] = (kind, np.asarray(a, dtype=DTYPES[kind][1], order="C"))  # little-endian, row-major, 0-d kept
    order = sorted(arrays, key=lambda k: (-arrays[k][1].dtype.itemsize, k))
    offset = 0
    for name in order:
        kind, a = arrays[name]
        header[name] = {"dtype": kind, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    parts = [struct.pack("<Q", len(text)), text] + [arrays[name][1].tobytes() for name in order]
    return b"".join(parts)


def save_file(tensors, filename, metadata=None):
    """Write ``tensors`` and ``metadata`` to ``filename`` as safetensors, atomically (see :func:`save`).

    Tensors that cannot be stored raise SafetensorsError; a failing write (disk full, a read-only folder)
    raises the OSError, naming ``filename``, and leaves any earlier file whole.
    """
    from .files import atomic_file

    if isinstance(tensors, (str, os.PathLike)):
        raise SafetensorsError("save_file takes (tensors, filename, metadata), the safetensors package's order; "
                               "got a path first")
    filename = os.fspath(filename)
    blob = save(tensors, metadata)
    try:
        with atomic_file(filename, suffix=".safetensors") as f:
            f.write(blob)
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), filename) from None


# --------------------------------------------------------------------- reading
def load_file(filename, device="cpu"):
    """Read a safetensors file; return its tensors.

    Parameters
    ----------
    filename : str or path
    device : "cpu", the only one (NumPy arrays live in host memory)

    Returns
    -------
    dict of str -> np.ndarray (native byte order, each its own memory), in the header's order

    Raises
    ------
    SafetensorsError naming ``filename`` and the first problem found.
    """
    if device != "cpu":
        raise SafetensorsError(f"device {device!r}: NumPy arrays live on the cpu")
    return _read_path(filename, header_only=False)[0]


def read_metadata(filename):
    """The ``__metadata__`` of a safetensors file (dict of str -> str, empty when there is none).

    The whole header is validated as :func:`load_file` validates it; no tensor is read.
    """
    return _read_path(filename, header_only=True)[1]


def load(data):
    """Read safetensors from ``data`` (bytes); return its tensors, as :func:`load_file`."""
    return _read_bytes(data)[0]


def _read_bytes(data, name="<bytes>"):
    """``(tensors, metadata)`` of the safetensors bytes ``data``; errors name ``name``."""
    data = bytes(data)
    return _read(io.BytesIO(data), len(data), name)


def _read_path(filename, header_only):
    path = os.fspath(filename)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise SafetensorsError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            return _read(f, size, path, header_only)
        except OSError as e:
            raise SafetensorsError(f"{path}: cannot read ({e.strerror})") from None


def _read(f, size, name, header_only=False):
    """``(tensors, metadata)`` of the file ``f`` of ``size`` bytes; ``header_only``: tensors empty, buffer unread."""
    def fail(problem):
        raise SafetensorsError(f"{name}: not a valid safetensors file: {problem}")

    if size < 8:
        fail(f"{size} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", _read_exactly(f, 8, name))
    if n > MAX_HEADER_BYTES:
        fail(f"header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes")
    if 8 + n > size:
        fail(f"header length {n} runs past the end of the file ({size} bytes)")
    data_len = size - 8 - n
    entries, metadata = _parse_header(_read_exactly(f, n, name), data_len, fail, name)
    if header_only:
        return {}, metadata
    buffer = _read_exactly(f, data_len, name)
    tensors = {}
    for key, (kind, shape, begin, end) in entries.items():
        stored = DTYPES[kind][1]
        a = np.frombuffer(buffer, dtype=stored, count=(end - begin) // stored.itemsize, offset=begin).reshape(shape)
        if kind == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)  # exact: bfloat16 is a float32's upper half
        elif kind == "BOOL":
            a = a.view(np.uint8) != 0  # any non-zero byte is True, stored as NumPy's 1
        tensors[key] = a.astype(a.dtype.newbyteorder("="), copy=True)
    return tensors, metadata


def _read_exactly(f, count, name):
    data = f.read(count)
    if len(data) != count:
        raise SafetensorsError(f"{name}: not a valid safetensors file: truncated while reading "
                               f"({len(data)} of {count} bytes)")
    return data


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise SafetensorsError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _no_constant(text):
    raise SafetensorsError(f"non-standard JSON constant {text}")


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parse_header(raw, data_len, fail, name):
    """Check the header bytes against the format's rules; return ``({name: (dtype, shape, begin, end)}, metadata)``.

    ``data_len`` is the number of bytes after the header: every offset is checked against it before
    anything is allocated.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        fail(f"header is not UTF-8 (byte {e.start})")
    if not text.startswith("{"):
        fail("header is not a JSON object (it must start with '{')")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except SafetensorsError as e:
        fail(f"header {e}")
    except (ValueError, RecursionError) as e:
        fail(f"header is not JSON ({str(e).splitlines()[0]})")
    if not isinstance(header, dict):
        fail("header is not a JSON object")
    metadata = header.pop(METADATA_KEY, {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        fail(f"{METADATA_KEY} must map strings to strings")
    entries = {}
    for key, info in header.items():
        if not isinstance(info, dict) or not set(TENSOR_FIELDS) <= set(info):  # other fields are ignored, as the
            fail(f"tensor {key!r} must have the fields {', '.join(TENSOR_FIELDS)}")  # reference does
        kind, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(kind, str) or kind not in DTYPES:
            fail(f"tensor {key!r} has unknown dtype {kind!r}")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            fail(f"tensor {key!r} has a shape that is not a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
            fail(f"tensor {key!r} has data_offsets that are not two non-negative integers")
        begin, end = offsets
        if end < begin:
            fail(f"tensor {key!r} has data_offsets [{begin}, {end}] that end before they begin")
        if end > data_len:
            fail(f"tensor {key!r} has data_offsets [{begin}, {end}] past the {data_len}-byte buffer")
        count = _count_up_to(shape, data_len)
        if count > data_len:
            fail(f"tensor {key!r}: shape {shape} claims more elements than the {data_len}-byte buffer holds")
        if count * DTYPES[kind][0] != end - begin:
            fail(f"tensor {key!r}: {kind} of shape {shape} needs {count * DTYPES[kind][0]} bytes, "
                 f"data_offsets give {end - begin}")
        entries[key] = (kind, tuple(shape), begin, end)
    position = 0
    for key, (_, _, begin, end) in sorted(entries.items(), key=lambda item: item[1][2:]):
        if begin != position:
            what = "overlaps the previous tensor" if begin < position else f"leaves a hole at byte {position}"
            fail(f"tensor {key!r} at data_offsets [{begin}, {end}] {what}")
        position = end
    if position != data_len:
        fail(f"the tensors cover {position} bytes of the {data_len}-byte buffer")
    for key, (kind, _, _, _) in entries.items():
        if DTYPES[kind][1] is None:
            raise SafetensorsError(f"{name}: tensor {key!r} has dtype {kind}, valid in safetensors but with no "
                                   f"NumPy type to read it into")
    return entries, metadata


def _count_up_to(shape, limit):
    """The product of ``shape``, or ``limit + 1`` as soon as it exceeds ``limit`` (huge claims cost nothing)."""
    if 0 in shape:
        return 0
    count = 1
    for d in shape:
        count *= d
        if count > limit:
            return limit + 1
    return count


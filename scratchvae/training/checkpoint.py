"""Checkpoints: an .npz of plain arrays plus a JSON header, never pickle.

This module holds the file format (:func:`save`, :func:`load`), the mapping
between a model + optimizer + training state and the file
(:func:`save_checkpoint`, :func:`load_checkpoint`) and the one validator both
``scratchvae evaluate`` and ``--resume`` go through (:func:`validate_header`,
:func:`validate_arrays`): every header field by type and range; exactly the
arrays the architecture and the optimizer need, by name, shape and dtype;
finite values in their ranges; and the sizes the zip archive declares bounded
before anything is decompressed.

The header (architecture, optimizer, training state) is stored as a uint8
array ``__header__`` holding UTF-8 JSON, and lists the name, shape and dtype of
every other array, so a file whose arrays do not match its header is refused.
Writes are atomic: a temporary file in the same folder, flushed and fsynced,
then renamed over the target, so a kill at any moment leaves the previous
checkpoint intact.
"""
import dataclasses
import json
import math
import os
import zipfile

import numpy as np

from ..io.files import atomic_file

FORMAT = "scratchvae-checkpoint"
VERSION = 1
HEADER_KEY = "__header__"
MAX_HEADER_BYTES = 64 * 2**20  # the JSON header: a few hundred bytes per epoch of history
NPY_HEADER_BYTES = 4096  # room for the .npy header of a member, on top of its data
MAX_DIM = 10**7  # any one size of the architecture


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
    with atomic_file(path, suffix=".npz") as f:
        np.savez(f, **{HEADER_KEY: blob}, **payload)


def _fail(path, problem):
    return CheckpointError(f"{path}: {problem}".replace("\n", " "))


def _read_member(z, info, path, limit):
    """Decompress one member of at most ``limit`` declared bytes as an array (never pickle)."""
    if info.file_size > limit:
        raise _fail(path, f"{info.filename} declares {info.file_size} bytes, more than the {limit} it may hold")
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        if dtype.hasobject:
            raise _fail(path, f"refused: {info.filename} holds Python objects (pickle)")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > info.file_size:
            raise _fail(path, f"{info.filename} claims {nbytes} bytes but holds {info.file_size}")
        data = f.read(nbytes + 1)
        if len(data) != nbytes:
            raise _fail(path, f"{info.filename} holds {len(data)} bytes of data, its header says {nbytes}")
    order = "F" if fortran else "C"
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy()


def read_header(path):
    """The JSON header of a checkpoint, read without decompressing any array."""
    path = os.fspath(path)
    with _open_zip(path) as z:
        return _header_of(z, path)


def _open_zip(path):
    if os.path.isdir(path):
        raise _fail(path, "is a folder, not a checkpoint file")
    if not os.path.isfile(path):
        raise _fail(path, "no such checkpoint file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise _fail(path, f"cannot read: {e.strerror or e}") from None
    if magic != b"PK\x03\x04":
        raise _fail(path, "not an .npz checkpoint (not a zip archive)")
    try:
        return zipfile.ZipFile(path)
    except Exception as e:
        raise _fail(path, f"corrupt or truncated checkpoint ({e.__class__.__name__})") from None


def _header_of(z, path):
    infos = {i.filename: i for i in z.infolist()}
    info = infos.get(HEADER_KEY + ".npy")
    if info is None:
        raise _fail(path, "not a scratchvae checkpoint (no header)")
    blob = _read_member(z, info, path, MAX_HEADER_BYTES)
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise _fail(path, "corrupt checkpoint header")
    try:
        header = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _fail(path, f"corrupt checkpoint header ({e.__class__.__name__})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _fail(path, "not a scratchvae checkpoint (wrong format tag)")
    if header.get("version") != VERSION:
        raise _fail(path, f"unsupported checkpoint version {header.get('version')!r}")
    if not isinstance(header.get("arrays"), dict):
        raise _fail(path, "checkpoint header has no array list")
    return header


def load(path, expect=None):
    """Read a checkpoint; return ``(header, arrays)``. Raises CheckpointError on any problem.

    ``expect``, if given, maps the header to ``{name: (shape, dtype)}``: exactly
    the arrays the file must hold. It is checked against the archive's
    directory before any array is decompressed, so a member declaring more
    bytes than its array needs is refused without being read.
    Loading never executes code: no pickle.
    """
    path = os.fspath(path)
    try:
        with _open_zip(path) as z:
            header = _header_of(z, path)
            manifest = header["arrays"]
            infos = {i.filename: i for i in z.infolist()}
            stored = {n[:-4] for n in infos if n.endswith(".npy")} - {HEADER_KEY}
            if len(infos) != len(stored) + 1:
                raise _fail(path, f"unexpected members {sorted(n for n in infos if not n.endswith('.npy'))}")
            if stored != set(manifest):
                missing, extra = sorted(set(manifest) - stored), sorted(stored - set(manifest))
                raise _fail(path, f"arrays do not match the header (missing {missing}, unexpected {extra})")
            spec = expect(header) if expect is not None else None
            if spec is not None:
                missing, extra = sorted(set(spec) - stored), sorted(stored - set(spec))
                if missing or extra:
                    raise _fail(path, f"arrays do not fit the architecture and optimizer "
                                      f"(missing {missing[:5]}, unexpected {extra[:5]})")
            arrays = {}
            for name in sorted(stored):
                entry = manifest[name]
                if (not isinstance(entry, dict) or not isinstance(entry.get("shape"), list)
                        or not isinstance(entry.get("dtype"), str)):
                    raise _fail(path, f"array {name!r} has no valid entry in the header")
                if spec is not None:
                    shape, dtype = spec[name]
                    if entry["shape"] != list(shape) or entry["dtype"] != np.dtype(dtype).str:
                        raise _fail(path, f"array {name!r} is {entry['dtype']} {tuple(entry['shape'])}, "
                                          f"the architecture needs {np.dtype(dtype).str} {tuple(shape)}")
                    limit = math.prod(shape) * np.dtype(dtype).itemsize + NPY_HEADER_BYTES
                else:
                    limit = MAX_HEADER_BYTES * 64
                a = _read_member(z, infos[name + ".npy"], path, limit)
                if list(a.shape) != entry["shape"] or a.dtype.str != entry["dtype"]:
                    raise _fail(path, f"array {name!r} does not match the header ({a.shape}, {a.dtype})")
                arrays[name] = a
    except CheckpointError:
        raise
    except MemoryError:
        raise _fail(path, "not enough memory to read the checkpoint") from None
    except Exception as e:  # zipfile, zlib, struct, OS errors of a damaged file
        raise _fail(path, f"corrupt or truncated checkpoint ({e.__class__.__name__}: {str(e)[:80]})") from None
    return header, arrays


# ------------------------------------------------------------------ validator
def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _need(cond, path, problem):
    if not cond:
        raise _fail(path, problem)


def _int_field(d, key, path, where, lo=0, hi=None):
    v = d.get(key) if isinstance(d, dict) else None
    _need(_is_int(v) and v >= lo and (hi is None or v <= hi), path,
          f"{where}.{key} must be an integer in [{lo}, {hi if hi is not None else 'inf'}], got {v!r}")
    return v


def model_size(config):
    """Number of parameters of a VAE with ``config`` (a VAEConfig), computed without building it."""
    D, J = config.data_dim, config.latent_dim
    dec_out = 2 * D if (config.likelihood == "gaussian" and config.gaussian_variance == "predicted") else D
    count = 0
    for sizes in ((D,) + tuple(config.hidden) + (2 * J,), (J,) + tuple(config.decoder_hidden) + (dec_out,)):
        count += sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    if config.likelihood == "gaussian" and config.gaussian_variance == "learned":
        count += D
    return count


def max_model_bytes():
    """The memory a model, its gradient and two optimizer moments may take: half the machine's memory."""
    from ..data.user import memory_limit

    return memory_limit()


def check_model_size(config, what="the model"):
    """Raise ValueError naming the memory needed when ``config`` is too large for this machine."""
    need = 4 * model_size(config) * np.dtype(config.dtype).itemsize  # parameters, gradient, two moments
    limit = max_model_bytes()
    if need > limit:
        raise ValueError(f"{what} would need {_bytes(need)} for its parameters, gradient and optimizer state, "
                         f"more than the {_bytes(limit)} allowed on this machine (half its memory)")


def _bytes(n):
    from ..data.user import format_bytes

    return format_bytes(n)


def validate_header(header, path):
    """Check every header field by type and range; return ``(VAEConfig, optimizer, training state)``.

    The optimizer is built from the header (no state yet). Raises CheckpointError.
    """
    from ..data.datasets import BINARIZATIONS, LOADERS
    from ..model import VAEConfig
    from ..optim import make_optimizer

    known = {"format", "version", "arrays", "architecture", "optimizer", "training"}
    optional = {"package"}  # the scratchvae version that wrote it (absent in files of scratchvae 0.1.0 before it)
    _need(known <= set(header) <= known | optional, path,
          f"header fields {sorted((set(header) - optional) ^ known)} are missing or unexpected")
    if "package" in header:
        pkg = header["package"]
        _need(isinstance(pkg, dict) and set(pkg) == {"name", "version"} and pkg["name"] == "scratchvae"
              and isinstance(pkg["version"], str) and 0 < len(pkg["version"]) <= 64, path,
              "header.package must be {\"name\": \"scratchvae\", \"version\": \"...\"}")
    # architecture
    arch = header["architecture"]
    _need(isinstance(arch, dict), path, "header.architecture must be an object")
    fields = {f.name for f in dataclasses.fields(VAEConfig)}
    _need(set(arch) == fields, path,
          f"header.architecture fields {sorted(set(arch) ^ fields)} are missing or unexpected")
    for key in ("data_dim", "latent_dim"):
        _int_field(arch, key, path, "architecture", 1, MAX_DIM)
    for key in ("hidden", "decoder_hidden"):
        v = arch[key]
        _need(isinstance(v, list) and len(v) <= 64 and all(_is_int(w) and 1 <= w <= MAX_DIM for w in v), path,
              f"architecture.{key} must be a list of layer widths in [1, {MAX_DIM}], got {str(v)[:60]}")
    for key in ("activation", "likelihood", "gaussian_variance", "dtype"):
        _need(isinstance(arch[key], str), path, f"architecture.{key} must be a string, got {arch[key]!r}")
    _need(_is_number(arch["fixed_logvar"]), path, "architecture.fixed_logvar must be a finite number")
    try:
        config = VAEConfig(**{**arch, "hidden": tuple(arch["hidden"]), "decoder_hidden": tuple(arch["decoder_hidden"])})
        check_model_size(config, "its architecture")
    except ValueError as e:
        raise _fail(path, f"architecture: {e}") from None
    # optimizer
    opt = header["optimizer"]
    _need(isinstance(opt, dict) and isinstance(opt.get("name"), str), path, "header.optimizer must name an optimizer")
    try:
        probe = make_optimizer(opt["name"])
    except ValueError as e:
        raise _fail(path, f"optimizer: {e}") from None
    expected = set(probe.hyperparams())
    _need(set(opt) == expected, path,
          f"optimizer {opt['name']} needs fields {sorted(expected)}, got {sorted(opt)}")
    _int_field(opt, "t", path, "optimizer", 0, 2**53)
    for key in expected - {"name", "t"}:
        _need(_is_number(opt[key]) and opt[key] >= 0, path, f"optimizer.{key} must be a finite number >= 0, "
                                                            f"got {opt[key]!r}")
    hyper = {k: v for k, v in opt.items() if k not in ("name", "lr", "t")}
    try:
        optimizer = make_optimizer(opt["name"], opt["lr"], **hyper)
    except (ValueError, TypeError) as e:
        raise _fail(path, f"optimizer: {e}") from None
    optimizer.t = opt["t"]
    # training state
    state = header["training"]
    _need(isinstance(state, dict), path, "header.training must be an object")
    tkeys = {"epoch", "step", "config", "dataset", "binarize", "rng", "history"}
    _need(set(state) - {"data"} == tkeys, path,  # "data": the description of the user's own data (data/user.py)
          f"header.training fields {sorted((set(state) - {'data'}) ^ tkeys)} are missing or unexpected")
    epoch = _int_field(state, "epoch", path, "training", 0, 10**7)  # 0: no epoch yet (an imported model)
    _int_field(state, "step", path, "training", epoch, 2**53)
    _check_dataset(state, path, LOADERS)
    _need(state["binarize"] in BINARIZATIONS, path, f"training.binarize must be one of {', '.join(BINARIZATIONS)}")
    if isinstance(state["config"], dict):  # a file from before the validation split: completed as it trained
        from .config import BEFORE_VALIDATION

        state["config"] = {**BEFORE_VALIDATION, **state["config"]}
    _check_train_config(state["config"], epoch, optimizer, path)
    _check_rng(state["rng"], path)
    history = state["history"]
    _need(isinstance(history, list) and len(history) == epoch, path,
          f"training.history must list {epoch} epochs")
    for i, row in enumerate(history, 1):
        _need(isinstance(row, dict) and row.get("epoch") == i, path, f"training.history row {i} is not epoch {i}")
        for k, v in row.items():
            _need(isinstance(v, str) or _is_number(v), path, f"training.history row {i}: {k} is not a finite number")
    return config, optimizer, state


def _check_dataset(state, path, names):
    """training.dataset: a built-in name; or, with training.data describing the user's own data, its path (or the
    name a Dataset built in Python was given)."""
    from ..data.user import check_record

    if "data" not in state:
        _need(isinstance(state["dataset"], str) and state["dataset"] in names, path, f"training.dataset must be one of {', '.join(names)} "
                                               f"(or come with training.data, a description of your own data)")
        return
    problem = check_record(state["data"])
    _need(problem is None, path, f"training.data: {problem}")
    where = state["data"]["path"]
    _need(isinstance(state["dataset"], str) and 0 < len(state["dataset"]) <= 4096
          and (where is None or state["dataset"] == where), path,
          "training.dataset must be the path training.data records")


def _check_train_config(cfg, epoch, optimizer, path):
    from .config import TrainConfig

    _need(isinstance(cfg, dict), path, "training.config must be an object")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    _need(set(cfg) == fields, path, f"training.config fields {sorted(set(cfg) ^ fields)} are missing or unexpected")
    for key in ("epochs", "batch_size", "samples", "k", "seed"):
        _int_field(cfg, key, path, "training.config", 0 if key == "seed" else 1, 2**63 - 1)
    for key in ("beta", "warmup_epochs"):
        _need(_is_number(cfg[key]), path, f"training.config.{key} must be a finite number, got {cfg[key]!r}")
    _need(cfg["lr"] is None or _is_number(cfg["lr"]), path, "training.config.lr must be a number or null")
    for key in ("optimizer", "binarize", "objective", "backend"):
        _need(isinstance(cfg[key], str), path, f"training.config.{key} must be a string, got {cfg[key]!r}")
    _need(cfg["epochs"] >= epoch, path, f"training.config.epochs {cfg['epochs']} is below the epoch {epoch} reached")
    _need(cfg["optimizer"] == optimizer.name, path,
          f"training.config.optimizer {cfg['optimizer']!r} is not the saved optimizer {optimizer.name!r}")
    try:
        TrainConfig(**cfg)
    except (ValueError, TypeError, OverflowError) as e:
        raise _fail(path, f"training.config: {e}") from None


def _check_rng(rng, path):
    ok = (isinstance(rng, dict) and rng.get("bit_generator") == "PCG64" and isinstance(rng.get("state"), dict)
          and all(_is_int(rng["state"].get(k)) and 0 <= rng["state"].get(k) < 2**128 for k in ("state", "inc"))
          and _is_int(rng.get("has_uint32")) and rng.get("has_uint32") in (0, 1)
          and _is_int(rng.get("uinteger")) and 0 <= rng.get("uinteger") < 2**32)
    _need(ok, path, "training.rng is not a PCG64 generator state")


def expected_arrays(config, optimizer):
    """``{name: (shape, dtype)}`` of every array a checkpoint of ``config`` + ``optimizer`` holds."""
    from ..model import param_shapes

    shapes = param_shapes(config)
    spec = {f"param/{k}": (s, config.dtype) for k, s in shapes.items()}
    if optimizer.t > 0:  # the moments exist from the first step on
        spec.update({f"opt/{slot}.{k}": (s, config.dtype) for slot in optimizer.slots for k, s in shapes.items()})
    return spec


def validate_arrays(arrays, optimizer, path):
    """Finite values in their ranges: parameters and moments finite, second moments >= 0."""
    for name, a in arrays.items():
        _need(np.isfinite(a).all(), path, f"array {name!r} contains NaN or Inf")
        if name.startswith(("opt/v.", "opt/s.")) and optimizer.name in ("adam", "adagrad"):
            _need((a >= 0).all(), path, f"array {name!r} (a second moment) has negative values")


# ------------------------------------------------------------ model <-> file
def save_checkpoint(path, model, optimizer, state):
    """Write model, optimizer state and training ``state`` (a JSON-able dict) atomically.

    Refuses (CheckpointError) to write what :func:`load_checkpoint` would refuse to read.
    """
    from .. import __version__

    arrays = {f"param/{k}": v for k, v in model.params.items()}
    arrays.update({f"opt/{k}": v for k, v in optimizer.state.items()})
    header = {
        "architecture": {**dataclasses.asdict(model.config), "hidden": list(model.config.hidden),
                         "decoder_hidden": list(model.config.decoder_hidden)},
        "optimizer": optimizer.hyperparams(),
        "training": state,
        "package": {"name": "scratchvae", "version": __version__},
    }
    header = json.loads(json.dumps(header, allow_nan=False))  # as a reader sees it
    full = {"format": FORMAT, "version": VERSION,
            "arrays": {k: {"shape": list(np.shape(v)), "dtype": np.asarray(v).dtype.str} for k, v in arrays.items()},
            **header}
    where = os.fspath(path) + " (not written)"
    _, opt, _ = validate_header(full, where)
    spec = expected_arrays(model.config, opt)
    _need(set(spec) == set(arrays), where, "the optimizer state does not fit the model")
    validate_arrays(arrays, opt, where)
    save(path, header, arrays)


def load_checkpoint(path):
    """Read and validate a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    model : VAE
    optimizer : Optimizer with its state restored
    state : dict, the training state saved with it
    """
    from ..model import VAE

    path = os.fspath(path)
    found = {}

    def expect(header):
        found["config"], found["optimizer"], found["state"] = validate_header(header, path)
        return expected_arrays(found["config"], found["optimizer"])

    _, arrays = load(path, expect)
    config, optimizer, state = found["config"], found["optimizer"], found["state"]
    validate_arrays(arrays, optimizer, path)
    model = VAE(config, np.random.default_rng(0))
    for k in model.params:
        model.params[k] = arrays[f"param/{k}"]
    optimizer.load_state(optimizer.t, {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")})
    return model, optimizer, state

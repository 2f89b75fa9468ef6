"""What every command shares: exit codes, the error classes, the argument types, one-line messages, finding a
checkpoint and its data, the BLAS threads and the kernel set."""
import argparse
import contextlib
import os
import sys



EXIT_BAD_INPUT = 2


EXIT_FAILED = 1


EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command-line error, printed as it is (argparse's "scratchvae CMD: error: ..."), exit code 2."""


class BadInput(Exception):
    """The user's input refused by a validator (a value, a size, a file), exit code 2."""


@contextlib.contextmanager
def checking_input():
    """Run validators of the user's input: a ValueError or OverflowError they raise becomes :class:`BadInput`.

    Only around validators: outside such a block a plain ValueError is a bug and is reported as one.
    """
    try:
        yield
    except (ValueError, OverflowError) as e:
        raise BadInput(_one_line(e)) from e


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) that the caller turns into exit code 2."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message}")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _number(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _nonnegative(text):
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive(text):
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _warmup(text):
    value = _number(text)
    if not 0 <= value <= 1e9:
        raise argparse.ArgumentTypeError(f"expected a number of epochs in [0, 1e9], got {text!r}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63), got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63), got {text!r}")
    return value


def _widths(text):
    """'400,400' -> (400, 400); '' or 'none' -> () (no hidden layer)."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        widths = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths like 400,400, got {text!r}") from None
    if any(w <= 0 for w in widths):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text!r}")
    return widths


def _show(value):
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return "optimizer's own" if value is None else value


def say(line):
    """Print one line to stdout, flushed; after a broken pipe, print nothing more and go on."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit's flush does not fail again
        os.close(devnull)


def _same_folder(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


def _recorded_threads(run_dir):
    """The BLAS thread count recorded in a run folder's run.json, or None."""
    import json

    try:
        with open(os.path.join(run_dir, "run.json")) as f:
            n = json.load(f).get("blas_threads")
    except (OSError, ValueError, AttributeError):
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else None


def _load_data(name, data_dir, option="--dataset"):
    """A built-in data set by name or the user's by path; a refusal of the user's data names ``option``."""
    from ..data.datasets import load_dataset
    from ..data.user import DataError

    try:
        return load_dataset(name, data_dir)
    except DataError as e:
        raise BadInput(f"{option}: {_one_line(e)}") from None


def _recorded_data(state, data_dir, path=None):
    """The data a checkpoint's state was trained on: a built-in set by name, or the user's, found at its recorded
    path (or ``path``, if it moved) and verified by its SHA-256 (exit 2 when gone or changed)."""
    from ..data.user import load_recorded

    if "data" not in state:
        name = state.get("dataset", "digits")
        if path is not None and path != name:
            raise BadInput(f"--dataset {path}: the model was trained on {name}")
        return _load_data(name, data_dir)
    try:
        return load_recorded(state["data"], path)
    except ValueError as e:
        raise BadInput(f"{'--dataset: ' if path else ''}{_one_line(e)}") from None


def _check_fits(model, dataset):
    """Refuse (exit 2) a data set whose dimension is not the model's."""
    if dataset.data_dim != model.config.data_dim:
        raise BadInput(f"the model expects {model.config.data_dim} dimensions, {dataset.name} has "
                       f"{dataset.data_dim}")


def _check_backend(backend):
    """The kernel set ``backend`` names (None: $SCRATCHVAE_BACKEND, else the default), refused with exit 2 when
    the environment names none or numba is asked for and missing. Returns its name."""
    from ..engine import default_backend, kernel_set

    with checking_input():
        backend = backend or default_backend()
        kernel_set(backend)
    return backend


def _prepare_engine(args, notice=None):
    """The BLAS thread count (--threads; on --resume the run's own; else :func:`scratchvae._fast.blas.choose_threads`),
    said in one line, and one line when numba is missing and the engine falls back to the reference kernels."""
    from .._fast.blas import choose_threads, set_threads
    from ..engine import ENV_VAR, numba_available

    notice = notice or say
    if getattr(args, "threads", None):
        set_threads(args.threads)
    elif getattr(args, "resume", None) and _recorded_threads(args.resume):
        n = set_threads(_recorded_threads(args.resume))
        notice(f"BLAS threads: {n}, as the run was started with (bit for bit the same numbers); --threads N "
               f"to change")
    else:
        n, why = choose_threads()
        if n is not None:
            n = set_threads(n)
            notice(f"BLAS threads: {n} ({why}; --threads N to choose)")
    if args.backend is None and not os.environ.get(ENV_VAR) and not numba_available():
        notice("numba is not installed: running the reference kernels (readable NumPy, slower); "
                        "pip install numba for the compiled ones")


def _checkpoint_path(path):
    """A checkpoint or a run folder named on the command line -> the checkpoint's path."""
    return os.path.join(path, "model.npz") if os.path.isdir(path) else path


def _checkpoint_dataset(state, data_dir, name=None):
    """The data set a checkpoint's state names (or ``name``): the one lookup of the commands that read a model."""
    if name is None:
        return _recorded_data(state, data_dir)
    return _load_data(name, data_dir)


def _npz_name(path):
    """``path`` as NumPy would write it: with the suffix .npz."""
    return None if path is None else path if path.endswith(".npz") else path + ".npz"


def _save_npz(path, **arrays):
    """Write ``arrays`` to ``path`` (.npz, not compressed), atomically."""
    import numpy as np

    from ..io.files import atomic_file

    with atomic_file(path, suffix=".npz") as f:
        np.savez(f, **arrays)
    return path


def _need_matplotlib(command):
    from ..training import plots

    if not plots.available():
        raise UsageError(f"scratchvae {command}: error: figures need matplotlib: pip install matplotlib")


def _split_source(model, state, dataset, split):
    """Batches of ``split`` ("train", "valid", "test") as the run saw them: binarized as it was (Bernoulli
    likelihood) or dequantized as it was, the validation points those the run held out."""
    from ..training.sources import integer_levels, resolve_dequantize, split_source

    c, config = model.config, state.get("config", {})
    binarize = state.get("binarize", "dynamic") if c.likelihood == "bernoulli" else "none"
    with checking_input():
        dequantize = resolve_dequantize(config.get("dequantize", "none"), c.likelihood, c.gaussian_variance,
                                        integer_levels(dataset), training=False)
        return split_source(dataset, split, binarize, dequantize, model.dtype, config.get("validation", 0),
                            config.get("validation_seed", 0))


def _one_line(e):
    return str(e).splitlines()[0] if str(e) else e.__class__.__name__

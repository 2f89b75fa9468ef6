"""The ``scratchvae`` command: ``train``, ``evaluate``, ``sample``, ``plot``, ``export``, ``import``,
``gradcheck``, ``proptest`` and ``datasets``, each a ``cmd_*`` function and a ``_*_parser`` for its options.

Every error is one line on stderr, never a traceback. Exit codes say whose
fault it is:

- 2, the user's own input: a usage error, a value out of range, a refused
  size, a file the user named that is missing, damaged or untrustworthy, a
  data set not found, an --out that is a file or holds another run;
- 1, a failure while running: divergence, disk full, a folder the OS refuses,
  a run folder in use by another process, a failed download, not enough
  memory; and a bug, "internal error", whose traceback goes to the run's
  ``train.log`` (or, without a run folder, to a file in the temp folder) for
  a bug report, never to the terminal;
- 130, Ctrl-C.

How the user's input is told from a bug: it is refused either by an error
class that only validators raise (:func:`_input_errors`), or inside a
:func:`checking_input` block around the validators this module calls. Any
other exception, a plain ``ValueError`` included, is a bug. A broken pipe on
stdout ends the printing quietly; training goes on, its log is in the run
folder.
"""
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


# Option name -> (dataclass, field): the defaults of `scratchvae train` are those fields' defaults, one home.
ARCHITECTURE_OPTIONS = dict(latent="latent_dim", hidden="hidden", activation="activation", likelihood="likelihood",
                            gaussian_variance="gaussian_variance", fixed_logvar="fixed_logvar", dtype="dtype")
TRAINING_OPTIONS = dict(epochs="epochs", batch_size="batch_size", samples="samples", beta="beta",
                        warmup="warmup_epochs", binarize="binarize", optimizer="optimizer", lr="lr", seed="seed",
                        objective="objective", k="k")
DEFAULT_DATASET = "digits"


def train_defaults():
    """The defaults of the training options, read from VAEConfig's and TrainConfig's field defaults."""
    import dataclasses

    from .model import VAEConfig
    from .training.loop import TrainConfig

    vae = {f.name: f.default for f in dataclasses.fields(VAEConfig)}
    tc = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return {"dataset": DEFAULT_DATASET, **{o: vae[f] for o, f in ARCHITECTURE_OPTIONS.items()},
            **{o: tc[f] for o, f in TRAINING_OPTIONS.items()}}


RESUMABLE = {"epochs", "data_dir", "no_progress", "out", "resume", "backend", "threads", "figures_every"}


def _show(value):
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return "optimizer's own" if value is None else value


def build_parser():
    """The ``scratchvae`` parser: one function below per subcommand's options."""
    p = Parser(prog="scratchvae", description="A variational autoencoder with hand-written gradients.")
    p.add_argument("--version", action="version", version=f"%(prog)s {sys.modules[__package__].__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for add in (_train_parser, _gradcheck_parser, _evaluate_parser, _export_parser, _import_parser,
                _proptest_parser, _sample_parser, _plot_parser, _datasets_parser):
        add(sub)
    return p


def _train_parser(sub):
    t = sub.add_parser("train", help="train a VAE and write a run folder",
                       description="Train a VAE; writes metrics.jsonl, model.npz, train.log, run.json and PNG "
                                   "figures to --out. All ELBO numbers are nats per data point. Options given "
                                   "explicitly override a preset's values. The defaults are the field defaults of "
                                   "scratchvae.model.VAEConfig and scratchvae.training.loop.TrainConfig (the digits demo).")
    _train_config_options(t)
    _train_run_options(t)


def _train_config_options(t):
    """The options of the model and its training: default None, so that a preset or a resume can tell what was
    given; the help names the default and the dataclass field it comes from."""
    from .data.datasets import BINARIZATIONS, LOADERS
    from .model import DTYPES, GAUSSIAN_VARIANCES, LIKELIHOODS
    from .ops import ACTIVATIONS
    from .optim import OPTIMIZERS

    defaults = train_defaults()

    def opt(flag, help, **kw):
        dest = flag[2:].replace("-", "_")
        source = ("" if dest == "dataset" else
                  f" from VAEConfig.{ARCHITECTURE_OPTIONS[dest]}" if dest in ARCHITECTURE_OPTIONS else
                  f" from TrainConfig.{TRAINING_OPTIONS[dest]}")
        t.add_argument(flag, default=None, help=f"{help} (default: {_show(defaults[dest])}{source})", **kw)

    opt("--dataset", "data set to train on", choices=sorted(LOADERS))
    opt("--epochs", "total number of passes over the training split", type=_positive_int)
    opt("--batch-size", "data points per minibatch", type=_positive_int)
    opt("--hidden", "hidden layer widths of the encoder (the decoder mirrors them); 'none' for a linear model",
        type=_widths, metavar="W[,W...]")
    opt("--latent", "latent dimensions J", type=_positive_int, metavar="J")
    opt("--activation", "hidden-layer activation", choices=list(ACTIVATIONS))
    opt("--likelihood", "decoder likelihood p(x|z)", choices=LIKELIHOODS)
    opt("--gaussian-variance", "Gaussian likelihood only: variance fixed (log-variance --fixed-logvar), learned "
        "per pixel, or predicted per sample by the decoder", choices=GAUSSIAN_VARIANCES)
    opt("--fixed-logvar", "log-variance of the fixed Gaussian likelihood", type=_number)
    opt("--samples", "Monte Carlo samples z per data point (eq.20)", type=_positive_int, metavar="L")
    opt("--beta", "weight on the KL term; 1 is the ELBO, anything else a weighted objective (not a bound)",
        type=_nonnegative)
    opt("--warmup", "KL warm-up: the KL weight grows linearly from 0 to beta over this many epochs",
        type=_warmup, metavar="EPOCHS")
    opt("--binarize", "Bernoulli likelihood only: resample pixels every epoch (dynamic), once with a fixed seed "
        "(static), or keep grey levels (none)", choices=BINARIZATIONS)
    opt("--objective", "training objective: the ELBO of eq.20, or the importance-weighted bound L_K "
        "(eq.29; Burda et al. 2015)", choices=["elbo", "iwae"])
    opt("--k", "importance samples K of the iwae objective", type=_positive_int, metavar="K")
    opt("--optimizer", "optimizer", choices=list(OPTIMIZERS))
    opt("--lr", "learning rate (adam 1e-3, adagrad 0.01, sgd 0.01 when not given)", type=_positive)
    opt("--seed", "seed of the one random generator (weights, batches, noise)", type=_seed)
    opt("--dtype", "floating-point type, end to end", choices=DTYPES)


def _train_run_options(t):
    """How to run: kernels, preset, data and run folders, threads, figures, progress."""
    from .training.presets import PRESETS

    t.add_argument("--backend", choices=["numba", "reference"], default=None,
                   help="the kernels the engine runs: numba (compiled) or reference (the readable NumPy ops) "
                        "(default: $SCRATCHVAE_BACKEND, else numba)")
    t.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a reference configuration: " + "; ".join(
                       f"{k}: " + ", ".join(f"{a}={_show(v)}" for a, v in d.items()) for k, d in PRESETS.items()))
    t.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where to look first for data files (then $SCRATCHVAE_DATA, ~/.cache/scratchvae, "
                        "/usr/share/datasets) (default: none)")
    t.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its checkpoint (model, optimizer and random state) up "
                        "to --epochs in total (default: start a new run)")
    t.add_argument("--out", default=None, metavar="DIR",
                   help="run folder to write; it must be empty or new unless --overwrite (default: a fresh "
                        "runs/DATE-TIME-PID, with runs/latest pointing at it; RUN_DIR with --resume)")
    t.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="BLAS threads for the matrix products (default: as OPENBLAS_NUM_THREADS or "
                        "OMP_NUM_THREADS set them, else one per CPU idle at the start; with --resume the count the "
                        "run was started with, so that it matches an uninterrupted one bit for bit)")
    t.add_argument("--figures-every", type=_positive_int, default=None, metavar="N",
                   help="also write the figures after every N epochs (default: only at the end)")
    t.add_argument("--overwrite", action="store_true",
                   help="remove the files of an earlier run in --out before training (default: refuse such a folder)")
    t.add_argument("--no-progress", action="store_true",
                   help="no progress bar (default: a bar when stderr is a terminal, else one line per epoch)")


def _gradcheck_parser(sub):
    g = sub.add_parser("gradcheck", help="check every hand-written gradient against finite differences",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Central differences in float64 on every op and on the whole ELBO of small "
                                   "models; exits 1 when any relative error exceeds 1e-6.")
    g.add_argument("--seed", type=_seed, default=0, help="seed of the random inputs and models")


def _evaluate_parser(sub):
    from .data.datasets import LOADERS

    e = sub.add_parser("evaluate", help="ELBO, importance-weighted bound and diagnostics of a trained model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Prints one JSON object: elbo, iwae (L_K, Burda et al. 2015), iw_samples, recon, "
                                   "kl, kl_per_dim, active_units, n, bits_per_dim, in nats per data point.")
    e.add_argument("model", metavar="MODEL.npz", help="a checkpoint written by scratchvae train")
    e.add_argument("--dataset", default=None, choices=sorted(LOADERS),
                   help="data set (default: the one the model was trained on)")
    e.add_argument("--split", default="test", choices=["test", "train"], help="which split")
    e.add_argument("--iw-samples", type=_positive_int, default=5000, metavar="K", help="importance samples K")
    e.add_argument("--batch-size", type=_positive_int, default=100, help="data points per batch")
    e.add_argument("--limit", type=_positive_int, default=None, help="only the first N data points (default: all)")
    from .training.evaluate import EVAL_SEED

    e.add_argument("--seed", type=_seed, default=EVAL_SEED,
                   help="seed of the noise and the binarization (the default is the one training's own evaluations "
                        "use)")
    e.add_argument("--backend", choices=["numba", "reference"], default=None,
                   help="the kernels the engine runs (default: $SCRATCHVAE_BACKEND, else numba)")
    e.add_argument("--data-dir", default=None, metavar="DIR", help="a folder to search first for data files")
    e.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="BLAS threads for the matrix products (default: as OPENBLAS_NUM_THREADS or "
                        "OMP_NUM_THREADS set them, else one per CPU idle at the start)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")


def _export_parser(sub):
    x = sub.add_parser("export", help="write a model's weights as safetensors in the PyTorch examples VAE layout",
                       description="Writes the weights of a checkpoint as the state dict of the PyTorch examples "
                                   "VAE (fc1, fc21, fc22, fc3, fc4; weights out x in) in safetensors, for "
                                   "load_state_dict. One hidden layer each side, Bernoulli likelihood.")
    x.add_argument("model", metavar="MODEL.npz", help="a checkpoint written by scratchvae train")
    x.add_argument("--out", default=None, metavar="FILE.safetensors",
                   help="file to write (default: MODEL with the suffix .safetensors)")


def _import_parser(sub):
    from .data.datasets import LOADERS

    i = sub.add_parser("import", help="make a checkpoint from safetensors weights of the PyTorch examples VAE",
                       description="Reads the state dict of the PyTorch examples VAE from safetensors and writes a "
                                   "checkpoint (fresh optimizer, epoch 0) that scratchvae evaluate and "
                                   "train --resume accept.")
    i.add_argument("file", metavar="FILE.safetensors", help="weights written by scratchvae export or by PyTorch")
    i.add_argument("--out", required=True, metavar="MODEL.npz", help="checkpoint to write")
    i.add_argument("--dataset", default=None, choices=sorted(LOADERS),
                   help="data set the model is for (default: the one the file names)")
    i.add_argument("--data-dir", default=None, metavar="DIR", help="a folder to search first for data files")


def _proptest_parser(sub):
    pt = sub.add_parser("proptest", help="property-test anyone's ELBO or IWAE bound against exact-evidence models",
                        description="Runs the properties of scratchvae.testing.proptest (eq.13, eq.14, eq.20, the IWAE "
                                    "bound of eq.29-eq.33) on FUNCTION(x, eps, params) -> one estimate per data "
                                    "point, and prints each property's verdict with the shrunk counterexample; "
                                    "exits 1 when any fails. See docs/proptest.md.")
    pt.add_argument("target", metavar="MODULE:FUNCTION", help="the estimate to test (a module or a path/to/file.py)")
    pt.add_argument("--kind", choices=["elbo", "iwae", "categorical"], default="elbo",
                    help="what FUNCTION returns: the ELBO of eq.20, the bound L_K, or the ELBO of a categorical q "
                         "(default: elbo)")
    pt.add_argument("--grad", default=None, metavar="MODULE:FUNCTION",
                    help="its gradient (a dict like params), checked against central differences (default: none)")
    pt.add_argument("--examples", type=_positive_int, default=100, metavar="N",
                    help="examples per property (default: 100)")
    pt.add_argument("--seed", type=int, default=None,
                    help="search with this seed (default: derandomized, the same examples every run)")
    pt.add_argument("--rtol", type=_number, default=1e-8,
                    help="relative tolerance of the exact properties (default: 1e-8, float64 round-off; "
                         "about 1e-4 suits float32 code)")


def _sample_parser(sub):
    sm = sub.add_parser("sample", help="draw images from a trained model: z from the prior, then x given z",
                        description="Draws z ~ N(0, I) (eq.19) and writes the decoder's mean E[x|z] as an image "
                                    "grid (PNG) and/or arrays (.npz with z and x); with --draw, x is drawn from "
                                    "p(x|z) instead of taking its mean.")
    sm.add_argument("model", metavar="MODEL.npz", help="a checkpoint written by scratchvae train")
    sm.add_argument("--n", type=_positive_int, default=64, help="how many samples (default: 64)")
    sm.add_argument("--seed", type=int, default=0, help="seed of z (and of x with --draw) (default: 0)")
    sm.add_argument("--draw", action="store_true", help="x ~ p(x|z) instead of E[x|z] (default: the mean)")
    sm.add_argument("--out", default=None, metavar="FILE.png",
                    help="image grid to write (default: samples-seedS.png beside MODEL.npz, unless --npz alone)")
    sm.add_argument("--npz", default=None, metavar="FILE.npz", help="also write z (n, J) and x (n, D) as arrays")


def _plot_parser(sub):
    pl = sub.add_parser("plot", help="draw every figure of a run folder again, plus a latent traversal",
                        description="Reads RUN_DIR/model.npz (its history and data set) and writes "
                                    "reconstructions.png, samples.png, curves.png, latent.png, manifold.png "
                                    "(latent size 2) and traversal.png into RUN_DIR (or --out).")
    pl.add_argument("run", metavar="RUN_DIR", help="a run folder written by scratchvae train")
    pl.add_argument("--out", default=None, metavar="DIR", help="where to write the figures (default: RUN_DIR)")
    pl.add_argument("--data-dir", default=None, metavar="DIR", help="a folder to search first for data files")


def _datasets_parser(sub):
    d = sub.add_parser("datasets", help="list the data sets and where their files are, or download them",
                       description="'datasets list' shows each data set and where its files were found; "
                                   "'datasets download NAME' fetches the canonical files, verifies their "
                                   "SHA-256 where known, and writes them atomically.")
    dsub = d.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    dsub.required = True
    dl = dsub.add_parser("list", help="each data set and where its files are",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    dl.add_argument("--data-dir", default=None, metavar="DIR", help="a folder to search first")
    dd = dsub.add_parser("download", help="download a data set", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    dd.add_argument("name", choices=["mnist", "fashion-mnist", "binarized-mnist"], help="data set")
    dd.add_argument("--data-dir", default=None, metavar="DIR",
                    help="folder to write to, under DIR/NAME (default: $SCRATCHVAE_DATA or ~/.cache/scratchvae)")
    dd.add_argument("--base-url", default=None, help="a mirror to fetch the files from instead of the canonical URLs")
    dd.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_options(args):
    """Resolve the training options: explicit > preset > defaults. Returns a dict keyed like :func:`train_defaults`."""
    from .training.presets import PRESETS

    defaults = train_defaults()
    given = {k: getattr(args, k) for k in defaults if getattr(args, k) is not None}
    return {**defaults, **(PRESETS[args.preset] if args.preset else {}), **given}


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


def _check_fits(model, dataset):
    """Refuse (exit 2) a data set whose dimension is not the model's."""
    if dataset.data_dim != model.config.data_dim:
        raise BadInput(f"the model expects {model.config.data_dim} dimensions, {dataset.name} has "
                       f"{dataset.data_dim}")


def _check_backend(backend):
    """The kernel set ``backend`` names (None: $SCRATCHVAE_BACKEND, else the default), refused with exit 2 when
    the environment names none or numba is asked for and missing. Returns its name."""
    from .engine import default_backend, kernel_set

    with checking_input():
        backend = backend or default_backend()
        kernel_set(backend)
    return backend


def _prepare_engine(args, notice=None):
    """The BLAS thread count (--threads; on --resume the run's own; else :func:`scratchvae._fast.blas.choose_threads`),
    said in one line, and one line when numba is missing and the engine falls back to the reference kernels."""
    from ._fast.blas import choose_threads, set_threads
    from .engine import ENV_VAR, numba_available

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


def cmd_train(args):
    import numpy as np

    from .training.checkpoint import check_model_size
    from .data.datasets import load_dataset
    from .model import VAE, VAEConfig
    from .training.runs import fresh_run_dir, point_latest
    from .training.loop import TrainConfig, check_run_size, load_checkpoint, train

    progress = not args.no_progress and sys.stderr.isatty()
    _prepare_engine(args)
    if args.resume:
        extra = sorted(k for k, v in vars(args).items()
                       if k not in RESUMABLE | {"command", "overwrite"} and v not in (None, False))
        if extra:
            raise UsageError(f"scratchvae train: error: with --resume only --epochs, --data-dir, --out, --overwrite, "
                             f"--backend, --threads, --figures-every and --no-progress may be given, "
                             f"not --{extra[0].replace('_', '-')}")
        if not os.path.isdir(args.resume):
            raise UsageError(f"scratchvae train: error: --resume {args.resume}: no such run folder")
        model, optimizer, state = load_checkpoint(os.path.join(args.resume, "model.npz"))
        with checking_input():
            tconfig = TrainConfig(**{**state["config"], **({"epochs": args.epochs} if args.epochs else {}),
                                     **({"backend": args.backend} if args.backend else {})})
            _check_backend(tconfig.backend)
        out = args.out or args.resume
        if tconfig.epochs <= state["epoch"]:
            say(f"{args.resume} has {state['epoch']} epochs already; give --epochs above that to train on")
            return 0
        mode = "resume" if _same_folder(out, args.resume) else ("overwrite" if args.overwrite else "new")
        dataset = load_dataset(state["dataset"], args.data_dir)
        _check_fits(model, dataset)
        args.run_dir = out  # where an internal error's traceback goes, once the run has a log there
        history = train(model, dataset, tconfig, out, optimizer=optimizer, resume=state, progress=progress,
                        log=say, mode=mode, figures_every=args.figures_every or 0)
    else:
        o = train_options(args)
        dataset = load_dataset(o["dataset"], args.data_dir)
        with checking_input():
            config = VAEConfig(
                data_dim=dataset.data_dim, latent_dim=o["latent"], hidden=o["hidden"], activation=o["activation"],
                likelihood=o["likelihood"], gaussian_variance=o["gaussian_variance"], fixed_logvar=o["fixed_logvar"],
                dtype=o["dtype"])
            check_model_size(config, "--hidden/--latent")
            tconfig = TrainConfig(
                epochs=o["epochs"], batch_size=o["batch_size"], samples=o["samples"], beta=o["beta"],
                warmup_epochs=o["warmup"], optimizer=o["optimizer"], lr=o["lr"], seed=o["seed"],
                binarize=o["binarize"], objective=o["objective"], k=o["k"] if o["objective"] == "iwae" else 1,
                backend=args.backend)
            check_run_size(config, tconfig, len(dataset.train_x))  # before a folder is made for the run
            _check_backend(tconfig.backend)
        model = VAE(config, np.random.default_rng(o["seed"]))
        out = args.out or fresh_run_dir()
        args.run_dir = out
        history = train(model, dataset, tconfig, out, progress=progress, log=say,
                        mode="overwrite" if args.overwrite else "new", figures_every=args.figures_every or 0)
        if args.out is None:
            point_latest(out)
    last = history[-1]
    total = sum(r["seconds"] for r in history)
    say(f"test ELBO {last['test_elbo']:.3f} nats per data point after {last['epoch']} epochs "
        f"({total:.1f} s of training); run folder: {out}")
    return 0


def cmd_gradcheck(args):
    from .testing.gradcheck import TOLERANCE, format_table, run_all

    results = run_all(args.seed)
    print(format_table(results))
    return 0 if all(r.error <= TOLERANCE for r in results) else 1


def cmd_evaluate(args):
    import json

    from .data.datasets import load_dataset
    from .training.evaluate import evaluate
    from .training.loop import load_checkpoint

    _prepare_engine(args, notice=lambda line: print(f"scratchvae: {line}", file=sys.stderr))
    model, _, state = load_checkpoint(args.model)
    name = args.dataset or state.get("dataset", "digits")
    dataset = load_dataset(name, args.data_dir)
    _check_fits(model, dataset)
    backend = _check_backend(args.backend)
    result = evaluate(model, dataset, iw_samples=args.iw_samples, split=args.split,
                      binarize=state.get("binarize", "dynamic"), batch_size=args.batch_size, limit=args.limit,
                      seed=args.seed, backend=backend, progress=not args.no_progress and sys.stderr.isatty())
    say(json.dumps({"dataset": name, **result}))
    return 0


def cmd_datasets(args):
    from .data.datasets import ENV_VAR, FILES, DataNotFound, find_files

    if args.action == "list":
        print("digits: shipped inside the package (UCI optical digits, 8x8, 1,797 images)")
        for name in FILES:
            try:
                where = os.path.dirname(find_files(name, args.data_dir)[0])
            except DataNotFound:
                where = f"not found (scratchvae datasets download {name})"
            print(f"{name}: {where}")
        return 0
    from .data.download import download_dataset

    base = args.data_dir or os.environ.get(ENV_VAR) or os.path.join(os.path.expanduser("~"), ".cache", "scratchvae")
    paths = download_dataset(args.name, os.path.join(base, args.name), base_url=args.base_url,
                             progress=not args.no_progress)
    for path in paths.values():
        print(path)
    return 0


def cmd_export(args):
    from .training.transfer import export_checkpoint

    out = args.out or os.path.splitext(args.model)[0] + ".safetensors"
    tensors = export_checkpoint(args.model, out)
    print(f"wrote {out}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in tensors.items())
          + f" ({tensors['fc1.weight'].dtype})")
    return 0


def cmd_import(args):
    from .training.transfer import import_checkpoint

    model, dataset, notes = import_checkpoint(args.file, args.out, args.dataset, args.data_dir)
    for note in notes:
        print(f"note: {note}")
    c = model.config
    print(f"wrote {args.out}: {c.data_dim}-{c.hidden[0]}-{c.latent_dim} {c.activation} {c.likelihood} {c.dtype} "
          f"for {dataset}; evaluate with: scratchvae evaluate {args.out}")
    return 0


def _need_matplotlib(command):
    from .training import plots

    if not plots.available():
        raise UsageError(f"scratchvae {command}: error: figures need matplotlib: pip install matplotlib")


def cmd_sample(args):
    import numpy as np

    from .training.loop import load_checkpoint

    model, _, state = load_checkpoint(args.model)
    out = args.out
    if out is None and args.npz is None:
        out = os.path.join(os.path.dirname(os.path.abspath(args.model)), f"samples-seed{args.seed}.png")
    if out is not None:
        _need_matplotlib("sample")
    rng = np.random.default_rng(args.seed)
    z = rng.standard_normal((args.n, model.config.latent_dim), dtype=model.dtype)  # (n, J) from the prior
    x = model.draw(z, rng) if args.draw else model.mean_image(z)  # (n, D)
    what = "x ~ p(x|z)" if args.draw else "E[x|z]"
    if args.npz is not None:
        np.savez(args.npz, z=z, x=x)
        print(f"wrote {args.npz}: z {list(z.shape)}, x {list(x.shape)} ({what})")
    if out is not None:
        from .data.datasets import image_shape_of
        from .training.plots import sample_grid

        sample_grid(out, x, image_shape_of(state.get("dataset"), model.config.data_dim),
                    f"{args.n} samples: {what}, z ~ N(0, I), seed {args.seed}")
        print(f"wrote {out}")
    return 0


def cmd_plot(args):
    from .data.datasets import BatchSource, load_dataset
    from .training.plots import traversal, write_run_figures
    from .training.loop import load_checkpoint

    _need_matplotlib("plot")
    model, _, state = load_checkpoint(os.path.join(args.run, "model.npz"))
    dataset = load_dataset(state["dataset"], args.data_dir)
    _check_fits(model, dataset)
    out = args.out or args.run
    os.makedirs(out, exist_ok=True)
    binarize = state.get("binarize", "dynamic") if model.config.likelihood == "bernoulli" else "none"
    test = BatchSource(dataset, "test", binarize, model.dtype)
    written = write_run_figures(out, model, dataset, test, state["history"])
    written.append(traversal(os.path.join(out, "traversal.png"), model, dataset.image_shape))
    for path in written:
        print(path)
    return 0


def cmd_proptest(args):
    try:
        from .testing import proptest
    except ImportError as e:
        if (e.name or "").split(".")[0] != "hypothesis":
            raise
        raise UsageError("scratchvae proptest: error: it needs hypothesis: pip install 'hypothesis>=6.80' "
                         "(or pip install 'scratchvae[test]')") from None
    if not 0 < args.rtol < 1:
        raise UsageError(f"scratchvae proptest: error: --rtol must be in (0, 1), got {args.rtol}")
    with checking_input():  # the user's module: not found, not importable, no such function
        fn = proptest.load_function(args.target)
        grad = proptest.load_function(args.grad) if args.grad else None
    report = proptest.check(fn, args.kind, grad=grad, examples=args.examples, seed=args.seed, rtol=args.rtol)
    print(report.table())
    return 0 if report.passed else 1


COMMANDS = {"train": cmd_train, "gradcheck": cmd_gradcheck, "evaluate": cmd_evaluate, "datasets": cmd_datasets,
            "export": cmd_export, "import": cmd_import, "proptest": cmd_proptest, "sample": cmd_sample,
            "plot": cmd_plot}


def _one_line(e):
    return str(e).splitlines()[0] if str(e) else e.__class__.__name__


def _input_errors():
    """The error classes only validators of the user's input raise (a file, a data set, a folder named)."""
    from .data.datasets import DataNotFound
    from .data.idx import DataFileError
    from .io.interop import InteropError
    from .io.safetensors import SafetensorsError
    from .training.checkpoint import CheckpointError
    from .training.runs import RunFolderRefused

    return BadInput, CheckpointError, DataFileError, DataNotFound, InteropError, SafetensorsError, RunFolderRefused


def main(argv=None):
    """Run one command; return its exit code (see the module docstring). Never a traceback on the terminal."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parsed = []  # the parsed arguments, once there are some: a train command names its run folder there
    try:
        return _run(argv, parsed)
    except Exception as e:  # none of the errors _run reports: a bug
        return report_internal_error(e, argv, getattr(parsed[0], "run_dir", None) if parsed else None)


def _run(argv, parsed):
    from .training.loop import TrainingDiverged, TrainingFailed, TrainingInterrupted
    from .training.runs import RunFolderError

    input_errors = _input_errors()
    try:
        args = build_parser().parse_args(argv)
        parsed.append(args)
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(e, file=sys.stderr)
        return EXIT_BAD_INPUT
    except input_errors as e:
        print(f"scratchvae: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingDiverged as e:
        print(f"scratchvae: training stopped: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    except (TrainingFailed, RunFolderError) as e:
        print(f"scratchvae: failed: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    except TrainingInterrupted as e:
        print(f"scratchvae: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("scratchvae: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print("scratchvae: failed: not enough memory", file=sys.stderr)
        return EXIT_FAILED
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"scratchvae: failed: {where}{e.strerror or _one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:
        download = sys.modules.get(f"{__package__}.data.download")  # imported only by a download, and slow to import
        if download is None or not isinstance(e, download.DownloadError):
            raise
        print(f"scratchvae: failed: {_one_line(e)}", file=sys.stderr)  # the network or the server, not an argument
        return EXIT_FAILED


def report_internal_error(exc, argv, run_dir=None):
    """A bug: one line on stderr, the traceback in the run's ``train.log`` (when ``run_dir`` has one) or in a new
    file of the temp folder, for a bug report. Returns exit code 1."""
    import datetime
    import platform
    import shlex
    import traceback

    from . import __version__

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = (f"\nscratchvae {__version__}: internal error, {when}\n"
            f"command: scratchvae {shlex.join(argv)}\n"
            f"Python {platform.python_version()} on {platform.platform()}\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    where = _write_report(text, run_dir)
    what = f"{type(exc).__name__}: {_one_line(exc)}" if str(exc) else type(exc).__name__
    report = f"please report it with {where}" if where else "please report it (no file could take the traceback)"
    try:
        print(f"scratchvae: internal error: {what}; {report}", file=sys.stderr)
    except OSError:
        pass
    return EXIT_FAILED


def _write_report(text, run_dir):
    """Append ``text`` to ``run_dir``/train.log if there is one, else write it to a new file in the temp folder;
    return the path written, or None."""
    import tempfile

    if run_dir and os.path.isfile(os.path.join(run_dir, "train.log")):
        path = os.path.join(run_dir, "train.log")
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
            return path
        except OSError:
            pass
    try:
        fd, path = tempfile.mkstemp(prefix="scratchvae-internal-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text.lstrip("\n"))
        return path
    except OSError:
        return None

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
TRAINING_OPTIONS.update(SELECTION_OPTIONS := dict(  # held-out split, early stopping, schedule, dequantization
    validation="validation", patience="patience", final_test="final_test", lr_schedule="lr_schedule",
    lr_step="lr_step", lr_gamma="lr_gamma", lr_warmup="lr_warmup", dequantize="dequantize"))
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


RESUMABLE = {"dataset", "epochs", "data_dir", "no_progress", "out", "resume", "backend", "threads", "figures_every"}


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
                _proptest_parser, _sample_parser, _plot_parser, _encode_parser, _reconstruct_parser,
                _interpolate_parser, _datasets_parser, _lab_parser):
        add(sub)
    return p


def _train_parser(sub):
    t = sub.add_parser("train", help="train a VAE and write a run folder",
                       description="Train a VAE; writes metrics.jsonl, model.npz (the last epoch), best.npz (the "
                                   "best validation ELBO), train.log, run.json and PNG figures to --out. All ELBO "
                                   "numbers are nats per data point. Options given explicitly override a preset's "
                                   "values. The defaults are the field defaults of scratchvae.model.VAEConfig and "
                                   "scratchvae.training.loop.TrainConfig (the digits demo); data of 784 or more "
                                   "dimensions without a preset get 784-400-20 for 20 epochs at batch 128.")
    _train_config_options(t)
    _train_selection_options(t)
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

    opt("--dataset", f"data set to train on: {', '.join(sorted(LOADERS))}, or the path of your own data (.npy, "
        ".npz, .csv, IDX, a folder of PNG images; docs/data.md)", metavar="NAME|PATH")
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
    opt("--beta", "weight on the KL term (eq.48); 1 is the ELBO, above 1 a looser bound, below 1 not a bound",
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


def _train_selection_options(t):
    """The validation split, early stopping, the final test, the learning-rate schedule and dequantization:
    default None like the options above, the help naming the TrainConfig field the default comes from."""
    from .training.config import DEQUANTIZATIONS, LR_SCHEDULES

    defaults = train_defaults()

    def opt(flag, help, **kw):
        dest = flag[2:].replace("-", "_")
        t.add_argument(flag, default=None,
                       help=f"{help} (default: {_show(defaults[dest])} from TrainConfig.{SELECTION_OPTIONS[dest]})", **kw)

    def validation(text):
        value = _nonnegative(text)
        if value >= 1 and value != int(value):
            raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), a whole number of points or 0, "
                                             f"got {text!r}")
        return int(value) if value >= 1 else value

    def count(text):
        value = _positive_int(text) if text.strip() != "0" else 0
        return value

    opt("--validation", "points held out of the training split to watch each epoch, pick best.npz and stop "
        "early: a fraction, a count, or 0 for none (the last of a permutation with a fixed seed)",
        type=validation, metavar="N|FRACTION")
    opt("--patience", "stop after this many epochs without a better validation ELBO (0: never)", type=count,
        metavar="N")
    t.add_argument("--final-test", action="store_true", default=None,
                   help="after training, evaluate best.npz once on the test split (default: the test split is "
                        "not read; scratchvae evaluate reads it)")
    opt("--lr-schedule", "learning rate over the run: constant, step (times --lr-gamma every --lr-step epochs), "
        "cosine (to 0 at the last epoch), or burda2015 (Burda et al.'s 8 stages of 3^i parts at "
        "lr·10^(-i/7))", choices=LR_SCHEDULES)
    opt("--lr-step", "epochs between two decays of the step schedule", type=_positive_int, metavar="EPOCHS")
    opt("--lr-gamma", "factor of each decay of the step schedule", type=_positive, metavar="G")
    opt("--lr-warmup", "the learning rate grows linearly from 0 over this many epochs", type=_warmup,
        metavar="EPOCHS")
    opt("--dequantize", "Gaussian likelihood on integer pixels of Q levels: (x + u)/Q with u ~ U[0,1) per pixel "
        "and batch "
        "(uniform), or not (none: refused with a learned or predicted variance, whose density is unbounded there); "
        "auto is uniform where it applies", choices=DEQUANTIZATIONS)


# The TrainConfig fields and options the command line names where a refusal names them.
CLI_NAMES = dict(batch_size="--batch-size", samples="--samples", k="--k", validation="--validation",
                 dequantize="--dequantize")


def _size_defaults(options, args, data_dim):
    """``options`` with the defaults of large images (:func:`scratchvae.training.presets.defaults_for`) where neither
    a preset nor the command line gave a value."""
    from .training.presets import defaults_for

    if args.preset:
        return options
    return {**options, **{k: v for k, v in defaults_for(data_dim).items() if getattr(args, k) is None}}


def _train_summary(history, out):
    """The last line of ``scratchvae train``: the last epoch's validation (or training) ELBO, the final test's."""
    rows = [r for r in history if "epoch" in r]
    last, total = rows[-1], sum(r["seconds"] for r in rows)
    held = (f"validation ELBO {last['valid_elbo']:.3f}" if "valid_elbo" in last
            else f"training ELBO {last['train_elbo']:.3f}")
    test = next((f"; test ELBO of {r['checkpoint']} (epoch {r['checkpoint_epoch']}) {r['test_elbo']:.3f}"
                 for r in history if r.get("split") == "test"), "")
    return (f"{held} nats per data point after {last['epoch']} epochs ({total:.1f} s of training){test}; "
            f"run folder: {out}")


def _evaluation_split(state, split):
    """The validation split and dequantization a checkpoint's run used, as :func:`evaluate`'s keywords; a run
    without a validation split refuses ``--split valid``."""
    cfg = state["config"]
    if split == "valid" and not cfg["validation"]:
        raise BadInput("--split valid: the run held out no validation split (--validation 0, or trained before "
                       "there was one)")
    return dict(dequantize=cfg["dequantize"], validation=cfg["validation"], validation_seed=cfg["validation_seed"])


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
                       description="Prints one JSON object: elbo, iwae (L_K, Burda et al. 2015), their standard "
                                   "errors elbo_se and iwae_se over the data points, iw_samples, recon, kl, "
                                   "kl_per_dim, active_units, n, bits_per_dim, in nats per data point.")
    e.add_argument("model", metavar="MODEL.npz", help="a checkpoint written by scratchvae train")
    e.add_argument("--dataset", default=None, metavar="NAME|PATH",
                   help=f"data set: {', '.join(sorted(LOADERS))}, or the path of your own data (default: the one "
                        f"the model was trained on, verified against its checkpoint)")
    from .training.evaluate import DEFAULT_IW_SAMPLES

    e.add_argument("--split", default="test", choices=["test", "valid", "train"],
                   help="which split: test, the validation points the run held out, or the points it trained on")
    e.add_argument("--iw-samples", type=_positive_int, default=DEFAULT_IW_SAMPLES, metavar="K",
                   help="importance samples K")
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
    x.add_argument("model", metavar="MODEL.npz", help="a checkpoint written by scratchvae train, or its run folder")
    x.add_argument("--out", default=None, metavar="FILE.safetensors",
                   help="file to write, never a checkpoint (default: MODEL with the suffix .safetensors)")


def _import_parser(sub):
    from .data.datasets import LOADERS

    i = sub.add_parser("import", help="make a checkpoint from safetensors weights of the PyTorch examples VAE",
                       description="Reads the state dict of the PyTorch examples VAE from safetensors and writes a "
                                   "checkpoint (fresh optimizer, epoch 0) that scratchvae evaluate and "
                                   "train --resume accept.")
    i.add_argument("file", metavar="FILE.safetensors", help="weights written by scratchvae export or by PyTorch")
    i.add_argument("--out", required=True, metavar="MODEL.npz",
                   help="checkpoint to write (a folder: FOLDER/model.npz); missing folders are created")
    i.add_argument("--overwrite", action="store_true", help="replace the file --out names (default: refuse)")
    i.add_argument("--dataset", default=None, metavar="NAME|PATH",
                   help=f"data set the model is for: {', '.join(sorted(LOADERS))}, or the path of your own data "
                        "(default: the one the file names)")
    i.add_argument("--data-dir", default=None, metavar="DIR", help="a folder to search first for data files")


def _proptest_parser(sub):
    pt = sub.add_parser("proptest", help="property-test anyone's ELBO or IWAE bound against exact-evidence models",
                        description="Runs the properties of scratchvae.testing.proptest (eq.13, eq.14, eq.20, the IWAE "
                                    "bound of eq.29-eq.33) on FUNCTION(x, eps, params) -> one estimate per data "
                                    "point, and prints each property's verdict with the shrunk counterexample; "
                                    "exits 1 when any fails. See docs/proptest.md.")
    pt.add_argument("target", metavar="MODULE:FUNCTION", help="the estimate to test (a module or a path/to/file.py)")
    pt.add_argument("--kind", choices=["elbo", "iwae", "categorical", "mlp-elbo", "mlp-iwae"], default="elbo",
                    help="what FUNCTION returns: the ELBO of eq.20, the bound L_K, or the ELBO of a categorical q; "
                         "mlp-elbo and mlp-iwae: the same of the pytorch/examples MLP VAE, evidence by quadrature "
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
    pt.add_argument("--stability", action="store_true",
                    help="also run FUNCTION at real sizes: D = 784, K = 5000, logits of hundreds")
    pt.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                    help="what --stability hands FUNCTION and whose round-off it allows (default: float64)")


def _sample_parser(sub):
    sm = sub.add_parser("sample", help="draw images from a trained model: z from the prior, then x given z",
                        description="Draws z ~ N(0, I) (eq.19) and writes the decoder's mean E[x|z] as an image "
                                    "grid (PNG) and/or arrays (.npz with z and x); with --draw, x is drawn from "
                                    "p(x|z) instead of taking its mean.")
    sm.add_argument("model", metavar="MODEL.npz", help="a checkpoint written by scratchvae train, or its run folder")
    sm.add_argument("--n", type=_positive_int, default=64, help="how many samples (default: 64)")
    sm.add_argument("--seed", type=_seed, default=0, help="seed of z (and of x with --draw) (default: 0)")
    sm.add_argument("--draw", action="store_true", help="x ~ p(x|z) instead of E[x|z] (default: the mean)")
    sm.add_argument("--out", default=None, metavar="FILE.png",
                    help="image grid to write (default: samples-seedS.png beside MODEL.npz, unless --npz alone)")
    sm.add_argument("--npz", default=None, metavar="FILE.npz",
                    help="also write z (n, J) and x (n, D) as arrays (.npz added to a name without it)")


def _plot_parser(sub):
    pl = sub.add_parser("plot", help="draw every figure of a run folder again, plus a latent traversal",
                        description="Reads RUN_DIR/model.npz (its history and data set) and writes "
                                    "reconstructions.png, samples.png, curves.png, latent.png, manifold.png "
                                    "(latent size 2) and traversal.png into RUN_DIR (or --out).")
    pl.add_argument("run", metavar="RUN_DIR", help="a run folder written by scratchvae train, or its checkpoint")
    pl.add_argument("--out", default=None, metavar="DIR", help="where to write the figures (default: RUN_DIR)")
    pl.add_argument("--data-dir", default=None, metavar="DIR", help="a folder to search first for data files")


def _latent_common(p, figure_help, arrays_help):
    """The options encode, reconstruct and interpolate share: the model, the split, the seed, the files."""
    p.add_argument("model", metavar="MODEL.npz", help="a checkpoint written by scratchvae train, or its run folder")
    p.add_argument("--split", default="test", choices=["test", "valid", "train"],
                   help="which split of the model's data set; valid: the points the run held out, train: those it "
                        "trained on (default: test)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the binarization of the inputs (default: 0)")
    p.add_argument("--out", default=None, metavar="FILE.png", help=figure_help)
    p.add_argument("--npz", default=None, metavar="FILE.npz", help=arrays_help)
    p.add_argument("--data-dir", default=None, metavar="DIR", help="a folder to search first for data files")


def _encode_parser(sub):
    e = sub.add_parser("encode", help="encode data to latents: μ and log σ² of q(z|x), and a scatter figure",
                       description="Encodes a split of the model's data set (or the arrays of --input) with q(z|x) "
                                   "(eq.18) and writes mu and logvar (N, J), with labels where the data have them, "
                                   "as .npz, and the means as a 2-D scatter coloured by label (PNG).")
    _latent_common(e, "scatter figure to write (default: --npz with the suffix .png)",
                   "arrays to write: mu, logvar, index, labels (default: encode-SPLIT.npz beside MODEL.npz)")
    e.add_argument("--input", default=None, metavar="FILE.npy",
                   help="encode this (N, D) array (.npy, or .npz with one array or x) instead of a split")
    e.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="only the first N data points (default: all)")


def _reconstruct_parser(sub):
    r = sub.add_parser("reconstruct", help="reconstruct data points: inputs over E[x|z=μ(x)], figure and arrays",
                       description="Draws N data points of a split (with --seed), encodes them and writes the "
                                   "inputs over their reconstructions E[x|z=μ(x)] as a figure (PNG) and as arrays "
                                   "(.npz: index, grey, x, reconstruction).")
    _latent_common(r, "figure to write (default: reconstruct-SPLIT-seedS.png beside MODEL.npz)",
                   "also write the arrays")
    r.add_argument("--n", type=_positive_int, default=10, help="how many data points (default: 10)")


def _interpolate_parser(sub):
    i = sub.add_parser("interpolate", help="decode the straight line in latent space between two data points",
                       description="Encodes data points --from and --to of a split, and decodes E[x|z_t] for "
                                   "z_t = (1 − t) μ(x_a) + t μ(x_b), t from 0 to 1; writes a figure (PNG) and the "
                                   "arrays (.npz: t, z, x, and the two inputs).")
    _latent_common(i, "figure to write (default: interpolate-SPLIT-A-B.png beside MODEL.npz)",
                   "also write the arrays")
    i.add_argument("--from", dest="a", type=int, default=0, metavar="A", help="index of the first data point "
                   "(default: 0)")
    i.add_argument("--to", dest="b", type=int, default=1, metavar="B", help="index of the second (default: 1)")
    i.add_argument("--steps", type=_positive_int, default=10, metavar="T", help="points on the line, ends "
                   "included (default: 10)")


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


def train_options(args, data=None):
    """Resolve the training options: explicit > preset > the data's kind (``data``, from
    :func:`scratchvae.data.user.data_defaults`) > defaults. Returns a dict keyed like :func:`train_defaults`."""
    from .training.presets import PRESETS

    defaults = train_defaults()
    given = {k: getattr(args, k) for k in defaults if getattr(args, k) is not None}
    return {**defaults, **(data or {}), **(PRESETS[args.preset] if args.preset else {}), **given}


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
    from .data.datasets import load_dataset
    from .data.user import DataError

    try:
        return load_dataset(name, data_dir)
    except DataError as e:
        raise BadInput(f"{option}: {_one_line(e)}") from None


def _recorded_data(state, data_dir, path=None):
    """The data a checkpoint's state was trained on: a built-in set by name, or the user's, found at its recorded
    path (or ``path``, if it moved) and verified by its SHA-256 (exit 2 when gone or changed)."""
    from .data.user import load_recorded

    if "data" not in state:
        name = state.get("dataset", "digits")
        if path is not None and path != name:
            raise BadInput(f"--dataset {path}: the model was trained on {name}")
        return _load_data(name, data_dir)
    try:
        return load_recorded(state["data"], path)
    except ValueError as e:
        raise BadInput(f"{'--dataset: ' if path else ''}{_one_line(e)}") from None


def _data_options(args, dataset):
    """:func:`train_options` with the defaults the data's kind calls for; Bernoulli refused on data outside [0, 1]."""
    from .data.user import check_likelihood, data_defaults

    kind = data_defaults(dataset)
    o = train_options(args, kind)
    with checking_input():
        check_likelihood(dataset, o["likelihood"])
    if kind:
        chosen = [f"--{k} {o[k]}" for k in kind if getattr(args, k) is None and not args.preset]
        say(f"{dataset.name}: {dataset.kind} data, {len(dataset.train_x)} train / {len(dataset.test_x)} test "
            f"examples of {dataset.data_dim} values" + (f"; {', '.join(chosen)} (from the kind)" if chosen else ""))
    return o


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
    from .model import VAE, VAEConfig
    from .training.runs import fresh_run_dir, point_latest
    from .training.loop import TrainConfig, check_run, load_checkpoint, train

    progress = not args.no_progress and sys.stderr.isatty()
    _prepare_engine(args)
    if args.resume:
        extra = sorted(k for k, v in vars(args).items()
                       if k not in RESUMABLE | {"command", "overwrite"} and v not in (None, False))
        if extra:
            raise UsageError(f"scratchvae train: error: with --resume only --epochs, --dataset, --data-dir, --out, "
                             f"--overwrite, "
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
        dataset = _recorded_data(state, args.data_dir, args.dataset)
        _check_fits(model, dataset)
        with checking_input():  # the checkpoint's split, dequantization and sizes on the data found
            check_run(model.config, tconfig, dataset, CLI_NAMES, resume=True)
        args.run_dir = out  # where an internal error's traceback goes, once the run has a log there
        history = train(model, dataset, tconfig, out, optimizer=optimizer, resume=state, progress=progress,
                        log=say, mode=mode, figures_every=args.figures_every or 0)
    else:
        dataset = _load_data(train_options(args)["dataset"], args.data_dir)
        o = _data_options(args, dataset)
        o = _size_defaults(o, args, dataset.data_dim)
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
                backend=args.backend, **{field: o[k] for k, field in SELECTION_OPTIONS.items()})
            check_run(config, tconfig, dataset, CLI_NAMES)  # before a folder is made for the run
            _check_backend(tconfig.backend)
        model = VAE(config, np.random.default_rng(o["seed"]))
        out = args.out or fresh_run_dir()
        args.run_dir = out
        history = train(model, dataset, tconfig, out, progress=progress, log=say,
                        mode="overwrite" if args.overwrite else "new", figures_every=args.figures_every or 0)
        if args.out is None:
            point_latest(out)
    say(_train_summary(history, out))
    return 0


def cmd_gradcheck(args):
    from .testing.gradcheck import TOLERANCE, format_table, run_all

    results = run_all(args.seed)
    print(format_table(results))
    return 0 if all(r.error <= TOLERANCE for r in results) else 1


def cmd_evaluate(args):
    import json

    from .training.evaluate import evaluate
    from .training.loop import load_checkpoint

    _prepare_engine(args, notice=lambda line: print(f"scratchvae: {line}", file=sys.stderr))
    model, _, state = load_checkpoint(args.model)
    dataset = _checkpoint_dataset(state, args.data_dir, args.dataset)
    name = dataset.name
    _check_fits(model, dataset)
    backend = _check_backend(args.backend)
    result = evaluate(model, dataset, iw_samples=args.iw_samples, split=args.split,
                      binarize=state.get("binarize", "dynamic"), batch_size=args.batch_size, limit=args.limit,
                      seed=args.seed, backend=backend, progress=not args.no_progress and sys.stderr.isatty(),
                      **_evaluation_split(state, args.split))
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

    from .io.files import atomic_file

    with atomic_file(path, suffix=".npz") as f:
        np.savez(f, **arrays)
    return path


def cmd_export(args):
    from .training.runs import output_files
    from .training.transfer import export_checkpoint

    model_path = _checkpoint_path(args.model)
    out = args.out or os.path.splitext(model_path)[0] + ".safetensors"
    with output_files([(out, "--out")]):
        tensors = export_checkpoint(model_path, out)
    print(f"wrote {out}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in tensors.items())
          + f" ({tensors['fc1.weight'].dtype})")
    return 0


def cmd_import(args):
    from .training.transfer import import_checkpoint

    out = _checkpoint_path(args.out)
    model, dataset, notes = import_checkpoint(args.file, out, args.dataset, args.data_dir, overwrite=args.overwrite)
    for note in notes:
        print(f"note: {note}")
    c = model.config
    print(f"wrote {out}: {c.data_dim}-{c.hidden[0]}-{c.latent_dim} {c.activation} {c.likelihood} {c.dtype} "
          f"for {dataset}; evaluate with: scratchvae evaluate {out}")
    return 0


def _need_matplotlib(command):
    from .training import plots

    if not plots.available():
        raise UsageError(f"scratchvae {command}: error: figures need matplotlib: pip install matplotlib")


def _check_sample_memory(model, n, image_shape, figure):
    """Refuse (exit 2, naming --n) a number of samples whose arrays and figure would not fit in memory."""
    from .training.checkpoint import _bytes, max_model_bytes

    c = model.config
    per_row = c.latent_dim + 3 * c.data_dim + sum(c.decoder_hidden)  # z, logits, x, hidden activations
    need = n * per_row * model.dtype.itemsize
    if figure:
        need += 2 * n * (image_shape[0] + 1) * (image_shape[1] + 1) * 8  # the float64 grid and its rendering
    limit = max_model_bytes()
    if need > limit:
        what = "the samples and their figure" if figure else "the samples"
        raise BadInput(f"--n {n} would need about {_bytes(need)} for {what}, "
                       f"more than the {_bytes(limit)} allowed on this machine (half its memory); ask for fewer")


def cmd_sample(args):
    import numpy as np

    from .data.datasets import image_shape_of
    from .training.loop import load_checkpoint
    from .training.runs import output_files

    model_path = _checkpoint_path(args.model)
    model, _, state = load_checkpoint(model_path)
    out, npz = args.out, _npz_name(args.npz)
    if out is None and npz is None:
        out = os.path.join(os.path.dirname(os.path.abspath(model_path)), f"samples-seed{args.seed}.png")
    if out is not None:
        _need_matplotlib("sample")
    shape = (tuple(state["data"]["image_shape"]) if "data" in state  # the user's data: as recorded, not read
             else image_shape_of(state.get("dataset"), model.config.data_dim))
    _check_sample_memory(model, args.n, shape, out is not None)
    rng = np.random.default_rng(args.seed)
    z = rng.standard_normal((args.n, model.config.latent_dim), dtype=model.dtype)  # (n, J) from the prior
    x = model.draw(z, rng) if args.draw else model.mean_image(z)  # (n, D)
    what = "x ~ p(x|z)" if args.draw else "E[x|z]"
    with output_files([(p, o) for p, o in ((npz, "--npz"), (out, "--out")) if p is not None]):
        if npz is not None:
            _save_npz(npz, z=z, x=x)
            print(f"wrote {npz}: z {list(z.shape)}, x {list(x.shape)} ({what})")
        if out is not None:
            from .training.plots import sample_grid

            sample_grid(out, x, shape, f"{args.n} samples: {what}, z ~ N(0, I), seed {args.seed}")
            print(f"wrote {out}")
    return 0


def _split_source(model, state, dataset, split):
    """Batches of ``split`` ("train", "valid", "test") as the run saw them: binarized as it was (Bernoulli
    likelihood) or dequantized as it was, the validation points those the run held out."""
    from .training.sources import integer_levels, resolve_dequantize, split_source

    c, config = model.config, state.get("config", {})
    binarize = state.get("binarize", "dynamic") if c.likelihood == "bernoulli" else "none"
    with checking_input():
        dequantize = resolve_dequantize(config.get("dequantize", "none"), c.likelihood, c.gaussian_variance,
                                        integer_levels(dataset), training=False)
        return split_source(dataset, split, binarize, dequantize, model.dtype, config.get("validation", 0),
                            config.get("validation_seed", 0))


def cmd_plot(args):
    from .training.loop import load_checkpoint
    from .training.plots import traversal, write_run_figures
    from .training.runs import add_derived, is_run_folder, output_files, run_folder_of

    _need_matplotlib("plot")
    model_path = _checkpoint_path(args.run)
    run = os.path.dirname(model_path) or "."
    model, _, state = load_checkpoint(model_path)
    dataset = _checkpoint_dataset(state, args.data_dir)
    _check_fits(model, dataset)
    out = args.out or run
    if os.path.exists(out) and not os.path.isdir(out):
        raise BadInput(f"--out {out}: exists and is not a folder")
    if is_run_folder(out) and not _same_folder(out, run):
        raise BadInput(f"--out {out}: holds another run, whose figures these would replace; choose another --out")
    names = ["reconstructions.png", "samples.png", "curves.png", "latent.png", "traversal.png"]
    names += ["manifold.png"] if model.config.latent_dim == 2 else []
    split = "valid" if state.get("config", {}).get("validation") else "train"  # as training draws them: not test
    source = _split_source(model, state, dataset, split)
    with output_files([(os.path.join(out, n), "--out") for n in names]):
        written = write_run_figures(out, model, dataset, source, state["history"], split=source.name)
        written.append(traversal(os.path.join(out, "traversal.png"), model, dataset.image_shape))
        home = run_folder_of(written[0])
        if home is not None:
            add_derived(home, written)  # any figure a newer write_run_figures adds, listed as the others
    for path in written:
        print(path)
    return 0


_SPLIT_WORDS = {"train": "training", "valid": "validation", "test": "test"}


def _latent_inputs(args, model, state):
    """(dataset, source) of the split the command reads, checked against the model."""
    dataset = _checkpoint_dataset(state, args.data_dir)
    _check_fits(model, dataset)
    return dataset, _split_source(model, state, dataset, args.split)


def _beside(model_path, name):
    return os.path.join(os.path.dirname(model_path), name)


def _figure_or_note(command):
    """Whether figures can be drawn; without matplotlib, one line saying the arrays are written alone."""
    from .training import plots

    if plots.available():
        return True
    print(f"scratchvae {command}: no figure (matplotlib is not installed); the arrays only", file=sys.stderr)
    return False


def _user_array(path, model):
    """The (N, D) array of the file ``path`` (.npy, or .npz holding one array or ``x``), checked against ``model``;
    its size is read from the header and bounded before anything is loaded."""
    import zipfile

    import numpy as np

    from .training.checkpoint import _bytes, max_model_bytes

    def header_of(f, size, where):
        """dtype and shape from an .npy header, refused before any data is read when they cannot be right."""
        fmt = np.lib.format
        version = fmt.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"--input {path}: {where} has .npy format version {version}, not 1.0 or 2.0")
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(f, max_header_size=10_000)
        need = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if dtype.hasobject:
            raise ValueError(f"--input {path}: {where} holds Python objects (a pickle), not numbers")
        if need > max_model_bytes():
            raise ValueError(f"--input {path}: {where} would need {_bytes(need)}, more than half this machine's "
                             f"memory")
        if size is not None and f.tell() + need > size:
            raise ValueError(f"--input {path}: not a readable .npy or .npz file ({where} claims {need} bytes, the "
                             f"file holds {size - f.tell()})")

    with checking_input():
        if not os.path.isfile(path):
            raise ValueError(f"--input {path}: no such file")
        try:
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as z:
                    members = [i for i in z.infolist() if i.filename.endswith(".npy")]
                    if len(members) != 1:
                        members = [i for i in members if i.filename == "x.npy"]
                    if len(members) != 1:
                        raise ValueError(f"--input {path}: an .npz must hold one array, or one named x")
                    with z.open(members[0]) as f:
                        header_of(f, members[0].file_size, members[0].filename)
                with np.load(path, allow_pickle=False) as data:
                    x = data[members[0].filename[:-4]]
            else:
                with open(path, "rb") as f:
                    header_of(f, os.fstat(f.fileno()).st_size, "the array")
                x = np.load(path, allow_pickle=False)
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"--input {path}: not a readable .npy or .npz file ({_one_line(e)})") from None
        except ValueError as e:
            message = _one_line(e)
            raise ValueError(message if message.startswith("--input") else
                             f"--input {path}: not a readable .npy or .npz file ({message})") from None
        if x.ndim >= 2 and int(np.prod(x.shape[1:])) == model.config.data_dim:
            x = x.reshape(len(x), -1)
        return model.check_data(x, name=f"--input {path}")


def cmd_encode(args):
    import numpy as np

    from .training import latents
    from .training.loop import load_checkpoint
    from .training.runs import output_files

    model_path = _checkpoint_path(args.model)
    model, _, state = load_checkpoint(model_path)
    labels, class_names = None, None
    if args.input is not None:
        x = _user_array(args.input, model)[:args.limit]
        index, what = np.arange(len(x)), f"the {len(x)} rows of {args.input}"
        stem = os.path.splitext(os.path.basename(args.input))[0]
    else:
        dataset, source = _latent_inputs(args, model, state)
        index = np.arange(min(len(source), args.limit or len(source)))
        x = source.batch(index, np.random.default_rng(args.seed))
        labels = None if source.labels is None else source.labels[index]
        what = f"{len(x)} {_SPLIT_WORDS[args.split]} images of {dataset.name}"
        class_names, stem = dataset.class_names, args.split
    npz = _npz_name(args.npz) or _beside(model_path, f"encode-{stem}.npz")
    figure = (args.out or os.path.splitext(npz)[0] + ".png") if _figure_or_note("encode") else None
    mu, logvar = latents.encode(model, x)  # (N, J) each
    arrays = dict(mu=mu, logvar=logvar, index=index, **({} if labels is None else {"labels": labels}))
    with output_files([(p, o) for p, o in ((npz, "--npz"), (figure, "--out")) if p is not None]):
        _save_npz(npz, **arrays)
        print(f"wrote {npz}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items()) + f" ({what})")
        if figure is not None:
            latents.latent_scatter(figure, mu, labels, class_names, f"encoder means μ(x) of {what}")
            print(f"wrote {figure}")
    return 0


def _pick(args, source, n, option):
    """``n`` distinct indices of the split, drawn with --seed, sorted; refused (naming ``option``) if too many."""
    import numpy as np

    if n > len(source):
        raise BadInput(f"{option} {n}: the {args.split} split has {len(source)} data points")
    return np.sort(np.random.default_rng(args.seed).choice(len(source), size=n, replace=False))


def cmd_reconstruct(args):
    import numpy as np

    from .training import latents
    from .training.loop import load_checkpoint
    from .training.runs import output_files

    model_path = _checkpoint_path(args.model)
    model, _, state = load_checkpoint(model_path)
    dataset, source = _latent_inputs(args, model, state)
    index = _pick(args, source, args.n, "--n")
    grey, x = source.grey(index), source.batch(index, np.random.default_rng(args.seed))  # (n, D) each
    recon = model.reconstruct(x)  # (n, D), E[x | z = μ(x)]
    figure = args.out or _beside(model_path, f"reconstruct-{args.split}-seed{args.seed}.png")
    figure = figure if _figure_or_note("reconstruct") else None
    npz = _npz_name(args.npz)
    with output_files([(p, o) for p, o in ((npz, "--npz"), (figure, "--out")) if p is not None]):
        if npz is not None:
            _save_npz(npz, index=index, grey=grey, x=x, reconstruction=recon)
            print(f"wrote {npz}: index, grey, x, reconstruction [{len(index)}, {model.config.data_dim}]")
        if figure is not None:
            rows = [(x, "input x"), (recon, "reconstruction E[x|z=μ(x)]")]
            if source.binarize != "none":
                rows.insert(0, (grey, f"grey levels (the model sees {source.binarize} binary samples of them)"))
            latents.rows_figure(figure, rows, dataset.image_shape,
                                f"{len(index)} {_SPLIT_WORDS[args.split]} images of {dataset.name} and their "
                                f"reconstructions")
            print(f"wrote {figure}")
    return 0


def cmd_interpolate(args):
    import numpy as np

    from .training import latents
    from .training.loop import load_checkpoint
    from .training.runs import output_files

    model_path = _checkpoint_path(args.model)
    model, _, state = load_checkpoint(model_path)
    dataset, source = _latent_inputs(args, model, state)
    for option, i in (("--from", args.a), ("--to", args.b)):
        if not 0 <= i < len(source):
            raise BadInput(f"{option} {i}: the {args.split} split has data points 0 to {len(source) - 1}")
    if args.steps < 2:
        raise BadInput(f"--steps {args.steps}: a line needs at least its two ends")
    ends = source.batch(np.array([args.a, args.b]), np.random.default_rng(args.seed))  # (2, D)
    t, z, x = latents.interpolate(model, ends[0], ends[1], args.steps)
    figure = args.out or _beside(model_path, f"interpolate-{args.split}-{args.a}-{args.b}.png")
    figure = figure if _figure_or_note("interpolate") else None
    npz = _npz_name(args.npz)
    with output_files([(p, o) for p, o in ((npz, "--npz"), (figure, "--out")) if p is not None]):
        if npz is not None:
            _save_npz(npz, t=t, z=z, x=x, inputs=ends, index=np.array([args.a, args.b]))
            print(f"wrote {npz}: t [{len(t)}], z {list(z.shape)}, x {list(x.shape)}, inputs, index")
        if figure is not None:
            row = np.ones_like(x)  # (T, D): the two inputs above the ends of the line, blank between
            row[0], row[-1] = ends
            latents.rows_figure(figure, [(row, f"inputs x_a, x_b: {args.split} data points {args.a} and {args.b}"),
                                         (x, "E[x|z_t], z_t = (1 − t) μ(x_a) + t μ(x_b), t = 0 … 1")],
                                dataset.image_shape, f"a straight line in latent space ({dataset.name})")
            print(f"wrote {figure}")
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
    if args.stability and args.kind not in proptest.STABILITY:
        raise UsageError(f"scratchvae proptest: error: --stability runs for --kind {', '.join(proptest.STABILITY)}, "
                         f"not {args.kind}")
    with checking_input():  # the user's module: not found, not importable, no such function
        fn = proptest.load_function(args.target)
        grad = proptest.load_function(args.grad) if args.grad else None
    report = proptest.check(fn, args.kind, grad=grad, examples=args.examples, seed=args.seed, rtol=args.rtol,
                            stability=args.stability, dtype=args.dtype)
    print(report.table())
    return 0 if report.passed else 1


def _port(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number in [0, 65535], got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in [0, 65535], got {text!r}")
    return value


def _lab_parser(sub):
    lb = sub.add_parser("lab", help="the ELBO, its gap and its estimators, live in the browser",
                        description="Serves a page on 127.0.0.1 (nothing leaves the machine) that draws the "
                                    "decomposition log p(x) = ELBO + KL (eq.13) as q moves, the bound L_K (eq.29) "
                                    "against K, the reparameterization and score-function estimators, and, with "
                                    "RUN_DIR, a trained model's latent plane and decoder. Every number is computed "
                                    "by the package on the server. Stop it with Ctrl-C.")
    lb.add_argument("run", nargs="?", default=None, metavar="RUN_DIR",
                    help="a run folder written by scratchvae train (or its model.npz): adds the trained-model view")
    lb.add_argument("--port", type=_port, default=8765, help="port on 127.0.0.1; 0 takes any free port (default: 8765)")
    lb.add_argument("--data-dir", default=None, metavar="DIR", help="a folder to search first for data files")


def cmd_lab(args):
    import errno

    from ._fast import blas
    from .lab import server

    if blas.get_threads() is not None:  # the lab's products are tiny: on a busy machine BLAS threads only wait
        blas.set_threads(1)
    trained = None
    if args.run is not None:
        from .lab.views import Trained

        with checking_input():  # not a run folder or checkpoint, or a model that does not fit its data set
            trained = Trained.from_run(args.run, args.data_dir)
    try:
        httpd = server.make_server(server.Lab(trained), args.port)
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            why = "is in use" if e.errno == errno.EADDRINUSE else "is not open to this user"
            raise UsageError(f"scratchvae lab: error: port {args.port} {why}; choose another with --port "
                             "(0 takes any free port)") from None
        raise
    print(f"scratchvae lab: {server.url_of(httpd)} (Ctrl-C to stop)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        print("scratchvae lab: stopped", flush=True)
    finally:
        httpd.server_close()
    return 0


COMMANDS = {"train": cmd_train, "gradcheck": cmd_gradcheck, "evaluate": cmd_evaluate, "datasets": cmd_datasets,
            "export": cmd_export, "import": cmd_import, "proptest": cmd_proptest, "sample": cmd_sample,
            "lab": cmd_lab,
            "plot": cmd_plot, "encode": cmd_encode, "reconstruct": cmd_reconstruct, "interpolate": cmd_interpolate}


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
        print(f"scratchvae: error: {getattr(e, 'cli_message', None) or _one_line(e)}", file=sys.stderr)
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

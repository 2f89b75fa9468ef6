"""``scratchvae train``: its options (architecture, training, selection, the run), the presets and defaults."""
import argparse
import os
import sys

from .common import (UsageError, _check_backend, _check_fits, _load_data, _nonnegative, _number, _positive,
                     _positive_int, _prepare_engine, _recorded_data, _same_folder, _seed, _show, _warmup, _widths,
                     checking_input, say)


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

    from ..model import VAEConfig
    from ..training.loop import TrainConfig

    vae = {f.name: f.default for f in dataclasses.fields(VAEConfig)}
    tc = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return {"dataset": DEFAULT_DATASET, **{o: vae[f] for o, f in ARCHITECTURE_OPTIONS.items()},
            **{o: tc[f] for o, f in TRAINING_OPTIONS.items()}}


RESUMABLE = {"dataset", "epochs", "data_dir", "no_progress", "out", "resume", "backend", "threads", "figures_every"}


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
    from ..data.datasets import BINARIZATIONS, LOADERS
    from ..model import DTYPES, GAUSSIAN_VARIANCES, LIKELIHOODS
    from ..ops import ACTIVATIONS
    from ..optim import OPTIMIZERS

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
    from ..training.config import DEQUANTIZATIONS, LR_SCHEDULES

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
    from ..training.presets import defaults_for

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


def _train_run_options(t):
    """How to run: kernels, preset, data and run folders, threads, figures, progress."""
    from ..training.presets import PRESETS

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


def train_options(args, data=None):
    """Resolve the training options: explicit > preset > the data's kind (``data``, from
    :func:`scratchvae.data.user.data_defaults`) > defaults. Returns a dict keyed like :func:`train_defaults`."""
    from ..training.presets import PRESETS

    defaults = train_defaults()
    given = {k: getattr(args, k) for k in defaults if getattr(args, k) is not None}
    return {**defaults, **(data or {}), **(PRESETS[args.preset] if args.preset else {}), **given}


def _data_options(args, dataset):
    """:func:`train_options` with the defaults the data's kind calls for; Bernoulli refused on data outside [0, 1]."""
    from ..data.user import check_likelihood, data_defaults

    kind = data_defaults(dataset)
    o = train_options(args, kind)
    with checking_input():
        check_likelihood(dataset, o["likelihood"])
    if kind:
        chosen = [f"--{k} {o[k]}" for k in kind if getattr(args, k) is None and not args.preset]
        say(f"{dataset.name}: {dataset.kind} data, {len(dataset.train_x)} train / {len(dataset.test_x)} test "
            f"examples of {dataset.data_dim} values" + (f"; {', '.join(chosen)} (from the kind)" if chosen else ""))
    return o


def cmd_train(args):
    import numpy as np

    from ..training.checkpoint import check_model_size
    from ..model import VAE, VAEConfig
    from ..training.runs import fresh_run_dir, point_latest
    from ..training.loop import TrainConfig, check_run, load_checkpoint, train

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

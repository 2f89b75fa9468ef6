"""The ``scratchvae`` command: ``train`` and ``gradcheck``.

Bad input (unknown options, wrong values, unreadable files) ends with a
one-line message on stderr and exit code 2, never a traceback.
"""
import argparse
import os
import sys

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command-line error, reported in one line with exit code 2."""


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
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


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


def build_parser():
    from .datasets import BINARIZATIONS, LOADERS
    from .model import DTYPES, GAUSSIAN_VARIANCES, LIKELIHOODS
    from .ops import ACTIVATIONS
    from .optim import OPTIMIZERS

    p = Parser(prog="scratchvae", description="A variational autoencoder with hand-written gradients.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    fmt = argparse.ArgumentDefaultsHelpFormatter

    t = sub.add_parser("train", help="train a VAE and write a run folder", formatter_class=fmt,
                       description="Train a VAE; writes metrics.jsonl, model.npz and PNG figures to --out. "
                                   "All ELBO numbers are nats per data point.")
    t.add_argument("--dataset", default="digits", choices=sorted(LOADERS), help="data set to train on")
    t.add_argument("--epochs", type=_positive_int, default=200, help="number of passes over the training split")
    t.add_argument("--batch-size", type=_positive_int, default=100, help="data points per minibatch")
    t.add_argument("--hidden", type=_widths, default=(256,), metavar="W[,W...]",
                   help="hidden layer widths of the encoder (the decoder mirrors them); 'none' for a linear model")
    t.add_argument("--latent", type=_positive_int, default=8, metavar="J", help="latent dimensions J")
    t.add_argument("--activation", default="relu", choices=list(ACTIVATIONS), help="hidden-layer activation")
    t.add_argument("--likelihood", default="bernoulli", choices=LIKELIHOODS, help="decoder likelihood p(x|z)")
    t.add_argument("--gaussian-variance", default="learned", choices=GAUSSIAN_VARIANCES,
                   help="Gaussian likelihood only: variance fixed (log-variance --fixed-logvar), learned per pixel, "
                        "or predicted per sample by the decoder")
    t.add_argument("--fixed-logvar", type=_number, default=0.0, help="log-variance of the fixed Gaussian likelihood")
    t.add_argument("--samples", type=_positive_int, default=1, metavar="L",
                   help="Monte Carlo samples z per data point (eq.20)")
    t.add_argument("--beta", type=_number, default=1.0,
                   help="weight on the KL term; 1 is the ELBO, anything else a weighted objective (not a bound)")
    t.add_argument("--warmup", type=_number, default=0.0, metavar="EPOCHS",
                   help="KL warm-up: the KL weight grows linearly from 0 to beta over this many epochs")
    t.add_argument("--binarize", default="dynamic", choices=BINARIZATIONS,
                   help="Bernoulli likelihood only: resample pixels every epoch, once with a fixed seed, or keep grey levels")
    t.add_argument("--optimizer", default="adam", choices=list(OPTIMIZERS), help="optimizer")
    t.add_argument("--lr", type=_number, default=None,
                   help="learning rate (default: adam 1e-3, adagrad 0.01, sgd 0.01)")
    t.add_argument("--seed", type=int, default=0, help="seed of the one random generator (weights, batches, noise)")
    t.add_argument("--dtype", default="float32", choices=DTYPES, help="floating-point type, end to end")
    t.add_argument("--out", default=os.path.join("runs", "latest"), metavar="DIR", help="run folder to write")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    g = sub.add_parser("gradcheck", help="check every hand-written gradient against finite differences",
                       formatter_class=fmt,
                       description="Central differences in float64 on every op and on the whole ELBO of small "
                                   "models; exits 1 when any relative error exceeds 1e-6.")
    g.add_argument("--seed", type=int, default=0, help="seed of the random inputs and models")
    return p


def cmd_train(args):
    import numpy as np

    from .datasets import load_dataset
    from .model import VAE, VAEConfig
    from .train import TrainConfig, train

    dataset = load_dataset(args.dataset)
    config = VAEConfig(
        data_dim=dataset.data_dim, latent_dim=args.latent, hidden=args.hidden, activation=args.activation,
        likelihood=args.likelihood, gaussian_variance=args.gaussian_variance, fixed_logvar=args.fixed_logvar,
        dtype=args.dtype)
    tconfig = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, samples=args.samples, beta=args.beta,
        warmup_epochs=args.warmup, optimizer=args.optimizer, lr=args.lr, seed=args.seed, binarize=args.binarize)
    model = VAE(config, np.random.default_rng(args.seed))
    history = train(model, dataset, tconfig, args.out, progress=not args.no_progress)
    last = history[-1]
    total = sum(r["seconds"] for r in history)
    print(f"test ELBO {last['test_elbo']:.3f} nats per data point after {last['epoch']} epochs "
          f"({total:.1f} s of training); run folder: {args.out}")
    return 0


def cmd_gradcheck(args):
    from .gradcheck import TOLERANCE, format_table, run_all

    results = run_all(args.seed)
    print(format_table(results))
    return 0 if all(r.error <= TOLERANCE for r in results) else 1


COMMANDS = {"train": cmd_train, "gradcheck": cmd_gradcheck}


def main(argv=None):
    from .checkpoint import CheckpointError
    from .train import TrainingDiverged

    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(e, file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, CheckpointError) as e:
        print(f"scratchvae: error: {str(e).splitlines()[0] if str(e) else e.__class__.__name__}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingDiverged as e:
        print(f"scratchvae: training stopped: {e}; the last good checkpoint is kept", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("scratchvae: interrupted; the checkpoint of the last completed epoch is kept", file=sys.stderr)
        return EXIT_INTERRUPTED

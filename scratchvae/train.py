"""The training loop, evaluation, checkpoints and the run folder.

Every number logged is in nats per data point: log-densities summed over the
data (and latent) dimensions, averaged over data points. ``train_elbo`` is the
average of the minibatch estimates over an epoch, taken as the model trains;
``test_elbo`` is evaluated after the epoch on the whole test split with a fixed
noise seed, so epochs are comparable.

A run folder holds ``metrics.jsonl`` (one JSON object per epoch),
``model.npz`` (the checkpoint, rewritten atomically after every epoch) and the
figures of :mod:`scratchvae.plots`.
"""
import dataclasses
import json
import os
import time

import numpy as np

from . import checkpoint
from .datasets import BatchSource, check_binarize
from .engine import BACKENDS, FusedStep, default_backend
from .evaluate import evaluate
from .model import VAE, ELBOTerms, IWAETerms, VAEConfig, _check_positive_int
from .optim import make_optimizer

OBJECTIVES = ("elbo", "iwae")
UNITS = "nats per data point (summed over dimensions, averaged over data points)"


class TrainingDiverged(RuntimeError):
    """NaN or Inf in the loss or a gradient."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C: the checkpoint of the last completed epoch is on disk."""


@dataclasses.dataclass
class TrainConfig:
    """How to train; see ``scratchvae train --help`` for each field."""

    epochs: int = 20
    batch_size: int = 100
    samples: int = 1
    beta: float = 1.0
    warmup_epochs: float = 0.0
    optimizer: str = "adam"
    lr: float = None
    seed: int = 0
    binarize: str = "dynamic"
    objective: str = "elbo"
    k: int = 1
    backend: str = None

    def __post_init__(self):
        for name in ("epochs", "batch_size", "samples", "k"):
            _check_positive_int(name, getattr(self, name))
        if not np.isfinite(self.beta) or self.beta < 0:
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")
        if not np.isfinite(self.warmup_epochs) or self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.lr is not None and (not np.isfinite(self.lr) or self.lr <= 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        check_binarize(self.binarize)
        if self.backend is None:
            self.backend = default_backend()
        if self.backend == "numpy":  # the name of the reference kernels in checkpoints of scratchvae 0.1.0
            self.backend = "reference"
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose from {', '.join(BACKENDS)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose from {', '.join(OBJECTIVES)}")
        make_optimizer(self.optimizer, self.lr)  # validates the name


# ----------------------------------------------------------------- checkpoints
def save_checkpoint(path, model, optimizer, state):
    """Write model, optimizer state and training ``state`` (a JSON-able dict) atomically."""
    arrays = {f"param/{k}": v for k, v in model.params.items()}
    arrays.update({f"opt/{k}": v for k, v in optimizer.state.items()})
    header = {
        "architecture": dataclasses.asdict(model.config),
        "optimizer": optimizer.hyperparams(),
        "training": state,
    }
    checkpoint.save(path, header, arrays)


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    model : VAE
    optimizer : Optimizer with its state restored
    state : dict, the training state saved with it
    """
    header, arrays = checkpoint.load(path)
    try:
        config = VAEConfig.from_dict(header["architecture"])
        opt_h = dict(header["optimizer"])
        name, lr, t = opt_h.pop("name"), opt_h.pop("lr"), opt_h.pop("t")
        optimizer = make_optimizer(name, lr, **opt_h)
        state = header["training"]
    except (KeyError, TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{path}: checkpoint header is not valid ({e})") from None
    model = VAE(config, np.random.default_rng(0))
    for k, p in model.params.items():
        a = arrays.get(f"param/{k}")
        if a is None or a.shape != p.shape or a.dtype != p.dtype:
            raise checkpoint.CheckpointError(f"{path}: parameter {k!r} is missing or does not fit the architecture")
        if not np.isfinite(a).all():
            raise checkpoint.CheckpointError(f"{path}: parameter {k!r} contains NaN or Inf")
        model.params[k] = a.copy()
    expected = set(f"param/{k}" for k in model.params)
    extra = sorted(k for k in arrays if not k.startswith("opt/") and k not in expected)
    if extra:
        raise checkpoint.CheckpointError(f"{path}: unexpected arrays {extra}")
    optimizer.load_state(t, {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")})
    return model, optimizer, state


# -------------------------------------------------------------------- training
def kl_weight(beta, warmup_steps, step):
    """The KL weight at 1-based ``step``: beta·min(1, step / warmup_steps) (beta when no warm-up)."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


def _check_finite(terms, bad_gradient, epoch, step):
    """Raise TrainingDiverged if the loss is not finite or ``bad_gradient`` names a non-finite gradient."""
    if not np.isfinite(terms.objective).all():
        raise TrainingDiverged(f"NaN or Inf in the loss at epoch {epoch}, step {step}")
    if bad_gradient is not None:
        raise TrainingDiverged(f"NaN or Inf in the gradient of {bad_gradient} at epoch {epoch}, step {step}")


def train(model, dataset, config, out_dir, optimizer=None, resume=None, progress=True, log=print, plots=True):
    """Train ``model`` on ``dataset`` and write the run folder ``out_dir``.

    Parameters
    ----------
    model : VAE
    dataset : scratchvae.datasets.Dataset
    config : TrainConfig; ``config.epochs`` is the total number of epochs
    out_dir : str, created if needed
    optimizer : Optimizer or None (a fresh one from ``config``)
    resume : dict or None, the training state of a checkpoint (see :func:`load_checkpoint`):
        training continues after its epoch with its random-generator state and
        history, bit for bit as if it had never stopped
    progress : bool, show a tqdm progress bar per epoch
    log : callable taking one line of text per epoch
    plots : bool, write the PNG figures at the end

    Returns
    -------
    list of dict, the metrics of every epoch (as in metrics.jsonl)
    """
    if dataset.data_dim != model.config.data_dim:
        raise ValueError(f"the model expects {model.config.data_dim} dimensions, {dataset.name} has {dataset.data_dim}")
    binarize = config.binarize if model.config.likelihood == "bernoulli" else "none"
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    optimizer = optimizer or make_optimizer(config.optimizer, config.lr)
    train_src = BatchSource(dataset, "train", binarize, model.dtype)
    test_src = BatchSource(dataset, "test", binarize, model.dtype)
    n, B = len(train_src), config.batch_size
    steps_per_epoch = -(-n // B)
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    metrics_path = os.path.join(out_dir, "metrics.jsonl")
    ckpt_path = os.path.join(out_dir, "model.npz")
    fused = FusedStep(model, optimizer, backend=config.backend, objective=config.objective)
    history, step, first = [], 0, 1
    for stale in os.listdir(out_dir):  # a temporary checkpoint left by a kill mid-write
        if stale.startswith(".tmp-") and stale.endswith(".npz"):
            os.unlink(os.path.join(out_dir, stale))
    if resume is not None:
        history, step, first = list(resume["history"]), resume["step"], resume["epoch"] + 1
        rng.bit_generator.state = resume["rng"]
    with open(metrics_path, "w") as f:  # the checkpoint's history is the truth; later lines are dropped
        f.writelines(json.dumps(row) + "\n" for row in history)
    target = "grey levels as Bernoulli targets" if (binarize == "none" and model.config.likelihood == "bernoulli") else binarize
    log(f"training on {dataset.name} ({n} train / {len(test_src)} test, binarization: {target}); "
        f"{model.num_params():,} parameters; numbers in {UNITS}")
    if first > 1:
        log(f"resuming after epoch {first - 1} of {config.epochs}")

    epoch = first - 1
    try:
        for epoch in range(first, config.epochs + 1):
            t0 = time.perf_counter()
            bar = _progress(steps_per_epoch, f"epoch {epoch}/{config.epochs}", progress)
            try:
                sums, step, beta_t = _train_epoch(model, optimizer, fused, train_src, config, rng, epoch, step,
                                                  warmup_steps, bar)
            finally:
                if bar is not None:
                    bar.close()
            train_seconds = time.perf_counter() - t0
            test = evaluate(model, test_src, iw_samples=1, batch_size=500, backend=config.backend, diagnostics=False)
            row = {
                "epoch": epoch,
                "train_elbo": sums[0] / n,
                "train_recon": sums[1] / n,
                "train_kl": sums[2] / n,
                "train_objective": sums[3] / n,
                "test_elbo": test["elbo"],
                "test_recon": test["recon"],
                "test_kl": test["kl"],
                "beta": beta_t,
                "seconds": train_seconds,
                "units": "nats/data point",
            }
            row = {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in row.items()}
            history.append(row)
            state = {"epoch": epoch, "step": step, "config": dataclasses.asdict(config), "dataset": dataset.name,
                     "binarize": binarize, "rng": rng.bit_generator.state, "history": history}
            save_checkpoint(ckpt_path, model, optimizer, state)
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            if config.objective == "iwae":
                weighted = f"  train IWAE bound (K={config.k}) {row['train_objective']:9.3f}"
            else:
                weighted = "" if beta_t == 1.0 else f"  objective weighted by beta={beta_t:g} (not a bound)"
            log(f"epoch {epoch:3d}  train ELBO {row['train_elbo']:9.3f}  test ELBO {row['test_elbo']:9.3f} "
                f"(recon {row['test_recon']:9.3f}, KL {row['test_kl']:7.3f})  {train_seconds:6.2f} s{weighted}")
    except KeyboardInterrupt:
        if plots and history:
            _figures(out_dir, model, dataset, test_src, history)
        raise TrainingInterrupted(
            f"interrupted during epoch {epoch}; the checkpoint after epoch {len(history)} is in {ckpt_path}; "
            f"continue with --resume {out_dir}") from None
    if plots and history:
        _figures(out_dir, model, dataset, test_src, history)
    return history


def _figures(out_dir, model, dataset, test_src, history):
    from . import plots

    plots.write_run_figures(out_dir, model, dataset, test_src, history)


def _train_epoch(model, optimizer, fused, source, config, rng, epoch, step, warmup_steps, bar):
    """One pass over ``source`` in a random order, every step on the fused engine.

    Returns the summed (elbo, recon, kl, objective) over the data points, the step count and the KL weight.
    """
    n, B = len(source), config.batch_size
    order = rng.permutation(n)
    sums = np.zeros(4)
    samples = config.k if config.objective == "iwae" else config.samples
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # _check_finite reports them
        for start in range(0, n, B):
            step += 1
            idx = order[start:start + B]
            x = source.batch(idx, rng)
            beta_t = kl_weight(config.beta, warmup_steps, step)
            out = fused.forward_backward(x, model.noise(rng, len(idx), samples), beta_t)
            if config.objective == "iwae":
                terms = IWAETerms(*out)
            else:
                terms = ELBOTerms(*out, beta=beta_t)
            _check_finite(terms, None if fused.gradients_finite() else "the parameters", epoch, step)
            fused.update()
            sums += [terms.elbo.sum(), terms.recon.sum(), terms.kl.sum(), terms.objective.sum()]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(elbo=f"{terms.elbo.mean():.2f}", refresh=False)
    return sums, step, beta_t


def _progress(total, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)

"""The training loop, evaluation, checkpoints and the run folder.

Every number logged is in nats per data point: log-densities summed over the
data (and latent) dimensions, averaged over data points. ``train_elbo`` is the
average of the minibatch estimates over an epoch, taken as the model trains;
``test_elbo`` is evaluated after the epoch on the whole test split with a fixed
noise seed, so epochs are comparable.

A run folder (:mod:`scratchvae.training.runs`) holds ``metrics.jsonl`` (one JSON
object per epoch), ``model.npz`` (the checkpoint, rewritten atomically after
every epoch), ``train.log``, ``run.json`` and the figures of
:mod:`scratchvae.training.plots`. A checkpoint is written only when the parameters, the
optimizer state and the epoch's test ELBO are all finite, so it never replaces
a better one; otherwise training stops with :class:`TrainingDiverged`.
"""
import dataclasses
import json
import time

import numpy as np

from ..data.datasets import BatchSource
from ..engine import FusedStep
from ..model import UNITS, ELBOTerms, IWAETerms
from ..optim import make_optimizer
from . import checkpoint
from .checkpoint import load_checkpoint, save_checkpoint  # noqa: F401  (their home is checkpoint.py)
from .config import TrainConfig  # noqa: F401  (its home is config.py)
from .evaluate import evaluate
from .runs import RunFolder, os_reason, record_json, run_record, write_atomic




class TrainingDiverged(RuntimeError):
    """NaN or Inf in the loss or a gradient."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C: the checkpoint of the last completed epoch is on disk."""


class TrainingFailed(RuntimeError):
    """An OS error while training (disk full, folder removed): one line naming the path; the last checkpoint stays."""


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


def check_run_size(model_config, config, n):
    """Raise ValueError naming the memory needed when one step's activations would not fit this machine."""
    rows = min(config.batch_size, n) * (config.k if config.objective == "iwae" else config.samples)
    widths = sum(model_config.hidden) + sum(model_config.decoder_hidden)
    per_row = 4 * model_config.data_dim + 3 * widths + 4 * model_config.latent_dim
    need = 4 * rows * per_row * np.dtype(model_config.dtype).itemsize  # forward caches, backward, buffers
    limit = checkpoint.max_model_bytes()
    if need > limit:
        what = "--k" if config.objective == "iwae" else "--samples"
        raise ValueError(f"--batch-size {config.batch_size} with {what} "
                         f"{config.k if config.objective == 'iwae' else config.samples} would need about "
                         f"{checkpoint._bytes(need)} per step, more than the {checkpoint._bytes(limit)} "
                         f"allowed on this machine (half its memory)")


def _check_epoch_finite(model, optimizer, test, epoch, step):
    """Raise TrainingDiverged unless the parameters, the optimizer state and the test ELBO are finite."""
    for kind, arrays in (("the parameter", model.params), ("the optimizer state", optimizer.state)):
        bad = next((k for k, a in arrays.items() if not np.isfinite(a).all()), None)
        if bad is not None:
            raise TrainingDiverged(f"NaN or Inf in {kind} {bad} after epoch {epoch}, step {step}")
    if not all(np.isfinite(test.get(k, np.nan)) for k in ("elbo", "recon", "kl")):
        raise TrainingDiverged(f"NaN or Inf in the test ELBO after epoch {epoch}, step {step}")


def _saved_epoch(path):
    """The epoch of the checkpoint on disk at ``path`` (read from its header), or None."""
    try:
        epoch = checkpoint.read_header(path)["training"]["epoch"]
    except (checkpoint.CheckpointError, KeyError, TypeError, OSError):
        return None
    return epoch if isinstance(epoch, int) else None


def _kept(ckpt_path):
    epoch = _saved_epoch(ckpt_path)
    if epoch is None:
        return f"no checkpoint was written to {ckpt_path} (the first epoch did not finish)"
    return f"the checkpoint of epoch {epoch} in {ckpt_path} is kept"


class _Log:
    """Each line to ``log`` and, flushed, to the run folder's ``train.log``."""

    def __init__(self, path, log):
        self.path, self.log = path, log
        self.f = open(path, "a", encoding="utf-8")

    def __call__(self, line):
        self.log(line)
        self.f.write(line + "\n")
        self.f.flush()

    def close(self):
        self.f.close()


def train(model, dataset, config, out_dir, optimizer=None, resume=None, progress=True, log=print, plots=True,
          mode=None, figures_every=0):
    """Train ``model`` on ``dataset`` and write the run folder ``out_dir``.

    Parameters
    ----------
    model : VAE
    dataset : scratchvae.data.datasets.Dataset
    config : TrainConfig; ``config.epochs`` is the total number of epochs
    out_dir : str, created if needed; held with an exclusive lock while training
    optimizer : Optimizer or None (a fresh one from ``config``)
    resume : dict or None, the training state of a checkpoint (see :func:`load_checkpoint`):
        training continues after its epoch with its random-generator state and
        history, bit for bit as if it had never stopped
    progress : bool, show a tqdm progress bar per epoch
    log : callable taking one line of text per epoch (also copied to ``train.log``)
    plots : bool, write the PNG figures at the end (and every ``figures_every`` epochs); without
        matplotlib a line says so and no figure is written
    figures_every : int, also write the figures after every this many epochs (0: only at the end)
    mode : "new", "resume" or "overwrite" (see :class:`scratchvae.training.runs.RunFolder`); default
        "resume" with ``resume``, else "new"

    Returns
    -------
    list of dict, the metrics of every epoch (as in metrics.jsonl)

    Raises
    ------
    TrainingDiverged : NaN or Inf in a step, the parameters, the optimizer state or the test ELBO;
        the last good checkpoint stays
    TrainingInterrupted : Ctrl-C
    TrainingFailed : an OS error while writing the run folder
    scratchvae.training.runs.RunFolderError, RunFolderRefused : the folder is in use or holds another run
    """
    if dataset.data_dim != model.config.data_dim:
        raise ValueError(f"the model expects {model.config.data_dim} dimensions, {dataset.name} has {dataset.data_dim}")
    binarize = config.binarize if model.config.likelihood == "bernoulli" else "none"
    check_run_size(model.config, config, len(dataset.train_x))
    optimizer = optimizer or make_optimizer(config.optimizer, config.lr)
    folder = RunFolder(out_dir, mode or ("resume" if resume is not None else "new"))
    with folder:
        return _train_in(folder, model, dataset, config, optimizer, resume, progress, log, plots, binarize,
                         figures_every)


def _train_in(folder, model, dataset, config, optimizer, resume, progress, log, plots, binarize, figures_every=0):
    out_dir = folder.path
    rng = np.random.default_rng(config.seed)
    train_src = BatchSource(dataset, "train", binarize, model.dtype)
    test_src = BatchSource(dataset, "test", binarize, model.dtype)
    n, B = len(train_src), config.batch_size
    steps_per_epoch = -(-n // B)
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    metrics_path = folder.file("metrics.jsonl")
    ckpt_path = folder.file("model.npz")
    fused = FusedStep(model, optimizer, backend=config.backend, objective=config.objective)
    history, step, first = [], 0, 1
    if resume is not None:
        history, step, first = list(resume["history"]), resume["step"], resume["epoch"] + 1
        rng.bit_generator.state = resume["rng"]
    architecture = dataclasses.asdict(model.config)
    try:
        # the checkpoint's history is the truth; lines written after it by a killed run are dropped
        write_atomic(metrics_path, "".join(json.dumps(row, allow_nan=False) + "\n" for row in history))
        write_atomic(folder.file("run.json"), record_json(run_record(architecture, dataclasses.asdict(config),
                                                                     dataset.name)))
        log = _Log(folder.file("train.log"), log)
    except OSError as e:
        raise TrainingFailed(f"{e.filename or out_dir}: cannot write: {os_reason(e)}") from None
    try:
        target = ("grey levels as Bernoulli targets" if (binarize == "none" and model.config.likelihood == "bernoulli")
                  else binarize)
        log(f"training on {dataset.name} ({n} train / {len(test_src)} test, binarization: {target}); "
            f"{model.num_params():,} parameters; numbers in {UNITS}")
        if first > 1:
            log(f"resuming after epoch {first - 1} of {config.epochs}")
        plots = plots and _figures_available(log)
        if config.backend == "numba":  # compile (or read from Numba's cache) before epoch 1 is timed
            log("preparing the Numba kernels (compiled on the first run, read from the cache afterwards) ...")
            t0 = time.perf_counter()
            fused.compile(train_src.grey(np.arange(min(2, n))))
            log(f"kernels ready in {time.perf_counter() - t0:.1f} s")

        def after_epoch(epoch):
            if plots and figures_every and epoch % figures_every == 0 and epoch < config.epochs:
                _figures(out_dir, model, dataset, test_src, history)
        _epochs(model, optimizer, fused, train_src, test_src, config, rng, first, step, warmup_steps, history,
                binarize, dataset, ckpt_path, metrics_path, progress, log, after_epoch)
    except KeyboardInterrupt:
        epoch = _saved_epoch(ckpt_path)
        if plots and history and epoch is not None:
            _figures(out_dir, model, dataset, test_src, history)
        if epoch is None:
            raise TrainingInterrupted(f"interrupted before the first epoch ended; no checkpoint was written to "
                                      f"{ckpt_path}") from None
        raise TrainingInterrupted(f"interrupted; the checkpoint of epoch {epoch} is in {ckpt_path}; "
                                  f"continue with --resume {out_dir}") from None
    except TrainingDiverged as e:
        raise TrainingDiverged(f"{e}; {_kept(ckpt_path)}") from None
    except OSError as e:
        raise TrainingFailed(f"{e.filename or out_dir}: cannot write: {os_reason(e)}; {_kept(ckpt_path)}") from None
    finally:
        if isinstance(log, _Log):
            log.close()
    if plots and history:
        try:
            _figures(out_dir, model, dataset, test_src, history)
        except OSError as e:
            raise TrainingFailed(f"{e.filename or out_dir}: cannot write the figures: {os_reason(e)}; "
                                 f"{_kept(ckpt_path)}") from None
    return history


def _epochs(model, optimizer, fused, train_src, test_src, config, rng, first, step, warmup_steps, history, binarize,
            dataset, ckpt_path, metrics_path, progress, log, after_epoch=lambda epoch: None):
    n = len(train_src)
    steps_per_epoch = -(-n // config.batch_size)
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
        with np.errstate(all="ignore"):  # a non-finite result is reported by _check_epoch_finite
            try:
                test = evaluate(model, test_src, iw_samples=1, batch_size=500, backend=config.backend,
                                diagnostics=False)
            except ValueError:  # the model refuses non-finite inputs it computed itself
                if all(np.isfinite(p).all() for p in model.params.values()):
                    raise  # not from a diverged model: a bug, which must not pass for a divergence
                test = {"elbo": float("nan")}
        _check_epoch_finite(model, optimizer, test, epoch, step)
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
        if not all(np.isfinite(v) for v in row.values() if isinstance(v, float)):
            raise TrainingDiverged(f"NaN or Inf in the training ELBO of epoch {epoch}, step {step}")
        state = {"epoch": epoch, "step": step, "config": dataclasses.asdict(config), "dataset": dataset.name,
                 "binarize": binarize, "rng": rng.bit_generator.state, "history": history + [row]}
        save_checkpoint(ckpt_path, model, optimizer, state)
        history.append(row)
        with open(metrics_path, "a") as f:
            f.write(json.dumps(row, allow_nan=False) + "\n")
        if config.objective == "iwae":
            weighted = f"  train IWAE bound (K={config.k}) {row['train_objective']:9.3f}"
        else:
            weighted = "" if beta_t == 1.0 else f"  objective weighted by beta={beta_t:g} (not a bound)"
        log(f"epoch {epoch:3d}  train ELBO {row['train_elbo']:9.3f}  test ELBO {row['test_elbo']:9.3f} "
            f"(recon {row['test_recon']:9.3f}, KL {row['test_kl']:7.3f})  {train_seconds:6.2f} s{weighted}")
        after_epoch(epoch)


def _figures_available(log):
    """Whether figures can be drawn; without matplotlib, one line says so."""
    from . import plots

    if plots.available():
        return True
    log("matplotlib is not installed: no figures (pip install matplotlib; then scratchvae plot RUN_DIR)")
    return False


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

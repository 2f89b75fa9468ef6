"""The training loop: epochs of the fused engine, monitoring on a validation split, checkpoints, the run folder.

Every number logged is in nats per data point: log-densities summed over the
data (and latent) dimensions, averaged over data points. ``train_elbo`` is the
average of the minibatch estimates over an epoch, taken as the model trains;
``valid_elbo`` is evaluated after the epoch on the whole validation split (held
out of the training split, :mod:`scratchvae.training.sources`) with a fixed
noise seed, so epochs are comparable. The test split is not read while
training; ``final_test`` evaluates the best checkpoint on it once, at the end.

A run folder (:mod:`scratchvae.training.runs`) holds ``metrics.jsonl`` (one JSON
object per epoch, then the final test's, if asked for), ``model.npz`` (the
checkpoint of the last epoch, rewritten atomically after every epoch),
``best.npz`` (the checkpoint of the epoch with the best validation ELBO, replaced
only by a better one), ``train.log``, ``run.json`` and the figures of
:mod:`scratchvae.training.plots`. A checkpoint is written only when the parameters, the
optimizer state and the epoch's ELBOs are all finite, so a diverged model never
replaces a good one; training then stops with :class:`TrainingDiverged`.
"""
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

from ..data.user import checkpoint_fields
from ..engine import FusedStep
from ..model import UNITS, ELBOTerms, IWAETerms
from ..optim import DEFAULT_LR, make_optimizer
from . import checkpoint
from .checkpoint import load_checkpoint, save_checkpoint  # noqa: F401  (their home is checkpoint.py)
from .config import TrainConfig  # noqa: F401  (its home is config.py)
from .evaluate import evaluate
from .runs import RunFolder, os_reason, record_json, run_record, write_atomic
from .sources import integer_levels, resolve_dequantize, run_sources, split_source, validation_size

BURDA_PASSES = 3280  # Burda et al. 2015: 3^i passes at each of 8 learning rates, Σ_{i=0}^{7} 3^i = 3,280
BURDA_STAGES = 8


class TrainingDiverged(RuntimeError):
    """NaN or Inf in the loss or a gradient."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C: the checkpoint of the last completed epoch is on disk."""


class TrainingFailed(RuntimeError):
    """An OS error while training (disk full, folder removed): one line naming the path; the last checkpoint stays."""


# -------------------------------------------------------------------- training
def kl_weight(beta, warmup_steps, step):
    """The KL weight at 1-based ``step``: beta·min(1, step / warmup_steps) (beta when no warm-up; eq.52)."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


def _check_finite(terms, bad_gradient, epoch, step):
    """Raise TrainingDiverged if the loss is not finite or ``bad_gradient`` names a non-finite gradient."""
    if not np.isfinite(terms.objective).all():
        raise TrainingDiverged(f"NaN or Inf in the loss at epoch {epoch}, step {step}")
    if bad_gradient is not None:
        raise TrainingDiverged(f"NaN or Inf in the gradient of {bad_gradient} at epoch {epoch}, step {step}")


def learning_rate(config, base_lr, step, steps_per_epoch):
    """The learning rate of 1-based ``step``, with ``steps_per_epoch`` steps an epoch and ``config.epochs`` in all.

    With e = (step − 1) / steps_per_epoch the epochs done before the step:

    - "constant": base_lr;
    - "step": base_lr · lr_gamma^⌊e / lr_step⌋ (a decay every ``lr_step`` epochs; lr_step 1 is an
      exponential decay per epoch);
    - "cosine": base_lr · ½ (1 + cos(π e / epochs)), from base_lr down towards 0 at the last step;
    - "burda2015": base_lr · 10^(−i/7) in stage i = 0 … 7, stage i lasting 3^i of 3,280 parts of the run
      (Burda et al. 2015 ran 3^i passes at 0.001 · 10^(−i/7), 3,280 passes in all; scaled to ``epochs``);

    times min(1, step / (lr_warmup · steps_per_epoch)) with a linear warm-up of ``lr_warmup`` epochs.
    """
    done = step - 1  # steps before this one
    total = config.epochs * steps_per_epoch
    if config.lr_schedule == "step":
        lr = base_lr * config.lr_gamma ** (done // (config.lr_step * steps_per_epoch))
    elif config.lr_schedule == "cosine":
        lr = base_lr * 0.5 * (1.0 + math.cos(math.pi * min(done, total) / total))
    elif config.lr_schedule == "burda2015":  # the last stage i whose start, (3^i − 1)/2 of 3,280 parts, is passed
        stage = max(i for i in range(BURDA_STAGES) if (3**i - 1) // 2 * total <= BURDA_PASSES * done)
        lr = base_lr * 10.0 ** (-stage / 7)
    else:
        lr = base_lr
    warmup_steps = int(round(config.lr_warmup * steps_per_epoch))
    if warmup_steps > 0:
        lr *= min(1.0, step / warmup_steps)
    return lr


def check_run_size(model_config, config, n, names=None):
    """Raise ValueError naming the memory needed when one step's activations would not fit this machine.

    ``names`` maps the fields ``batch_size``, ``samples`` and ``k`` to how the caller calls them (the
    command line gives its options); by default the message names the fields.
    """
    names = {"batch_size": "batch_size", "samples": "samples", "k": "k", **(names or {})}
    what = "k" if config.objective == "iwae" else "samples"
    rows = min(config.batch_size, n) * getattr(config, what)
    widths = sum(model_config.hidden) + sum(model_config.decoder_hidden)
    per_row = 4 * model_config.data_dim + 3 * widths + 4 * model_config.latent_dim
    need = 4 * rows * per_row * np.dtype(model_config.dtype).itemsize  # forward caches, backward, buffers
    limit = checkpoint.max_model_bytes()
    if need > limit:
        raise ValueError(f"{names['batch_size']} {config.batch_size} with {names[what]} {getattr(config, what)} "
                         f"would need about {checkpoint._bytes(need)} per step, more than the "
                         f"{checkpoint._bytes(limit)} allowed on this machine (half its memory)")


def check_run(model_config, config, dataset, names=None, resume=False):
    """Raise ValueError, before any folder is made, when ``config`` cannot train a model of ``model_config`` on
    ``dataset``: a validation split that leaves nothing, a dequantization that does not apply or an unbounded
    density (a new run only: a run from before dequantization resumes as it ran), a step that would not fit in
    memory. ``names`` maps field names to the caller's (as in :func:`check_run_size`)."""
    names = names or {}
    c = model_config
    m = validation_size(len(dataset.train_x), config.validation, names.get("validation", "validation"))
    try:
        if not (resume and config.dequantize == "none"):
            resolve_dequantize(config.dequantize, c.likelihood, c.gaussian_variance, integer_levels(dataset))
    except ValueError as e:
        raise ValueError(f"{names.get('dequantize', 'dequantize')} {config.dequantize}: {e}") from None
    check_run_size(c, config, len(dataset.train_x) - m, names)


def _check_epoch_finite(model, optimizer, held, epoch, step):
    """Raise TrainingDiverged unless the parameters, the optimizer state and the validation ELBO (``held``,
    None without a validation split) are finite."""
    for kind, arrays in (("the parameter", model.params), ("the optimizer state", optimizer.state)):
        bad = next((k for k, a in arrays.items() if not np.isfinite(a).all()), None)
        if bad is not None:
            raise TrainingDiverged(f"NaN or Inf in {kind} {bad} after epoch {epoch}, step {step}")
    if held is not None and not all(np.isfinite(held.get(k, np.nan)) for k in ("elbo", "recon", "kl")):
        raise TrainingDiverged(f"NaN or Inf in the validation ELBO after epoch {epoch}, step {step}")


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


def train(model, dataset, config, out_dir, optimizer=None, resume=None, progress=None, log=print, plots=True,
          mode=None, figures_every=0):
    """Train ``model`` on ``dataset`` and write the run folder ``out_dir``.

    Parameters
    ----------
    model : VAE
    dataset : scratchvae.data.datasets.Dataset; its training split less ``config.validation`` points is
        trained on, the held-out points monitored; its test split is read only with ``config.final_test``
    config : TrainConfig; ``config.epochs`` is the total number of epochs
    out_dir : str, created if needed; held with an exclusive lock while training
    optimizer : Optimizer or None (a fresh one from ``config``)
    resume : dict or None, the training state of a checkpoint (see :func:`load_checkpoint`):
        training continues after its epoch with its random-generator state, history, best validation
        ELBO and early-stopping count, bit for bit as if it had never stopped
    progress : bool or None, a tqdm progress bar per epoch; None: only when stderr is a terminal
    log : callable taking one line of text per epoch (also copied to ``train.log``)
    plots : bool, write the PNG figures at the end (and every ``figures_every`` epochs); without
        matplotlib a line says so and no figure is written
    figures_every : int, also write the figures after every this many epochs (0: only at the end)
    mode : "new", "resume" or "overwrite" (see :class:`scratchvae.training.runs.RunFolder`); default
        "resume" with ``resume``, else "new"

    Returns
    -------
    list of dict, the metrics of every epoch (as in metrics.jsonl), then, with ``config.final_test``,
    the final test evaluation's (its ``split`` is "test")

    Raises
    ------
    ValueError : a data set, a validation split or a dequantization that does not fit the model
    TrainingDiverged : NaN or Inf in a step, the parameters, the optimizer state or the validation ELBO;
        the last good checkpoint stays
    TrainingInterrupted : Ctrl-C
    TrainingFailed : an OS error while writing the run folder
    scratchvae.training.runs.RunFolderError, RunFolderRefused : the folder is in use or holds another run
    """
    if dataset.data_dim != model.config.data_dim:
        raise ValueError(f"the model expects {model.config.data_dim} dimensions, {dataset.name} has {dataset.data_dim}")
    c = model.config
    binarize = config.binarize if c.likelihood == "bernoulli" else "none"
    levels = integer_levels(dataset)
    if resume is not None and config.dequantize == "none":  # a run from before dequantization: it goes on as it ran
        dequantize = "none"
    else:
        dequantize = resolve_dequantize(config.dequantize, c.likelihood, c.gaussian_variance, levels)
    config = dataclasses.replace(config, dequantize=dequantize)  # recorded resolved, so resume and evaluate agree
    train_src, valid_src = run_sources(dataset, binarize, dequantize, model.dtype, config.validation,
                                       config.validation_seed)
    check_run_size(c, config, len(train_src))
    base_lr = config.lr if config.lr is not None else (
        optimizer.lr if optimizer is not None and resume is None else DEFAULT_LR[config.optimizer])
    optimizer = optimizer or make_optimizer(config.optimizer, config.lr)
    if progress is None:
        progress = sys.stderr.isatty()
    folder = RunFolder(out_dir, mode or ("resume" if resume is not None else "new"))
    with folder:
        return _train_in(folder, model, dataset, config, optimizer, resume, progress, log, plots,
                         (train_src, valid_src), base_lr, figures_every)


def best_so_far(history):
    """(best validation ELBO, its epoch) over ``history``'s rows; (−inf, 0) without any."""
    best, epoch = -math.inf, 0
    for row in history:
        if "valid_elbo" in row and row["valid_elbo"] > best:
            best, epoch = row["valid_elbo"], row["epoch"]
    return best, epoch


def _train_in(folder, model, dataset, config, optimizer, resume, progress, log, plots, sources, base_lr,
              figures_every=0):
    out_dir = folder.path
    rng = np.random.default_rng(config.seed)
    train_src, valid_src = sources
    figure_src = valid_src if valid_src is not None else train_src  # never the test split
    n, B = len(train_src), config.batch_size
    steps_per_epoch = -(-n // B)
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    metrics_path = folder.file("metrics.jsonl")
    paths = {"last": folder.file("model.npz"), "best": folder.file("best.npz")}
    ckpt_path = paths["last"]
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
    binarize = train_src.binarize
    try:
        target = ("grey levels as Bernoulli targets" if (binarize == "none" and model.config.likelihood == "bernoulli")
                  else binarize)
        if config.dequantize == "uniform":
            target = f"none; uniformly dequantized, (x + u)/{integer_levels(dataset)}"
        held = (f"{len(valid_src)} validation points held out of {n + len(valid_src)} (seed "
                f"{config.validation_seed})" if valid_src is not None else "no validation split")
        log(f"training on {dataset.name} ({n} train, {held}; the test split is "
            f"{'read once at the end' if config.final_test else 'not read'}; binarization: {target}); "
            f"{model.num_params():,} parameters; numbers in {UNITS}")
        if first > 1:
            log(f"resuming after epoch {first - 1} of {config.epochs}")
        plots = plots and _figures_available(log)
        if config.backend == "numba":  # compile (or read from Numba's cache) before epoch 1 is timed
            log("preparing the Numba kernels (compiled on the first run, read from the cache afterwards) ...")
            t0 = time.perf_counter()
            fused.compile(train_src.grey(np.arange(min(2, n))))
            log(f"kernels ready in {time.perf_counter() - t0:.1f} s")

        def figures():
            _figures(out_dir, model, dataset, figure_src, history)

        def after_epoch(epoch):
            if plots and figures_every and epoch % figures_every == 0 and epoch < config.epochs:
                figures()
        _epochs(model, optimizer, fused, train_src, valid_src, config, rng, first, step, warmup_steps, base_lr,
                history, dataset, paths, metrics_path, progress, log, after_epoch)
        final = _final_test(dataset, model, config, paths, metrics_path, log) if config.final_test else None
    except KeyboardInterrupt:
        epoch = _saved_epoch(ckpt_path)
        if plots and history and epoch is not None:
            figures()
        if epoch is None:
            raise TrainingInterrupted(f"interrupted before the first epoch ended; no checkpoint was written to "
                                      f"{ckpt_path}") from None
        raise TrainingInterrupted(f"interrupted; the checkpoint of epoch {epoch} is in {ckpt_path}; "
                                  f"continue from it with scratchvae train --resume {out_dir}") from None
    except TrainingDiverged as e:
        raise TrainingDiverged(f"{e}; {_kept(ckpt_path)}") from None
    except OSError as e:
        raise TrainingFailed(f"{e.filename or out_dir}: cannot write: {os_reason(e)}; {_kept(ckpt_path)}") from None
    finally:
        if isinstance(log, _Log):
            log.close()
    if plots and history:
        try:
            figures()
        except OSError as e:
            raise TrainingFailed(f"{e.filename or out_dir}: cannot write the figures: {os_reason(e)}; "
                                 f"{_kept(ckpt_path)}") from None
    return history + ([final] if final is not None else [])


def _epochs(model, optimizer, fused, train_src, valid_src, config, rng, first, step, warmup_steps, base_lr, history,
            dataset, paths, metrics_path, progress, log, after_epoch=lambda epoch: None):
    n = len(train_src)
    steps_per_epoch = -(-n // config.batch_size)
    best, best_epoch = best_so_far(history)
    if valid_src is not None and first > 1 and best_epoch and not os.path.isfile(paths["best"]):
        log(f"no best.npz in this folder: the best of epochs {first} on will be written there "
            f"(the best so far, epoch {best_epoch}, is in the folder resumed from)")
        best = -math.inf
    for epoch in range(first, config.epochs + 1):
        if config.patience and history and history[-1]["epoch"] - best_epoch >= config.patience:
            log(f"stopped early: no better validation ELBO for {config.patience} epochs; the best, "
                f"{best:.3f} at epoch {best_epoch}, is in {paths['best']}")
            break
        t0 = time.perf_counter()
        bar = _progress(steps_per_epoch, f"epoch {epoch}/{config.epochs}", progress)
        try:
            sums, step, beta_t, lr_t = _train_epoch(model, optimizer, fused, train_src, config, rng, epoch, step,
                                                    warmup_steps, base_lr, bar)
        finally:
            if bar is not None:
                bar.close()
        train_seconds = time.perf_counter() - t0
        held = None
        if valid_src is not None:
            with np.errstate(all="ignore"):  # a non-finite result is reported by _check_epoch_finite
                try:
                    held = evaluate(model, valid_src, iw_samples=1, batch_size=500, backend=config.backend,
                                    diagnostics=False)
                except ValueError:  # the model refuses non-finite inputs it computed itself
                    if all(np.isfinite(p).all() for p in model.params.values()):
                        raise  # not from a diverged model: a bug, which must not pass for a divergence
                    held = {"elbo": float("nan")}
        _check_epoch_finite(model, optimizer, held, epoch, step)
        row = {
            "epoch": epoch,
            "train_elbo": sums[0] / n,
            "train_recon": sums[1] / n,
            "train_kl": sums[2] / n,
            "train_objective": sums[3] / n,
        }
        if held is not None:
            row.update(valid_elbo=held["elbo"], valid_elbo_se=held["elbo_se"], valid_recon=held["recon"],
                       valid_kl=held["kl"], valid_n=held["n"])
        row.update(beta=beta_t, lr=lr_t, seconds=train_seconds, units="nats/data point")
        row = {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in row.items()}
        if not all(np.isfinite(v) for v in row.values() if isinstance(v, float)):
            raise TrainingDiverged(f"NaN or Inf in the training ELBO of epoch {epoch}, step {step}")
        state = {"epoch": epoch, "step": step, "config": dataclasses.asdict(config), "dataset": dataset.name,
                 **checkpoint_fields(dataset), "binarize": train_src.binarize, "rng": rng.bit_generator.state, "history": history + [row]}
        improved = held is not None and row["valid_elbo"] > best
        if improved:  # best.npz first: a kill between the two writes leaves a best that the resume recomputes
            save_checkpoint(paths["best"], model, optimizer, state)
            best, best_epoch = row["valid_elbo"], epoch
        save_checkpoint(paths["last"], model, optimizer, state)
        history.append(row)
        with open(metrics_path, "a") as f:
            f.write(json.dumps(row, allow_nan=False) + "\n")
        if config.objective == "iwae":
            weighted = f"  train IWAE bound (K={config.k}) {row['train_objective']:9.3f}"
        else:
            weighted = "" if beta_t == 1.0 else (f"  objective weighted by beta={beta_t:g} "
                                                 f"({'a looser bound' if beta_t > 1 else 'not a bound'})")
        if held is not None:
            monitored = (f"  valid ELBO {row['valid_elbo']:9.3f} (recon {row['valid_recon']:9.3f}, KL "
                         f"{row['valid_kl']:7.3f}){' best' if improved else '     '}")
        else:
            monitored = ""
        schedule = "" if config.lr_schedule == "constant" and not config.lr_warmup else f"  lr {lr_t:.3g}"
        log(f"epoch {epoch:3d}  train ELBO {row['train_elbo']:9.3f}{monitored}  {train_seconds:6.2f} s"
            f"{schedule}{weighted}")
        after_epoch(epoch)


def _final_test(dataset, model, config, paths, metrics_path, log):
    """Evaluate the best checkpoint (the last without a validation split) once on the test split; its row is
    appended to metrics.jsonl and returned."""
    which = paths["best"] if config.validation and os.path.isfile(paths["best"]) else paths["last"]
    chosen, _, state = load_checkpoint(which)
    binarize = config.binarize if chosen.config.likelihood == "bernoulli" else "none"
    test_src = split_source(dataset, "test", binarize, config.dequantize, chosen.dtype)
    with np.errstate(all="ignore"):
        test = evaluate(chosen, test_src, iw_samples=1, batch_size=500, backend=config.backend, diagnostics=False)
    row = {"split": "test", "checkpoint": os.path.basename(which), "checkpoint_epoch": state["epoch"],
           "test_elbo": test["elbo"], "test_elbo_se": test["elbo_se"], "test_recon": test["recon"],
           "test_kl": test["kl"], "test_n": test["n"], "units": "nats/data point"}
    with open(metrics_path, "a") as f:
        f.write(json.dumps(row, allow_nan=False) + "\n")
    log(f"final test of {row['checkpoint']} (epoch {row['checkpoint_epoch']}): test ELBO {row['test_elbo']:9.3f} "
        f"± {row['test_elbo_se']:.3f} (recon {row['test_recon']:9.3f}, KL {row['test_kl']:7.3f}), "
        f"{row['test_n']} test points")
    return row


def _figures_available(log):
    """Whether figures can be drawn; without matplotlib, one line says so."""
    from . import plots

    if plots.available():
        return True
    log("matplotlib is not installed: no figures (pip install matplotlib; then scratchvae plot RUN_DIR)")
    return False


def _figures(out_dir, model, dataset, source, history):
    from . import plots

    plots.write_run_figures(out_dir, model, dataset, source, history, split=source.name)


def _train_epoch(model, optimizer, fused, source, config, rng, epoch, step, warmup_steps, base_lr, bar):
    """One pass over ``source`` in a random order, every step on the fused engine.

    Returns the summed (elbo, recon, kl, objective) over the data points, the step count, the KL weight and
    the learning rate of the last step.
    """
    n, B = len(source), config.batch_size
    steps_per_epoch = -(-n // B)
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
            optimizer.lr = learning_rate(config, base_lr, step, steps_per_epoch)
            fused.update()
            sums += [terms.elbo.sum(), terms.recon.sum(), terms.kl.sum(), terms.objective.sum()]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(elbo=f"{terms.elbo.mean():.2f}", refresh=False)
    return sums, step, beta_t, optimizer.lr


def _progress(total, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)

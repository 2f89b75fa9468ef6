"""How to train: :class:`TrainConfig`, in a module of its own so that the loop (:mod:`.loop`) and the
checkpoint format (:mod:`.checkpoint`) both read it without importing each other."""
import dataclasses

import numpy as np

from ..data.datasets import check_binarize
from ..engine import BACKENDS, default_backend
from ..model import _check_positive_int
from ..optim import make_optimizer

OBJECTIVES = ("elbo", "iwae")
LR_SCHEDULES = ("constant", "step", "cosine", "burda2015")
DEQUANTIZATIONS = ("auto", "uniform", "none")
MAX_WARMUP_EPOCHS = 1e9  # a longer warm-up never reaches beta; the limit keeps the step count an integer
VALIDATION_SEED = 20160  # the seed of the permutation that carves the validation split; any fixed value would do
# What a checkpoint written before these fields existed trained with: no validation split, a constant learning
# rate, no dequantization. Its config is completed with these, so that it loads and resumes as it ran.
BEFORE_VALIDATION = dict(validation=0, validation_seed=VALIDATION_SEED, patience=0, final_test=False,
                         lr_schedule="constant", lr_step=0, lr_gamma=0.1, lr_warmup=0.0, dequantize="none")


def _is_number(v):
    return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v)


@dataclasses.dataclass
class TrainConfig:
    """How to train; see ``scratchvae train --help`` for each field.

    These field defaults are the defaults of ``scratchvae train`` too (the
    digits demo: 200 epochs of Adam); the CLI reads them from here.

    ``validation`` is the part of the training split held out for monitoring, early stopping and the
    best checkpoint: a fraction in (0, 1), a count of data points >= 1, or 0 for none. The held-out
    points are the last of a permutation drawn with ``validation_seed``, so the split is the same in
    every run and on resume. ``lr_schedule`` with ``lr_step``, ``lr_gamma`` and ``lr_warmup`` gives
    the learning rate at each step (:func:`scratchvae.training.loop.learning_rate`). ``dequantize``:
    "uniform" adds U[0, 1) noise to integer pixels for a Gaussian likelihood (eq.47), "auto" does
    so exactly where that applies.
    """

    epochs: int = 200
    batch_size: int = 100
    samples: int = 1
    beta: float = 1.0
    warmup_epochs: float = 0.0
    optimizer: str = "adam"
    lr: float = None
    seed: int = 0
    binarize: str = "dynamic"
    objective: str = "elbo"
    k: int = 5  # importance samples of the iwae objective; the elbo objective does not use it
    backend: str = None
    validation: float = 0.1
    validation_seed: int = VALIDATION_SEED
    patience: int = 0  # stop after this many epochs without a better validation ELBO; 0: never
    final_test: bool = False  # after training, evaluate the best checkpoint once on the test split
    lr_schedule: str = "constant"
    lr_step: int = 0  # the step schedule: epochs between two decays
    lr_gamma: float = 0.1  # the step schedule: the factor of each decay
    lr_warmup: float = 0.0  # epochs over which the learning rate grows linearly from 0 (any schedule)
    dequantize: str = "auto"

    def __post_init__(self):
        for name in ("epochs", "batch_size", "samples", "k"):
            _check_positive_int(name, getattr(self, name))
        for name in ("seed", "validation_seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < 2**63:
                raise ValueError(f"{name} must be an integer in [0, 2**63), got {v!r}")
        for name in ("beta", "warmup_epochs", "validation", "lr_gamma", "lr_warmup") + (
                ("lr",) if self.lr is not None else ()):
            if not _is_number(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)!r}")
        for name in ("warmup_epochs", "lr_warmup"):
            if not 0 <= getattr(self, name) <= MAX_WARMUP_EPOCHS:
                raise ValueError(f"{name} must be a number of epochs in [0, {MAX_WARMUP_EPOCHS:g}], "
                                 f"got {getattr(self, name):g}")
        if self.beta < 0:
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.validation < 0 or (self.validation >= 1 and self.validation != int(self.validation)):
            raise ValueError(f"validation must be a fraction in (0, 1), a whole number of data points, or 0 "
                             f"(none), got {self.validation!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, (int, np.integer)) or self.patience < 0:
            raise ValueError(f"patience must be an integer >= 0 (0: no early stopping), got {self.patience!r}")
        if self.patience and not self.validation:
            raise ValueError("patience (early stopping) needs a validation split to watch; validation is 0")
        if not isinstance(self.final_test, bool):
            raise ValueError(f"final_test must be True or False, got {self.final_test!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose from {', '.join(LR_SCHEDULES)}")
        if isinstance(self.lr_step, bool) or not isinstance(self.lr_step, (int, np.integer)) or self.lr_step < 0:
            raise ValueError(f"lr_step must be a whole number of epochs >= 0, got {self.lr_step!r}")
        if self.lr_schedule == "step" and self.lr_step <= 0:
            raise ValueError(f"the step schedule needs lr_step, the epochs between two decays, > 0; "
                             f"got {self.lr_step}")
        if not 0 < self.lr_gamma <= 1:
            raise ValueError(f"lr_gamma must be a decay factor in (0, 1], got {self.lr_gamma:g}")
        if self.dequantize not in DEQUANTIZATIONS:
            raise ValueError(f"unknown dequantize {self.dequantize!r}; choose from {', '.join(DEQUANTIZATIONS)}")
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

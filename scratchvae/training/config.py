"""How to train: :class:`TrainConfig`, in a module of its own so that the loop (:mod:`.loop`) and the
checkpoint format (:mod:`.checkpoint`) both read it without importing each other."""
import dataclasses

import numpy as np

from ..data.datasets import check_binarize
from ..engine import BACKENDS, default_backend
from ..model import _check_positive_int
from ..optim import make_optimizer

OBJECTIVES = ("elbo", "iwae")
MAX_WARMUP_EPOCHS = 1e9  # a longer warm-up never reaches beta; the limit keeps the step count an integer


@dataclasses.dataclass
class TrainConfig:
    """How to train; see ``scratchvae train --help`` for each field.

    These field defaults are the defaults of ``scratchvae train`` too (the
    digits demo: 200 epochs of Adam); the CLI reads them from here.
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

    def __post_init__(self):
        for name in ("epochs", "batch_size", "samples", "k"):
            _check_positive_int(name, getattr(self, name))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        for name in ("beta", "warmup_epochs") + (("lr",) if self.lr is not None else ()):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), (int, float, np.floating)):
                raise ValueError(f"{name} must be a number, got {getattr(self, name)!r}")
        if self.warmup_epochs > MAX_WARMUP_EPOCHS:
            raise ValueError(f"warmup_epochs must be at most {MAX_WARMUP_EPOCHS:g}, got {self.warmup_epochs:g}")
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

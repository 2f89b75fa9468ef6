"""Optimizers written by hand: SGD with momentum, Adagrad, Adam.

Each updates a dict of parameter arrays in place from a dict of gradients of
the loss (they all descend). Their state is a dict of plain arrays plus a step
count, so it can be checkpointed without pickle.
"""
import math

import numpy as np


class Optimizer:
    """Base class: ``step(params, grads)`` updates ``params`` in place."""

    name = None
    slots = ()

    def __init__(self, lr):
        lr = float(lr)
        if not np.isfinite(lr) or lr <= 0:
            raise ValueError(f"learning rate must be a positive number, got {lr}")
        self.lr = lr
        self.t = 0
        self.state = {}

    def _slot(self, slot, name, p):
        key = f"{slot}.{name}"
        if key not in self.state:
            self.state[key] = np.zeros_like(p)
        return self.state[key]

    def step(self, params, grads):
        self.t += 1
        for name, p in params.items():
            self._update(name, p, grads[name])

    def hyperparams(self):
        return {"name": self.name, "lr": self.lr, "t": self.t}

    def load_state(self, t, arrays):
        """Restore the step count and slot arrays saved from :attr:`state`."""
        self.t = int(t)
        self.state = {k: np.array(v) for k, v in arrays.items()}


class SGD(Optimizer):
    """SGD with (heavy-ball) momentum: v ← m v + g,  p ← p − lr v."""

    name = "sgd"

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)

    def _update(self, name, p, g):
        v = self._slot("v", name, p)
        v *= self.momentum
        v += g
        p -= self.lr * v

    def hyperparams(self):
        return {**super().hyperparams(), "momentum": self.momentum}


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011), the optimizer of Kingma & Welling 2013:
    s ← s + g²,  p ← p − lr g / (sqrt(s) + eps)."""

    name = "adagrad"

    def __init__(self, lr=0.01, eps=1e-8):
        super().__init__(lr)
        self.eps = float(eps)

    def _update(self, name, p, g):
        s = self._slot("s", name, p)
        s += g * g
        p -= self.lr * g / (np.sqrt(s) + self.eps)

    def hyperparams(self):
        return {**super().hyperparams(), "eps": self.eps}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction:
    m ← b1 m + (1−b1) g,  v ← b2 v + (1−b2) g²,
    p ← p − lr m̂ / (sqrt(v̂) + eps),  m̂ = m/(1−b1^t), v̂ = v/(1−b2^t).

    Computed as p ← p − (lr/(1−b1^t)) m / (sqrt(v)·r + eps) with r = 1/sqrt(1−b2^t)
    (sqrt(v̂) = sqrt(v)·r): one square root and one division per element."""

    name = "adam"

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(lr)
        for n, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= b < 1:
                raise ValueError(f"{n} must be in [0, 1), got {b}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _update(self, name, p, g):
        m = self._slot("m", name, p)
        v = self._slot("v", name, p)
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * (g * g)
        step = self.lr / (1 - self.beta1**self.t)
        r = 1.0 / math.sqrt(1 - self.beta2**self.t)  # a Python float: keeps float32 arrays float32
        p -= step * m / (np.sqrt(v) * r + self.eps)

    def hyperparams(self):
        return {**super().hyperparams(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "adam": Adam}
DEFAULT_LR = {"sgd": 0.01, "adagrad": 0.01, "adam": 1e-3}


def make_optimizer(name, lr=None, **kwargs):
    """Build an optimizer by name ("sgd", "adagrad", "adam"); ``lr=None`` takes its default."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](lr=DEFAULT_LR[name] if lr is None else lr, **kwargs)

"""Optimizers written by hand: SGD with momentum, Adagrad, Adam.

Each updates a dict of parameter arrays in place from a dict of gradients of
the loss (they all descend). Their state is a dict of plain arrays plus a step
count, so it can be checkpointed without pickle.
"""
import numpy as np

from .ops import flushed


# ------------------------------------------------------------------ formulas
# Each update in place on arrays of any shape (one parameter, or all of them
# flattened), in the arrays' dtype: Python floats are cast to it first, as
# NumPy does with a Python scalar. The classes below apply them per parameter;
# the fused engine applies them, or their Numba kernels, to flat arrays. The
# state they keep is written through ops.flushed: a moment decaying where the
# gradient is zero ends at 0, not in the subnormal numbers (docs/performance.md,
# "Subnormal numbers").
# SGD and Adagrad are written in their kernels' order of operations, so the
# two agree to the bit; Adam is written as the paper writes it, and its
# kernel's reordering agrees with it up to rounding.

def sgd_momentum_update(p, vel, g, lr, momentum):
    """SGD with heavy-ball momentum: vel ← momentum·vel + g,  p ← p − lr·vel."""
    T = p.dtype.type
    vel[...] = flushed(vel * T(momentum) + g)
    p -= T(lr) * vel


def adagrad_update(p, s, g, lr, eps):
    """Adagrad (Duchi et al. 2011): s ← s + g²,  p ← p − lr·g / (sqrt(s) + eps)."""
    T = p.dtype.type
    s[...] = flushed(s + g * g)
    p -= T(lr) * g / (np.sqrt(s) + T(eps))


def adam_update(p, m, v, g, lr, beta1, beta2, eps, bias1, bias2):
    """Adam (Kingma & Ba 2015, Algorithm 1) with bias correction; ``bias1, bias2`` = 1 − beta1^t, 1 − beta2^t.

    m ← β1 m + (1−β1) g,  v ← β2 v + (1−β2) g²,
    m̂ = m / (1 − β1^t),  v̂ = v / (1 − β2^t),  p ← p − lr m̂ / (sqrt(v̂) + eps),
    as the paper writes it. The compiled kernel folds the two corrections into
    one factor each (one division per element instead of three); the two agree
    up to rounding.
    """
    T = p.dtype.type
    m[...] = flushed(m * T(beta1) + T(1 - beta1) * g)
    v[...] = flushed(v * T(beta2) + T(1 - beta2) * (g * g))
    m_hat = m / T(bias1)  # |m̂| ≥ |m| and v̂ ≥ v (bias ≤ 1): no subnormal from a flushed m or v
    v_hat = v / T(bias2)
    p -= T(lr) * m_hat / (np.sqrt(v_hat) + T(eps))


class Optimizer:
    """Base class: ``step(params, grads)`` updates ``params`` in place.

    A subclass names its :attr:`formula` (one of the functions above), the
    state arrays it keeps per parameter (:attr:`slots`, in the formula's
    order) and the formula's scalar arguments (:meth:`update_args`).
    """

    name = None
    slots = ()
    formula = None
    kernel = None

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
        args = self.update_args()
        for name, p in params.items():
            slots = [self._slot(slot, name, p) for slot in self.slots]
            self.formula(p, *slots, grads[name], *args)

    def update_args(self):
        """The scalar arguments of :attr:`formula` (and of its kernel) after the slots and the gradient, at step t."""
        raise NotImplementedError

    def hyperparams(self):
        return {"name": self.name, "lr": self.lr, "t": self.t}

    def load_state(self, t, arrays):
        """Restore the step count and slot arrays saved from :attr:`state`."""
        self.t = int(t)
        self.state = {k: np.array(v) for k, v in arrays.items()}


class SGD(Optimizer):
    """SGD with (heavy-ball) momentum: v ← m v + g,  p ← p − lr v."""

    name = "sgd"
    slots = ("v",)
    formula = staticmethod(sgd_momentum_update)
    kernel = "sgd_momentum_update"  # its name in a kernel set of scratchvae.engine

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)

    def update_args(self):
        return self.lr, self.momentum

    def hyperparams(self):
        return {**super().hyperparams(), "momentum": self.momentum}


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011), the optimizer of Kingma & Welling 2013:
    s ← s + g²,  p ← p − lr g / (sqrt(s) + eps)."""

    name = "adagrad"
    slots = ("s",)
    formula = staticmethod(adagrad_update)
    kernel = "adagrad_update"

    def __init__(self, lr=0.01, eps=1e-8):
        super().__init__(lr)
        self.eps = float(eps)

    def update_args(self):
        return self.lr, self.eps

    def hyperparams(self):
        return {**super().hyperparams(), "eps": self.eps}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction:
    see :func:`adam_update`."""

    name = "adam"
    slots = ("m", "v")
    formula = staticmethod(adam_update)
    kernel = "adam_update"

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(lr)
        for n, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= b < 1:
                raise ValueError(f"{n} must be in [0, 1), got {b}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def update_args(self):
        return self.lr, self.beta1, self.beta2, self.eps, 1 - self.beta1**self.t, 1 - self.beta2**self.t

    def hyperparams(self):
        return {**super().hyperparams(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "adam": Adam}
DEFAULT_LR = {"sgd": 0.01, "adagrad": 0.01, "adam": 1e-3}


def make_optimizer(name, lr=None, **kwargs):
    """Build an optimizer by name ("sgd", "adagrad", "adam"); ``lr=None`` takes its default."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](lr=DEFAULT_LR[name] if lr is None else lr, **kwargs)

"""Dense layer and activations: forward/backward pairs in plain NumPy.

Each op is ``thing_forward(...) -> (out, cache)`` and
``thing_backward(dout, cache) -> grads``. ``dX`` is the gradient of the loss
with respect to ``X``, with the shape and dtype of ``X``; ``dout`` is the
upstream gradient.

Shape letters: N batch rows, I inputs of a layer, O outputs of a layer.
"""
import numpy as np

LEAKY_SLOPE = 0.01


# --------------------------------------------------------------------- dense
def dense_forward(x, W, b):
    """Affine map ``out = x @ W + b`` (eq.37 of MATH.md).

    Parameters
    ----------
    x : (N, I) array
    W : (I, O) array
    b : (O,) array

    Returns
    -------
    out : (N, O) array
    cache : tuple, what :func:`dense_backward` needs
    """
    out = x @ W + b  # (N, O)
    return out, (x, W)


def dense_backward(dout, cache):
    """Backward of :func:`dense_forward`.

    Notes
    -----
    dx = dout Wᵀ,  dW = xᵀ dout,  db = Σ_n dout[n]  (eq.38).

    Returns
    -------
    dx : (N, I), dW : (I, O), db : (O,)
    """
    x, W = cache
    dx = dout @ W.T  # (N, I)
    dW = x.T @ dout  # (I, O)
    db = dout.sum(axis=0)  # (O,)
    return dx, dW, db


# --------------------------------------------------------------- activations
# Each activation is a forward ``f(a) -> h`` and a backward
# ``(dh, a, h) -> da`` that uses whichever of the input ``a`` or the cached
# output ``h`` gives the derivative most cheaply (sigmoid: h(1-h), tanh: 1-h²; eq.39).

def _relu(a):
    return np.maximum(a, 0)


def _relu_back(dh, a, h):
    return dh * (a > 0)


def _leaky_relu(a):
    return np.where(a > 0, a, LEAKY_SLOPE * a)


def _leaky_relu_back(dh, a, h):
    return dh * np.where(a > 0, 1.0, LEAKY_SLOPE).astype(a.dtype)


def _tanh(a):
    return np.tanh(a)


def _tanh_back(dh, a, h):
    return dh * (1 - h * h)


def sigmoid(a):
    """Logistic function 1 / (1 + e^{-a}), stable for large |a| (eq.40)."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def _sigmoid_back(dh, a, h):
    return dh * h * (1 - h)


def softplus(a):
    """softplus(a) = log(1 + e^a), stable: max(a, 0) + log1p(e^{-|a|}) (eq.40)."""
    return np.maximum(a, 0) + np.log1p(np.exp(-np.abs(a)))


def _softplus_back(dh, a, h):
    return dh * sigmoid(a)


def _identity(a):
    return a


def _identity_back(dh, a, h):
    return dh


ACTIVATIONS = {
    "relu": (_relu, _relu_back),
    "leaky_relu": (_leaky_relu, _leaky_relu_back),
    "tanh": (_tanh, _tanh_back),
    "sigmoid": (sigmoid, _sigmoid_back),
    "softplus": (softplus, _softplus_back),
    "identity": (_identity, _identity_back),
}


# Integer codes of the activations, for the kernels (a compiled loop takes an int, not a string).
ACTIVATION_CODES = {"identity": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4, "softplus": 5}


def check_activation(name):
    """Raise ValueError unless ``name`` is a known activation."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return name


def activation_forward(name, a):
    """Elementwise activation ``h = f(a)`` (the table under eq.39).

    Notes
    -----
    relu: max(a, 0), f' = [a > 0];  leaky_relu: a or 0.01 a, f' = 1 or 0.01;
    tanh: f' = 1 - h²;  sigmoid: f' = h (1 - h);  softplus: f' = sigmoid(a);
    identity: f' = 1.
    """
    f, _ = ACTIVATIONS[check_activation(name)]
    h = f(a)
    return h, (name, a, h)


def activation_backward(dh, cache):
    """Backward of :func:`activation_forward`: ``da = dh * f'(a)`` (eq.39)."""
    name, a, h = cache
    _, fb = ACTIVATIONS[name]
    return fb(dh, a, h).astype(a.dtype, copy=False)


# ------------------------------------------------------------ subnormal numbers
def flushed(a):
    """``a`` with every subnormal element (0 < |a| < the dtype's smallest normal number) replaced by 0.

    What a CPU's flush-to-zero mode does to a result, as an op: the engine's
    kernels apply it to the numbers they store and the optimizers to the state
    they keep (docs/performance.md, "Subnormal numbers"), so that training does
    not compute on subnormals, which cost about a hundred cycles an operation
    on some CPUs. Nothing at or above
    the smallest normal number (1.2e-38 in float32, 2.2e-308 in float64)
    changes; NaN and ±Inf go through. Returns a new array (or a scalar).
    """
    a = np.asarray(a)
    return np.where(np.abs(a) < np.finfo(a.dtype).tiny, a.dtype.type(0), a)

"""Calling the user's function: on copies, checked for shape, finiteness and untouched inputs."""
import numpy as np


class PropertyFailure(Exception):
    """The property does not hold on this case; the message is the measurement."""


def _as_numpy(out):
    """Whatever the user returned, as a float64 NumPy array (torch tensors are detached)."""
    if hasattr(out, "detach"):
        out = out.detach()
    if hasattr(out, "cpu"):
        out = out.cpu()
    return np.asarray(out, dtype=np.float64)


def _call(fn, x, eps, params, what="the estimate"):
    """fn(x, eps, params) on copies, checked: a finite (rows,) array; inputs left unchanged."""
    args = (x.copy(), eps.copy(), {k: v.copy() for k, v in params.items()})
    try:
        out = fn(*args)
    except Exception as e:  # the user's code: any exception is a failure of the property
        raise PropertyFailure(f"{what} raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    for name, a, b in (("x", args[0], x), ("eps", args[1], eps)) + tuple(
            (k, args[2][k], params[k]) for k in params):
        if not np.array_equal(a, b):
            raise PropertyFailure(f"{what} modified its input {name}")
    return out


def _estimate(fn, x, eps, params):
    out = _call(fn, x, eps, params)
    try:
        arr = _as_numpy(out)
    except Exception as e:
        raise PropertyFailure(f"returned {type(out).__name__}, not convertible to a NumPy array ({e})")
    if arr.shape != (x.shape[0],):
        raise PropertyFailure(f"returned shape {arr.shape}, expected one value per data point ({x.shape[0]},)")
    if not np.all(np.isfinite(arr)):
        raise PropertyFailure("returned NaN or Inf")
    return arr

def _user_grad(grad, x, eps, params):
    g = _call(grad, x, eps, params, what="the gradient")
    if not isinstance(g, dict) or set(g) != set(params):
        raise PropertyFailure(f"the gradient must be a dict with keys {sorted(params)}")
    out = {}
    for k, v in g.items():
        out[k] = _as_numpy(v)
        if out[k].shape != np.shape(params[k]):
            raise PropertyFailure(f"gradient of {k} has shape {out[k].shape}, expected {np.shape(params[k])}")
    return out

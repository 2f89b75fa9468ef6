"""Calling the user's function: on copies, checked for shape, numbers, finiteness and untouched inputs.

Whatever the function does, it cannot end the kit's run: an exception of any kind
(``sys.exit`` and other BaseExceptions included) becomes a failed property with its
reason. KeyboardInterrupt alone passes through, so that Ctrl-C still stops a run.
The function runs under the NumPy error state that was in force when :func:`check`
started (its own, e.g. ``np.seterr(all="raise")`` at import), and whatever it sets
is undone when it returns; the kit's own code runs under a fixed state
(:data:`KIT_ERRSTATE`).
"""
import contextlib

import numpy as np


class PropertyFailure(Exception):
    """The property does not hold on this case; the message is the measurement."""


# The kit's own arithmetic handles ±inf and NaN explicitly; it never depends on
# the global NumPy error state a user's module may have set.
KIT_ERRSTATE = dict(all="ignore")
_USER_ERRSTATE = [None]  # the state the user's function runs under, set by user_errstate()


@contextlib.contextmanager
def user_errstate():
    """Run the kit: record the NumPy error state in force now for the user's calls, use KIT_ERRSTATE meanwhile."""
    saved = _USER_ERRSTATE[0]
    _USER_ERRSTATE[0] = np.geterr()
    try:
        with np.errstate(**KIT_ERRSTATE):
            yield
    finally:
        _USER_ERRSTATE[0] = saved


def _one_line(e):
    text = str(e).splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _guarded(what, action):
    """action() with any exception but KeyboardInterrupt turned into a PropertyFailure."""
    try:
        with np.errstate(**(_USER_ERRSTATE[0] or np.geterr())):
            return action()
    except KeyboardInterrupt:
        raise
    except PropertyFailure:
        raise
    except SystemExit as e:
        raise PropertyFailure(f"{what} called sys.exit({e.code!r}): a function under test must return") from None
    except BaseException as e:  # the user's code: anything it raises is a failure of the property
        raise PropertyFailure(f"{what} raised {_one_line(e)}") from None


def _as_numpy(out, what="the estimate"):
    """Whatever the user returned, as a float64 NumPy array of real numbers (torch tensors are detached)."""
    def convert():
        a = out
        if hasattr(a, "detach"):
            a = a.detach()
        if hasattr(a, "cpu"):
            a = a.cpu()
        return np.asarray(a)

    arr = _guarded(f"converting {what} ({type(out).__name__})", convert)
    if arr.dtype.kind not in "biuf":
        kind = {"c": "complex", "U": "strings", "S": "bytes", "O": "Python objects"}.get(arr.dtype.kind, arr.dtype.name)
        raise PropertyFailure(f"{what} is not real numbers ({type(out).__name__} of {kind})")
    return arr.astype(np.float64)


def _call(fn, x, eps, params, what="the estimate"):
    """fn(x, eps, params) on copies, checked: inputs left unchanged."""
    args = (x.copy(), eps.copy(), {k: v.copy() for k, v in params.items()})
    out = _guarded(what, lambda: fn(*args))
    for name, a, b in (("x", args[0], x), ("eps", args[1], eps)) + tuple(
            (k, args[2][k], params[k]) for k in params):
        if not np.array_equal(a, b):
            raise PropertyFailure(f"{what} modified its input {name}")
    return out


def _estimate(fn, x, eps, params, tiled=None):
    """fn's (rows,) estimates, finite. ``tiled = (points, times)`` when x is the case's points tiled, for messages."""
    out = _call(fn, x, eps, params)
    arr = _as_numpy(out)
    rows = x.shape[0]
    if arr.shape != (rows,):
        if tiled is not None and tiled[1] > 1:
            points, times = tiled
            given = (f"for {rows} rows (the kit tiles your {points} data point{'s' if points > 1 else ''} "
                     f"{times} times)")
        else:
            given = f"for {rows} data point{'s' if rows > 1 else ''}"
        per_sample = " (one per sample? average over the samples, axis 0)" if arr.shape == eps.shape[:2] else ""
        raise PropertyFailure(f"returned shape {arr.shape} {given}{per_sample}: return one value per row, "
                              f"shape ({rows},)")
    if not np.all(np.isfinite(arr)):
        shown = np.array2string(arr[:6], precision=4, separator=",") + (" ..." if rows > 6 else "")
        raise PropertyFailure(f"returned NaN or Inf: {shown}")
    return arr


def _user_grad(grad, x, eps, params):
    g = _call(grad, x, eps, params, what="the gradient")
    if not isinstance(g, dict) or set(g) != set(params):
        got = sorted(map(str, g)) if isinstance(g, dict) else type(g).__name__
        raise PropertyFailure(f"the gradient must be a dict with keys {sorted(params)}, got {got}")
    out = {}
    for k, v in g.items():
        out[k] = _as_numpy(v, what=f"the gradient of {k}")
        if out[k].shape != np.shape(params[k]):
            raise PropertyFailure(f"gradient of {k} has shape {out[k].shape}, expected {np.shape(params[k])}")
        if not np.all(np.isfinite(out[k])):
            raise PropertyFailure(f"gradient of {k} has NaN or Inf")
    return out

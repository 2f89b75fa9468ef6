"""Adaptive grid quadrature over a latent of 1 or 2 dimensions, with its own error measured.

For a decoder with no closed form the evidence log p(x) = log ∫ p(x|z) p(z) dz
(eq.1) and the reconstruction term E_q[log p(x|z)] (eq.17) are integrals over
z; with J ≤ 2 a tensor grid computes them to known accuracy:

- :func:`log_integral`: log ∫ exp(g(z)) dz. The box starts at [−B, B]^J, is
  widened while the integrand on its edge is within :data:`TAIL` nats of its
  largest node value, and zoomed onto the nodes within :data:`TAIL` of the
  peak (plus one spacing) until it stops shrinking.
- :func:`gaussian_expectation`: E[g(μ + σ ε)], ε ~ N(0, I), on a grid of ε over
  [−:data:`Q_BOX`, :data:`Q_BOX`]^J weighted by the normal density.

On the box, equal weights h^J (the trapezoid rule with the edge half-weights
dropped: the edge holds less than e^{−TAIL} of the peak). The number of
intervals per side doubles from :data:`START_INTERVALS` until two successive
grids agree within :data:`TARGET` or the grid reaches :data:`MAX_INTERVALS`;
the returned error is :data:`SAFETY` times the larger of the last difference
and a quarter of the one before. For a smooth integrand the rule converges
geometrically, so the finer grid's error is far below the difference. A ReLU
network has kinks, where the rule converges as h²: across one kink the finer
grid's error is at most the difference (the trapezoid error of a kink at
fraction θ of a cell is ∝ θ(1 − θ) h², and halving h gives a ratio of at least
1 between difference and error for every θ). Several kinks can cancel in one
difference by chance; the quarter of the previous difference (its h² scaling)
covers that, and SAFETY = 4 leaves room for the irregular convergence of the
kink terms. tests/testing/test_proptest_mlp.py measures the estimate against
much finer grids.

Shape letters: M grid nodes, J latent dimensions (1 or 2).
"""
import numpy as np

from ...bounds import log_sum_exp

TAIL = 40.0  # nats: nodes this far below the peak carry less than e^-40 ≈ 4e-18 of its mass each
START_BOX = 8.0  # the first box is [−8, 8]^J: the prior's mass outside is below 1e-14 per dimension
MAX_WIDENINGS = 6
MAX_ZOOMS = 12
Q_BOX = 9.0  # E_q on ε ∈ [−9, 9]^J: the normal mass outside is 2e-19 per dimension
START_INTERVALS = 32
MAX_INTERVALS = {1: 2048, 2: 128}  # per side: ≤ 16,641 nodes in 2-D keeps a case within tens of milliseconds
TARGET = 1e-10  # nats: two grids agreeing this well are done
SAFETY = 4.0


def _grid(lo, hi, n):
    """The (n + 1)^J nodes of the box [lo, hi] (M, J) and the spacing h (J,)."""
    axes = [np.linspace(a, b, n + 1) for a, b in zip(lo, hi)]
    z = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(lo))  # (M, J)
    return z, (hi - lo) / n


def _on_edge(z, lo, hi):
    return np.any(np.isclose(z, lo) | np.isclose(z, hi), axis=1)  # (M,)


def _finite(v, what):
    if np.any(np.isnan(v)) or np.any(v == np.inf):
        raise FloatingPointError(f"the {what} is NaN or +inf on the quadrature grid")
    return v


def locate(g, J):
    """The box holding all but a negligible part of ∫ exp(g): (lo, hi), each (J,).

    ``g`` maps nodes (M, J) to log-integrand values (M,).
    """
    lo, hi = np.full(J, -START_BOX), np.full(J, START_BOX)
    for widening in range(MAX_WIDENINGS + 1):  # widen until the edge is negligible
        z, h = _grid(lo, hi, START_INTERVALS)
        v = _finite(g(z), "log-integrand")
        if np.max(v[_on_edge(z, lo, hi)]) < np.max(v) - TAIL:
            break
        if widening == MAX_WIDENINGS:
            raise FloatingPointError(f"the integrand is not negligible on the edge of [{lo[0]:g}, {hi[0]:g}]^{J}")
        lo, hi = 2 * lo, 2 * hi
    for _ in range(MAX_ZOOMS):  # zoom onto the nodes within TAIL of the peak
        keep = z[v > np.max(v) - TAIL]
        new_lo, new_hi = np.maximum(keep.min(axis=0) - h, lo), np.minimum(keep.max(axis=0) + h, hi)
        if np.all(new_hi - new_lo > 0.5 * (hi - lo)):
            break
        lo, hi = new_lo, new_hi
        z, h = _grid(lo, hi, START_INTERVALS)
        v = _finite(g(z), "log-integrand")
    return lo, hi


def _refine(rule, J, intervals=None):
    """Double the intervals per side until two grids agree: (value, SAFETY × last difference, intervals).

    With ``intervals`` given, that one grid: (value, nan, intervals) (for a reference).
    """
    if intervals is not None:
        return rule(intervals), float("nan"), intervals
    n = START_INTERVALS
    prev, last_diff = rule(n), np.inf
    while True:
        n *= 2
        cur = rule(n)
        diff = abs(cur - prev)
        if diff < TARGET or n >= MAX_INTERVALS[J]:
            return cur, SAFETY * max(diff, last_diff / 4 if n >= 4 * START_INTERVALS else 0.0), n
        prev, last_diff = cur, diff


def log_integral(g, J, box=None, intervals=None):
    """log ∫_{ℝ^J} exp(g(z)) dz and an upper estimate of its absolute error.

    Parameters
    ----------
    g : callable, nodes (M, J) -> (M,) log-integrand values (−inf allowed).
    J : 1 or 2.
    box : (lo, hi) or None (found by :func:`locate`).
    intervals : int or None; an int evaluates that one grid, with no error estimate (a reference).

    Returns
    -------
    value, error : floats (nats); intervals : int, per side of the last grid.
    """
    lo, hi = locate(g, J) if box is None else box

    def rule(n):
        z, h = _grid(lo, hi, n)
        return float(log_sum_exp(_finite(g(z), "log-integrand"), axis=0) + np.sum(np.log(h)))

    return _refine(rule, J, intervals)


def gaussian_expectation(g, mu, std, intervals=None):
    """E[g(μ + σ ⊙ ε)], ε ~ N(0, I_J), and an upper estimate of its absolute error.

    Parameters
    ----------
    g : callable, points (M, J) -> (M,) finite values.
    mu, std : (J,) arrays.
    intervals : int or None, as in :func:`log_integral`.

    Returns
    -------
    value, error : floats; intervals : int.
    """
    J = len(mu)
    lo, hi = np.full(J, -Q_BOX), np.full(J, Q_BOX)

    def rule(n):
        eps, _ = _grid(lo, hi, n)
        w = np.exp(-0.5 * np.sum(eps * eps, axis=1))  # (M,) normal density up to a constant
        vals = g(mu + std * eps)
        if not np.all(np.isfinite(vals)):
            raise FloatingPointError("the integrand of the expectation is not finite on the quadrature grid")
        return float(np.sum(w * vals) / np.sum(w))  # normalized: a constant g is exact

    return _refine(rule, J, intervals)

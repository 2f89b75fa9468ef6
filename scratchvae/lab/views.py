"""The numbers behind each view of the lab, as JSON-ready dicts, every one from the package's own functions.

- :class:`Decomposition`: a linear-Gaussian VAE (:class:`scratchvae.testing.exact.LinearGaussian`)
  with a 2-D latent and one fixed x; for a diagonal q = N(m, diag e^v) (eq.18) it gives log p(x),
  the analytic ELBO (eq.15), KL(q ‖ p(z|x)) (the gap of eq.13), a Monte Carlo ELBO with its standard
  error (eq.20, from the reparameterized samples of eq.27), and L_K for K = 1 … 4096 (eq.29), with
  the contours the page draws.
- :func:`estimators`: the table of ``examples/reparameterization.py`` (:mod:`.estimators`).
- :class:`Trained`: a checkpoint's encoder means of the test images and its decoder under the pointer.

The page only draws: ellipses arrive as polylines, curves as arrays. Nothing here imports the
engine or Numba except :class:`Trained`, which needs a model.

Shape letters: D data, J latent (2), L Monte Carlo samples, R replications, K importance samples.
"""
import math
import os

import numpy as np

from .. import bounds
from ..distributions import log_normal, reparameterize_forward
from ..testing.exact import LinearGaussian
from . import estimators as est

# The q controls: ranges of the sliders (the page sets them from /api/problem; the server refuses others).
MEAN_RANGE = (-3.0, 3.0)
LOGVAR_RANGE = (-4.0, 2.0)
MC_SAMPLES = 1000  # L of the Monte Carlo ELBO: its standard error is ~0.2 nat for q at the prior
KS = tuple(2 ** i for i in range(13))  # 1 … 4096, K of L_K
REPLICATES = 16  # independent draws of each L_K: the error bars are their standard error
CURVE_POINTS = 121  # points of the ELBO/KL curves along one coordinate of q
CONTOUR_RADII = (1.0, 2.0, 3.0)  # Mahalanobis radii of the ellipses drawn
ELLIPSE_POINTS = 73
NOISE_SEED = 0  # the Monte Carlo noise is drawn once: moving q moves the estimate smoothly (common random numbers)
ESTIMATOR_REPLICATES = 100  # examples/reparameterization.py --replicates 100 prints the same table; fast enough to move
ESTIMATOR_SEED = 0  # ... with its default --seed 0
F0_RANGE = (0.0, 30.0)

# Two decoders for one x: W's columns orthogonal (the posterior is axis-aligned, a diagonal q can
# reach it and the KL reaches 0) or not (the posterior is tilted; the best diagonal q leaves a gap).
D = 5
S2 = 0.5
Z_TRUE = np.array([1.2, -0.9])  # x = W z_true, noise-free: the posterior sits near z_true


def _decoders():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.standard_normal((D, 2)))  # (D, 2) orthonormal columns u, v
    u, v = q[:, 0], q[:, 1]
    return {"orthogonal": np.stack([1.6 * u, 1.1 * v], axis=1),  # (D, 2)
            "correlated": np.stack([1.6 * u, 0.8 * u + 0.8 * v], axis=1)}


MODELS = tuple(_decoders())


def _ellipse(mean, cov, radius):
    """Points m + r L (cos t, sin t) of the ellipse {z : (z − m)ᵀ Σ⁻¹ (z − m) = r²}, Σ = L Lᵀ; (ELLIPSE_POINTS, 2)."""
    t = np.linspace(0.0, 2.0 * np.pi, ELLIPSE_POINTS)
    circle = np.stack([np.cos(t), np.sin(t)], axis=1)  # (P, 2)
    return mean + radius * circle @ np.linalg.cholesky(cov).T


def _rounded(a, digits=5):
    return np.round(np.asarray(a, dtype=float), digits).tolist()


def finite_or_none(value):
    """JSON has no NaN: a float, or None where the value is not a number (the LOO baseline at L = 1)."""
    value = float(value)
    return value if math.isfinite(value) else None


class Decomposition:
    """The decomposition (eq.13) and the bound L_K (eq.29) of one x under a linear-Gaussian decoder.

    Parameters
    ----------
    which : "orthogonal" or "correlated", the decoder (see :data:`MODELS`).
    """

    def __init__(self, which):
        W = _decoders()[which]
        self.which = which
        self.model = LinearGaussian(W, np.zeros(D), S2)
        self.x = W @ Z_TRUE  # (D,)
        self.log_px = self.model.log_evidence(self.x)
        self.post_mean, self.post_cov = self.model.posterior(self.x)
        self.best_mean, self.best_logvar = self.model.best_diagonal_q(self.x)
        self.best_gap = self.model.best_diagonal_gap()
        rng = np.random.default_rng(NOISE_SEED)
        self.eps_mc = rng.standard_normal((MC_SAMPLES, 2))  # (L, J)
        self.eps_iw = rng.standard_normal((REPLICATES, KS[-1], 2))  # (R, K, J)

    def problem(self):
        """What does not move with q: log p(x), the posterior and its contours, the best diagonal q, the ranges."""
        return {"model": self.which, "D": D, "J": 2, "s2": S2, "x": _rounded(self.x),
                "log_px": self.log_px,
                "posterior": {"mean": self.post_mean.tolist(), "cov": self.post_cov.tolist(),
                              "contours": [_rounded(_ellipse(self.post_mean, self.post_cov, r)) for r in CONTOUR_RADII]},
                "prior_contours": [_rounded(_ellipse(np.zeros(2), np.eye(2), r)) for r in CONTOUR_RADII],
                "best_q": {"mean": self.best_mean.tolist(), "logvar": self.best_logvar.tolist(), "kl": self.best_gap},
                "ranges": {"mean": MEAN_RANGE, "logvar": LOGVAR_RANGE}, "mc_samples": MC_SAMPLES}

    def log_weights(self, mean, logvar, eps):
        """log w = log p(x, z) − log q(z) for z = m + σ ⊙ ε (eq.27, eq.29), the shape of ``eps`` without J."""
        z, _ = reparameterize_forward(mean, logvar, eps)  # (..., J)
        return self.model.log_joint(self.x, z) - log_normal(z, mean, logvar)

    def _curve(self, mean, logvar, coord, axis):
        """ELBO and KL as one coordinate of q moves over its slider range, the others held."""
        lo, hi = MEAN_RANGE if coord == "mean" else LOGVAR_RANGE
        grid = np.linspace(lo, hi, CURVE_POINTS)  # (P,)
        means = np.tile(mean, (CURVE_POINTS, 1))  # (P, J)
        logvars = np.tile(logvar, (CURVE_POINTS, 1))  # (P, J)
        (means if coord == "mean" else logvars)[:, axis] = grid
        xs = np.broadcast_to(self.x, (CURVE_POINTS, D))
        elbo = self.model.elbo_diag(xs, means, logvars)
        kl = self.model.kl_to_posterior_diag(xs, means, logvars)
        return {"coord": coord, "axis": axis, "grid": _rounded(grid), "elbo": _rounded(elbo), "kl": _rounded(kl)}

    def decomposition(self, mean, logvar):
        """log p(x) = ELBO + KL(q ‖ p(z|x)) (eq.13) for q = N(mean, diag e^logvar), three independent computations."""
        mean, logvar = np.asarray(mean, float), np.asarray(logvar, float)
        log_w = self.log_weights(mean, logvar, self.eps_mc)  # (L,)
        cov = np.diag(np.exp(logvar))
        return {"mean": mean.tolist(), "logvar": logvar.tolist(), "log_px": self.log_px,
                "elbo": self.model.elbo_diag(self.x, mean, logvar),
                "kl": self.model.kl_to_posterior_diag(self.x, mean, logvar),
                "elbo_mc": float(bounds.elbo_from_log_weights(log_w)),
                "elbo_mc_se": float(np.std(log_w, ddof=1) / np.sqrt(MC_SAMPLES)),
                "q_contours": [_rounded(_ellipse(mean, cov, r)) for r in CONTOUR_RADII],
                "curves": [self._curve(mean, logvar, "mean", 0), self._curve(mean, logvar, "logvar", 0)]}

    def jensen(self, mean, logvar):
        """L_K (eq.29) for K in :data:`KS`: the mean of :data:`REPLICATES` draws and its standard error.

        Each draw of L_K uses the first K of one replicate's 4096 samples, so the curve is smooth in K.
        """
        mean, logvar = np.asarray(mean, float), np.asarray(logvar, float)
        log_w = self.log_weights(mean, logvar, self.eps_iw)  # (R, K)
        rows = []
        for K in KS:
            draws = bounds.iwae_bound(log_w[:, :K], axis=1)  # (R,)
            rows.append({"K": K, "mean": float(draws.mean()), "se": float(draws.std(ddof=1) / np.sqrt(REPLICATES))})
        return {"mean": mean.tolist(), "logvar": logvar.tolist(), "log_px": self.log_px,
                "elbo": self.model.elbo_diag(self.x, mean, logvar),
                "kl": self.model.kl_to_posterior_diag(self.x, mean, logvar),
                "replicates": REPLICATES, "bounds": rows}


def estimators(f0=est.F0, replicates=ESTIMATOR_REPLICATES, seed=ESTIMATOR_SEED, noise=None):
    """The table ``examples/reparameterization.py --replicates R --seed S`` prints (for f0 = 10), as a dict.

    ``noise``: :func:`scratchvae.lab.estimators.draw_noise` of ``default_rng(seed)``, drawn once by the server.
    """
    table, _ = est.compare(est.MU, est.LOGVAR, est.SAMPLE_COUNTS, replicates, np.random.default_rng(seed), f0,
                           noise)
    g_mu, g_v = est.exact_gradient(est.MU, est.LOGVAR)
    return {"f0": f0, "L": list(est.SAMPLE_COUNTS), "replicates": replicates, "seed": seed,
            "mu": est.MU.tolist(), "var": np.exp(est.LOGVAR).tolist(),
            "E_f": est.expected_f(est.MU, est.LOGVAR, f0), "exact_mu": g_mu.tolist(), "exact_logvar": g_v.tolist(),
            "reparameterization_var_mu_exact": [est.reparameterization_variance_mu(est.LOGVAR, L)
                                                for L in est.SAMPLE_COUNTS],
            "table": {e: {k: [finite_or_none(v) for v in vals] for k, vals in row.items()}
                      for e, row in table.items()}}


class Trained:
    """A checkpoint's test points in latent space, and its decoder's mean image at a point of that plane.

    Parameters
    ----------
    model : scratchvae.model.VAE
    state : dict, the training state of the checkpoint (its data set, binarization)
    dataset : scratchvae.data.datasets.Dataset
    max_points : int, test images shown (the first ones, as ``latent.png``)

    Notes
    -----
    With J > 2 latent dimensions the plane is spanned by the two most active units (largest A_u,
    eq.45); the other coordinates of z are held at the mean of the encoder means.
    """

    def __init__(self, model, state, dataset, source_name, max_points=2000):
        from ..data.datasets import BatchSource, image_shape_of
        from ..training.diagnostics import active_units
        from ..training.plots import PLOT_SEED

        self.model, self.source_name = model, source_name
        J = model.config.latent_dim
        bernoulli = model.config.likelihood == "bernoulli"
        test = BatchSource(dataset, "test", state.get("binarize", "dynamic") if bernoulli else "none", model.dtype)
        idx = np.arange(min(len(test), max_points))
        mu, _ = model.encode(test.batch(idx, np.random.default_rng(PLOT_SEED)))  # (N, J), as latent.png
        _, variances = active_units(mu)
        self.axes = [0, 1] if J == 2 else ([0] if J == 1 else sorted(np.argsort(-variances)[:2].tolist()))
        self.base = mu.mean(axis=0).astype(np.float64)  # (J,) the coordinates off the plane
        self.mu = mu.astype(np.float64)
        self.labels = None if test.labels is None else test.labels[idx]
        self.class_names = dataset.class_names
        self.activity = variances.astype(np.float64)
        self.image_shape = tuple(image_shape_of(state.get("dataset"), model.config.data_dim))

    @classmethod
    def from_run(cls, path, data_dir=None):
        """The view of a run folder (its ``model.npz``) or of a checkpoint file; ValueError if it is neither."""
        from ..data.datasets import load_dataset
        from ..training.checkpoint import load_checkpoint

        ckpt = os.path.join(path, "model.npz") if os.path.isdir(path) else path
        if not os.path.isfile(ckpt):
            what = "holds no model.npz" if os.path.isdir(path) else "does not exist"
            raise ValueError(f"{path} {what}: give a run folder written by scratchvae train, or its model.npz")
        model, _, state = load_checkpoint(ckpt)
        dataset = load_dataset(state["dataset"], data_dir)
        if dataset.data_dim != model.config.data_dim:
            raise ValueError(f"{ckpt}: the model takes {model.config.data_dim} pixels, "
                             f"data set {state['dataset']} has {dataset.data_dim}")
        return cls(model, state, dataset, f"{ckpt} ({state['dataset']}, J = {model.config.latent_dim})")

    def z_of(self, a, b=0.0):
        """The latent (J,) at plane coordinates (a, b)."""
        z = self.base.copy()
        z[self.axes[0]] = a
        if len(self.axes) > 1:
            z[self.axes[1]] = b
        return z

    def points(self):
        pts = self.mu[:, self.axes]
        if pts.shape[1] == 1:
            pts = np.column_stack([pts[:, 0], np.zeros(len(pts))])
        return {"source": self.source_name, "J": int(self.model.config.latent_dim), "axes": self.axes,
                "activity": _rounded(self.activity[self.axes], 6), "points": _rounded(pts, 4),
                "labels": None if self.labels is None else [int(k) for k in self.labels],
                "class_names": None if self.class_names is None else list(self.class_names),
                "image_shape": list(self.image_shape), "likelihood": self.model.config.likelihood}

    def decode(self, a, b):
        """E[x|z] (the decoder's mean image) at the plane point (a, b)."""
        z = self.z_of(a, b)
        image = self.model.mean_image(z[None, :].astype(self.model.dtype))[0]  # (D,)
        return {"z": z.tolist(), "plane": [a, b], "image": np.asarray(image, np.float64).tolist(),
                "image_shape": list(self.image_shape)}


def estimator_noise(replicates=ESTIMATOR_REPLICATES, seed=ESTIMATOR_SEED):
    """The noise :func:`estimators` reuses as f0 moves: what ``compare`` would draw from ``default_rng(seed)``."""
    return est.draw_noise(est.SAMPLE_COUNTS, replicates, est.MU.size, np.random.default_rng(seed))

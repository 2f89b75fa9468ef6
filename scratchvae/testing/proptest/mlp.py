"""Your real model: an MLP encoder and decoder whose evidence is known to measured accuracy.

The reference family has the layout of the pytorch/examples VAE (``vae/main.py``,
BSD-3-Clause), with PyTorch's names and shapes (``nn.Linear``: weight (out, in),
bias (out,)):

    fc1  D -> H, act;   fc21 H -> J (μ);   fc22 H -> J (v = log σ²)      q(z|x), eq.18
    fc3  J -> H, act;   fc4  H -> D: Bernoulli logits (eq.41) or a Gaussian mean
                        with the log-variance ``params["dec_logvar"]`` (eq.43)

with act ReLU (the example's) or tanh, J = 1 or 2, and a prior N(0, I) (eq.19).
At J ≤ 2 the evidence log p(x), E_q[ELBO] and KL(q‖p(z|x)) come from adaptive
quadrature (:mod:`.quadrature`), each with its error estimated per case;
``log_weights`` at given noise is exact. The properties of kinds ``mlp-elbo``
and ``mlp-iwae`` check your own loss function, in your own framework, against
these (docs/proptest.md, "Test your real model").

Your function receives ``(x, eps, params)``: x (N, D), eps (L, N, J), params
the NumPy arrays of the state dict (``fc1.weight`` …, plus ``dec_logvar`` for a
Gaussian decoder). It returns one ELBO (or L_K) per point, or, declared with
:func:`reduced`, the batch total or mean of your loss.

Shape letters: N data points, D data dimensions, H hidden units, J latent
dimensions, L (or K) samples, R replications, M quadrature nodes.
"""
import dataclasses

import numpy as np
from hypothesis import strategies as st

from ...bounds import log_mean_exp
from ...distributions import gaussian_kl_forward, gaussian_loglik_forward, bernoulli_loglik_forward, log_normal, \
    reparameterize_forward
from ...ops import activation_forward, dense_forward
from . import quadrature
from .calling import PropertyFailure, _as_numpy, _call, _estimate
from .properties import KINDS, R_REPLICATIONS, Z_TOL, Property

# ---------------------------------------------------------- value ranges drawn
MAX_N, MAX_D, MAX_H, MAX_J, MAX_L, MAX_K = 3, 16, 8, 2, 4, 8
# Weights up to this many times PyTorch's initial bound 1/sqrt(fan_in). Over 300 drawn cases the logits at 200
# samples of q stayed below 5 in size: a loss written on probabilities (sigmoid, then BCE) keeps float64
# precision. (Logits of hundreds are the stability group's business, not this family's.)
WEIGHT_SCALE = 1.5
BIAS_MAX = 1.0
LOGVAR_BIAS = (-2.0, 1.0)  # fc22's bias: σ² from 0.14 to 2.7 before the weights move it
DEC_LOGVAR_RANGE = (-2.0, 1.0)  # the Gaussian decoder's log s²
DATA_MAX = 3.0  # |x| for the Gaussian decoder; the Bernoulli decoder's x are 0 or 1
# Round-off of the exact quantities: a log-sum-exp or a weighted mean of ≤ 16,641 float64 terms of size
# ≤ ~100 nats is exact to ~1e-11; 1e-9 per nat of size is a safe bound beside the quadrature error.
ROUNDOFF = 1e-9
# A function declared with reduced() returns one number per batch, so each replication is one call of your
# code: 100 of them instead of R_REPLICATIONS keeps a PyTorch module within seconds per property. The
# tolerance is still Z_TOL of their standard error (a t with 99 degrees of freedom: P(|t| > 6) < 1e-7).
REDUCED_REPLICATIONS = 100
LIKELIHOODS = ("bernoulli", "gaussian")
NAMES = ("fc1.weight", "fc1.bias", "fc21.weight", "fc21.bias", "fc22.weight", "fc22.bias",
         "fc3.weight", "fc3.bias", "fc4.weight", "fc4.bias")

_FLOATS = dict(allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)


# ------------------------------------------------------------ the forward pass
def _linear(params, name, a):
    """nn.Linear: a @ weightᵀ + bias, through the package's dense layer (eq.37)."""
    return dense_forward(a, params[f"{name}.weight"].T, params[f"{name}.bias"])[0]


def encode(params, x, activation="relu"):
    """μ and v = log σ² of q(z|x) (eq.18), each (N, J): fc1, act, then the heads fc21 and fc22."""
    h, _ = activation_forward(activation, _linear(params, "fc1", x))  # (N, H)
    return _linear(params, "fc21", h), _linear(params, "fc22", h)


def decode(params, z, activation="relu"):
    """The decoder's output for z (..., J): logits (Bernoulli) or the mean (Gaussian), (..., D)."""
    h, _ = activation_forward(activation, _linear(params, "fc3", z))  # (..., H)
    return _linear(params, "fc4", h)


def log_likelihood(params, x, z, activation="relu", likelihood="bernoulli"):
    """log p(x|z) summed over D (eq.41 or eq.43): x (N, D), z (..., N, J) -> (..., N)."""
    out = decode(params, z, activation)
    if likelihood == "bernoulli":
        return bernoulli_loglik_forward(x, out)[0]
    return gaussian_loglik_forward(x, out, params["dec_logvar"])[0]


def state_dict(params):
    """The arrays of the pytorch/examples VAE's state dict (``fc1.weight`` …), float64 NumPy, C-contiguous.

    Turn them into tensors with ``{k: torch.from_numpy(v) for k, v in state_dict(params).items()}`` and
    ``module.load_state_dict(...)``; into JAX arrays with ``jnp.asarray``.
    """
    return {k: np.ascontiguousarray(params[k], dtype=np.float64) for k in NAMES}


# ------------------------------------------------------------------ the case
def _show(a):
    text = np.array2string(np.asarray(a), precision=3, separator=",", suppress_small=True, max_line_width=10_000)
    return text.replace("\n", "").replace(", [", ",[")


@dataclasses.dataclass
class MLPCase:
    """One drawn problem of the MLP family: data, the weights, sizes and a noise seed.

    The interface of the kit's cases: ``x``, ``params``, ``L``, ``seed``, ``sizes``, ``shape``,
    ``describe``, ``log_evidence``, ``exact_elbo``, ``kl_to_posterior``, ``log_weights``, ``abs_tol``,
    ``noise``. The quadrature runs once per case, on first use.
    """

    x: np.ndarray  # (N, D)
    params: dict
    L: int  # samples per point (K for the IWAE properties)
    seed: int
    activation: str = "relu"
    likelihood: str = "bernoulli"
    _exact: dict = dataclasses.field(default=None, init=False, repr=False, compare=False)  # dataclasses.replace resets it

    @property
    def sizes(self):
        N, D = self.x.shape
        return N, D, self.params["fc21.weight"].shape[0]

    @property
    def shape(self):
        """(N, D, J, L): the sizes a report shows."""
        return self.sizes + (self.L,)

    def encode(self):
        return encode(self.params, self.x, self.activation)

    def describe(self, letter="L"):
        N, D, J = self.sizes
        mu, logvar = self.encode()
        weights = " ".join(f"{k}={_show(self.params[k])}" for k in NAMES[6:])  # the decoder: fc3, fc4
        extra = f" s2={float(np.exp(self.params['dec_logvar'])):.3g}" if self.likelihood == "gaussian" else ""
        return (f"N={N} D={D} J={J} H={self.params['fc1.weight'].shape[0]} {letter}={self.L} "
                f"({self.activation}, {self.likelihood}): x={_show(self.x)} mu={_show(mu)} logvar={_show(logvar)} "
                f"{weights}{extra}")

    def noise(self, L, rows, rng):
        """Standard normal ε, (L, rows, J)."""
        return rng.standard_normal((L, rows, self.sizes[2]))

    def log_joint(self, z):
        """log p(x, z) = log p(x|z) + log p(z) (eq.2, eq.19): z (..., N, J) -> (..., N)."""
        ll = log_likelihood(self.params, self.x, z, self.activation, self.likelihood)
        return ll + log_normal(z, 0.0, np.zeros(z.shape[-1]))

    def log_weights(self, eps):
        """log w_k = log p(x, z_k) − log q(z_k|x) at z_k = μ + σ ⊙ ε_k (eq.29), exact: eps (K, N, J) -> (K, N)."""
        mu, logvar = self.encode()
        z, _ = reparameterize_forward(mu, logvar, eps)  # (K, N, J)
        return self.log_joint(z) - log_normal(z, mu, logvar)

    def _loglik(self, n):
        """z (M, J) -> log p(x_n|z) (M,)."""
        xn = self.x[n:n + 1]
        return lambda z: log_likelihood(self.params, xn, z[:, None, :], self.activation, self.likelihood)[:, 0]

    def _quadrature(self, what):
        """Per point, by quadrature with its error: "log_px" (eq.1) or "recon", E_q[log p(x|z)] (eq.17)."""
        if self._exact is None:
            self._exact = {}
        if what not in self._exact:
            N, _, J = self.sizes
            mu, logvar = self.encode()
            log_prior = np.zeros(J)
            runs = []
            for n in range(N):
                ll = self._loglik(n)
                if what == "log_px":
                    runs.append(quadrature.log_integral(lambda z: ll(z) + log_normal(z, 0.0, log_prior), J))
                else:
                    runs.append(quadrature.gaussian_expectation(ll, mu[n], np.exp(0.5 * logvar[n])))
            self._exact[what] = (np.array([r[0] for r in runs]), np.array([r[1] for r in runs]))
        return self._exact[what]

    def log_evidence(self):
        """log p(x) = log ∫ p(x|z) p(z) dz (eq.1) by quadrature, (N,)."""
        return self._quadrature("log_px")[0]

    def exact_elbo(self):
        """E_q[ELBO] = E_q[log p(x|z)] − KL(q ‖ p(z)) (eq.17, eq.23), (N,)."""
        mu, logvar = self.encode()
        return self._quadrature("recon")[0] - gaussian_kl_forward(mu, logvar)[0]

    def kl_to_posterior(self):
        """KL(q ‖ p(z|x)) = log p(x) − E_q[ELBO] (eq.13), (N,)."""
        return self.log_evidence() - self.exact_elbo()

    def abs_tol(self):
        """The absolute error of the exact quantities above, (N,): both quadratures' estimates plus round-off."""
        tol = 0.0
        for what in ("log_px", "recon"):
            value, err = self._quadrature(what)
            tol = tol + err + ROUNDOFF * (1.0 + np.abs(value))
        return tol


# ---------------------------------------------------------------- strategies
def _unit(draw):
    return draw(st.floats(0.0, 1.0, **_FLOATS))


def _layer(rng, draw, params, name, fan_in, fan_out, bias=(-BIAS_MAX, BIAS_MAX)):
    """A layer's weight and bias: a drawn scale in [0, 1] (it shrinks to 0) times uniform values of the seed."""
    bound = WEIGHT_SCALE / np.sqrt(fan_in)
    params[f"{name}.weight"] = _unit(draw) * rng.uniform(-bound, bound, (fan_out, fan_in))
    params[f"{name}.bias"] = _unit(draw) * rng.uniform(*bias, fan_out)


@st.composite
def mlp_cases(draw, samples=(1, MAX_L), activation="relu", likelihood="bernoulli", min_N=1, max_N=MAX_N,
              max_D=MAX_D, max_H=MAX_H, max_J=MAX_J):
    """Hypothesis strategy: an :class:`MLPCase` of the pytorch/examples layout.

    Sizes, a seed and one scale per array are drawn; the values are the scale
    times uniform numbers from the seed (a few dozen draws per case, so the
    search and the shrinking stay fast). Everything shrinks to the smallest
    sizes (N = 1, D = H = J = 1), zero weights (the decoder then ignores z and
    the posterior is the prior) and x = 0.
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; choose from {', '.join(LIKELIHOODS)}")
    D = draw(st.integers(1, max_D))
    H = draw(st.integers(1, max_H))
    J = draw(st.integers(1, max_J))
    N = draw(st.integers(min_N, max_N))
    L = draw(st.integers(*samples))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = {}
    _layer(rng, draw, p, "fc1", D, H)
    _layer(rng, draw, p, "fc21", H, J)
    _layer(rng, draw, p, "fc22", H, J, bias=LOGVAR_BIAS)
    _layer(rng, draw, p, "fc3", J, H)
    _layer(rng, draw, p, "fc4", H, D)
    if likelihood == "gaussian":
        p["dec_logvar"] = np.array(draw(st.floats(*DEC_LOGVAR_RANGE, **_FLOATS)))
        x = _unit(draw) * rng.uniform(-DATA_MAX, DATA_MAX, (N, D))
    else:
        x = (rng.random((N, D)) < _unit(draw)).astype(np.float64)  # binary; P(x_d = 1) shrinks to 0
    seed = draw(st.integers(0, 2**32 - 1))
    return MLPCase(x=x, params=p, L=L, seed=seed, activation=activation, likelihood=likelihood)


# ------------------------------------------- functions that return a batch total
class Reduced:
    """A function returning the batch total (or mean) of an ELBO or a loss, declared as such.

    Made by :func:`reduced`. The properties call it once per batch (the
    estimate of a batch of N points is then compared with the sum of the
    exact per-point values); called as ``fn(x, eps, params)`` it returns the
    per-point values (each point as a batch of one), so it runs under every
    kind of the kit.
    """

    def __init__(self, fn, reduction="sum", loss=False):
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        self.fn, self.reduction, self.sign = fn, reduction, -1.0 if loss else 1.0
        self.__name__ = getattr(fn, "__name__", "reduced")

    def total(self, x, eps, params):
        """Σ_n ELBO_n of this batch, from the user's value: −loss for a loss, × N for a mean."""
        arr = _as_numpy(_call(self.fn, x, eps, params))
        if arr.size != 1:
            raise PropertyFailure(f"returned shape {arr.shape}; declared reduction={self.reduction!r}, so one "
                                  f"number for the batch of {x.shape[0]} point(s) was expected")
        value = self.sign * float(arr.reshape(())) * (x.shape[0] if self.reduction == "mean" else 1)
        if not np.isfinite(value):
            raise PropertyFailure("returned NaN or Inf")
        return value

    def __call__(self, x, eps, params):
        return np.array([self.total(x[n:n + 1], eps[:, n:n + 1], params) for n in range(x.shape[0])])


def reduced(fn, reduction="sum", loss=False):
    """Declare that ``fn(x, eps, params)`` returns one number for the batch, not one per point.

    Parameters
    ----------
    fn : your adapter.
    reduction : "sum" (Σ_n over the batch, as the pytorch/examples ``loss_function``)
        or "mean" (averaged over the N points of the batch).
    loss : True when fn returns the loss, the negated ELBO (or −L_K): ELBO = −loss.

    Example: ``proptest.check(reduced(my_loss, "sum", loss=True), kind="mlp-elbo")``.
    """
    return Reduced(fn, reduction, loss)


# ------------------------------------------------------------- the properties
def _values(fn, case, eps):
    """Estimates at the noise eps (R, L, N, J): (R, N) per point, or (R, 1) batch totals for a :class:`Reduced`."""
    R, L, N, J = eps.shape
    if isinstance(fn, Reduced):
        return np.array([[fn.total(case.x, e, case.params)] for e in eps])
    x_rep = np.tile(case.x, (R, 1))  # (R·N, D): row r·N + n is x_n
    flat = eps.transpose(1, 0, 2, 3).reshape(L, R * N, J)  # its noise is eps[r, :, n]
    return _estimate(fn, x_rep, flat, case.params, tiled=(N, R)).reshape(R, N)


def _per(fn, a):
    """An exact per-point quantity (N,) in the unit of :func:`_values`: summed over the batch for a Reduced."""
    a = np.asarray(a, dtype=np.float64)
    return a.sum(keepdims=True) if isinstance(fn, Reduced) else a


def _scale(*terms):
    return np.maximum(1.0, sum(np.abs(np.asarray(t, float)) for t in terms))


def _fmt(a):
    a = np.atleast_1d(np.asarray(a, float))
    return np.array2string(a, precision=4, separator=",", max_line_width=10_000) if a.size > 1 else f"{a[0]:.6g}"


def _monte_carlo(fn, case, L):
    """Mean and standard error of R independent estimates with L samples each (R_REPLICATIONS, or
    REDUCED_REPLICATIONS batch calls for a :class:`Reduced`)."""
    N, _, J = case.sizes
    R = REDUCED_REPLICATIONS if isinstance(fn, Reduced) else R_REPLICATIONS
    rng = np.random.default_rng(case.seed)
    est = _values(fn, case, case.noise(L, R * N, rng).reshape(L, R, N, J).transpose(1, 0, 2, 3))
    return est.mean(axis=0), est.std(axis=0, ddof=1) / np.sqrt(len(est))


def _tol(fn, case, se, opt, *terms):
    """Z_TOL standard errors + the case's abs_tol() (the quadrature error) + the exact properties' rtol."""
    return Z_TOL * se + _per(fn, case.abs_tol()) + opt["rtol"] * _scale(*terms)


def _below_evidence(fn, case, opt, what="E[ELBO]"):
    mean, se = _monte_carlo(fn, case, case.L)
    log_px = _per(fn, case.log_evidence())
    if np.any(mean - log_px > _tol(fn, case, se, opt, mean, log_px)):
        raise PropertyFailure(f"{what} − log p(x) = {_fmt(mean - log_px)} > 0 (standard error {_fmt(se)}, "
                              f"quadrature error {_fmt(_per(fn, case.abs_tol()))})")


def _gap_is_kl(fn, case, opt):
    mean, se = _monte_carlo(fn, case, 1)
    log_px, kl = _per(fn, case.log_evidence()), _per(fn, case.kl_to_posterior())
    if np.any(np.abs(log_px - mean - kl) > _tol(fn, case, se, opt, mean, log_px, kl)):
        raise PropertyFailure(f"log p(x) − E[ELBO] = {_fmt(log_px - mean)}, KL(q‖p(z|x)) = {_fmt(kl)} "
                              f"(standard error {_fmt(se)})")


def _matches_exact_elbo(fn, case, opt, what="mean of estimates"):
    mean, se = _monte_carlo(fn, case, case.L)
    exact = _per(fn, case.exact_elbo())
    if np.any(np.abs(mean - exact) > _tol(fn, case, se, opt, mean, exact)):
        raise PropertyFailure(f"{what} = {_fmt(mean)}, E_q[ELBO] by quadrature = {_fmt(exact)} "
                              f"(standard error {_fmt(se)})")


def _averages_samples(fn, case, opt):
    N, _, J = case.sizes
    eps = case.noise(case.L, N, np.random.default_rng(case.seed))  # (L, N, J)
    together = _values(fn, case, eps[None])[0]
    alone = _values(fn, case, eps[:, None])  # (L, ·): sample l by itself, L = 1
    if np.any(np.abs(together - alone.mean(axis=0)) > opt["rtol"] * _scale(together, alone.mean(axis=0))):
        raise PropertyFailure(f"estimate with L={case.L} = {_fmt(together)}, mean of the {case.L} one-sample "
                              f"estimates at the same noise = {_fmt(alone.mean(axis=0))}")


def _batch_is_sum_of_points(fn, case, opt):
    N, _, J = case.sizes
    eps = case.noise(case.L, N, np.random.default_rng(case.seed))  # (L, N, J)
    batch = _values(fn, case, eps[None])[0]
    points = []
    for n in range(N):
        one = dataclasses.replace(case, x=case.x[n:n + 1])
        points.append(_values(fn, one, eps[None, :, n:n + 1])[0])
    points = np.concatenate(points)  # (N,) per point, each a batch total of one point for a Reduced
    alone = points.sum(keepdims=True) if isinstance(fn, Reduced) else points
    if np.any(np.abs(batch - alone) > opt["rtol"] * _scale(batch, alone)):
        how = "the sum of" if isinstance(fn, Reduced) else ""
        raise PropertyFailure(f"on the batch of {N}: {_fmt(batch)}; {how} each point alone: {_fmt(alone)}")


def _iwae_is_log_mean_exp(fn, case, opt):
    N, _, J = case.sizes
    eps = case.noise(case.L, N, np.random.default_rng(case.seed))  # (K, N, J)
    bound = _values(fn, case, eps[None])[0]
    log_w = case.log_weights(eps)  # (K, N), exact
    exact = _per(fn, log_mean_exp(log_w, axis=0))
    if np.any(np.abs(bound - exact) > opt["rtol"] * _scale(bound, exact, np.abs(log_w).max(axis=0).sum())):
        raise PropertyFailure(f"L_K = {_fmt(bound)}, log (1/K) Σ_k w_k of this model's K={case.L} weights at the "
                              f"same noise = {_fmt(exact)}")


def _iwae_k1_is_elbo(fn, case, opt):
    _matches_exact_elbo(fn, case, opt, what="E[L_1]")


def mlp_properties(kind, activation="relu", likelihood="bernoulli"):
    """The property tuple of ``kind`` ("elbo" or "iwae") on the MLP family with this activation and likelihood."""
    def cases(**kw):
        return mlp_cases(activation=activation, likelihood=likelihood, **kw)

    if kind == "elbo":
        return (
            Property("mlp_elbo_below_evidence", "eq.14", "E[ELBO] ≤ log p(x), log p(x) by quadrature",
                     cases(samples=(1, 1)), _below_evidence),
            Property("mlp_gap_is_kl_to_posterior", "eq.13", "log p(x) − E[ELBO] = KL(q‖p(z|x))",
                     cases(samples=(1, 1)), _gap_is_kl),
            Property("mlp_unbiased", "eq.20", "the mean of many estimates is E_q[ELBO], for every L",
                     cases(samples=(1, MAX_L)), _matches_exact_elbo),
            Property("mlp_averages_samples", "eq.20", "the estimate from L samples is the mean of the L "
                     "one-sample estimates (so its variance falls as 1/L)", cases(samples=(2, MAX_L)),
                     _averages_samples),
            Property("mlp_batch_is_sum_of_points", "eq.20", "a batch's estimates are its points' estimates",
                     cases(samples=(1, 2), min_N=2), _batch_is_sum_of_points),
        )
    if kind == "iwae":
        return (
            Property("mlp_iwae_is_log_mean_exp", "eq.29", "L_K is log (1/K) Σ_k w_k of this model's weights at "
                     "the given noise", cases(samples=(1, MAX_K)), _iwae_is_log_mean_exp),
            Property("mlp_iwae_k1_is_elbo", "eq.32", "E[L_1] is E_q[ELBO] by quadrature",
                     cases(samples=(1, 1)), _iwae_k1_is_elbo),
            Property("mlp_iwae_below_evidence", "eq.31", "E[L_K] ≤ log p(x) by quadrature",
                     cases(samples=(1, MAX_K)), lambda fn, case, opt: _below_evidence(fn, case, opt, "E[L_K]")),
            Property("mlp_iwae_batch_is_sum_of_points", "eq.29", "a batch's bounds are its points' bounds",
                     cases(samples=(1, 2), min_N=2), _batch_is_sum_of_points),
        )
    raise ValueError(f"unknown kind {kind!r}; choose from elbo, iwae")


def register(activation="relu", likelihood="bernoulli", prefix=None):
    """Add the kinds ``{prefix}-elbo`` and ``{prefix}-iwae`` for this member of the family; returns their names.

    ``prefix`` defaults to ``mlp-{activation}-{likelihood}``; ``mlp-elbo`` and
    ``mlp-iwae`` (the pytorch/examples VAE: ReLU, Bernoulli) are registered on import.
    """
    prefix = prefix or f"mlp-{activation}-{likelihood}"
    names = (f"{prefix}-elbo", f"{prefix}-iwae")
    for name, kind in zip(names, ("elbo", "iwae")):
        KINDS[name] = mlp_properties(kind, activation, likelihood)
    return names


register("relu", "bernoulli", prefix="mlp")


# ----------------------------------------------------- scratchvae's own MLP VAE
def _scratchvae_mlp(params, activation):
    """scratchvae's VAE (one hidden layer each side, float64) holding the kit's weights."""
    from ...io import interop
    from ...model import VAE, VAEConfig

    D, J, H = params["fc4.weight"].shape[0], params["fc21.weight"].shape[0], params["fc1.weight"].shape[0]
    config = VAEConfig(data_dim=D, latent_dim=J, hidden=(H,), decoder_hidden=(H,), activation=activation,
                       dtype="float64")
    model, _ = interop.from_state_dict(state_dict(params), interop.export_metadata(config))
    if "dec_logvar" not in params:
        return model
    gaussian = VAE(dataclasses.replace(config, likelihood="gaussian", gaussian_variance="fixed",
                                       fixed_logvar=float(params["dec_logvar"])), np.random.default_rng(0))
    gaussian.params.update(model.params)  # the same names and shapes; a fixed variance adds none
    return gaussian


def scratchvae_mlp_adapters(activation="relu"):
    """(elbo, iwae): adapters of scratchvae's own MLP VAE (``VAE.elbo``, ``VAE.iwae``) for the MLP kinds."""
    def elbo(x, eps, params):
        return _scratchvae_mlp(params, activation).elbo(x, eps, grads=False)[0].elbo

    def iwae(x, eps, params):
        return _scratchvae_mlp(params, activation).iwae(x, eps, grads=False)[0].bound

    return elbo, iwae


scratchvae_mlp_elbo, scratchvae_mlp_iwae = scratchvae_mlp_adapters("relu")

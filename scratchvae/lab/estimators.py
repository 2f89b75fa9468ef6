"""The reparameterization trick against the score-function estimator (eq.25-eq.28), on a known answer.

We want the gradient of E_{q(z)}[f(z)] with respect to the parameters of
q = N(μ, diag e^v) (eq.18). Three unbiased Monte Carlo estimators, from L
samples z_l = μ + σ ⊙ ε_l, σ = e^{v/2}, ε_l ~ N(0, I):

- reparameterization (eq.27, eq.28): z is a deterministic, differentiable
  function of (μ, v) and the noise, so differentiate through it:
    ∇_μ ≈ (1/L) Σ_l ∇f(z_l),   ∇_v ≈ (1/L) Σ_l ∇f(z_l) ⊙ ε_l ⊙ ½ σ
  (:func:`scratchvae.distributions.reparameterize_forward` / ``_backward``);
- score function (REINFORCE, the log-derivative trick, eq.25, eq.26): ∇E_q[f] = E_q[f ∇log q]:
    ∇_μ ≈ (1/L) Σ_l f(z_l) ε_l / σ,   ∇_v ≈ (1/L) Σ_l f(z_l) ½ (ε_l² − 1);
- score function with a leave-one-out baseline: f(z_l) replaced by
  f(z_l) − b_l, b_l the mean of f over the other L − 1 samples; still
  unbiased (b_l does not depend on z_l and E[∇log q] = 0), defined for L ≥ 2.

For a quadratic f(z) = (z − c)ᵀ A (z − c) + f0 the exact answer is known:
  E_q[f] = (μ − c)ᵀ A (μ − c) + Σ_j A_jj e^{v_j} + f0,
  ∇_μ = 2 A (μ − c),   ∇_{v_j} = A_jj e^{v_j}.
The constant f0 changes nothing in the gradient, or in the reparameterization
estimator, but the score-function estimator multiplies it by the noisy score:
that is where most of its variance comes from, and what a baseline removes.

The one home of these estimators: ``examples/reparameterization.py`` prints
their table and ``scratchvae lab`` draws it.

Shape letters: L samples per estimate, R replications, J latent dimensions.
"""
import numpy as np

from ..distributions import reparameterize_backward, reparameterize_forward

SAMPLE_COUNTS = (1, 10, 100, 1000)
ESTIMATORS = ("reparameterization", "score function", "score function + LOO baseline")
CHUNK = 500_000  # R·L samples per batch of replications, bounds memory

MU = np.array([0.5, -1.0, 0.3])  # (J,)
LOGVAR = np.log(np.array([0.5, 1.0, 2.0]))  # (J,)
C = np.array([1.0, 0.5, -1.0])  # (J,)
A = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]])  # (J, J) symmetric positive definite
F0 = 10.0


def f_and_grad(z, f0=F0):
    """f(z) = (z − c)ᵀ A (z − c) + f0 over the last axis, and ∇f(z) = 2 A (z − c) (the shape of ``z``)."""
    d = z - C  # (..., J)
    Ad = d @ A  # (..., J), A symmetric
    return np.sum(Ad * d, axis=-1) + f0, 2.0 * Ad


def f(z, f0=F0):
    """f(z) = (z − c)ᵀ A (z − c) + f0 over the last axis."""
    return f_and_grad(z, f0)[0]


def grad_f(z):
    """∇f(z) = 2 A (z − c), the shape of ``z``."""
    return f_and_grad(z)[1]


def expected_f(mu, logvar, f0=F0):
    """E_q[f] = (μ − c)ᵀ A (μ − c) + Σ_j A_jj e^{v_j} + f0, exactly."""
    return float((mu - C) @ A @ (mu - C) + np.diag(A) @ np.exp(logvar) + f0)


def exact_gradient(mu, logvar):
    """∇_μ E_q[f] = 2 A (μ − c) and ∇_v E_q[f] = diag(A) e^v, each (J,)."""
    return 2.0 * A @ (mu - C), np.diag(A) * np.exp(logvar)


def reparameterization_variance_mu(logvar, L):
    """Exact total variance of the reparameterization estimate of ∇_μ from L samples.

    Notes
    -----
    The estimate is (1/L) Σ_l 2 A (z_l − c) with Cov z = S = diag e^v, so its
    covariance is 4 A S A / L and its trace 4 tr(A S A) / L.
    """
    return float(4.0 * np.trace(A @ np.diag(np.exp(logvar)) @ A) / L)


def estimates(mu, logvar, eps, f0=F0):
    """All three estimators from the same noise.

    Parameters
    ----------
    mu, logvar : (J,) arrays
    eps : (L, R, J) standard normal noise: R independent estimates from L samples each
    f0 : float, the constant of f

    Returns
    -------
    dict estimator -> (dmu, dlogvar), each (R, J); the LOO baseline is NaN when L = 1
    """
    L, R, J = eps.shape
    mu_r = np.broadcast_to(mu, (R, J))
    logvar_r = np.broadcast_to(logvar, (R, J))
    z, cache = reparameterize_forward(mu_r, logvar_r, eps)  # (L, R, J), eq.27
    fz, gz = f_and_grad(z, f0)  # (L, R), (L, R, J)
    # reparameterization: backpropagate ∇f(z)/L through z = μ + σ ⊙ ε (summed over the L samples)
    rep = reparameterize_backward(gz / L, cache)
    # score function: ∇_μ log q = ε/σ, ∇_v log q = ½ (ε² − 1)  (eq.26)
    std = np.exp(0.5 * logvar)  # (J,)
    score_mu, score_v = eps / std, 0.5 * (eps * eps - 1.0)  # (L, R, J)
    fz = fz[..., None]  # (L, R, 1)
    sf = ((fz * score_mu).mean(axis=0), (fz * score_v).mean(axis=0))
    if L > 1:
        baseline = (fz.sum(axis=0) - fz) / (L - 1)  # (L, R, 1), mean of the other L − 1 samples
        centred = fz - baseline
        loo = ((centred * score_mu).mean(axis=0), (centred * score_v).mean(axis=0))
    else:
        loo = (np.full((R, J), np.nan), np.full((R, J), np.nan))
    return dict(zip(ESTIMATORS, (rep, sf, loo)))


def draw_noise(counts, replicates, J, rng):
    """The standard normal noise :func:`compare` uses: for each L, chunks (L, r, J) of the R replications."""
    return [[rng.standard_normal((L, min(max(1, CHUNK // L), replicates - start), J))
             for start in range(0, replicates, max(1, CHUNK // L))] for L in counts]


def compare(mu, logvar, counts, replicates, rng, f0=F0, noise=None):
    """Variance and mean error of each estimator for each sample count L.

    ``noise`` (from :func:`draw_noise` with the same counts and replicates) is drawn from ``rng``
    when not given; passing it lets the lab move f0 without drawing again.

    Returns
    -------
    table : dict estimator -> dict of lists over L: ``var_mu``, ``var_logvar``
        (trace of the covariance over the R replications), ``bias_z`` (max over
        the 2J coordinates of |mean − exact| / standard error), ``mse``
    first : dict estimator -> (R, J) single-sample (L = 1) estimates of ∇_μ, for the histogram
    """
    g_mu, g_v = exact_gradient(mu, logvar)
    J = mu.size
    table = {e: {"var_mu": [], "var_logvar": [], "bias_z": [], "mse": []} for e in ESTIMATORS}
    first = {}
    if noise is None:
        noise = draw_noise(counts, replicates, J, rng)
    for L, chunks in zip(counts, noise):
        parts = {e: ([], []) for e in ESTIMATORS}
        for eps in chunks:
            for e, (dmu, dv) in estimates(mu, logvar, eps, f0).items():
                parts[e][0].append(dmu)
                parts[e][1].append(dv)
        for e in ESTIMATORS:
            dmu, dv = np.concatenate(parts[e][0]), np.concatenate(parts[e][1])  # (R, J) each
            if L == 1:
                first[e] = dmu
            g = np.concatenate([dmu, dv], axis=1)  # (R, 2J)
            exact = np.concatenate([g_mu, g_v])  # (2J,)
            se = g.std(axis=0, ddof=1) / np.sqrt(replicates)
            row = table[e]
            row["var_mu"].append(float(dmu.var(axis=0, ddof=1).sum()))
            row["var_logvar"].append(float(dv.var(axis=0, ddof=1).sum()))
            row["bias_z"].append(float(np.max(np.abs(g.mean(axis=0) - exact) / se)))
            row["mse"].append(float(np.mean(np.sum((g - exact) ** 2, axis=1))))
    return table, first

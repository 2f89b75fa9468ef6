"""The VAE: its description (parameters, layers, heads, likelihood) and its public methods.

The forward and backward passes stand in one place, :class:`scratchvae.engine.Engine`,
which runs this description with a kernel set; the methods here (encode,
decode, the ELBO of eq.20, the importance-weighted bound and their
gradients) run it with the readable reference kernels and return fresh arrays.

Encoder q_θ(z|x) = N(μ_θ(x), diag exp(v_θ(x))) (eq.18): dense layers with the
chosen activation, then one dense head giving [μ, v] of size 2J.
Prior p(z) = N(0, I) (eq.19).
Decoder p_φ(x|z): dense layers with the chosen activation, then a dense head
giving Bernoulli logits (D) or a Gaussian mean (D), plus, for the Gaussian, a
log-variance that is fixed, learned per pixel, or predicted (a second D).

All reported objectives are in nats per data point: log-densities summed over
the D data dimensions (and J latent dimensions), averaged over data points.

Shape letters: N batch, D data, H hidden, J latent, L samples per data point.
"""
import dataclasses

import numpy as np

from . import distributions as dist
from .bounds import log_mean_exp
from .ops import check_activation, sigmoid

LIKELIHOODS = ("bernoulli", "gaussian")
GAUSSIAN_VARIANCES = ("fixed", "learned", "predicted")
DTYPES = ("float32", "float64")
UNITS = "nats per data point (summed over dimensions, averaged over data points)"  # of every reported number


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Architecture of a :class:`VAE`.

    Parameters
    ----------
    data_dim : int, D
    latent_dim : int, J
    hidden : tuple of int, encoder hidden widths (may be empty)
    decoder_hidden : tuple of int or None, decoder hidden widths; None mirrors ``hidden``
    activation : str, one of :data:`scratchvae.ops.ACTIVATIONS`
    likelihood : "bernoulli" (logits) or "gaussian"
    gaussian_variance : "fixed", "learned" (one log-variance per pixel) or
        "predicted" (the decoder outputs one per pixel and sample)
    fixed_logvar : float, the log-variance when ``gaussian_variance="fixed"``
    dtype : "float32" or "float64"
    """

    data_dim: int
    latent_dim: int = 8  # the defaults of `scratchvae train` (the digits demo) come from these fields
    hidden: tuple = (256,)
    decoder_hidden: tuple = None
    activation: str = "relu"
    likelihood: str = "bernoulli"
    gaussian_variance: str = "learned"
    fixed_logvar: float = 0.0
    dtype: str = "float32"

    def __post_init__(self):
        hidden = tuple(self.hidden)
        dec = tuple(reversed(hidden)) if self.decoder_hidden is None else tuple(self.decoder_hidden)
        object.__setattr__(self, "hidden", hidden)
        object.__setattr__(self, "decoder_hidden", dec)
        for name, value in (("data_dim", self.data_dim), ("latent_dim", self.latent_dim)):
            _check_positive_int(name, value)
        for w in hidden + dec:
            _check_positive_int("hidden layer width", w)
        check_activation(self.activation)
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {self.likelihood!r}; choose from {', '.join(LIKELIHOODS)}")
        if self.gaussian_variance not in GAUSSIAN_VARIANCES:
            raise ValueError(
                f"unknown gaussian_variance {self.gaussian_variance!r}; choose from {', '.join(GAUSSIAN_VARIANCES)}"
            )
        if not np.isfinite(self.fixed_logvar):
            raise ValueError(f"fixed_logvar must be finite, got {self.fixed_logvar}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")

    @classmethod
    def from_dict(cls, d):
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown architecture fields {sorted(unknown)}")
        return cls(**d)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclasses.dataclass
class ELBOTerms:
    """Per-data-point terms of one ELBO estimate, each (N,), in nats.

    elbo = recon − kl (eq.17, eq.20); objective = recon − beta·kl (eq.48): a
    lower bound on log p(x) for beta ≥ 1, not for beta < 1 (eq.49, eq.50).
    """

    recon: np.ndarray
    kl: np.ndarray
    beta: float

    @property
    def elbo(self):
        return self.recon - self.kl

    @property
    def objective(self):
        return self.recon - self.beta * self.kl


@dataclasses.dataclass
class IWAETerms:
    """Per-data-point terms of one importance-weighted estimate with K samples, in nats.

    log_w : (K, N) log importance weights log p(x, z_k) − log q(z_k|x) (eq.15 inside the log)
    recon : (N,) mean over k of log p(x|z_k);  kl : (N,) analytic KL(q ‖ p(z)) (eq.23)
    bound : L_K = log (1/K) Σ_k w_k (eq.29; Burda et al. 2015), ≥ ELBO and ≤ log p(x) in expectation (eq.31-eq.33)
    elbo  : recon − kl, the K-sample ELBO estimate with the analytic KL (eq.20)
    """

    log_w: np.ndarray
    recon: np.ndarray
    kl: np.ndarray

    @property
    def bound(self):  # NaN in a log weight gives NaN here, for the trainer to report as a divergence
        return log_mean_exp(self.log_w, axis=0)

    @property
    def elbo(self):
        return self.recon - self.kl

    objective = bound


def param_shapes(config):
    """``{name: shape}`` of every parameter of a VAE of ``config``, in the order :class:`VAE` creates them.

    Encoder D → hidden → 2J ([μ | v]); decoder J → decoder_hidden → D (2D with a
    predicted Gaussian variance); ``dec.logvar`` (D,) with a learned one. Layer i
    of a net has ``{net}.{i}.W`` (fan_in, fan_out) and ``{net}.{i}.b`` (fan_out,).
    """
    D, J = config.data_dim, config.latent_dim
    predicted = config.likelihood == "gaussian" and config.gaussian_variance == "predicted"
    nets = {"enc": (D,) + tuple(config.hidden) + (2 * J,),
            "dec": (J,) + tuple(config.decoder_hidden) + ((2 if predicted else 1) * D,)}
    shapes = {}
    for net, sizes in nets.items():
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            shapes[f"{net}.{i}.W"], shapes[f"{net}.{i}.b"] = (fan_in, fan_out), (fan_out,)
    if config.likelihood == "gaussian" and config.gaussian_variance == "learned":
        shapes["dec.logvar"] = (D,)
    return shapes


class VAE:
    """A variational autoencoder whose gradients are written by hand.

    Parameters
    ----------
    config : VAEConfig
    rng : np.random.Generator, used only to initialise the weights
        (uniform in ±1/sqrt(fan_in), as PyTorch's nn.Linear).
    """

    def __init__(self, config, rng):
        if not isinstance(rng, np.random.Generator):
            raise ValueError("rng must be a numpy.random.Generator")
        self.config = config
        self.dtype = np.dtype(config.dtype)
        self.params = {}
        self._engines = {}
        bound = None
        for name, shape in param_shapes(config).items():  # W before b in each layer: the order of the draws
            if name == "dec.logvar":
                self.params[name] = np.zeros(shape, self.dtype)
                continue
            if name.endswith(".W"):
                bound = 1.0 / np.sqrt(shape[0])  # 1/sqrt(fan_in), for the layer's W and b
            self.params[name] = rng.uniform(-bound, bound, shape).astype(self.dtype)
        self.enc_layers = [k[:-2] for k in self.params if k.startswith("enc.") and k.endswith(".W")]
        self.dec_layers = [k[:-2] for k in self.params if k.startswith("dec.") and k.endswith(".W")]

    # ------------------------------------------------------------ validation
    def check_data(self, x, name="x"):
        """Return ``x`` as a (N, D) array of the model's dtype, or raise ValueError naming the problem."""
        x = np.asarray(x)
        D = self.config.data_dim
        if x.ndim != 2 or x.shape[1] != D:
            raise ValueError(f"{name} must have shape (N, {D}), got {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} is empty (0 data points)")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise ValueError(f"{name} must be real numbers, got dtype {x.dtype}")
        x = x.astype(self.dtype, copy=False)
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or Inf")
        if self.config.likelihood == "bernoulli" and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                f"{name} has values in [{x.min():g}, {x.max():g}], outside [0, 1] required by the Bernoulli likelihood"
            )
        return x

    def check_eps(self, eps, n):
        """Return ``eps`` as (L, n, J) of the model's dtype, or raise ValueError."""
        eps = np.asarray(eps, dtype=self.dtype)
        J = self.config.latent_dim
        if eps.ndim == 2:
            eps = eps[None]
        if eps.ndim != 3 or eps.shape[1:] != (n, J) or eps.shape[0] == 0:
            raise ValueError(f"eps must have shape (L, {n}, {J}), got {eps.shape}")
        if not np.isfinite(eps).all():
            raise ValueError("eps contains NaN or Inf")
        return eps

    def noise(self, rng, n, samples=1):
        """Standard normal ε of shape (L, n, J) drawn from ``rng`` (:func:`scratchvae.distributions.standard_normal`,
        the sampler evaluation draws with too)."""
        _check_positive_int("samples", samples)
        return dist.standard_normal(rng, np.empty((samples, n, self.config.latent_dim), self.dtype))

    # ------------------------------------------------------------------ nets
    def engine(self, backend="reference", thread=0):
        """The :class:`scratchvae.engine.Engine` that runs this model's forward and backward with ``backend``.

        The methods below use the reference kernels (readable NumPy, no Numba)
        and return fresh arrays; training and evaluation use the backend they are given.
        ``thread`` > 0 gives another engine with buffers of its own, for a worker
        thread of :func:`scratchvae.training.evaluate.importance_bound`.
        """
        key = backend if thread == 0 else (backend, thread)
        eng = self._engines.get(key)
        if eng is None:
            from .engine import Engine

            eng = self._engines[key] = Engine(self, backend)
        return eng

    def __getstate__(self):  # copies and pickles of a model carry its parameters, not its engines' buffers
        return {k: v for k, v in self.__dict__.items() if k != "_engines"}

    def __setstate__(self, state):
        self.__dict__.update(state, _engines={})

    def encode(self, x):
        """μ and v = log σ² of q_θ(z|x) (eq.18), each (N, J)."""
        enc = self.engine().encode(self.check_data(x))
        J = self.config.latent_dim
        return enc[:, :J].copy(), enc[:, J:].copy()

    def decode(self, z):
        """E[x|z] under the decoder for latents ``z`` (M, J): sigmoid(logits) (Bernoulli) or the Gaussian mean, (M, D).

        The decoder's raw outputs (the logits, or the mean and the log-variance) are
        :meth:`decoder_outputs`.
        """
        out, _ = self.decoder_outputs(z)
        if self.config.likelihood == "bernoulli":
            return sigmoid(out)
        return out

    mean_image = decode  # the name the figures and ``scratchvae sample`` use

    def decoder_outputs(self, z):
        """The decoder's outputs for latents ``z`` (M, J), as the likelihood reads them.

        Returns
        -------
        out : (M, D) logits (Bernoulli) or mean (Gaussian)
        logvar : None (Bernoulli), or the Gaussian log-variance broadcastable to ``out``
        """
        z = np.asarray(z, dtype=self.dtype)
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"z must have shape (M, {self.config.latent_dim}), got {z.shape}")
        return self._split_decoder(self.engine().decode(z).copy())

    def _split_decoder(self, out):
        c = self.config
        D = c.data_dim
        if c.likelihood == "bernoulli":
            return out, None
        if c.gaussian_variance == "predicted":
            return out[..., :D], out[..., D:]
        if c.gaussian_variance == "learned":
            return out, self.params["dec.logvar"]
        return out, self.dtype.type(c.fixed_logvar)

    def _gradient(self, eng):
        return {k: eng.grads[k].astype(self.dtype, copy=True) for k in self.params}

    # ------------------------------------------------------------------ ELBO
    def elbo(self, x, eps, beta=1.0, grads=True):
        """One Monte Carlo estimate of the ELBO (eq.20) and its gradient.

        ELBO ≈ (1/L) Σ_l log p_φ(x|z^(l)) − KL(q_θ(z|x) ‖ p(z)),
        z^(l) = μ + σ ⊙ ε^(l) (eq.27), with the analytic KL (eq.23).

        Parameters
        ----------
        x : (N, D) array
        eps : (L, N, J) standard normal noise
        beta : float, weight on the KL (eq.48); beta = 1 is the ELBO, beta > 1 a
            looser bound, beta < 1 not a bound (eq.50)
        grads : bool, also return the gradient

        Returns
        -------
        terms : ELBOTerms, per data point, nats
        grads : dict name -> array, the gradient of the loss
            −mean_n(recon_n − beta·kl_n) with respect to every parameter
            (None when ``grads=False``)
        """
        x = self.check_data(x)
        eps = self.check_eps(eps, x.shape[0])
        beta = float(beta)
        if not np.isfinite(beta) or beta < 0:
            raise ValueError(f"beta must be a finite number >= 0, got {beta}")
        eng = self.engine()
        recon, kl = eng.elbo(x, eps, beta, grads)
        terms = ELBOTerms(recon=recon, kl=kl.copy(), beta=beta)
        return terms, (self._gradient(eng) if grads else None)

    def log_weights(self, x, eps):
        """log w = log p_φ(x|z) + log p(z) − log q_θ(z|x) for z = μ + σ ⊙ ε, shape (L, N).

        The integrand of eq.15: its mean over samples is the ELBO with a
        Monte Carlo KL, and log (1/L) Σ exp(log w) is the bound L_L.
        """
        x = self.check_data(x)
        eps = self.check_eps(eps, x.shape[0])
        eng = self.engine()
        return eng.log_weights(x, eng.encode(x), eps)[0].copy()

    def iwae(self, x, eps, grads=True):
        """The importance-weighted bound L_K with K = eps.shape[0] samples, and its gradient.

        L_K = log (1/K) Σ_k w_k,  w_k = p_φ(x|z_k) p(z_k) / q_θ(z_k|x),  z_k = μ + σ ⊙ ε_k (eq.29).

        Notes
        -----
        ∇L_K = Σ_k w̃_k ∇ log w_k with the normalized weights w̃_k = w_k / Σ_j w_j
        (MATH.md eq.34-eq.36); see :meth:`scratchvae.engine.Engine.iwae`.

        Returns
        -------
        terms : IWAETerms
        grads : dict name -> array, the gradient of the loss −mean_n L_K,n (None when grads=False)
        """
        x = self.check_data(x)
        eps = self.check_eps(eps, x.shape[0])
        eng = self.engine()
        log_w, recon, kl = eng.iwae(x, eps, grads)
        terms = IWAETerms(log_w=log_w.copy(), recon=recon, kl=kl.copy())
        return terms, (self._gradient(eng) if grads else None)

    def sample(self, n, rng):
        """Draw ``n`` latents from the prior (eq.19) and return E[x|z], (n, D)."""
        _check_positive_int("n", n)
        z = rng.standard_normal((n, self.config.latent_dim), dtype=self.dtype)
        return self.mean_image(z)

    def draw(self, z, rng):
        """x ~ p_φ(x|z) for latents ``z`` (M, J): Bernoulli(sigmoid(logits)) or N(mean, e^logvar), (M, D)."""
        out, logvar = self.decoder_outputs(z)
        if self.config.likelihood == "bernoulli":
            return (rng.random(out.shape, dtype=self.dtype) < sigmoid(out)).astype(self.dtype)
        return out + np.exp(0.5 * logvar) * rng.standard_normal(out.shape, dtype=self.dtype)

    def reconstruct(self, x):
        """E[x|z = μ_θ(x)]: the decoder's mean at the encoder's mean, (N, D)."""
        mu, _ = self.encode(x)
        return self.mean_image(mu)

    def num_params(self):
        return int(sum(p.size for p in self.params.values()))

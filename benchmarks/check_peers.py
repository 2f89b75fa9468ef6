"""The ``check-peers`` part, run by hand: do the peers compute the same bound and gradient as scratchvae?

    python -m benchmarks check-peers [--no-compile]

Not timed. Every installed peer (PyTorch eager, ``torch.compile``, JAX
``jit``) gets scratchvae's float32 weights (:func:`peer_params`) and the same
given noise for a few random binary points; their log-weights log w, the
streamed L_K, the IWAE loss and its autodiff gradient are compared with a
NumPy float64 reference (:func:`benchmarks.peers.numpy_log_weights`) and
with scratchvae's hand-derived gradient of a float64 copy of the model. A
table of relative errors; exit 1 when one exceeds float32 round-off
(:data:`CHECK_TOL`, gradients :data:`CHECK_GRAD_TOL`), exit 2 when neither
torch nor jax is installed.
"""
import sys

import numpy as np

from .common import D, H, J, machine_line, make_model, print_table
from . import peers

CHECK_TOL = 1e-5  # float32 round-off, relative to the largest magnitude of the compared quantity
# Gradients: a float32 log w ≈ −550 nats carries ~1e-4 nats of round-off, which moves the normalized weights
# exp(log w_k − max) by ~1e-4 relative, so the gradient agrees to ~1e-5..1e-4 (scratchvae's own float32
# gradient against its float64 one shows the same), while a wrong term would be off by O(1).
CHECK_GRAD_TOL = 1e-3


def peer_params(model):
    """The weights of a scratchvae VAE in the peers' layout (fc1, fc21 = μ head, fc22 = log σ² head, fc3, fc4)."""
    p = {k: np.asarray(v) for k, v in model.params.items()}
    return {"fc1": {"w": p["enc.0.W"], "b": p["enc.0.b"]},
            "fc21": {"w": p["enc.1.W"][:, :J], "b": p["enc.1.b"][:J]},
            "fc22": {"w": p["enc.1.W"][:, J:], "b": p["enc.1.b"][J:]},
            "fc3": {"w": p["dec.0.W"], "b": p["dec.0.b"]},
            "fc4": {"w": p["dec.1.W"], "b": p["dec.1.b"]}}


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def check_peers(n=5, k=12, rows_per_call=20, compile=True, seed=0):
    """Every installed peer against a NumPy float64 reference on shared float32 weights and given noise.

    Compared: log w (K, N); L_K (N,) by the peer's streaming chunk function
    (chunks of ``rows_per_call`` decoder rows); the IWAE loss; its gradient,
    against scratchvae's hand-derived gradient of a float64 copy of the model.
    scratchvae's own float32 log-weights are checked against the reference
    too. Prints a table of relative errors; exit status 1 if any exceeds
    :data:`CHECK_TOL` (gradients: :data:`CHECK_GRAD_TOL`); exit 2 if neither torch nor jax is installed.
    """
    from scratchvae import VAE, VAEConfig

    have = peers.available()
    if not (have["torch"] or have["jax"]):
        raise ValueError("check-peers needs torch or jax installed")
    model, _ = make_model("float32", seed=seed)
    params = peer_params(model)
    rng = np.random.default_rng(seed + 1)
    x = peers.binary_data(n, seed=seed)
    eps = rng.standard_normal((k, n, J), dtype=np.float32)
    log_w = peers.numpy_log_weights(params, x, eps)  # float64 reference
    bound = peers.log_mean_exp(log_w, axis=0)
    loss = -float(np.mean(bound))
    m64 = VAE(VAEConfig(data_dim=D, latent_dim=J, hidden=(H,), activation="relu", likelihood="bernoulli",
                        dtype="float64"), np.random.default_rng(seed))
    for name, v in model.params.items():
        m64.params[name][...] = v
    terms, g64 = m64.iwae(x.astype(np.float64), eps.astype(np.float64))
    grads = peer_params(type("M", (), {"params": g64})())
    t32, g32 = model.iwae(x, eps)
    g32 = peer_params(type("M", (), {"params": g32})())
    rows = [{"system": "scratchvae float32 (model.iwae)", "log_w": _rel(t32.log_w, log_w),
             "bound": _rel(scratchvae_iwae_bound_given(model, x, eps), bound), "loss": None,
             "grad": max(_rel(g32[lay][t], grads[lay][t]) for lay in grads for t in ("w", "b"))},
            {"system": "scratchvae float64 (hand gradient)", "log_w": _rel(terms.log_w, log_w),
             "bound": _rel(terms.bound, bound), "loss": None, "grad": None}]  # the gradient reference itself
    got = []
    if have["torch"]:
        got.append(("pytorch-eager", peers.torch_check(params, x, eps, rows_per_call)))
        if compile:
            got.append(("pytorch-compile", peers.torch_check(params, x, eps, rows_per_call, compile=True)))
    if have["jax"]:
        got.append(("jax-jit", peers.jax_check(params, x, eps, rows_per_call)))
    for name, r in got:
        rows.append({"system": name, "log_w": _rel(r["log_w"], log_w), "bound": _rel(r["bound"], bound),
                     "loss": _rel(r["loss"], loss),
                     "grad": max(_rel(r["grads"][lay][t], grads[lay][t]) for lay in grads for t in ("w", "b"))})
    print(f"\n{machine_line()}")
    print(f"reference: NumPy float64 on scratchvae's float32 weights (seed {seed}), N = {n} random binary points, "
          f"K = {k} given samples, chunks of {rows_per_call} decoder rows; mean L_K = {float(np.mean(bound)):.4f}")
    print_table(rows, ["system", "log_w", "bound", "loss", "grad"],
                f"relative error max|peer - reference| / max|reference| (tolerance {CHECK_TOL:g}; grad: worst "
                f"parameter tensor, against scratchvae's hand gradient in float64, tolerance {CHECK_GRAD_TOL:g})")
    bad = [r["system"] for r in rows for f in ("log_w", "bound", "loss", "grad")
           if r[f] is not None and not r[f] <= (CHECK_GRAD_TOL if f == "grad" else CHECK_TOL)]
    if bad:
        print(f"check-peers: tolerance exceeded by {', '.join(sorted(set(bad)))}", file=sys.stderr)
        sys.exit(1)
    print("check-peers: every system agrees with the reference")
    return rows


def scratchvae_iwae_bound_given(model, x, eps):
    """L_K per point from scratchvae's log-weights on given noise, streamed by chunks of 3 samples."""
    acc = np.full(x.shape[0], -np.inf)
    for k0 in range(0, eps.shape[0], 3):
        log_w = model.iwae(x, eps[k0:k0 + 3], grads=False)[0].log_w.astype(np.float64)
        acc = np.logaddexp(acc, peers.log_mean_exp(log_w, axis=0) + np.log(log_w.shape[0]))
    return acc - np.log(eps.shape[0])


# ------------------------------------------------------------------ the command line
def add_parser(sub):
    c = sub.add_parser("check-peers", description=__doc__.splitlines()[0],
                       help="by hand: every peer's L_K, loss and gradient against a NumPy "
                            "reference on shared weights and noise (needs torch and/or jax)")
    c.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    return c


def run(args, o=None):
    return check_peers(compile=not args.no_compile)

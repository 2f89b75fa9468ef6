"""A VAE trained by hand: every op's forward, then every op's backward in reverse, then Adam (eq.17-eq.42).

The package's engine runs the model's forward and backward through buffers
and kernel tables. This script does the same work with nothing but the
forward/backward pairs of :mod:`scratchvae.ops` and
:mod:`scratchvae.distributions`, one line per op, each citing the equation of
docs/MATH.md it implements:

    forward   x → dense → activation → dense → [μ | v] → z = μ + σ ⊙ ε
                → dense → activation → dense → logits → log p(x|z);  KL(q ‖ p(z))
    loss      −(1/N) Σ_n [ (1/L) Σ_l log p(x_n|z_nl) − β KL_n ]   (eq.20, eq.48)
    backward  the same ops in reverse order, each one's backward fed the
              gradient the op after it returned
    update    Adam (:class:`scratchvae.optim.Adam`)

The model is a small VAE on the shipped 8x8 digits (64-16-2 by default,
tanh, Bernoulli likelihood on logits, float64), trained on minibatches of the
statically binarized training images. Before the first update and every
``--check-every`` steps the hand-made ELBO and gradient are compared with the
engine's (:meth:`scratchvae.engine.Engine.elbo`, with the readable reference
kernels and with the compiled numba ones, on the same parameters, data, noise
and KL weight): they must agree to float64 round-off (:data:`GRAD_RTOL`). The script
prints the test ELBO (nats per data point, fixed noise) climbing, and writes
``train_by_hand.png``: the ELBO per step, and test images with their
reconstructions before and after training.

Run::

    python examples/train_by_hand.py [--out examples/out] [--tiny] [--steps 600] [--warmup 0]

It exits 1 if the two gradients ever disagree.

Shape letters: N batch, D = 64 pixels, H hidden units, J latent dimensions,
L samples of z per data point.
"""
import argparse
import os
import sys

import numpy as np

from scratchvae import VAE, VAEConfig
from scratchvae.data.datasets import BatchSource, load_digits
from scratchvae.distributions import (bernoulli_loglik_backward, bernoulli_loglik_forward, gaussian_kl_backward,
                                      gaussian_kl_forward, reparameterize_backward, reparameterize_forward,
                                      standard_normal)
from scratchvae.engine import numba_available
from scratchvae.io.files import atomic_file
from scratchvae.ops import ACTIVATIONS, activation_backward, activation_forward, dense_backward, dense_forward, sigmoid
from scratchvae.optim import Adam
from scratchvae.training.loop import kl_weight
from scratchvae.training.plots import image_grid

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
# The hand-made and the engine's gradients are two float64 evaluations of the
# same sums, in different orders with the compiled kernels (which fuse bias
# and activation into one loop and sum in their own order), so they differ by a
# few ulps times the number of terms summed: up to about 1.3e-15 of the largest
# entry of a gradient in the runs here. 1e-10 leaves a margin of 1e5 and is
# still 1e7 below the error of a dropped term or a missing factor (O(1)).
# The reference kernels call the same ops in the same order: there the two
# agree to the bit.
GRAD_RTOL = 1e-10
EVAL_SEED = 1  # the fixed noise of the test ELBO: every checkpoint sees the same ε
SHOWN = 8  # test images in the figure
TEST_POINTS = 40  # the test ELBO is computed about this many times in a run


def init_params(D, H, J, rng):
    """Weights and biases uniform in ±1/sqrt(fan_in) (as PyTorch's nn.Linear), named as in :class:`scratchvae.VAE`."""
    params = {}
    for net, sizes in (("enc", (D, H, 2 * J)), ("dec", (J, H, D))):
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = 1.0 / np.sqrt(fan_in)
            params[f"{net}.{i}.W"] = rng.uniform(-bound, bound, (fan_in, fan_out))  # (I, O)
            params[f"{net}.{i}.b"] = rng.uniform(-bound, bound, fan_out)  # (O,)
    return params


def forward(params, x, eps, activation):
    """One Monte Carlo estimate of the ELBO (eq.20), op by op.

    Parameters
    ----------
    params : dict of the eight arrays of :func:`init_params`
    x : (N, D) binary images
    eps : (L, N, J) standard normal noise
    activation : a name of :data:`scratchvae.ops.ACTIVATIONS`

    Returns
    -------
    recon : (N,) (1/L) Σ_l log p(x|z_l), the first term of eq.20
    kl : (N,) KL(q(z|x) ‖ p(z)), the second (eq.23)
    caches : dict, what :func:`backward` needs
    """
    L, N, J = eps.shape
    P = params
    a1, c_enc0 = dense_forward(x, P["enc.0.W"], P["enc.0.b"])  # (N, H)    eq.37
    h1, c_act1 = activation_forward(activation, a1)  # (N, H)               eq.39 (table)
    enc, c_enc1 = dense_forward(h1, P["enc.1.W"], P["enc.1.b"])  # (N, 2J)  eq.37: the head [μ | v] of q (eq.18)
    mu, logvar = enc[:, :J], enc[:, J:]  # (N, J) each
    z, c_z = reparameterize_forward(mu, logvar, eps)  # (L, N, J)           eq.27: z = μ + e^{v/2} ⊙ ε
    a2, c_dec0 = dense_forward(z.reshape(L * N, J), P["dec.0.W"], P["dec.0.b"])  # (L·N, H)  eq.37
    h2, c_act2 = activation_forward(activation, a2)  # (L·N, H)             eq.39
    logits, c_dec1 = dense_forward(h2, P["dec.1.W"], P["dec.1.b"])  # (L·N, D)  eq.37: Bernoulli logits η
    ll, c_ll = bernoulli_loglik_forward(x, logits.reshape(L, N, -1))  # (L, N)  eq.41: Σ_d x η − softplus(η)
    kl, c_kl = gaussian_kl_forward(mu, logvar)  # (N,)                      eq.23: ½ Σ_j (μ² + e^v − v − 1)
    recon = ll.mean(axis=0)  # (N,)                                         eq.20: the 1/L
    caches = dict(enc0=c_enc0, act1=c_act1, enc1=c_enc1, z=c_z, dec0=c_dec0, act2=c_act2, dec1=c_dec1, ll=c_ll,
                  kl=c_kl, shape=(L, N, J))
    return recon, kl, caches


def backward(caches, beta):
    """The gradient of the loss −(1/N) Σ_n (recon_n − β kl_n) (eq.48) with respect to every parameter.

    The backward of each op of :func:`forward`, in reverse order; ``beta`` is
    the KL weight (1 for the ELBO itself).

    Returns
    -------
    grads : dict name -> array of the parameter's shape
    """
    L, N, J = caches["shape"]
    g = {}
    dll = np.full((L, N), -1.0 / (L * N))  # ∂loss/∂ll: −1/N of the mean over points, 1/L of eq.20
    dlogits = bernoulli_loglik_backward(dll, caches["ll"])  # (L, N, D)    eq.42: dll · (x − sigmoid(η))
    dh2, g["dec.1.W"], g["dec.1.b"] = dense_backward(dlogits.reshape(L * N, -1), caches["dec1"])  # eq.38
    da2 = activation_backward(dh2, caches["act2"])  # (L·N, H)              eq.39: dh ⊙ f′(a)
    dz, g["dec.0.W"], g["dec.0.b"] = dense_backward(da2, caches["dec0"])  # (L·N, J)  eq.38
    dmu, dlogvar = reparameterize_backward(dz.reshape(L, N, J), caches["z"])  # (N, J)  eq.28, summed over l
    dmu_kl, dlogvar_kl = gaussian_kl_backward(np.full(N, beta / N), caches["kl"])  # eq.24 times β/N: eq.51
    denc = np.concatenate([dmu + dmu_kl, dlogvar + dlogvar_kl], axis=1)  # (N, 2J): both paths into [μ | v]
    dh1, g["enc.1.W"], g["enc.1.b"] = dense_backward(denc, caches["enc1"])  # eq.38
    da1 = activation_backward(dh1, caches["act1"])  # (N, H)                eq.39
    _, g["enc.0.W"], g["enc.0.b"] = dense_backward(da1, caches["enc0"])  # eq.38 (dx is not needed)
    return g


def reconstruct(params, x, activation):
    """E[x | z = μ(x)] = sigmoid(logits) at the encoder's mean (no noise), (N, D)."""
    J = params["dec.0.W"].shape[0]
    _, _, caches = forward(params, x, np.zeros((1, len(x), J)), activation)  # ε = 0: z = μ
    _, logits = caches["ll"]  # (1, N, D), the logits the likelihood was computed from
    return sigmoid(logits[0])


def compare_with_engine(model, backend, params, x, eps, beta, elbo, grads):
    """Run :meth:`scratchvae.engine.Engine.elbo` with the kernels ``backend`` on the same parameters, data, noise
    and KL weight, and measure how far the hand-made ELBO and gradient are from its own.

    Returns
    -------
    value_error : max_n |ELBO_hand − ELBO_engine| / max_n |ELBO_engine|
    grad_error : max over parameters of max|g_hand − g_engine| / max|g_engine|
    """
    for k, p in params.items():
        model.params[k][...] = p
    eng = model.engine(backend)
    recon, kl = eng.elbo(x, eps, beta, grads=True)
    value_error = float(np.max(np.abs(elbo - (recon - kl))) / np.max(np.abs(recon - kl)))
    grad_error = 0.0
    for k, g in eng.grads.items():
        grad_error = max(grad_error, float(np.max(np.abs(grads[k] - g)) / max(np.max(np.abs(g)), np.finfo(float).tiny)))
    return value_error, grad_error


def plot(path, res, x_show, recon_before, recon_after):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, axr) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1.5, 1]})
    steps, elbo = np.arange(1, len(res["elbo"]) + 1), np.array(res["elbo"])
    ax.plot(steps, elbo, color="C0", lw=0.6, alpha=0.45, label="training minibatch ELBO (one ε per point)")
    w = min(25, len(elbo))
    smooth = np.convolve(elbo, np.ones(w) / w, mode="valid")
    ax.plot(steps[w - 1:], smooth, color="C0", lw=1.8, label=f"its mean over the last {w} steps")
    ax.plot(res["test_steps"], res["test_elbo"], "o-", color="C3", ms=3, label="test ELBO (299 images, fixed ε)")
    checked = [c["step"] for c in res["grad_checks"]]
    for s in checked:
        ax.axvline(s, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel("step (minibatch of %d)" % res["batch_size"])
    ax.set_ylabel("ELBO, nats per data point")
    ax.set_title(f"{res['arch']} trained op by op; grey lines: gradient checked against the engine "
                 f"(max rel. error {res['max_grad_rel_error']:.1e})", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")

    grid = image_grid(np.concatenate([x_show, recon_before, recon_after]), (8, 8), len(x_show))
    axr.imshow(grid, cmap="gray", vmin=0, vmax=1)
    axr.set_yticks([3.5, 12.5, 21.5])
    axr.set_yticklabels(["input x\n(binarized)", "E[x|z=μ(x)]\nbefore", f"E[x|z=μ(x)]\nafter {len(elbo)} steps"],
                        fontsize=8)
    axr.set_xticks([])
    axr.set_title("test images and their reconstructions", fontsize=9)

    fig.tight_layout()
    with atomic_file(path, suffix=".png") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help="folder for train_by_hand.png (default: examples/out)")
    p.add_argument("--tiny", action="store_true", help="small settings for a smoke test (80 steps, a few seconds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="Adam steps (default 600, tiny 80)")
    p.add_argument("--batch-size", type=int, default=100, help="data points per step (default 100)")
    p.add_argument("--hidden", type=int, default=16, help="hidden units H of encoder and decoder (default 16)")
    p.add_argument("--latent", type=int, default=2, help="latent dimensions J (default 2)")
    p.add_argument("--activation", default="tanh", choices=sorted(ACTIVATIONS),
                   help="activation of the hidden layers (default tanh)")
    p.add_argument("--samples", type=int, default=1, help="samples L of z per data point (default 1)")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    p.add_argument("--beta", type=float, default=1.0, help="KL weight after the warm-up (default 1: the ELBO)")
    p.add_argument("--warmup", type=int, default=0, metavar="STEPS",
                   help="steps over which the KL weight rises linearly from 0 to --beta (eq.52; default 0)")
    p.add_argument("--check-every", type=int, default=100,
                   help="compare with the engine's gradient every this many steps (and at the first and last)")
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = 80 if args.tiny else 600
    for name in ("steps", "batch_size", "hidden", "latent", "samples", "check_every"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be a positive integer")
    if not (np.isfinite(args.lr) and args.lr > 0):
        p.error("--lr must be a positive number")
    if not (np.isfinite(args.beta) and args.beta >= 0):
        p.error("--beta must be a finite number >= 0")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def main(argv=None):
    """Train by hand, check against the engine, print and return the numbers.

    Returns
    -------
    dict with ``elbo`` (the training minibatch ELBO per step), ``test_steps``
    and ``test_elbo`` (the test ELBO with fixed noise; step 0 is before
    training), ``grad_checks`` (step, KL weight, relative errors of the
    gradient and of the ELBO in each comparison with the engine),
    ``max_grad_rel_error``, ``max_value_rel_error``, ``grads_agree`` (both
    below :data:`GRAD_RTOL`) and ``png``.
    """
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    dataset = load_digits()
    train = BatchSource(dataset, "train", "static", np.float64)  # binary pixels, the same every run
    test = BatchSource(dataset, "test", "static", np.float64)
    x_test = test.batch(np.arange(len(test)))  # (299, 64)
    D, H, J, L = dataset.data_dim, args.hidden, args.latent, args.samples
    eps_test = standard_normal(np.random.default_rng(EVAL_SEED), np.empty((1, len(x_test), J)))

    params = init_params(D, H, J, rng)
    # The engine's model, only for the comparison: same architecture, its parameters overwritten with ours.
    model = VAE(VAEConfig(data_dim=D, latent_dim=J, hidden=(H,), activation=args.activation,
                          likelihood="bernoulli", dtype="float64"), np.random.default_rng(0))
    optimizer = Adam(lr=args.lr)
    backends = ("reference", "numba") if numba_available() else ("reference",)  # the readable and compiled kernels

    def test_elbo():
        recon, kl, _ = forward(params, x_test, eps_test, args.activation)
        return float(np.mean(recon - kl))

    x_show = x_test[:SHOWN]
    recon_before = reconstruct(params, x_show, args.activation)
    arch = f"{D}-{H}-{J}, {args.activation}, Bernoulli, float64"
    print(f"digits, VAE {arch}, Adam lr {args.lr:g}, batch {args.batch_size}, L = {L}, {args.steps} steps; "
          f"KL weight {args.beta:g}" + (f" after a {args.warmup}-step warm-up" if args.warmup else ""))
    print(f"  {'':39}  |g_hand − g_engine| / |g_engine|, kernels:")
    print(f"  {'step':>6} {'KL weight':>9} {'batch ELBO':>11} {'test ELBO':>10}"
          + "".join(f"  {b:>9}" for b in backends))
    res = {"elbo": [], "test_steps": [0], "test_elbo": [test_elbo()], "grad_checks": [], "arch": arch,
           "batch_size": args.batch_size}
    print(f"  {0:6d} {'':>9} {'':>11} {res['test_elbo'][0]:10.3f}")
    eval_every = max(1, args.steps // TEST_POINTS)
    order, pos = rng.permutation(len(train)), 0
    for step in range(1, args.steps + 1):
        if pos + args.batch_size > len(order):  # a new epoch: a new order
            order, pos = rng.permutation(len(train)), 0
        x = train.batch(order[pos:pos + args.batch_size])  # (N, D)
        pos += args.batch_size
        eps = standard_normal(rng, np.empty((L, len(x), J)))  # (L, N, J)
        beta = kl_weight(args.beta, args.warmup, step)  # β_t of eq.52

        recon, kl, caches = forward(params, x, eps, args.activation)
        grads = backward(caches, beta)
        res["elbo"].append(float(np.mean(recon - kl)))  # eq.17 estimated by eq.20, whatever the weight β

        checked = step == 1 or step % args.check_every == 0 or step == args.steps
        if checked:
            errors = {b: compare_with_engine(model, b, params, x, eps, beta, recon - kl, grads) for b in backends}
            res["grad_checks"].append({"step": step, "beta": beta, "backends": errors,
                                       "value_rel_error": max(v for v, _ in errors.values()),
                                       "rel_error": max(g for _, g in errors.values())})
        optimizer.step(params, grads)  # Adam (Kingma & Ba 2015), scratchvae.optim.adam_update
        if checked or step % eval_every == 0:
            res["test_steps"].append(step)
            res["test_elbo"].append(test_elbo())
        if checked:
            print(f"  {step:6d} {beta:9.3f} {res['elbo'][-1]:11.3f} {res['test_elbo'][-1]:10.3f}"
                  + "".join(f"  {errors[b][1]:9.2e}" for b in backends))

    res["max_grad_rel_error"] = max(c["rel_error"] for c in res["grad_checks"])
    res["max_value_rel_error"] = max(c["value_rel_error"] for c in res["grad_checks"])
    res["grads_agree"] = max(res["max_grad_rel_error"], res["max_value_rel_error"]) < GRAD_RTOL
    os.makedirs(args.out, exist_ok=True)
    res["png"] = plot(os.path.join(args.out, "train_by_hand.png"), res, x_show, recon_before,
                      reconstruct(params, x_show, args.activation))
    print(f"test ELBO {res['test_elbo'][0]:.3f} → {res['test_elbo'][-1]:.3f} nats per data point; "
          f"by hand against the engine: max relative error {res['max_grad_rel_error']:.2e} in the gradient, "
          f"{res['max_value_rel_error']:.2e} in the ELBO ({'below' if res['grads_agree'] else 'ABOVE'} "
          f"{GRAD_RTOL:g}) over {len(res['grad_checks'])} checks")
    print(f"wrote {res['png']}")
    return res


if __name__ == "__main__":
    try:
        sys.exit(0 if main()["grads_agree"] else 1)
    except OSError as e:  # --out not writable: one line, not a traceback
        print(f"train_by_hand.py: cannot write the figure: {e}", file=sys.stderr)
        sys.exit(1)

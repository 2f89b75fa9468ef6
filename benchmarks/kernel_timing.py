"""Time each Numba kernel of scratchvae._fast.kernels against its NumPy twin.

    python benchmarks/kernel_timing.py              # the 784-400-20 model, batch 128, float32
    python benchmarks/kernel_timing.py --batch 512 --dtype float64
    python benchmarks/kernel_timing.py --parallel   # also prange versions of the biggest loops

Shapes are those of one training step of the 784-400-20 VAE (one sample per
data point, L = 1): encoder 784 → 400 → 2·20, decoder 20 → 400 → 784, Adam on
the 652,824 parameters. Each row is the median of many calls timed with
time.perf_counter; in-place inputs are restored (untimed) before every call,
so every call sees the same data.

``--parallel`` times prange versions (written here, not in the library) of the
three biggest loops against the serial kernels, at batches 32, 128 and 512, to
decide whether ``parallel=True`` pays. It did not, on the 2-core machine this
was written for: see the module docstring of scratchvae._fast.kernels.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from scratchvae._fast import kernels as K  # noqa: E402
from scratchvae import reference as R  # noqa: E402

D, H, J = 784, 400, 20
N_PARAMS = D * H + H + H * 2 * J + 2 * J + J * H + H + H * D + D  # 652,824


def median_us(fn, reset=None, reps=300):
    """Median wall time of fn() in microseconds; reset() (untimed) runs before each call."""
    if reset:
        reset()
    fn()  # compile / warm up
    times = []
    for _ in range(reps):
        if reset:
            reset()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e6 * float(np.median(times))


def cases(N, dt, rng):
    """(name, kernel args builder) for every kernel at the model's shapes. Builders return (args, reset)."""
    def arr(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dt)

    x = (rng.random((N, D)) < 0.3).astype(dt)

    def bias_act(O, act, inplace=False):
        a0, b = arr(N, O, scale=2), arr(O)
        a = a0.copy()
        h = a if inplace else np.empty_like(a)
        return (h, a, b, act), lambda: np.copyto(a, a0)

    def act_back(O, act):
        a, dh0 = arr(N, O, scale=2), arr(N, O)
        h = np.empty_like(a)
        R.bias_act_forward(h, a.copy(), np.zeros(O, dt), act)
        dh = dh0.copy()
        return (dh, np.empty(O, dt), dh, a, h, act), lambda: np.copyto(dh, dh0)  # in place, as the engine calls it

    def optimizer(kind):
        p0, g = arr(N_PARAMS, scale=0.1), arr(N_PARAMS, scale=0.01)
        p, s1, s2 = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)

        def reset():
            np.copyto(p, p0)
            s1.fill(0.01)
            s2.fill(0.01)
        if kind == "adam":
            return (p, s1, s2, g, 1e-3, 0.9, 0.999, 1e-8, 1 - 0.9**10, 1 - 0.999**10), reset
        if kind == "sgd":
            return (p, s1, g, 1e-2, 0.9), reset
        return (p, s1, g, 1e-2, 1e-8), reset

    enc, eps = np.concatenate([arr(N, J), arr(N, J, scale=0.5)], axis=1), arr(1, N, J)  # [μ | v]
    denc0 = arr(N, 2 * J)
    denc = denc0.copy()

    def reset_denc():
        np.copyto(denc, denc0)
    mean, lv_D = rng.random((1, N, D)).astype(dt), arr(D, scale=0.5)
    dll = np.full((1, N), -1.0 / N, dt)  # ∂loss/∂ll of the ELBO, L = 1
    dec_pred = np.concatenate([mean, arr(1, N, D, scale=0.5)], axis=-1)  # [mean | logvar]
    return [
        (f"bias_act_forward relu ({N},{H})", "bias_act_forward", lambda: bias_act(H, K.RELU)),
        (f"bias_act_forward tanh ({N},{H})", "bias_act_forward", lambda: bias_act(H, K.TANH)),
        (f"bias_act_forward identity, in place ({N},{D})", "bias_act_forward",
         lambda: bias_act(D, K.IDENTITY, inplace=True)),
        (f"bias_act_backward relu, in place ({N},{H})", "bias_act_backward", lambda: act_back(H, K.RELU)),
        (f"bias_act_backward tanh, in place ({N},{H})", "bias_act_backward", lambda: act_back(H, K.TANH)),
        (f"col_sum ({N},{D})", "col_sum", lambda: ((np.empty(D, dt), arr(N, D)), None)),
        (f"col_sum ({N},{H})", "col_sum", lambda: ((np.empty(H, dt), arr(N, H)), None)),
        (f"max_abs ({N},{D})", "max_abs", lambda: ((arr(N, D),), None)),
        (f"bernoulli_loglik_grad, the bias added (1,{N},{D})", "bernoulli_loglik_grad",
         lambda: ((np.empty((1, N), dt), np.empty((1, N, D), dt), np.empty(D, dt), x, arr(1, N, D, scale=3), arr(D),
                   dll), None)),
        (f"bernoulli_loglik, the bias added (1,{N},{D})", "bernoulli_loglik",
         lambda: ((np.empty((1, N), dt), x, arr(1, N, D, scale=3), arr(D)), None)),
        (f"gaussian_loglik_grad, the bias added (1,{N},{D})", "gaussian_loglik_grad",
         lambda: ((np.empty((1, N), dt), np.empty((1, N, 2 * D), dt), np.empty(2 * D, dt), x, dec_pred, arr(2 * D),
                   dll), None)),
        (f"gaussian_loglik_shared_grad, the bias added (1,{N},{D})", "gaussian_loglik_shared_grad",
         lambda: ((np.empty((1, N), dt), np.empty((1, N, D), dt), np.empty(D, dt), np.empty(D, dt), x, mean, arr(D),
                   lv_D, dll), None)),
        (f"kl_grad ({N},{J})", "kl_grad",
         lambda: ((np.empty(N, dt), np.empty((N, 2 * J), dt), enc, 1.0 / N), None)),
        (f"reparam_forward (1,{N},{J})", "reparam_forward",
         lambda: ((np.empty((1, N, J), dt), np.empty((N, J), dt), enc, eps), None)),
        (f"reparam_backward (1,{N},{J})", "reparam_backward",
         lambda: ((denc, arr(1, N, J), eps, np.exp(0.5 * enc[:, J:])), reset_denc)),
        (f"adam_update ({N_PARAMS},)", "adam_update", lambda: optimizer("adam")),
        (f"sgd_momentum_update ({N_PARAMS},)", "sgd_momentum_update", lambda: optimizer("sgd")),
        (f"adagrad_update ({N_PARAMS},)", "adagrad_update", lambda: optimizer("adagrad")),
    ]


def kernel_table(N, dt, reps):
    rng = np.random.default_rng(0)
    print(f"kernel vs NumPy twin: 784-400-20 model, batch {N}, {np.dtype(dt).name}, median of {reps} calls (µs)")
    print(f"{'kernel':48s} {'numba':>9s} {'numpy':>9s} {'speedup':>8s}")
    total_k = total_t = 0.0
    for label, name, build in cases(N, dt, rng):
        args, reset = build()
        n_reps = max(reps // 10, 20) if name.endswith("_update") else reps
        tk = median_us(lambda: K.KERNELS[name](*args), reset, n_reps)
        tt = median_us(lambda: R.KERNELS[name](*args), reset, n_reps)
        total_k, total_t = total_k + tk, total_t + tt
        print(f"{label:48s} {tk:9.1f} {tt:9.1f} {tt / tk:7.1f}x")
    print(f"{'sum of the rows':48s} {total_k:9.1f} {total_t:9.1f} {total_t / total_k:7.1f}x")


# ------------------------------------------------------------ fastmath variants
def fastmath_table(dt, N, reps):
    """The reduction kernels recompiled from their source with other fastmath flags.

    Only the kernel's own operations get the flags (the running sum and the
    stores); the per-element math stays in the strict helpers.
    """
    import numba

    print(f"\nfastmath flags of the kernels with a sum, batch {N}, {np.dtype(dt).name}, median (µs)")
    print(f"{'kernel':32s} {'False':>9s} {'reassoc':>9s} {'True':>9s}")
    rng = np.random.default_rng(0)
    x = (rng.random((N, D)) < 0.3).astype(dt)
    logits = (rng.standard_normal((1, N, D)) * 3).astype(dt)
    mean, lv = rng.random((1, N, D)).astype(dt), (rng.standard_normal((1, N, D)) * 0.5).astype(dt)
    enc = rng.standard_normal((N, 2 * J)).astype(dt)  # [μ | v]
    rows = [
        ("bernoulli_loglik_grad", (np.empty((1, N), dt), np.empty((1, N, D), dt), x, logits, -1.0 / N)),
        ("gaussian_loglik_grad", (np.empty((1, N), dt), np.empty((1, N, 2 * D), dt), x,
                                  np.concatenate([mean, lv], axis=-1), -1.0 / N)),
        ("kl_grad", (np.empty(N, dt), np.empty((N, 2 * J), dt), enc, 1.0 / N)),
    ]
    for name, args in rows:
        times = []
        for fm in (False, {"reassoc"}, True):
            k = numba.njit(nogil=True, error_model="numpy", fastmath=fm)(getattr(K, name).py_func)
            times.append(median_us(lambda: k(*args), None, reps))
        print(f"{name:32s} " + " ".join(f"{t:9.1f}" for t in times))


# ------------------------------------------------------------ prange variants
def parallel_table(dt, reps):
    import numba
    from numba import prange

    opts = dict(parallel=True, nogil=True, error_model="numpy")

    @numba.njit(fastmath={"reassoc"}, **opts)
    def bernoulli_par(ll, dlogits, db, x, logits, b, dll):  # db is left alone: the prange loop runs rows
        L, N, D = logits.shape
        for r in prange(L * N):
            l, n = r // N, r % N
            s = dll[l, n]
            acc = logits.dtype.type(0)
            for d in range(D):
                term, g = K._bernoulli_term(x[n, d], K._add(logits[l, n, d], b[d]), s)
                acc += term
                dlogits[l, n, d] = g
            ll[l, n] = acc

    @numba.njit(**opts)
    def bias_relu_par(h, a, b):
        N, O = a.shape
        for n in prange(N):
            for o in range(O):
                v = a[n, o] + b[o]
                a[n, o] = v
                h[n, o] = K._relu(v)

    @numba.njit(**opts)
    def bias_tanh_par(h, a, b):
        N, O = a.shape
        for n in prange(N):
            for o in range(O):
                v = a[n, o] + b[o]
                a[n, o] = v
                h[n, o] = K._tanh_act(v)

    @numba.njit(**opts)
    def adam_par(p, m, v, g, lr, beta1, beta2, eps, bias1, bias2):
        P, T = p.shape[0], numba.get_num_threads()
        for t in prange(T):  # one contiguous slice per thread, each the serial (SIMD) kernel
            lo, hi = t * P // T, (t + 1) * P // T
            K.adam_update(p[lo:hi], m[lo:hi], v[lo:hi], g[lo:hi], lr, beta1, beta2, eps, bias1, bias2)

    print(f"\nprange (threads: {numba.get_num_threads()}, layer: default) vs serial kernel, alone, "
          f"{np.dtype(dt).name}, median (µs)")
    print(f"{'loop':40s} {'batch':>6s} {'serial':>9s} {'prange':>9s} {'speedup':>8s}")
    rng = np.random.default_rng(0)
    p0 = (rng.standard_normal(N_PARAMS) * 0.1).astype(dt)
    g = (rng.standard_normal(N_PARAMS) * 0.01).astype(dt)
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    hp = (1e-3, 0.9, 0.999, 1e-8, 1 - 0.9**10, 1 - 0.999**10)
    for N in (32, 128, 512):
        x = (rng.random((N, D)) < 0.3).astype(dt)
        logits = (rng.standard_normal((1, N, D)) * 3).astype(dt)
        ll, dl = np.empty((1, N), dt), np.empty((1, N, D), dt)
        zero_bias, dll, db = np.zeros(D, dt), np.full((1, N), -1.0 / N, dt), np.empty(D, dt)
        a0, b = (rng.standard_normal((N, H)) * 2).astype(dt), rng.standard_normal(H).astype(dt)
        a, h = a0.copy(), np.empty_like(a0)
        rows = [
            ("bernoulli_loglik_grad", lambda: K.bernoulli_loglik_grad(ll, dl, db, x, logits, zero_bias, dll),
             lambda: bernoulli_par(ll, dl, db, x, logits, zero_bias, dll), None),
            ("bias_act_forward relu", lambda: K.bias_act_forward(h, a, b, K.RELU), lambda: bias_relu_par(h, a, b),
             lambda: np.copyto(a, a0)),
            ("bias_act_forward tanh", lambda: K.bias_act_forward(h, a, b, K.TANH), lambda: bias_tanh_par(h, a, b),
             lambda: np.copyto(a, a0)),
        ]
        for name, serial, par, reset in rows:
            ts, tp = median_us(serial, reset, reps), median_us(par, reset, reps)
            print(f"{name:40s} {N:6d} {ts:9.1f} {tp:9.1f} {ts / tp:7.2f}x")
    ts = median_us(lambda: K.adam_update(p, m, v, g, *hp), lambda: np.copyto(p, p0), max(reps // 3, 20))
    tp = median_us(lambda: adam_par(p, m, v, g, *hp), lambda: np.copyto(p, p0), max(reps // 3, 20))
    print(f"{'adam_update (' + str(N_PARAMS) + ',)':40s} {'-':>6s} {ts:9.1f} {tp:9.1f} {ts / tp:7.2f}x")

    # What counts: the kernels between BLAS calls, as in a training step. OpenBLAS
    # has its own threads; the two pools now take turns on the same cores.
    print("\nthe same between BLAS products (decoder output layer + Adam, as in a step), median µs per iteration")
    print(f"{'batch':>6s} {'serial':>9s} {'prange':>9s} {'speedup':>8s}")
    W = (rng.standard_normal((H, D)) * 0.05).astype(dt)
    dW = np.empty_like(W)
    for N in (32, 128, 512):
        x = (rng.random((N, D)) < 0.3).astype(dt)
        hid = rng.standard_normal((N, H)).astype(dt)
        logits, dl = np.empty((1, N, D), dt), np.empty((1, N, D), dt)
        ll, dh = np.empty((1, N), dt), np.empty((N, H), dt)
        zero_bias, dll, db = np.zeros(D, dt), np.full((1, N), -1.0 / N, dt), np.empty(D, dt)

        def step(bern, adam):
            np.matmul(hid, W, out=logits[0])
            bern(ll, dl, db, x, logits, zero_bias, dll)
            np.matmul(dl[0], W.T, out=dh)
            np.matmul(hid.T, dl[0], out=dW)
            adam(p, m, v, g, *hp)
        ts = median_us(lambda: step(K.bernoulli_loglik_grad, K.adam_update), None, max(reps // 3, 20))
        tp = median_us(lambda: step(bernoulli_par, adam_par), None, max(reps // 3, 20))
        print(f"{N:6d} {ts:9.1f} {tp:9.1f} {ts / tp:7.2f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--parallel", action="store_true", help="also time prange versions of the biggest loops")
    ap.add_argument("--fastmath", action="store_true", help="also time the reduction kernels with other fastmath flags")
    args = ap.parse_args(argv)
    dt = np.dtype(args.dtype).type
    kernel_table(args.batch, dt, args.reps)
    if args.fastmath:
        fastmath_table(dt, args.batch, args.reps)
    if args.parallel:
        parallel_table(dt, args.reps)


if __name__ == "__main__":
    main()

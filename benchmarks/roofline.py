"""The ``roofline`` part: the training step's time against the time of its matrix products alone.

    python -m benchmarks roofline [--rounds R] [--smoke] [--out DIR]

The FLOPs of one step of the standard model are Σ 2·m·k·n over its matrix
products (:func:`matmul_shapes`, :func:`flop_count`). For each batch size,
``--rounds`` alternating pairs: ``reps`` steps of scratchvae's numba float32
:class:`scratchvae.engine.FusedStep`, then ``reps`` runs of those products
alone (preallocated ``out=``, transposes as the engine has them,
:func:`blas_seconds`), so a slow spell of a shared machine falls on both
halves of a pair; ``fraction`` is the median over rounds of BLAS-alone time /
step time. Each round also times a step whose update and finiteness pass run
in one pass on the caller's thread instead of in pieces on OpenBLAS' threads;
then the same pairs with OpenBLAS on one thread; then a profile of one step
(:func:`phase_profile`: forward_backward with each kernel timed,
gradients_finite, the Adam update). Written: tables and ``roofline.json``.
"""
import os
import time

import numpy as np

from .common import (D, H, J, Stepper, add_output_options, add_rounds_option, median, print_table, save_json,
                     step_seconds, table_header)
from . import peers


def matmul_shapes(batch_size, data_dim=D, hidden=(H,), latent=J, samples=1):
    """The matrix products of one FusedStep, as (name, (m, k), (k, n), transposed operand or None).

    Per dense layer with ``rows`` inputs, fan-in ``i`` and fan-out ``o``: forward
    h @ W (rows×i @ i×o), weight gradient h.T @ dout (i×rows @ rows×o, transposed
    left operand), input gradient dout @ W.T (rows×o @ o×i, transposed right
    operand) for every layer but the encoder's first (its input is the data).
    """
    N, R = batch_size, samples * batch_size
    enc = [data_dim, *hidden, 2 * latent]
    dec = [latent, *hidden, data_dim]
    out = []
    for prefix, sizes, rows in (("enc", enc, N), ("dec", dec, R)):
        for li, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
            out.append((f"{prefix}.{li} fwd", (rows, i), (i, o), None))
            out.append((f"{prefix}.{li} dW", (i, rows), (rows, o), "A"))
            if not (prefix == "enc" and li == 0):
                out.append((f"{prefix}.{li} dX", (rows, o), (o, i), "B"))
    return out


def flop_count(batch_size, data_dim=D, hidden=(H,), latent=J, samples=1):
    """FLOPs of the matrix products of one training step: Σ 2·m·k·n over :func:`matmul_shapes`.

    For one hidden layer: 6·N·(D·H + 2J·H) + 6·R·(J·H + H·D) − 2·N·D·H with R = L·N
    (forward, dW and dX of each layer, 2 FLOPs per multiply-add, minus the encoder's unneeded dX).
    """
    return sum(2 * a[0] * a[1] * b[1] for _, a, b, _ in matmul_shapes(batch_size, data_dim, hidden, latent, samples))


def blas_seconds(batch_size, dtype="float32", reps=50, **kw):
    """Median seconds of all the step's matmuls back to back, preallocated out=, transposes as the engine."""
    rng = np.random.default_rng(0)
    ops = []
    for _, (m, k), (k2, n), tr in matmul_shapes(batch_size, **kw):
        if tr == "A":
            A = rng.standard_normal((k, m)).astype(dtype).T
        else:
            A = rng.standard_normal((m, k)).astype(dtype)
        if tr == "B":
            B = rng.standard_normal((n, k2)).astype(dtype).T
        else:
            B = rng.standard_normal((k2, n)).astype(dtype)
        ops.append((A, B, np.empty((m, n), dtype)))

    def run():
        for A, B, C in ops:
            np.matmul(A, B, out=C)
    for _ in range(3):
        run()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t0)
    return median(ts)


class _Timed:
    def __init__(self, fn, acc, name):
        self.fn, self.acc, self.name = fn, acc, name

    def __call__(self, *a):
        t0 = time.perf_counter()
        r = self.fn(*a)
        self.acc[self.name] = self.acc.get(self.name, 0.0) + time.perf_counter() - t0
        return r


def phase_profile(batch_size=128, reps=100, hidden=H, latent=J):
    """Where one numba step's time goes: forward_backward (kernels timed by wrapping this
    FusedStep's own kernel set; the rest is matmuls + Python), gradients_finite, update (Adam)."""
    st = Stepper("numba", batch_size, hidden=hidden, latent=latent)
    fs = st.fs
    x = peers.binary_data(batch_size)
    for _ in range(5):
        st.step(x)
    acc = {}
    for name in [n for n in dir(fs.k) if not n.startswith("_")]:
        f = getattr(fs.k, name)
        if callable(f):
            setattr(fs.k, name, _Timed(f, acc, name))
    fb, fin, up = [], [], []
    for _ in range(reps):
        st.rng.standard_normal(out=st.eps, dtype=st.eps.dtype)
        t0 = time.perf_counter()
        fs.forward_backward(x, st.eps, 1.0)
        t1 = time.perf_counter()
        fs.gradients_finite()
        t2 = time.perf_counter()
        fs.update()
        t3 = time.perf_counter()
        fb.append(t1 - t0), fin.append(t2 - t1), up.append(t3 - t2)
    kern = {k: v / reps for k, v in acc.items()}
    kern.pop("adam_update", None)  # timed as update_adam_s
    kern.pop("all_finite", None)  # timed as gradients_finite_s
    fb_kernels = sum(kern.values())
    total = median(fb) + median(fin) + median(up)
    blas = blas_seconds(batch_size, hidden=(hidden,), latent=latent)
    out = {"batch_size": batch_size, "step_s": total, "forward_backward_s": median(fb),
           "fb_kernels_s": fb_kernels, "fb_matmul_and_python_s": median(fb) - fb_kernels,
           "matmuls_alone_s": blas, "gradients_finite_s": median(fin), "update_adam_s": median(up),
           "kernels_s": kern}
    return out


def _roofline_rows(batch_sizes, reps, rounds, hidden, latent, one_pass=False):
    """For each batch size, ``rounds`` alternating pairs (``reps`` steps, ``reps`` runs of the products alone);
    with ``one_pass``, each round also times a step whose update and finiteness pass run in one pass on the
    caller's thread (``FusedStep`` without its pieces on OpenBLAS' threads), for comparison."""
    rows = []
    for b in batch_sizes:
        st = Stepper("numba", b, hidden=hidden, latent=latent)
        plain = Stepper("numba", b, hidden=hidden, latent=latent) if one_pass else None
        if plain is not None:
            plain.fs._pieces = None
        x = peers.binary_data(b)
        fl = flop_count(b, hidden=(hidden,), latent=latent)
        ts, bls, ops = [], [], []
        for _ in range(rounds):
            ts.append(step_seconds(st, x, reps))
            bls.append(blas_seconds(b, reps=reps, hidden=(hidden,), latent=latent))
            if plain is not None:
                ops.append(step_seconds(plain, x, reps))
        t, bl = median(ts), median(bls)
        fractions = [b_ / t_ for b_, t_ in zip(bls, ts)]
        row = {"batch_size": b, "flops": fl, "step_ms": 1e3 * t, "gflops": fl / t / 1e9,
               "blas_ms": 1e3 * bl, "blas_gflops": fl / bl / 1e9, "fraction": median(fractions),
               "round_fractions": fractions, "rounds": rounds, "reps": reps}
        if ops:
            row.update(one_pass_step_ms=1e3 * median(ops), round_one_pass_step_ms=[1e3 * t_ for t_ in ops],
                       one_pass_fraction=median([b_ / t_ for b_, t_ in zip(bls, ops)]))
        rows.append(row)
    return rows


def _one_blas_thread_rows(batch_sizes, reps, rounds, hidden, latent):
    """:func:`_roofline_rows` with OpenBLAS on one thread (the count put back after); [] without OpenBLAS.

    The comparison that separates the products from the host's slow spells:
    on one thread the step's time stays put (docs/performance.md).
    """
    from scratchvae._fast import blas

    before = blas.get_threads()
    if before is None:
        return []
    try:
        blas.set_threads(1)
        return _roofline_rows(batch_sizes, reps, rounds, hidden, latent)
    finally:
        blas.set_threads(before)


def part_roofline(batch_sizes=(32, 128, 512), reps=50, rounds=3, hidden=H, latent=J, json_path=None):
    """Step time against the BLAS limit, measured in ``rounds`` alternating pairs (step, products alone).

    Each round times ``reps`` steps and ``reps`` runs of the products alone,
    back to back; ``fraction`` is the median over rounds of the round's
    BLAS-alone time / step time, so a slow spell of a shared machine falls on
    both halves of a pair; step_ms and blas_ms are the medians over rounds.
    """
    rows = _roofline_rows(batch_sizes, reps, rounds, hidden, latent, one_pass=True)
    print("\nFLOPs of a step = sum of 2*m*k*n over its matmuls = 6N(DH+2JH) + 6R(JH+HD) - 2NDH, R = L*N")
    print_table(rows, ["batch_size", "flops", "step_ms", "gflops", "blas_ms", "blas_gflops", "fraction"],
                "roofline (numba, float32; fraction = BLAS-alone time / step time)")
    if "one_pass_step_ms" in rows[0]:
        print_table(rows, ["batch_size", "step_ms", "one_pass_step_ms", "blas_ms", "fraction", "one_pass_fraction"],
                    "the same rounds, a step with its update and finiteness pass in one pass on this thread "
                    "instead of in pieces on OpenBLAS' threads")
    one = _one_blas_thread_rows(batch_sizes, reps, rounds, hidden, latent)
    if one:
        print_table(one, ["batch_size", "step_ms", "blas_ms", "fraction"],
                    "the same on one BLAS thread (step and products alone; fraction against the one-thread products)")
    profs = [phase_profile(b, reps=reps, hidden=hidden, latent=latent) for b in batch_sizes]
    for prof in profs:
        print(table_header(f"phases of one numba step at batch {prof['batch_size']} (ms)"))
        for k in ("step_s", "forward_backward_s", "fb_matmul_and_python_s", "matmuls_alone_s", "fb_kernels_s",
                  "gradients_finite_s", "update_adam_s"):
            print(f"  {k[:-2]:24s} {1e3 * prof[k]:8.3f}")
        for k, v in sorted(prof["kernels_s"].items(), key=lambda kv: -kv[1]):
            print(f"    kernel {k:22s} {1e3 * v:8.3f}")
    res = {"formula": "6N(DH+2JH) + 6R(JH+HD) - 2NDH, R=L*N", "rows": rows, "one_blas_thread": one,
           "profiles": profs}
    if json_path:
        save_json(res, json_path)
    return res


# ------------------------------------------------------------------ the command line
def add_parser(sub):
    s = sub.add_parser("roofline", description=__doc__.splitlines()[0],
                       help="the step's FLOPs, GFLOP/s and its BLAS limit; a profile of one step")
    add_output_options(s)
    add_rounds_option(s, "alternating (step, products alone) rounds (default 3)")
    return s


def run(args, o):
    """The part from the run's ``o`` (:class:`benchmarks.suite.Run`); --smoke: tiny sizes and 2 rounds."""
    path = os.path.join(o.out, "roofline.json")
    if o.smoke:
        return part_roofline((16, 32), reps=5, rounds=2, hidden=64, latent=8, json_path=path)
    return part_roofline(rounds=o.rounds, json_path=path)

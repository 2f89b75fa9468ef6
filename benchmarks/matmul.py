"""The ``matmul`` part: why the training step calls BLAS; two Numba matmuls beside it at the model's shapes.

    python -m benchmarks matmul [--smoke] [--out DIR]

C = A @ B in float32 at the shapes of the standard model's forward products
(batch 128), by the textbook triple loop, by a blocked loop parallel over row
blocks (``prange``), and by NumPy's BLAS (:func:`_numba_matmuls`): each called
once untimed (compiling), checked against ``A @ B``, then timed until 0.3 s
have passed (at least 3 calls, at most 200); the median call. Written: a
table of ms and GFLOP/s, ``matmul.json`` and ``matmul.png``.
"""
import os
import time

import numpy as np

from .common import add_output_options, median, print_table, pyplot, save_json

_MM = {}


def _numba_matmuls():
    """The two Numba matmuls, compiled on first use (so importing this module does not import numba)."""
    if _MM:
        return _MM
    import numba

    @numba.njit(cache=False, fastmath=True)
    def naive(A, B, C):
        """C = A @ B by the textbook triple loop (i, j, k)."""
        m, k = A.shape
        n = B.shape[1]
        for i in range(m):
            for j in range(n):
                s = 0.0  # a float64 accumulator
                for p in range(k):
                    s += A[i, p] * B[p, j]
                C[i, j] = s

    @numba.njit(parallel=True, cache=False, fastmath=True)
    def blocked(A, B, C):
        """C = A @ B: prange over blocks of 16 rows; in a block, k in tiles of 128, the j loop innermost
        (contiguous in B and C, so it vectorises)."""
        m, k = A.shape
        n = B.shape[1]
        MB, KB = 16, 128
        nblocks = (m + MB - 1) // MB
        for bi in numba.prange(nblocks):
            i0 = bi * MB
            i1 = min(i0 + MB, m)
            for i in range(i0, i1):
                for j in range(n):
                    C[i, j] = 0
            for p0 in range(0, k, KB):
                p1 = min(p0 + KB, k)
                for i in range(i0, i1):
                    for p in range(p0, p1):
                        a = A[i, p]
                        for j in range(n):
                            C[i, j] += a * B[p, j]

    _MM["naive"] = naive
    _MM["blocked-prange"] = blocked
    _MM["blas"] = lambda A, B, C: np.matmul(A, B, out=C)
    return _MM


def part_matmul(smoke=False, json_path=None, plot_path=None):
    N = 32 if smoke else 128
    shapes = [(N, 784, 400), (N, 400, 40), (N, 20, 400), (N, 400, 784)]
    if smoke:
        shapes = [(N, 64, 32), (N, 32, 16)]
    mm = _numba_matmuls()
    rng = np.random.default_rng(0)
    rows = []
    for m, k, n in shapes:
        A = rng.standard_normal((m, k)).astype(np.float32)
        B = rng.standard_normal((k, n)).astype(np.float32)
        ref = A @ B
        for name, f in mm.items():
            C = np.empty((m, n), np.float32)
            f(A, B, C)  # compile / warm
            err = float(np.max(np.abs(C - ref)) / (np.max(np.abs(ref)) + 1e-30))
            reps, ts, t_all = 0, [], time.perf_counter()
            while reps < 3 or (time.perf_counter() - t_all < (0.05 if smoke else 0.3) and reps < 200):
                t0 = time.perf_counter()
                f(A, B, C)
                ts.append(time.perf_counter() - t0)
                reps += 1
            t = median(ts)
            rows.append({"shape": f"{m}x{k} @ {k}x{n}", "impl": name, "ms": 1e3 * t,
                         "gflops": 2 * m * k * n / t / 1e9, "rel_err": err})
    print_table(rows, ["shape", "impl", "ms", "gflops", "rel_err"], "matmul float32 (GFLOP/s)")
    if json_path:
        save_json(rows, json_path)
    if plot_path:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [f"{m}x{k}@{k}x{n}" for m, k, n in shapes]
        impls = list(mm)
        w = 0.8 / len(impls)
        for ii, name in enumerate(impls):
            ax.bar(np.arange(len(shapes)) + ii * w, [r["gflops"] for r in rows if r["impl"] == name], w, label=name)
        ax.set_xticks(np.arange(len(shapes)) + w * (len(impls) - 1) / 2, labels, fontsize=7)
        ax.set(yscale="log", ylabel="GFLOP/s", title="float32 matmul at the model's shapes")
        # the legend below the axes: no bar hidden
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(impls), frameon=False)
        fig.tight_layout()
        fig.savefig(plot_path)
        plt.close(fig)
    return rows


# ------------------------------------------------------------------ the command line
def add_parser(sub):
    s = sub.add_parser("matmul", description=__doc__.splitlines()[0],
                       help="a naive and a blocked Numba matmul against BLAS at the model's shapes")
    add_output_options(s)
    return s


def run(args, o):
    return part_matmul(o.smoke, json_path=os.path.join(o.out, "matmul.json"),
                       plot_path=os.path.join(o.out, "matmul.png"))

"""The ``evaluate`` part: IWAE-K evaluation speed, scratchvae beside PyTorch and JAX and beside its BLAS limit.

    python -m benchmarks evaluate [--points 100] [--k 5000] [--rows-per-call 2048] [--repeats 3] [--peers]
                                  [--rounds R]

L_K (K = ``--k`` importance samples) of the untrained standard model
(784-400-20, float32, 2 threads) on ``--points`` seeded random binary points,
the samples drawn in chunks of at most ``--rows-per-call`` decoder rows (the
same for every system) with a streaming log-sum-exp over the chunks, no
gradients; scratchvae through :func:`benchmarks.iwae.scratchvae_iwae_evaluate`.
The rate is decoder samples per second (points x K per second), the median
over ``--repeats`` timed evaluations (after one untimed) of every round; every
system runs in a fresh process once per round, the rounds interleaved in a
rotated order. For scratchvae, each evaluation is followed by its **forward
BLAS limit** (:class:`DecoderProducts`: the decoder's two matrix products
alone at the same chunk shapes), so ``fraction`` = limit time / evaluation
time is the median of paired repeats. Also the minutes projected for
:data:`TEST_POINTS` points. Written: two tables, scratchvae over the fastest
peer, ``evaluate.json`` and ``evaluate.png``.
"""
import json
import os
import sys
import time

import numpy as np

from .common import (D, H, J, THREADS, add_output_options, add_peers_option, add_rounds_option, best_peer_ratios,
                     given, interleaved_rounds, machine_line, make_model, median, merge_rounds, peer_systems,
                     plot_bars, print_table, save_json)
from . import peers
from .iwae import IWAE_BACKEND, scratchvae_iwae_evaluate

EVALUATE_KEY = ("system", "backend", "dtype", "points", "k")
EVAL_LISTS = ("repeat_seconds", "repeat_mean_bound", "repeat_limit_seconds", "repeat_fractions")
TEST_POINTS = 10_000  # Fashion-MNIST's test set, for the projected minutes


class DecoderProducts:
    """The decoder's matrix products alone at the chunk shapes of one evaluation, preallocated.

    Per chunk of R = c·N rows: z (R, J) @ W (J, H) and h (R, H) @ W (H, D), the
    forward BLAS limit of the evaluation: no bias, activation, likelihood or noise.
    """

    def __init__(self, points, k, rows_per_call, dtype="float32", hidden=H, latent=J, data_dim=D, seed=0):
        rng = np.random.default_rng(seed)
        self.sizes = peers.chunk_sizes(points, k, rows_per_call)
        self.flops = sum(2 * c * points * (latent * hidden + hidden * data_dim) for c in self.sizes)
        self.ops = {}
        for c in set(self.sizes):
            R = c * points
            z = rng.standard_normal((R, latent)).astype(dtype)
            W0 = rng.standard_normal((latent, hidden)).astype(dtype)
            h = rng.standard_normal((R, hidden)).astype(dtype)
            W1 = rng.standard_normal((hidden, data_dim)).astype(dtype)
            self.ops[c] = [(z, W0, np.empty((R, hidden), dtype)), (h, W1, np.empty((R, data_dim), dtype))]

    def run(self):
        for c in self.sizes:
            for A, B, C in self.ops[c]:
                np.matmul(A, B, out=C)


def scratchvae_evaluate_row(points, k, rows_per_call, repeats, seed=0):
    """Time ``repeats`` evaluations, each followed by the decoder's products alone (one untimed warm-up of each)."""
    from scratchvae import __version__

    model, _ = make_model("float32", seed=seed)
    x = peers.binary_data(points, seed=seed)
    limit = DecoderProducts(points, k, rows_per_call)
    scratchvae_iwae_evaluate(model, x, k, rows_per_call, seed=seed)
    limit.run()
    seconds, bounds, limits = [], [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        bound = scratchvae_iwae_evaluate(model, x, k, rows_per_call, seed=seed + 1 + r)
        t1 = time.perf_counter()
        limit.run()
        t2 = time.perf_counter()
        seconds.append(t1 - t0)
        limits.append(t2 - t1)
        bounds.append(float(np.mean(bound)))
    return peers.evaluate_row("scratchvae", IWAE_BACKEND, points, k, rows_per_call, seconds, bounds, THREADS,
                              __version__, repeat_limit_seconds=limits,
                              repeat_fractions=[lt / t for lt, t in zip(limits, seconds)],
                              limit_flops=limit.flops)


def _progress_eval(r):
    print(f"  .. {r['system']} {r['backend']} {r['points']} points x K={r['k']}: {r['samples_per_s']:.0f} "
          f"decoder samples/s, mean bound {r['mean_bound']:.2f}", file=sys.stderr, flush=True)


def child(spec):
    """Child process: the evaluation row of one system, printed as a one-row JSON list."""
    s = json.loads(spec)
    kw = dict(points=s["points"], k=s["k"], rows_per_call=s["rows_per_call"], repeats=s["repeats"])
    if s["system"] == "scratchvae":
        row = scratchvae_evaluate_row(**kw)
    elif s["system"] in ("pytorch-eager", "pytorch-compile"):
        row = peers.torch_iwae_evaluate(threads=THREADS, compile=s["system"] == "pytorch-compile", **kw)
    elif s["system"] == "jax-jit":
        row = peers.jax_iwae_evaluate(threads=THREADS, **kw)
    else:
        raise ValueError(f"unknown system {s['system']!r}")
    _progress_eval(row)
    print(json.dumps([row]))


def evaluate_summary(rows):
    """Add the medians of the merged per-repeat lists: mean bound, and for scratchvae the forward BLAS limit,
    the fraction limit time / evaluation time (median of the paired repeats), and projected minutes for
    :data:`TEST_POINTS` points."""
    for r in rows:
        r["mean_bound"] = median(r["repeat_mean_bound"])
        r["projected_test_min"] = TEST_POINTS * r["k"] / r["samples_per_s"] / 60
        if r.get("repeat_limit_seconds"):
            lim = median(r["repeat_limit_seconds"])
            r["limit_samples_per_s"] = r["points"] * r["k"] / lim
            r["limit_gflops"] = r["limit_flops"] / lim / 1e9
            r["fraction"] = median(r["repeat_fractions"])
            r["limit_projected_test_min"] = TEST_POINTS * r["k"] / r["limit_samples_per_s"] / 60
    return rows


def part_evaluate(points=100, k=5000, rows_per_call=2048, repeats=3, rounds=3, with_peers=False, json_path=None,
                  plot_path=None):
    """IWAE-K evaluation speed (decoder samples/s), scratchvae against the peers and its forward BLAS limit."""
    peers.check_eval_args(points, k, rows_per_call, repeats, THREADS)
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    common = {"points": points, "k": k, "rows_per_call": rows_per_call, "repeats": repeats}
    specs = [dict(common, **s) for s in [{"system": "scratchvae"}] + peer_systems(with_peers)]
    rows = evaluate_summary(merge_rounds(interleaved_rounds(specs, rounds, child="_evaluate"), key=EVALUATE_KEY,
                                         per="repeat_samples_per_s", lists=EVAL_LISTS))
    print(f"\n{machine_line()}")
    print_table(rows, ["system", "backend", "points", "k", "samples_per_s", "mean_bound", "projected_test_min"],
                f"IWAE-{k} evaluation (decoder samples/s = points x K per s; chunks of {rows_per_call} decoder rows; "
                f"median over {repeats} repeat(s) x {rounds} interleaved round(s); projected minutes for "
                f"{TEST_POINTS} points)")
    ours = [r for r in rows if r["system"] == "scratchvae"]
    print_table(ours, ["system", "samples_per_s", "limit_samples_per_s", "limit_gflops", "fraction",
                       "limit_projected_test_min"],
                "forward BLAS limit (the decoder's products alone at the same chunk shapes, alternating with the "
                "evaluation; fraction = limit time / evaluation time)")
    rat = best_peer_ratios(rows, "k")
    if rat:
        print_table(rat, ["k", "best_peer", "ratio_scratchvae_over_best_peer"], "scratchvae / best peer")
    res = {"rows": rows, "ratios": rat, "protocol": {**common, "rounds": rounds, "threads": THREADS,
                                                     "test_points": TEST_POINTS}}
    if json_path:
        save_json(res, json_path)
    if plot_path:
        hl = []
        if ours and ours[0].get("limit_samples_per_s"):
            lim = ours[0]["limit_samples_per_s"]
            hl = [(lim, "forward BLAS limit"), (lim / 1.3, "limit / 1.3")]
        plot_bars(rows, "k", "K", "decoder samples/s",
                  f"IWAE-{k} evaluation, {points} points (median; bars: range of the rounds)", plot_path, hl)
    return res


# ------------------------------------------------------------------ the command line
def add_parser(sub):
    e = sub.add_parser("evaluate", description=__doc__.splitlines()[0],
                       help="IWAE-K evaluation decoder samples/s and its forward BLAS limit")
    e.add_argument("--points", type=int, default=None, help="data points per evaluation (default 100)")
    e.add_argument("--k", type=int, default=None, help="importance samples per point (default 5000)")
    e.add_argument("--rows-per-call", type=int, default=None,
                   help="decoder rows per chunk (default 2048, the same for every system)")
    e.add_argument("--repeats", type=int, default=None, help="timed evaluations per round (default 3)")
    add_peers_option(e)
    add_rounds_option(e)
    e.add_argument("--json", default=None)
    add_output_options(e)
    return e


def run(args, o):
    """The part from the parsed options and the run's ``o`` (:class:`benchmarks.suite.Run`)."""
    smoke = o.smoke
    return part_evaluate(points=given(args, "points", 4 if smoke else 100), k=given(args, "k", 50 if smoke else 5000),
                         rows_per_call=given(args, "rows_per_call", 40 if smoke else 2048),
                         repeats=given(args, "repeats", 2 if smoke else 3), rounds=o.rounds, with_peers=o.with_peers,
                         json_path=given(args, "json", os.path.join(o.out, "evaluate.json")),
                         plot_path=os.path.join(o.out, "evaluate.png"))

"""The ``iwae`` part: training with the importance-weighted bound, scratchvae beside PyTorch and JAX.

    python -m benchmarks iwae [--ks 5,50] [--batch-size 128] [--n 6400] [--epochs 3] [--peers] [--rounds R]

The standard model (784-400-20, ReLU, Bernoulli likelihood, Adam lr 1e-3,
float32, 2 threads) trains on the IWAE bound L_K (Burda et al. 2015) at each
K of ``--ks``, on seeded random binary data (:func:`benchmarks.peers.binary_data`),
one untimed warm-up epoch then timed ones; data points per second. The same
protocol as the throughput part: every system in a fresh process once per
round, the rounds interleaved in a rotated order, the median over every timed
epoch of every round. Written: a table, scratchvae over the fastest peer per
K, ``iwae.json`` and ``iwae.png``.

scratchvae enters this part and the ``evaluate`` part only through the two
adapters here, :func:`scratchvae_iwae_stepper` and
:func:`scratchvae_iwae_evaluate`, which run what ``scratchvae train
--objective iwae`` and ``scratchvae evaluate`` run.
"""
import json
import os
import sys

import numpy as np

from .common import (THREADS, Stepper, add_output_options, add_peers_option, add_rounds_option, best_peer_ratios,
                     comma_list, given, interleaved_rounds, machine_line, merge_rounds, peer_systems, plot_bars,
                     print_table, run_epochs, save_json)
from . import peers


# ------------------------------------------------------------------ the IWAE adapters
# The scratchvae side of the iwae and evaluate parts goes through these two functions and nothing else.
IWAE_BACKEND = "numba"  # the kernel set of the scratchvae rows of the iwae and evaluate parts


def scratchvae_iwae_stepper(batch_size, k, dtype="float32", seed=0):
    """An object whose ``step(x)`` is one IWAE training step of the standard model on fresh noise.

    ``x`` is a (batch_size, D) minibatch; the step draws ε (K, N, J), takes the
    gradient of −mean_n L_K,n and applies Adam (lr 1e-3) on the fused engine, as
    ``scratchvae train --objective iwae`` does.
    """
    return Stepper(IWAE_BACKEND, batch_size, dtype, samples=k, seed=seed, objective="iwae")


def scratchvae_iwae_evaluate(model, x, k, rows_per_call, seed=0):
    """L_K per data point, (N,), with K = ``k`` samples drawn in chunks of at most ``rows_per_call`` decoder rows.

    :func:`scratchvae.training.evaluate.importance_bound` on the engine, with the helper
    threads of ``scratchvae.training.evaluate.evaluate``: a streaming log-sum-exp over
    the chunks, so memory is bounded by one chunk; the noise comes from
    ``np.random.default_rng(seed)``.
    """
    from scratchvae.training.evaluate import helpers, importance_bound

    x = model.check_data(x)
    with helpers(model, IWAE_BACKEND) as threads:
        return importance_bound(model.engine(IWAE_BACKEND), x, k, np.random.default_rng(seed), rows_per_call,
                                helpers=threads)[0]


# ------------------------------------------------------------------ one process: one system, every K
IWAE_KEY = ("system", "backend", "dtype", "k", "batch_size")


def scratchvae_iwae_throughput(ks, batch_size, n, epochs, seed=0):
    """IWAE training samples/s (data points per second) of scratchvae, one row per K."""
    from scratchvae import __version__

    data = peers.binary_data(n, seed=seed)
    steps = peers.steps_per_epoch(n, batch_size)
    rows = []
    for k in ks:
        st = scratchvae_iwae_stepper(batch_size, k, "float32", seed)
        seconds = run_epochs(st, data, batch_size, epochs, seed)[peers.WARMUP_EPOCHS:]
        rows.append(peers.throughput_row("scratchvae", IWAE_BACKEND, batch_size, seconds, steps * batch_size, n,
                                         epochs, THREADS, __version__, k=k))
        _progress_k(rows[-1])
    return rows


def _progress_k(r):
    print(f"  .. {r['system']} {r['backend']} K={r['k']}: {r['samples_per_s']:.0f} samples/s", file=sys.stderr,
          flush=True)


def child(spec):
    """Child process: the IWAE training rows of one system at every K, printed as one JSON line."""
    s = json.loads(spec)
    kw = dict(batch_size=s["batch_size"], n=s["n"], epochs=s["epochs"])
    if s["system"] == "scratchvae":
        rows = scratchvae_iwae_throughput(s["ks"], **kw)
    else:
        if s["system"] in ("pytorch-eager", "pytorch-compile"):
            rows = peers.torch_iwae_throughput(s["ks"], threads=THREADS, compile=s["system"] == "pytorch-compile",
                                               **kw)
        elif s["system"] == "jax-jit":
            rows = peers.jax_iwae_throughput(s["ks"], threads=THREADS, **kw)
        else:
            raise ValueError(f"unknown system {s['system']!r}")
        for r in rows:
            _progress_k(r)
    print(json.dumps(rows))


# ------------------------------------------------------------------ the part
def part_iwae(ks=(5, 50), batch_size=128, n=6400, epochs=3, rounds=3, with_peers=False, json_path=None,
              plot_path=None):
    """IWAE training samples/s, scratchvae against the peers, in interleaved rounds of fresh processes."""
    ks = peers.check_ks(ks)
    if epochs < 2:
        raise ValueError("epochs must be >= 2 (the first is warm-up)")
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    peers.steps_per_epoch(n, batch_size)
    common = {"ks": ks, "batch_size": batch_size, "n": n, "epochs": epochs}
    specs = [dict(common, **s) for s in [{"system": "scratchvae"}] + peer_systems(with_peers)]
    rows = merge_rounds(interleaved_rounds(specs, rounds, child="_iwae"), key=IWAE_KEY)
    print(f"\n{machine_line()}")
    print_table(rows, ["system", "backend", "k", "batch_size", "samples_per_s"],
                f"IWAE training (data points/s; batch {batch_size}, n={n}; median over {epochs - 1} timed "
                f"epoch(s) x {rounds} interleaved round(s))")
    rat = best_peer_ratios(rows, "k")
    if rat:
        print_table(rat, ["k", "best_peer", "ratio_scratchvae_over_best_peer"], "scratchvae / best peer")
    res = {"rows": rows, "ratios": rat, "protocol": {**common, "rounds": rounds, "threads": THREADS}}
    if json_path:
        save_json(res, json_path)
    if plot_path:
        plot_bars(rows, "k", "K", "data points/s",
                  f"IWAE training, batch {batch_size} (median; bars: range of the rounds)", plot_path)
    return res


# ------------------------------------------------------------------ the command line
def add_parser(sub):
    w = sub.add_parser("iwae", description=__doc__.splitlines()[0],
                       help="IWAE training samples/s at K = 5 and 50 (scratchvae and peers)")
    w.add_argument("--ks", type=comma_list(int), default=None, help="numbers of importance samples (default 5,50)")
    w.add_argument("--batch-size", type=int, default=None, help="default 128")
    w.add_argument("--n", type=int, default=None, help="data points per epoch (default 6400)")
    w.add_argument("--epochs", type=int, default=None, help="all epochs, the first untimed (default 3)")
    add_peers_option(w)
    add_rounds_option(w)
    w.add_argument("--json", default=None)
    add_output_options(w)
    return w


def run(args, o):
    """The part from the parsed options and the run's ``o`` (:class:`benchmarks.suite.Run`)."""
    smoke = o.smoke
    return part_iwae(ks=given(args, "ks", [2, 5] if smoke else [5, 50]),
                     batch_size=given(args, "batch_size", 16 if smoke else 128),
                     n=given(args, "n", 64 if smoke else 6400), epochs=given(args, "epochs", 2 if smoke else 3),
                     rounds=o.rounds, with_peers=o.with_peers,
                     json_path=given(args, "json", os.path.join(o.out, "iwae.json")),
                     plot_path=os.path.join(o.out, "iwae.png"))

"""The benchmark suite of scratchvae: throughput, steady, IWAE, evaluation, roofline, scaling, memory, compile, matmul.

    python -m benchmarks [--smoke] [--out DIR] [--data-dir DIR]   # every part; tables, JSON per part, PNG plots
    python -m benchmarks throughput [--batch-sizes 32,128,512] [--backends numba,reference]
                                    [--dtypes float32,float64] [--peers] [--epochs N] [--rounds R]
                                    [--n N] [--trained-epochs N] [--data-dir DIR] [--json FILE]
    python -m benchmarks steady [--batch-sizes 128] [--epochs 8] [--n N] [--data-dir DIR] [--peers] [--rounds R]
                                [--json FILE]      # every epoch timed on Fashion-MNIST (benchmarks/steady.py)
    python -m benchmarks iwae [--ks 5,50] [--batch-size 128] [--n 6400] [--epochs 3] [--peers] [--rounds R]
    python -m benchmarks evaluate [--points 100] [--k 5000] [--rows-per-call 2048] [--repeats 3] [--peers]
                                  [--rounds R]
    python -m benchmarks check-peers [--no-compile]   # by hand: the peers' bounds and gradients against NumPy
    python -m benchmarks roofline|scaling|memory|compile|matmul [--smoke] [--out DIR]

Standard model: 784-400-20, ReLU, Bernoulli likelihood, L = 1, Adam lr 1e-3,
trained on seeded random binary data (:func:`benchmarks.peers.binary_data`),
2 threads. ``--epochs`` counts all epochs, the first being an untimed
warm-up (as in :mod:`benchmarks.peers`). Every system (a backend and dtype of
scratchvae, or a peer) runs in a fresh process once per round, and the rounds
interleave the systems in a rotated order (:func:`interleaved_rounds`);
samples_per_s is the median over the timed epochs of all rounds. No part
asserts anything about speed.

``--trained-epochs N`` (throughput; default 0, the fresh model above): every
system (scratchvae's backends and dtypes as chosen, and the peers) first
trains N epochs on the Fashion-MNIST training images (grey targets, the same
shuffle for every system; untimed), then runs the same protocol (one untimed
epoch, then timed ones) on the first ``--n`` Fashion-MNIST training images,
continuing that training, so a state that slows the step (Adam's moments
gone subnormal, issue 18) is what is timed; random binary data would give
every pixel a gradient and wash it out in the first untimed epoch. The loops
are those of :func:`benchmarks.steady.trained_throughput`, with each system's
step code (scratchvae's :class:`Stepper`, :mod:`benchmarks.peers`' steps).
Its JSON and PNG: ``throughput-trained.json`` and ``.png``. The full run
includes it for scratchvae numba float32 and the peers at batch 32, 128 and
512 after 2 epochs (``--smoke``: 1 epoch on the first 256), and the ``steady``
part (:mod:`benchmarks.steady`: 8 epochs on Fashion-MNIST, every epoch timed,
the ratio median(epochs 4-8) / min(epoch 1, 2) and the subnormal numbers in
the trained state); both are skipped with a line when Fashion-MNIST is not
found (``--data-dir``, then the usual folders of ``scratchvae.data.datasets``).

Every JSON result and every printed table header names the CPU model and
vendor (:func:`cpu_identity`: /proc/cpuinfo's "model name" and "vendor_id",
GenuineIntel or AuthenticAMD): a dict gets "machine" (:func:`machine_info`),
a list of rows "cpu" and "cpu_vendor" in each row.

The ``iwae`` part (IWAE training, K = 5 and 50) and the ``evaluate`` part
(IWAE-5000 evaluation in chunks of decoder rows, with its forward BLAS limit)
follow the same protocol; scratchvae enters them only through
:func:`scratchvae_iwae_stepper` and :func:`scratchvae_iwae_evaluate`.

Backends of scratchvae:

- ``numba`` and ``reference``: :class:`scratchvae.engine.FusedStep` with the
  compiled kernels or with their readable twins: ``forward_backward``,
  ``gradients_finite``, ``update`` (as the trainer calls them).
"""
import os

THREADS = 2
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, str(THREADS))  # only effective if numpy/numba are not imported yet

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from . import peers  # noqa: E402

D, H, J = 784, 400, 20
PARTS = ("throughput", "steady", "iwae", "evaluate", "roofline", "scaling", "memory", "compile", "matmul")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ helpers
def median(xs):
    return float(statistics.median(xs))


def make_model(dtype="float32", hidden=H, latent=J, seed=0, data_dim=D):
    from scratchvae import VAE, VAEConfig, make_optimizer

    cfg = VAEConfig(data_dim=data_dim, latent_dim=latent, hidden=(hidden,), activation="relu",
                    likelihood="bernoulli", dtype=dtype)
    return VAE(cfg, np.random.default_rng(seed)), make_optimizer("adam", 1e-3)


class Stepper:
    """One training step (the ELBO or the IWAE bound) of a backend on preallocated noise: ``step(x)``."""

    def __init__(self, backend, batch_size, dtype="float32", hidden=H, latent=J, samples=1, seed=0, objective="elbo"):
        self.model, self.opt = make_model(dtype, hidden, latent, seed)
        self.backend = backend
        self.rng = np.random.default_rng(seed + 1)
        self.eps = np.empty((samples, batch_size, latent), dtype)  # L samples, or K for the IWAE bound
        from scratchvae.engine import FusedStep

        self.fs = FusedStep(self.model, self.opt, backend=backend, objective=objective)

    def step(self, x):
        self.rng.standard_normal(out=self.eps, dtype=self.eps.dtype)
        self.fs.forward_backward(x, self.eps, 1.0)
        if self.fs.gradients_finite():
            self.fs.update()


def step_seconds(stepper, x, reps, warmup=3):
    """Median seconds of ``stepper.step(x)`` over ``reps`` calls after ``warmup``."""
    for _ in range(warmup):
        stepper.step(x)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        stepper.step(x)
        ts.append(time.perf_counter() - t0)
    return median(ts)


def run_epochs(stepper, data, batch_size, epochs, seed=0):
    """Seconds of each epoch (a fresh permutation each, full minibatches only)."""
    n = data.shape[0]
    steps = peers.steps_per_epoch(n, batch_size)
    order = np.random.default_rng(seed)
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        xs = data[order.permutation(n)]
        for i in range(steps):
            stepper.step(xs[i * batch_size:(i + 1) * batch_size])
        seconds.append(time.perf_counter() - t0)
    return seconds


def save_json(obj, path):
    """Write ``obj`` as JSON, naming the CPU: a dict gets "machine" (:func:`machine_info`) unless it has it or is
    that info itself; a list of rows gets "cpu" and "cpu_vendor" in every row."""
    cpu, vendor = cpu_identity()
    if isinstance(obj, dict) and "machine" not in obj and "cpu_vendor" not in obj:
        obj = {**obj, "machine": machine_info()}
    elif isinstance(obj, list):
        obj = [{**r, "cpu": cpu, "cpu_vendor": vendor} if isinstance(r, dict) else r for r in obj]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def table_header(title):
    """The header line of a printed table: its title and the CPU it was measured on."""
    cpu, vendor = cpu_identity()
    return f"\n== {title} [CPU: {cpu}, {vendor}]"


def print_table(rows, cols, title=None):
    if title:
        print(table_header(title))
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return "" if v is None else str(v)


@functools.lru_cache(maxsize=None)
def cpu_identity():
    """(model, vendor) of the CPU: /proc/cpuinfo's "model name" and "vendor_id" (GenuineIntel, AuthenticAMD),
    else what the platform module says ("unknown" vendor)."""
    import platform

    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k in ("model name", "vendor_id") and k not in fields:
                    fields[k] = v.strip()
                if len(fields) == 2:
                    break
    except OSError:
        pass
    return (fields.get("model name") or platform.processor() or platform.machine() or "unknown",
            fields.get("vendor_id") or "unknown")


def machine_info():
    """The CPU (model and vendor), core count, BLAS and library versions the numbers were measured with."""
    import platform

    cpu, vendor = cpu_identity()
    blas = "unknown"
    try:
        b = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{b.get('name')} {b.get('version')} ({b.get('openblas configuration', '').strip()})"
    except Exception:  # show_config's layout is not a stable API
        pass
    from scratchvae._fast.blas import core_name

    info = {"cpu": cpu, "cpu_vendor": vendor, "cpus": os.cpu_count(), "threads": THREADS, "blas": blas,
            "blas_kernels": core_name(), "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
            "python": platform.python_version(), "numpy": np.__version__}
    try:
        import importlib.metadata as md

        info["numba"] = md.version("numba")
    except Exception:
        info["numba"] = "not installed"
    return info


def machine_line():
    m = machine_info()
    return (f"machine: {m['cpu']} ({m['cpu_vendor']}), {m['cpus']} CPUs, {m['threads']} threads; BLAS {m['blas']}; "
            f"kernels {m['blas_kernels']}; Python {m['python']}, NumPy {m['numpy']}, Numba {m['numba']}")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------ throughput
def scratchvae_throughput(backend, dtype, batch_sizes, n, epochs, seed=0, hidden=H, latent=J):
    from scratchvae import __version__

    data = peers.binary_data(n, seed=seed).astype(dtype)
    rows = []
    for b in batch_sizes:
        st = Stepper(backend, b, dtype, hidden, latent, seed=seed)
        seconds = run_epochs(st, data, b, epochs, seed)[peers.WARMUP_EPOCHS:]
        steps = peers.steps_per_epoch(n, b)
        rows.append(peers.throughput_row("scratchvae", backend, b, seconds, steps * b, n, epochs, THREADS,
                                         __version__, dtype=dtype, hidden=hidden, latent=latent))
        _progress(rows[-1])
    return rows


def _progress(r):
    print(f"  .. {r['system']} {r['backend']} {r['dtype']} batch {r['batch_size']}: {r['samples_per_s']:.0f} samples/s",
          file=sys.stderr, flush=True)


def throughput_systems(backends, dtypes, with_peers):
    """The systems the throughput part runs, as specs for :func:`_child_throughput` (peers only if installed)."""
    specs = [{"system": "scratchvae", "backend": be, "dtype": dt} for be in backends for dt in dtypes]
    return specs + peer_systems(with_peers)


def _child_throughput(spec):
    """Child process: the rows of one system at every batch size, printed as one JSON line."""
    s = json.loads(spec)
    bs, n, epochs = s["batch_sizes"], s["n"], s["epochs"]
    if s.get("trained_epochs"):  # after training on Fashion-MNIST: every system through benchmarks.steady
        from . import steady

        rows = steady.trained_throughput(s)
        for r in rows:
            _progress(r)
    elif s["system"] == "scratchvae":  # prints its progress as each batch size ends
        rows = scratchvae_throughput(s["backend"], s["dtype"], bs, n, epochs, hidden=s["hidden"], latent=s["latent"])
    else:
        if s["system"] in ("pytorch-eager", "pytorch-compile"):
            rows = peers.torch_throughput(bs, n=n, epochs=epochs, threads=THREADS,
                                          compile=s["system"] == "pytorch-compile")
        elif s["system"] == "jax-jit":
            rows = peers.jax_throughput(bs, n=n, epochs=epochs, threads=THREADS)
        else:
            raise ValueError(f"unknown system {s['system']!r}")
        for r in rows:
            _progress(r)
    print(json.dumps(rows))


def interleaved_rounds(specs, rounds, child="_throughput"):
    """Run every system once per round, each in a fresh process, the order rotated from round to round.

    A fresh process per system and round: no thread pool of one framework
    (OpenBLAS, OpenMP, XLA) is alive while another is measured. Rounds
    interleave the systems, so a slow spell of a shared machine falls on
    all of them rather than on whichever ran during it. Returns the rows of
    every run, each with its "round". ``child``: the internal command that
    runs one spec (``python -m benchmarks CHILD SPEC``).
    """
    out = []
    for r in range(rounds):
        order = specs[r % len(specs):] + specs[:r % len(specs)]
        for spec in order:
            print(f"  round {r + 1}/{rounds}: {_label(spec)}", file=sys.stderr, flush=True)
            for row in _run_child([child, json.dumps(spec)], stream_stderr=True):
                out.append(dict(row, round=r + 1))
    return out


def _label(spec):
    return " ".join(str(spec[k]) for k in ("system", "backend", "dtype") if k in spec)


THROUGHPUT_KEY = ("system", "backend", "dtype", "batch_size")


def merge_rounds(rows, key=THROUGHPUT_KEY, per="epoch_samples_per_s", lists=()):
    """One row per ``key`` (by default system, backend, dtype, batch_size) from the rows of every round.

    ``samples_per_s`` is the median over every timed epoch (the list ``per``)
    of every round; ``round_samples_per_s`` keeps each round's own median.
    The lists named in ``lists`` are concatenated over the rounds where a row has them.
    """
    merged = {}
    for r in rows:
        k = tuple(r[f] for f in key)
        m = merged.get(k)
        if m is None:
            m = merged[k] = {f: v for f, v in r.items() if f != "round"}
            m[per], m["round_samples_per_s"] = [], []
            for f in lists:
                if f in r:
                    m[f] = []
        m[per] = m[per] + list(r[per])
        for f in lists:
            if f in r:
                m[f] = m[f] + list(r[f])
        m["round_samples_per_s"].append(r["samples_per_s"])
    for m in merged.values():
        m["samples_per_s"] = median(m[per])
        m["rounds"] = len(m["round_samples_per_s"])
    return list(merged.values())


def ratios(rows):
    """samples/s of scratchvae-numba float32 over each peer's, per batch size."""
    ours = {r["batch_size"]: r["samples_per_s"] for r in rows
            if r["system"] == "scratchvae" and r["backend"] == "numba" and r["dtype"] == "float32"}
    out = []
    for r in rows:
        if r["system"] != "scratchvae" and r["batch_size"] in ours:
            out.append({"batch_size": r["batch_size"], "peer": r["system"],
                        "ratio_numba_over_peer": ours[r["batch_size"]] / r["samples_per_s"]})
    return out


def part_throughput(batch_sizes=(32, 128, 512), backends=("numba", "reference"), dtypes=("float32", "float64"),
                    with_peers=False, epochs=4, n=12800, rounds=3, json_path=None, plot_path=None, smoke=False,
                    trained_epochs=0, data_dir=None):
    """Training samples/s; with ``trained_epochs`` > 0, of a model first trained that many epochs on Fashion-MNIST
    and timed on its first ``n`` training images (:func:`benchmarks.steady.trained_throughput`)."""
    if epochs < 2:
        raise ValueError("epochs must be >= 2 (the first is warm-up)")
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    if trained_epochs < 0:
        raise ValueError(f"--trained-epochs must be >= 0, got {trained_epochs}")
    common = {"batch_sizes": list(batch_sizes), "n": n, "epochs": epochs, "hidden": 64 if smoke else H,
              "latent": 8 if smoke else J}
    trained = ""
    if trained_epochs:
        from . import steady

        steady.find_fashion(data_dir)  # a missing data set: one line, before any child runs
        common.update(trained_epochs=trained_epochs, data_dir=data_dir, trained_n=n if smoke else None)
        trained = (f"; after {trained_epochs} epoch(s) of training on {f'the first {n}' if smoke else 'the'} "
                   f"Fashion-MNIST training images (grey targets), timed on the first {n}")
    specs = [dict(common, **s) for s in throughput_systems(backends, dtypes, with_peers)]
    rows = merge_rounds(interleaved_rounds(specs, rounds))
    print(f"\n{machine_line()}")
    print_table(rows, ["system", "backend", "dtype", "batch_size", "samples_per_s"],
                f"throughput (samples/s; median over {epochs - 1} timed epoch(s) x {rounds} interleaved round(s)"
                f"{trained})")
    rat = ratios(rows)
    if rat:
        print_table(rat, ["batch_size", "peer", "ratio_numba_over_peer"], "scratchvae-numba / peer")
    if json_path:
        save_json(rows, json_path)
    if plot_path:
        plot_throughput(rows, plot_path, f"\nafter {trained_epochs} epoch(s) of training on Fashion-MNIST"
                        if trained_epochs else "")
    return rows


def _label_log_axes(ax, xs, ylabel=lambda t: f"{t:g}"):
    """Log-log axes labelled in plain numbers: x at the measured ``xs``, y at 1-2-5 steps (finer steps where
    the range is too short for three of those)."""
    ax.set_xticks(xs, [f"{x:g}" for x in xs], minor=False)
    ax.set_xticks([], minor=True)
    lo, hi = ax.get_ylim()
    for steps in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), tuple(np.arange(10, 100, 1) / 10)):
        ticks = [m * 10.0**e for e in range(-3, 8) for m in steps if lo <= m * 10.0**e <= hi]
        if len(ticks) >= 3:
            break
    if len(ticks) > 6:  # the finest steps: keep about five
        ticks = ticks[::-(-len(ticks) // 5)]
    ax.set_yticks(ticks, [ylabel(t) for t in ticks], minor=False)
    ax.set_yticks([], minor=True)


def plot_throughput(rows, path, note=""):
    """samples/s against batch size, one line per system; bars span the rounds' medians; ``note`` ends the title."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    keys = sorted({(r["system"], r["backend"], r["dtype"]) for r in rows})
    for k in keys:
        rs = sorted((r for r in rows if (r["system"], r["backend"], r["dtype"]) == k), key=lambda r: r["batch_size"])
        b = [r["batch_size"] for r in rs]
        y = [r["samples_per_s"] for r in rs]
        lo = [y_ - min(r.get("round_samples_per_s") or [y_]) for y_, r in zip(y, rs)]
        hi = [max(r.get("round_samples_per_s") or [y_]) - y_ for y_, r in zip(y, rs)]
        label = k[0] if k[0] != "scratchvae" else f"scratchvae {k[1]} {k[2]}"
        ax.errorbar(b, y, yerr=[lo, hi], fmt="o-", capsize=3, label=label)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="samples/s",
           title=f"training throughput (median; bars: range of the rounds){note}")
    _label_log_axes(ax, sorted({r["batch_size"] for r in rows}), lambda t: f"{t / 1e3:g}k")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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


# ------------------------------------------------------------------ iwae (training)
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


def peer_systems(with_peers):
    """The peers' specs, those installed only (none without ``with_peers``)."""
    if not with_peers:
        return []
    have = peers.available()
    specs = [{"system": "pytorch-eager"}, {"system": "pytorch-compile"}] if have["torch"] else []
    return specs + ([{"system": "jax-jit"}] if have["jax"] else [])


def _child_iwae(spec):
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


def best_peer_ratios(rows, group):
    """For each value of ``group``: scratchvae's samples/s over the fastest peer's, naming that peer."""
    out = []
    for g in sorted({r[group] for r in rows}):
        ours = [r for r in rows if r[group] == g and r["system"] == "scratchvae"]
        theirs = [r for r in rows if r[group] == g and r["system"] != "scratchvae"]
        if ours and theirs:
            best = max(theirs, key=lambda r: r["samples_per_s"])
            out.append({group: g, "best_peer": best["system"], "scratchvae_samples_per_s": ours[0]["samples_per_s"],
                        "peer_samples_per_s": best["samples_per_s"],
                        "ratio_scratchvae_over_best_peer": ours[0]["samples_per_s"] / best["samples_per_s"]})
    return out


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


def plot_bars(rows, group, xlabel, ylabel, title, path, hlines=()):
    """One panel per value of ``group`` (each on its own linear scale), a bar per system; whiskers span the
    rounds' medians. ``hlines``: (y, label) reference lines drawn on every panel."""
    plt = _plt()
    groups = sorted({r[group] for r in rows})
    systems = sorted({r["system"] for r in rows}, key=lambda s: (s != "scratchvae", s))
    colors = {s: f"C{i}" for i, s in enumerate(systems)}
    fig, axes = plt.subplots(1, len(groups), figsize=(max(6.0, 3.4 * len(groups) + 1.5), 4.2), squeeze=False)
    for ax, g in zip(axes[0], groups):
        for i, sysname in enumerate(systems):
            r = next((r for r in rows if r[group] == g and r["system"] == sysname), None)
            if r is None:
                continue
            y = r["samples_per_s"]
            rs = r.get("round_samples_per_s") or [y]
            ax.bar(i, y, 0.7, yerr=[[y - min(rs)], [max(rs) - y]], capsize=3, color=colors[sysname])
        for j, (y, label) in enumerate(hlines):
            ax.axhline(y, ls="--" if j == 0 else ":", lw=1, color="k")
            ax.text(len(systems) - 0.5, y, label, ha="right", va="bottom", fontsize=7)
        ax.set_xticks(range(len(systems)), systems, rotation=30, ha="right", fontsize=7)
        ax.set(title=f"{xlabel} = {g:g}" if isinstance(g, (int, float)) else str(g), ylabel=ylabel)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ------------------------------------------------------------------ evaluate (IWAE-5000)
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


def _child_evaluate(spec):
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


# ------------------------------------------------------------------ check-peers (by hand)
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


# ------------------------------------------------------------------ roofline
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


# ------------------------------------------------------------------ scaling
def part_scaling(smoke=False, reps=30, out_dir=None):
    if smoke:
        axes = {"batch_size": [16, 32], "hidden": [32, 64], "latent": [4, 8], "samples": [1, 2]}
        base = dict(batch_size=32, hidden=64, latent=8, samples=1)
        reps = 3
    else:
        axes = {"batch_size": [16, 32, 64, 128, 256, 512], "hidden": [100, 200, 400, 800, 1600],
                "latent": [5, 10, 20, 50, 100], "samples": [1, 2, 4, 8]}
        base = dict(batch_size=128, hidden=H, latent=J, samples=1)
    res = {}
    for ax, values in axes.items():
        rows = []
        for v in values:
            p = dict(base, **{ax: v})
            st = Stepper("numba", p["batch_size"], hidden=p["hidden"], latent=p["latent"], samples=p["samples"])
            x = peers.binary_data(p["batch_size"])
            t = step_seconds(st, x, reps)
            rows.append(dict(p, step_ms=1e3 * t,
                             gflops=flop_count(p["batch_size"], hidden=(p["hidden"],), latent=p["latent"],
                                               samples=p["samples"]) / t / 1e9))
        res[ax] = rows
        print_table(rows, [ax, "step_ms", "gflops"], f"scaling vs {ax} (numba float32, others at {base})")
        if out_dir:
            plt = _plt()
            fig, a = plt.subplots(figsize=(5, 3.5))
            a.plot([r[ax] for r in rows], [r["step_ms"] for r in rows], "o-")
            a.set(xscale="log", yscale="log", xlabel=ax, ylabel="ms per step", title=f"step time vs {ax}")
            _label_log_axes(a, [r[ax] for r in rows])
            fig.tight_layout()
            fig.savefig(os.path.join(out_dir, f"scaling_{ax}.png"))
            plt.close(fig)
    if out_dir:
        save_json(res, os.path.join(out_dir, "scaling.json"))
    return res


# ------------------------------------------------------------------ memory
def _child_rss(backend, n, batch_size, hidden, latent):
    import resource

    data = peers.binary_data(n)
    st = Stepper(backend, batch_size, hidden=hidden, latent=latent)
    st.step(data[:batch_size])  # compile (numba) before measuring the baseline
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run_epochs(st, data, batch_size, 1)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"maxrss_before_kb": before, "maxrss_after_kb": after}))


def _run_child(args, env=None, stream_stderr=False):
    """Run ``python -m benchmarks.suite ARGS`` and return the JSON of its last line of output.

    ``stream_stderr``: the child's progress lines go straight to this terminal.
    """
    e = dict(os.environ, **(env or {}))
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-m", "benchmarks.suite", *map(str, args)], stdout=subprocess.PIPE,
                       stderr=None if stream_stderr else subprocess.PIPE, text=True, env=e, cwd=REPO, timeout=1800)
    if p.returncode != 0:
        tail = f":\n{p.stderr[-3000:]}" if p.stderr else ""
        raise RuntimeError(f"child {args} failed (exit {p.returncode}){tail}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def alloc_per_step(backend, batch_size, hidden, latent, steps=20, warmup=5):
    """tracemalloc over steady-state steps: net new blocks/bytes per step (snapshot diff over all steps)
    and the transient peak bytes above the step's starting level (get_traced_memory), averaged."""
    import tracemalloc

    st = Stepper(backend, batch_size, hidden=hidden, latent=latent)
    x = peers.binary_data(batch_size)
    for _ in range(warmup):
        st.step(x)
    tracemalloc.start()
    try:
        st.step(x)
        s0 = tracemalloc.take_snapshot()
        peaks = []
        for _ in range(steps):
            cur, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            st.step(x)
            _, peak = tracemalloc.get_traced_memory()
            peaks.append(peak - cur)
        s1 = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    diff = s1.compare_to(s0, "filename")
    return {"net_blocks_per_step": sum(d.count_diff for d in diff) / steps,
            "net_bytes_per_step": sum(d.size_diff for d in diff) / steps,
            "transient_peak_bytes_per_step": float(np.mean(peaks))}


def part_memory(smoke=False, json_path=None):
    n, b, hid, lat = (256, 32, 64, 8) if smoke else (12800, 128, H, J)
    rows = []
    for be in ("numba", "reference"):
        r = _run_child(["_rss", be, n, b, hid, lat])
        row = {"backend": be, "n": n, "batch_size": b, "hidden": hid, "latent": lat,
               "peak_rss_mb": r["maxrss_after_kb"] / 1024, "rss_before_epoch_mb": r["maxrss_before_kb"] / 1024,
               "epoch_rss_growth_mb": (r["maxrss_after_kb"] - r["maxrss_before_kb"]) / 1024}
        row.update(alloc_per_step(be, b, hid, lat, steps=5 if smoke else 20))
        rows.append(row)
    print_table(rows, ["backend", "peak_rss_mb", "epoch_rss_growth_mb", "net_blocks_per_step",
                       "net_bytes_per_step", "transient_peak_bytes_per_step"],
                f"memory (one epoch n={n} batch {b}, subprocess ru_maxrss; tracemalloc per steady step)")
    if json_path:
        save_json(rows, json_path)
    return rows


# ------------------------------------------------------------------ compile
def _child_compile(batch_size, hidden, latent):
    st = Stepper("numba", batch_size, hidden=hidden, latent=latent)  # scratchvae._fast.kernels imported here
    x = peers.binary_data(batch_size)
    t0 = time.perf_counter()
    st.step(x)
    first = time.perf_counter() - t0
    steady = step_seconds(st, x, 20, warmup=2)
    print(json.dumps({"first_step_s": first, "steady_step_s": steady, "compile_s": first - steady}))


def _child_import():
    t0 = time.perf_counter()
    import scratchvae  # noqa: F401

    dt = time.perf_counter() - t0
    print(json.dumps({"import_s": dt, "numba_imported": "numba" in sys.modules}))


def part_compile(smoke=False, json_path=None):
    b, hid, lat = (32, 64, 8) if smoke else (128, H, J)
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        cold = _run_child(["_compile", b, hid, lat], env)
        warm = _run_child(["_compile", b, hid, lat], env)
    imp = _run_child(["_import"])
    res = {"cold": cold, "warm": warm, "import": imp}
    print(table_header("numba compile time (first step − steady step, subprocess, fresh NUMBA_CACHE_DIR)"))
    print(f"  cold: {cold['compile_s']:.3f} s   warm (cached): {warm['compile_s']:.3f} s")
    print(f"  import scratchvae: {1e3 * imp['import_s']:.1f} ms, numba in sys.modules: {imp['numba_imported']}")
    assert not imp["numba_imported"], "import scratchvae imported numba"
    if json_path:
        save_json(res, json_path)
    return res


# ------------------------------------------------------------------ matmul
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
        plt = _plt()
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [f"{m}x{k}@{k}x{n}" for m, k, n in shapes]
        impls = list(mm)
        w = 0.8 / len(impls)
        for ii, name in enumerate(impls):
            ax.bar(np.arange(len(shapes)) + ii * w, [r["gflops"] for r in rows if r["impl"] == name], w, label=name)
        ax.set_xticks(np.arange(len(shapes)) + w * (len(impls) - 1) / 2, labels, fontsize=7)
        ax.set(yscale="log", ylabel="GFLOP/s", title="float32 matmul at the model's shapes")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(impls), frameon=False)  # below: no bar hidden
        fig.tight_layout()
        fig.savefig(plot_path)
        plt.close(fig)
    return rows


# ------------------------------------------------------------------ CLI
def _csv(kind):
    return lambda s: [kind(v) for v in s.split(",") if v]


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes everywhere, no peers (< 60 s)")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results"))
    p.add_argument("--peers", action="store_true", help="also PyTorch and JAX (not with --smoke)")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds of the throughput, steady, iwae, evaluate and roofline parts "
                        "(default 3; 1 with --smoke)")
    p.add_argument("--data-dir", default=None, help="searched first for Fashion-MNIST (steady, trained throughput)")
    sub = p.add_subparsers(dest="part")
    t = sub.add_parser("throughput")
    t.add_argument("--batch-sizes", type=_csv(int), default=None)
    t.add_argument("--backends", type=_csv(str), default=["numba", "reference"])
    t.add_argument("--dtypes", type=_csv(str), default=["float32", "float64"])
    t.add_argument("--peers", action="store_true", dest="t_peers")
    t.add_argument("--epochs", type=int, default=None, help="all epochs, the first untimed (default 4)")
    t.add_argument("--rounds", type=int, default=None, dest="t_rounds",
                   help="interleaved rounds, a fresh process per system and round (default 3)")
    t.add_argument("--n", type=int, default=None)
    t.add_argument("--trained-epochs", type=int, default=None,
                   help="first train every system this many epochs on Fashion-MNIST, then time on its first N images")
    t.add_argument("--data-dir", default=None, dest="t_data_dir", help="searched first for Fashion-MNIST")
    t.add_argument("--json", default=None)
    t.add_argument("--smoke", action="store_true", dest="t_smoke")
    t.add_argument("--out", default=None, dest="t_out")
    w = sub.add_parser("iwae", help="IWAE training samples/s at K = 5 and 50 (scratchvae and peers)")
    w.add_argument("--ks", type=_csv(int), default=None, help="numbers of importance samples (default 5,50)")
    w.add_argument("--batch-size", type=int, default=None, help="default 128")
    w.add_argument("--n", type=int, default=None, help="data points per epoch (default 6400)")
    w.add_argument("--epochs", type=int, default=None, help="all epochs, the first untimed (default 3)")
    e = sub.add_parser("evaluate", help="IWAE-K evaluation decoder samples/s and its forward BLAS limit")
    e.add_argument("--points", type=int, default=None, help="data points per evaluation (default 100)")
    e.add_argument("--k", type=int, default=None, help="importance samples per point (default 5000)")
    e.add_argument("--rows-per-call", type=int, default=None, help="decoder rows per chunk (default 2048, the same for every system)")
    e.add_argument("--repeats", type=int, default=None, help="timed evaluations per round (default 3)")
    for s in (w, e):
        s.add_argument("--peers", action="store_true", dest="t_peers")
        s.add_argument("--rounds", type=int, default=None, dest="t_rounds",
                       help="interleaved rounds, a fresh process per system and round (default 3)")
        s.add_argument("--json", default=None)
        s.add_argument("--smoke", action="store_true", dest="t_smoke")
        s.add_argument("--out", default=None, dest="t_out")
    c = sub.add_parser("check-peers", help="by hand: every peer's L_K, loss and gradient against a NumPy "
                                           "reference on shared weights and noise (needs torch and/or jax)")
    c.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    from . import steady

    steady.add_parser(sub)
    for name in PARTS[4:]:
        s = sub.add_parser(name)
        s.add_argument("--smoke", action="store_true", dest="t_smoke")
        s.add_argument("--out", default=None, dest="t_out")
        if name == "roofline":
            s.add_argument("--rounds", type=int, default=None, dest="t_rounds",
                           help="alternating (step, products alone) rounds (default 3)")
    # internal: children of the parts
    for name in ("_rss", "_compile", "_import", "_throughput", "_iwae", "_evaluate", "_steady"):
        s = sub.add_parser(name)
        s.add_argument("args", nargs="*")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _main(args)
    except ValueError as e:  # a bad argument: one line and exit code 2, no traceback
        parser.error(str(e))


def _given(args, name, default):
    """The option ``name`` if the part's parser has it and it was given (0 included), else ``default``."""
    v = getattr(args, name, None)
    return default if v is None else v


def _main(args):
    part = args.part
    if part == "_rss":
        be, n, b, hid, lat = args.args
        return _child_rss(be, int(n), int(b), int(hid), int(lat))
    if part == "_compile":
        return _child_compile(*map(int, args.args))
    if part == "_import":
        return _child_import()
    if part == "_throughput":
        return _child_throughput(*args.args)
    if part == "_iwae":
        return _child_iwae(*args.args)
    if part == "_evaluate":
        return _child_evaluate(*args.args)
    if part == "_steady":
        from . import steady

        return steady.child(*args.args)
    if part == "check-peers":
        return check_peers(compile=not args.no_compile)
    smoke = args.smoke or getattr(args, "t_smoke", False)
    out = getattr(args, "t_out", None) or args.out
    os.makedirs(out, exist_ok=True)
    with_peers = (args.peers or getattr(args, "t_peers", False)) and not smoke
    rounds = next((r for r in (getattr(args, "t_rounds", None), args.rounds) if r is not None), 1 if smoke else 3)
    if rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {rounds}")
    data_dir = getattr(args, "t_data_dir", None) or args.data_dir
    t_start = time.perf_counter()
    parts = PARTS if part is None else (part,)
    results = {}
    for name in parts:
        path = os.path.join(out, f"{name}.json")
        if name == "throughput":
            bs = getattr(args, "batch_sizes", None) or ([16, 32] if smoke else [32, 128, 512])
            trained = _given(args, "trained_epochs", 0)
            stem = "throughput-trained" if trained else "throughput"
            kw = dict(batch_sizes=bs, with_peers=with_peers,
                      epochs=getattr(args, "epochs", None) or (2 if smoke else 4),
                      n=getattr(args, "n", None) or (256 if smoke else 12800),
                      rounds=rounds,
                      json_path=getattr(args, "json", None) or os.path.join(out, f"{stem}.json"),
                      plot_path=os.path.join(out, f"{stem}.png"), smoke=smoke)
            if part == "throughput":
                kw.update(backends=args.backends, dtypes=args.dtypes, trained_epochs=trained, data_dir=data_dir)
            results[name] = part_throughput(**kw)
            if part is None:  # the full run: the same after training on Fashion-MNIST (benchmarks.steady)
                from . import steady

                results["throughput-trained"] = steady.run_trained_throughput(kw, out, smoke, data_dir)
        elif name == "steady":
            from . import steady

            results[name] = steady.run_part(args, smoke, with_peers, rounds, out, _given(args, "json", path),
                                            data_dir, full_run=part is None)
        elif name == "iwae":
            kw = dict(ks=_given(args, "ks", [2, 5] if smoke else [5, 50]),
                      batch_size=_given(args, "batch_size", 16 if smoke else 128),
                      n=_given(args, "n", 64 if smoke else 6400),
                      epochs=_given(args, "epochs", 2 if smoke else 3),
                      rounds=rounds, with_peers=with_peers, json_path=_given(args, "json", path),
                      plot_path=os.path.join(out, "iwae.png"))
            results[name] = part_iwae(**kw)
        elif name == "evaluate":
            kw = dict(points=_given(args, "points", 4 if smoke else 100),
                      k=_given(args, "k", 50 if smoke else 5000),
                      rows_per_call=_given(args, "rows_per_call", 40 if smoke else 2048),
                      repeats=_given(args, "repeats", 2 if smoke else 3),
                      rounds=rounds, with_peers=with_peers, json_path=_given(args, "json", path),
                      plot_path=os.path.join(out, "evaluate.png"))
            results[name] = part_evaluate(**kw)
        elif name == "roofline":
            results[name] = (part_roofline((16, 32), reps=5, rounds=2, hidden=64, latent=8, json_path=path) if smoke
                             else part_roofline(rounds=rounds, json_path=path))
        elif name == "scaling":
            results[name] = part_scaling(smoke, out_dir=out)
        elif name == "memory":
            results[name] = part_memory(smoke, json_path=path)
        elif name == "compile":
            results[name] = part_compile(smoke, json_path=path)
        elif name == "matmul":
            results[name] = part_matmul(smoke, json_path=path, plot_path=os.path.join(out, "matmul.png"))
    save_json(machine_info(), os.path.join(out, "machine.json"))
    print(f"\nwrote {out} in {time.perf_counter() - t_start:.1f} s")
    return results


if __name__ == "__main__":
    main()

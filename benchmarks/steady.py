"""The ``steady`` part: every epoch of training on Fashion-MNIST timed, so that a slowdown after epoch 1 shows.

    python -m benchmarks steady [--batch-sizes 128] [--epochs 8] [--n N] [--data-dir DIR] [--peers]
                                [--rounds R] [--json FILE] [--smoke] [--out DIR]

Issue 18: training slowed down after its first epoch because Adam's moments
went subnormal (pixels black in nearly every Fashion-MNIST image get
exact-zero gradients; their moments decay geometrically into the subnormal
range, where the CPU computes slowly). Random binary data and a fresh model,
as in the throughput part, cannot show that.

The protocol, for every system (scratchvae's numba float32 step,
:class:`benchmarks.common.Stepper`; with ``--peers``, PyTorch eager,
``torch.compile`` and JAX ``jit`` with the step code of
:mod:`benchmarks.peers`; a peer not installed is left out with a line):

- the standard model (784-400-20, ReLU, Bernoulli likelihood on the logits,
  analytic KL, L = 1, Adam lr 1e-3, float32, 2 threads) on the Fashion-MNIST
  training images (all, or the first ``--n``) as grey targets: uint8 / 255 in
  float32, as the PyTorch examples VAE's ``ToTensor``, no binarization;
- the same shuffle for every system and round (:func:`epoch_orders`), full
  minibatches only, so no shape changes and nothing compiles twice;
- ``--epochs`` epochs (default 8), every one timed, the first included, from
  the gather of the permuted data to the last step (JAX: ``block_until_ready``);
- before epoch 1, reported as ``warmup_s`` and leaving the training state as
  it was: a throwaway gather and the compilation of one step (scratchvae:
  :meth:`FusedStep.compile`, as ``scratchvae train`` does; PyTorch: one step,
  then the parameters put back, Adam's state cleared and the noise reseeded;
  JAX: the jitted step on a copy of the state), so compiling is paid there,
  not in epoch 1;
- each system in a fresh process once per round, the rounds interleaved in a
  rotated order (:func:`benchmarks.common.interleaved_rounds`).

Reported per system and batch size: the seconds of each epoch (the median
over the rounds at each epoch, and every round's), the ratio
median(epochs 4-8) / min(epochs 1, 2) (:func:`slowdown_ratio`; None with
fewer than 4 epochs), and the subnormal floats (:func:`count_subnormals`) in
the parameters and optimizer state at the end, for scratchvae also in the
checkpoint ``save_checkpoint`` writes of that state, read back. Issue 18's
target, reported and never asserted: for scratchvae a ratio of at most
:data:`TARGET_RATIO` and no subnormal in a saved checkpoint. Written: a table
(a column per epoch), ``steady.json`` (``--json FILE``) with every round, and
``steady.png``. ``--smoke``: the first 256 images, 2 epochs, batch 32, hidden
64, latent 8, scratchvae only.

:func:`trained_throughput` serves the throughput part's ``--trained-epochs N``:
each system trains N epochs as above (untimed), then runs the throughput
protocol on the first ``--n`` images, continuing the same training.
"""
import dataclasses
import json
import os
import sys
import tempfile
import time

import numpy as np

from .common import (H, J, THREADS, Stepper, add_data_dir_option, add_output_options, add_peers_option,
                     add_rounds_option, comma_list, cpu_identity, given, interleaved_rounds, machine_info,
                     machine_line, median, peer_systems, print_table, pyplot, save_json)
from . import peers

DATASET = "fashion-mnist"
EPOCHS = 8
LATE = (4, 8)  # epochs 4..8 (1-based, inclusive): their median ...
EARLY = (1, 2)  # ... over the faster of epochs 1 and 2
TARGET_RATIO = 1.15  # issue 18's target for scratchvae, reported, never asserted
STEADY_KEY = ("system", "backend", "dtype", "batch_size")
WARMUP_SEED_OFFSET = 7919  # the throwaway permutation of the warm-up: not drawn from the shared order


# ------------------------------------------------------------------ pure helpers
def slowdown_ratio(epoch_seconds, late=LATE, early=EARLY):
    """median(seconds of epochs late[0]..late[1]) / min(seconds of epochs early[0]..early[1]), 1-based.

    Only the epochs that exist count; None when no late epoch exists (fewer than 4 epochs).
    """
    s = list(epoch_seconds)
    lo, hi = s[late[0] - 1:late[1]], s[early[0] - 1:early[1]]
    if not lo or not hi:
        return None
    return median(lo) / min(hi)


def count_subnormals(a):
    """The number of subnormal values of a float array: 0 < |v| < np.finfo(dtype).tiny (NaN, Inf and 0 are not)."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        return 0
    m = np.abs(a)
    return int(np.count_nonzero((m > 0) & (m < np.finfo(a.dtype).tiny)))


def subnormal_report(arrays):
    """{"subnormals": total, "subnormals_by_array": {name: count} (nonzero only), "state_values": size}."""
    by = {k: count_subnormals(v) for k, v in arrays.items()}
    return {"subnormals": sum(by.values()), "subnormals_by_array": {k: v for k, v in by.items() if v},
            "state_values": int(sum(np.asarray(v).size for v in arrays.values()))}


def find_fashion(data_dir=None):
    """The Fashion-MNIST files' paths; DataNotFound (a ValueError, one line) when they are nowhere."""
    from scratchvae.data.datasets import find_files

    return find_files(DATASET, data_dir)


def fashion_grey(data_dir=None, n=None):
    """The first ``n`` (all if None) Fashion-MNIST training images as float32 (n, 784) grey levels in [0, 1].

    uint8 / 255 in float32, as torchvision's ``ToTensor`` (``img.float().div(255)``) does for the PyTorch
    examples VAE.
    """
    from scratchvae.data.datasets import load_dataset

    x = load_dataset(DATASET, data_dir).train_x
    if n is not None:
        if not 1 <= n <= len(x):
            raise ValueError(f"--n must be in [1, {len(x)}] (the {DATASET} training images), got {n}")
        x = x[:n]
    return x.astype(np.float32) / np.float32(255)


def epoch_orders(n, epochs, seed=0):
    """The permutation of every epoch: the same for every system and round."""
    order = np.random.default_rng(seed)
    return [order.permutation(n) for _ in range(epochs)]


# ------------------------------------------------------------------ the systems
class Scratch:
    """scratchvae: :class:`benchmarks.common.Stepper` (FusedStep: forward_backward, gradients_finite, update)."""

    system = "scratchvae"

    def __init__(self, batch_size, backend="numba", dtype="float32", hidden=H, latent=J, seed=0):
        from scratchvae import __version__

        self.b, self.backend, self.dtype, self.seed = batch_size, backend, dtype, seed
        self.version = __version__
        self.st = Stepper(backend, batch_size, dtype, hidden, latent, seed=seed)
        self.extra = {"hidden": hidden, "latent": latent}

    def put(self, data):
        return data.astype(self.dtype, copy=False)

    def warmup(self, x, perm):
        xs = x[perm]  # noqa: F841  (a throwaway gather)
        fs = self.st.fs
        if hasattr(fs, "compile"):
            fs.compile(x[:self.b])
            return "a throwaway gather; FusedStep.compile at the batch size (state unchanged)"
        Scratch(self.b, self.backend, self.dtype, seed=self.seed + 1, **self.extra).st.step(x[:self.b])
        return "a throwaway gather; one step of a throwaway model"

    def epoch(self, x, perm):
        t0 = time.perf_counter()
        xs = x[perm]
        b = self.b
        for i in range(len(perm) // b):
            self.st.step(xs[i * b:(i + 1) * b])
        return time.perf_counter() - t0

    def arrays(self):
        m, o = self.st.model, self.st.opt
        return {**{f"param/{k}": v for k, v in m.params.items()}, **{f"opt/{k}": v for k, v in o.state.items()}}

    def checkpoint_subnormals(self, epoch_seconds):
        """Save the model and optimizer as ``scratchvae train`` does, read the file back, count its subnormals."""
        from scratchvae.training import checkpoint
        from scratchvae.training.loop import TrainConfig

        m, o = self.st.model, self.st.opt
        cfg = TrainConfig(epochs=max(1, len(epoch_seconds)), batch_size=self.b, lr=o.lr, seed=self.seed,
                          binarize="none", backend=self.backend)
        state = {"epoch": len(epoch_seconds), "step": int(o.t), "config": dataclasses.asdict(cfg),
                 "dataset": DATASET, "binarize": "none", "rng": self.st.rng.bit_generator.state,
                 "history": [{"epoch": i + 1, "seconds": s} for i, s in enumerate(epoch_seconds)]}
        try:
            with tempfile.TemporaryDirectory(prefix="steady-") as d:
                path = os.path.join(d, "model.npz")
                checkpoint.save_checkpoint(path, m, o, state)
                _, arrays = checkpoint.load(path)
            return {"checkpoint_subnormals": sum(count_subnormals(a) for a in arrays.values())}
        except Exception as e:  # an API the concurrent engine work changed, say: reported, not fatal
            return {"checkpoint_subnormals": None, "checkpoint_error": f"{type(e).__name__}: {e}"[:300]}

    def row_extra(self):
        return dict(self.extra)


class Torch:
    """PyTorch eager or ``torch.compile``: the model, optimizer and step of :func:`benchmarks.peers._torch_fit`."""

    def __init__(self, batch_size, compile=False, seed=0, threads=THREADS, adam=None):
        import torch

        self.torch, self.b, self.seed, self.compile = torch, batch_size, seed, compile
        self.system = "pytorch-compile" if compile else "pytorch-eager"
        self.backend, self.dtype, self.version = "cpu", "float32", torch.__version__
        self.adam = peers._torch_adam(adam)
        torch.set_num_threads(threads)  # a process of its own: nothing to restore
        self.threads = threads
        torch.manual_seed(seed)  # weights, and the noise of randn_like
        self.model = peers._torch_vae_class()()
        self.opt, self.loss_fn, self.opt_step = peers._torch_setup(torch, self.model, self.model, compile, self.adam)
        self.loss = None

    def put(self, data):
        return self.torch.from_numpy(data)

    def _step(self, x):
        loss = self.loss_fn(x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_step()
        return loss

    def warmup(self, x, perm):
        torch = self.torch
        xs = x[torch.from_numpy(perm)]  # noqa: F841  (a throwaway gather)
        saved = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self._step(x[:self.b])
        with torch.no_grad():
            self.model.load_state_dict(saved)
        self.opt.zero_grad(set_to_none=True)
        self.opt.state.clear()  # Adam starts again from step 0
        torch.manual_seed(self.seed + 1)  # the training noise, whatever the warm-up drew
        return "a throwaway gather; one step, then the parameters put back and the Adam state cleared"

    def epoch(self, x, perm):
        torch, b = self.torch, self.b
        t0 = time.perf_counter()
        xs = x[torch.from_numpy(perm)]
        for i in range(len(perm) // b):
            self.loss = self._step(xs[i * b:(i + 1) * b])
        return time.perf_counter() - t0  # CPU tensors: every op has finished when it returns

    def arrays(self):
        out = {}
        for name, p in self.model.named_parameters():
            out[f"param/{name}"] = p.detach().numpy()
            for slot in ("exp_avg", "exp_avg_sq"):
                if slot in self.opt.state.get(p, {}):
                    out[f"opt/{slot}.{name}"] = self.opt.state[p][slot].detach().numpy()
        return out

    def row_extra(self):
        return {"variant": f"adam-{self.adam}", "optimizer_compiled": self.compile and self.adam != "fused",
                "thread_control": f"torch.set_num_threads({self.threads})",
                "last_loss": None if self.loss is None else float(self.loss.detach())}


class Jax:
    """JAX ``jit`` of the whole step (:func:`benchmarks.peers._jax_step_fn`), state donated."""

    system = "jax-jit"

    def __init__(self, batch_size, seed=0, threads=THREADS):
        self.control = peers._set_jax_threads(threads)
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp, self.b = jax, jnp, batch_size
        self.backend, self.dtype, self.version = jax.default_backend(), "float32", jax.__version__
        self.state = peers._jax_initial_state(jax, seed)
        self.step = peers._jax_step_fn(jax, batch_size, peers._jax_loss)
        self.loss = None

    def put(self, data):
        return self.jax.device_put(data)

    def warmup(self, x, perm):
        jax, jnp = self.jax, self.jnp
        xs = x[jnp.asarray(perm)]
        copy = jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True), self.state)
        jax.block_until_ready(self.step(copy, xs, 0))  # compiles; the copy is donated, the state untouched
        return "a throwaway gather; the jitted step compiled and run on a copy of the state"

    def epoch(self, x, perm):
        jax, jnp, b = self.jax, self.jnp, self.b
        t0 = time.perf_counter()
        xs = x[jnp.asarray(perm)]
        for i in range(len(perm) // b):
            self.state, self.loss = self.step(self.state, xs, i)
        jax.block_until_ready(self.state)
        return time.perf_counter() - t0

    def arrays(self):
        params, m, v = self.state[:3]
        out = {}
        for prefix, tree in (("param", params), ("opt/m", m), ("opt/v", v)):
            for layer, d in tree.items():
                for k, a in d.items():
                    out[f"{prefix}/{layer}.{k}" if prefix == "param" else f"{prefix}.{layer}.{k}"] = np.asarray(a)
        return out

    def row_extra(self):
        return {"thread_control": self.control, "last_loss": None if self.loss is None else float(self.loss)}


def make_system(spec, batch_size):
    """The trainer of ``spec["system"]`` at ``batch_size``."""
    name, seed = spec["system"], spec.get("seed", 0)
    if name == "scratchvae":
        return Scratch(batch_size, spec.get("backend", "numba"), spec.get("dtype", "float32"),
                       spec.get("hidden", H), spec.get("latent", J), seed)
    if name in ("pytorch-eager", "pytorch-compile"):
        return Torch(batch_size, compile=name == "pytorch-compile", seed=seed)
    if name == "jax-jit":
        return Jax(batch_size, seed=seed)
    raise ValueError(f"unknown system {name!r}")


# ------------------------------------------------------------------ one process: one system, every batch size
def steady_rows(spec):
    """Train a fresh model per batch size for ``spec["epochs"]`` epochs, timing each; one row per batch size."""
    data = fashion_grey(spec.get("data_dir"), spec.get("n"))
    n, epochs, seed = len(data), spec["epochs"], spec.get("seed", 0)
    rows = []
    for b in spec["batch_sizes"]:
        steps = peers.steps_per_epoch(n, b)
        sysm = make_system(spec, b)
        x = sysm.put(data)
        t0 = time.perf_counter()
        how = sysm.warmup(x, np.random.default_rng(seed + WARMUP_SEED_OFFSET).permutation(n))
        warm = time.perf_counter() - t0
        seconds = []
        for e, perm in enumerate(epoch_orders(n, epochs, seed), 1):
            seconds.append(sysm.epoch(x, perm))
            print(f"  .. {sysm.system} {sysm.backend} batch {b}: epoch {e} {seconds[-1]:.3f} s", file=sys.stderr,
                  flush=True)
        row = {"system": sysm.system, "backend": sysm.backend, "dtype": sysm.dtype, "batch_size": int(b),
               "version": sysm.version, "threads": THREADS, "dataset": DATASET, "targets": "grey",
               "n": int(n), "epochs": int(epochs), "steps_per_epoch": steps, "samples_per_epoch": steps * b,
               "epoch_seconds": seconds, "epoch_samples_per_s": [steps * b / s for s in seconds],
               "ratio": slowdown_ratio(seconds), "warmup_s": warm, "warmup": how}
        row.update(subnormal_report(sysm.arrays()))
        if hasattr(sysm, "checkpoint_subnormals"):
            row.update(sysm.checkpoint_subnormals(seconds))
        row.update(sysm.row_extra())
        rows.append(row)
    return rows


def child(spec):
    """``python -m benchmarks _steady SPEC``: the rows of one system, printed as one JSON line."""
    print(json.dumps(steady_rows(json.loads(spec))))


def trained_throughput(spec):
    """Throughput rows (:func:`benchmarks.peers.throughput_row`) of one system after training on Fashion-MNIST.

    Per batch size, a fresh model trains ``spec["trained_epochs"]`` epochs on every Fashion-MNIST training image
    (the first ``spec["trained_n"]`` if given, as with ``--smoke``; untimed; the shuffle of :func:`epoch_orders`,
    the same for every system), then ``spec["epochs"]`` epochs on the first ``spec["n"]`` images, the first untimed
    (:data:`benchmarks.peers.WARMUP_EPOCHS`), continuing the same training. Each row also counts the subnormal
    values of the state at the end.
    """
    full = fashion_grey(spec.get("data_dir"), spec.get("trained_n"))
    n, epochs, trained, seed = spec["n"], spec["epochs"], spec["trained_epochs"], spec.get("seed", 0)
    if not 1 <= n <= len(full):
        raise ValueError(f"--n must be in [1, {len(full)}] (the {DATASET} training images), got {n}")
    rows = []
    for b in spec["batch_sizes"]:
        steps = peers.steps_per_epoch(n, b)
        sysm = make_system(spec, b)
        x_full, x_n = sysm.put(full), sysm.put(full[:n])
        perms = epoch_orders(len(full), trained, seed) + epoch_orders(n, epochs, seed + 1)
        pre = [sysm.epoch(x_full, p) for p in perms[:trained]]
        seconds = [sysm.epoch(x_n, p) for p in perms[trained:]][peers.WARMUP_EPOCHS:]
        row = peers.throughput_row(sysm.system, sysm.backend, b, seconds, steps * b, n, epochs, THREADS,
                                   sysm.version, dtype=sysm.dtype, trained_epochs=trained, dataset=DATASET,
                                   targets="grey", trained_n=len(full), trained_epoch_seconds=pre)
        row.update(subnormal_report(sysm.arrays()))
        row.pop("subnormals_by_array")
        row.update(sysm.row_extra())
        rows.append(row)
    return rows


# ------------------------------------------------------------------ the part
def merge(rows):
    """One row per system and batch size from every round's rows: per-epoch medians over the rounds, and each
    round's values ("round_epoch_seconds", "round_ratios", "round_warmup_s", "round_subnormals", ...)."""
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in STEADY_KEY), []).append(r)
    out = []
    for rs in groups.values():
        rs = sorted(rs, key=lambda r: r.get("round", 0))
        m = {k: v for k, v in rs[0].items() if k not in ("round", "epoch_seconds", "epoch_samples_per_s", "ratio",
                                                          "warmup_s", "subnormals", "subnormals_by_array",
                                                          "checkpoint_subnormals", "last_loss")}
        per_round = [r["epoch_seconds"] for r in rs]
        m["rounds"] = len(rs)
        m["round_epoch_seconds"] = per_round
        m["epoch_seconds"] = [median(col) for col in zip(*per_round)]
        m["epoch_samples_per_s"] = [m["samples_per_epoch"] / s for s in m["epoch_seconds"]]
        m["ratio"] = slowdown_ratio(m["epoch_seconds"])
        m["round_ratios"] = [r["ratio"] for r in rs]
        m["round_warmup_s"] = [r["warmup_s"] for r in rs]
        m["warmup_s"] = median(m["round_warmup_s"])
        m["round_subnormals"] = [r["subnormals"] for r in rs]
        worst = max(rs, key=lambda r: r["subnormals"])
        m["subnormals"], m["subnormals_by_array"] = worst["subnormals"], worst["subnormals_by_array"]
        if "checkpoint_subnormals" in rs[0]:
            m["round_checkpoint_subnormals"] = [r.get("checkpoint_subnormals") for r in rs]
            known = [v for v in m["round_checkpoint_subnormals"] if v is not None]
            m["checkpoint_subnormals"] = max(known) if known else None
        if "last_loss" in rs[0]:
            m["round_last_loss"] = [r.get("last_loss") for r in rs]
        out.append(m)
    return sorted(out, key=lambda r: (r["system"] != "scratchvae", r["system"], r["batch_size"]))


def target(rows):
    """Issue 18's target for scratchvae's rows, reported: ratio <= 1.15 and no subnormal in the checkpoint."""
    out = []
    for r in rows:
        if r["system"] == "scratchvae":
            ratio_ok = None if r["ratio"] is None else r["ratio"] <= TARGET_RATIO
            ck = r.get("checkpoint_subnormals")
            out.append({"batch_size": r["batch_size"], "ratio": r["ratio"], "ratio_met": ratio_ok,
                        "checkpoint_subnormals": ck, "no_subnormal_met": None if ck is None else ck == 0})
    return out


def _table_rows(rows, per_round=False):
    out = []
    for r in rows:
        series = zip(range(1, r["rounds"] + 1), r["round_epoch_seconds"], r["round_ratios"]) if per_round else \
            [(None, r["epoch_seconds"], r["ratio"])]
        for rnd, secs, ratio in series:
            t = {"system": r["system"], "batch": r["batch_size"], "round": rnd, "ratio": ratio,
                 "warmup_s": r["warmup_s"] if not per_round else r["round_warmup_s"][rnd - 1],
                 "subnormals": r["subnormals"] if not per_round else r["round_subnormals"][rnd - 1]}
            t.update({f"e{i}": s for i, s in enumerate(secs, 1)})
            if not per_round and "checkpoint_subnormals" in r:
                t["ckpt_subnormals"] = r["checkpoint_subnormals"]
            out.append(t)
    return out


def part_steady(batch_sizes=(128,), epochs=EPOCHS, n=None, data_dir=None, rounds=3, with_peers=False, smoke=False,
                json_path=None, plot_path=None, seed=0):
    """Every epoch timed on Fashion-MNIST for every system, in interleaved rounds of fresh processes."""
    if epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {epochs}")
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    if n is not None and n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    for b in batch_sizes:
        if b < 1 or (n is not None and b > n):
            raise ValueError(f"batch size must be in [1, n={n}], got {b}")
    find_fashion(data_dir)  # a missing data set: one line, before any child runs
    common = {"batch_sizes": [int(b) for b in batch_sizes], "epochs": int(epochs), "n": n, "data_dir": data_dir,
              "seed": seed, "hidden": 64 if smoke else H, "latent": 8 if smoke else J}
    specs = [dict(common, system="scratchvae", backend="numba", dtype="float32")]
    if with_peers:
        have = peers.available()
        for name in ("torch", "jax"):
            if not have[name]:
                print(f"steady: {name} is not installed; its systems are left out", file=sys.stderr)
        specs += [dict(common, **s) for s in peer_systems(True)]
    rows = merge(interleaved_rounds(specs, rounds, child="_steady"))
    print(f"\n{machine_line()}")
    size = f"first {n}" if n else "all"
    cols = ["system", "batch"] + [f"e{i}" for i in range(1, epochs + 1)] + ["ratio", "warmup_s", "subnormals"]
    title = (f"steady: seconds per epoch, Fashion-MNIST ({size} training images, grey targets), every epoch timed, "
             f"median over {rounds} interleaved round(s); ratio = median(epochs 4-8) / min(epochs 1, 2), "
             f"target <= {TARGET_RATIO} (reported, not asserted); subnormals in parameters + optimizer state")
    print_cols = cols + (["ckpt_subnormals"] if any("checkpoint_subnormals" in r for r in rows) else [])
    print_table(_table_rows(rows), print_cols, title)
    if rounds > 1:
        print_table(_table_rows(rows, per_round=True), ["system", "batch", "round"] + cols[2:],
                          "steady: every round")
    for t in target(rows):
        print(f"scratchvae batch {t['batch_size']}: ratio {_fmt_ratio(t['ratio'])} (target <= {TARGET_RATIO}: "
              f"{_met(t['ratio_met'])}); subnormals in a saved checkpoint: {t['checkpoint_subnormals']} "
              f"(target 0: {_met(t['no_subnormal_met'])})")
    res = {"machine": machine_info(), "rows": rows, "target": target(rows),
           "protocol": {**common, "rounds": rounds, "threads": THREADS, "dataset": DATASET,
                        "targets": "grey (uint8 / 255, float32; no binarization)", "late_epochs": list(LATE),
                        "early_epochs": list(EARLY), "target_ratio": TARGET_RATIO,
                        "timing": "every epoch, from the gather of the permuted data to the last step; warm-up "
                                  "(compilation) before epoch 1, reported as warmup_s"}}
    if json_path:
        save_json(res, json_path)
    if plot_path:
        plot_steady(rows, plot_path)
    return res


def _fmt_ratio(v):
    return "n/a (fewer than 4 epochs)" if v is None else f"{v:.3f}"


def _met(v):
    return "n/a" if v is None else ("met" if v else "NOT met")


def plot_steady(rows, path):
    """Seconds per epoch, one line per system (a panel per batch size): the median over the rounds with markers,
    each round thin; dotted, over epochs 4-8, 1.15 x the faster of epochs 1 and 2 in the system's colour."""
    plt = pyplot()
    sizes = sorted({r["batch_size"] for r in rows})
    systems = sorted({r["system"] for r in rows}, key=lambda s: (s != "scratchvae", s))
    colors = {s: f"C{i}" for i, s in enumerate(systems)}
    fig, axes = plt.subplots(1, len(sizes), figsize=(max(6.5, 5.0 * len(sizes)), 5.6), squeeze=False)
    for ax, b in zip(axes[0], sizes):
        for r in (r for r in rows if r["batch_size"] == b):
            c = colors[r["system"]]
            e = np.arange(1, len(r["epoch_seconds"]) + 1)
            for secs in r["round_epoch_seconds"]:
                ax.plot(e, secs, "-", color=c, lw=0.7, alpha=0.35)
            ratio = "" if r["ratio"] is None else f"ratio {r['ratio']:.2f}, "
            ax.plot(e, r["epoch_seconds"], "o-", color=c, lw=1.8,
                    label=f"{r['system']}: {ratio}{r['subnormals']:,} subnormals at the end")
            if len(e) >= LATE[0]:
                ref = TARGET_RATIO * min(r["epoch_seconds"][EARLY[0] - 1:EARLY[1]])
                ax.plot([LATE[0], min(LATE[1], len(e))], [ref, ref], ":", color=c, lw=1.2)
        ax.set(xlabel="epoch", ylabel="seconds", title=f"batch {b}")
        ax.set_xticks(range(1, max(len(r["epoch_seconds"]) for r in rows) + 1))
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    cpu, vendor = cpu_identity()
    fig.suptitle(f"seconds per epoch, Fashion-MNIST: median of the rounds (thin: each round)\n"
                 f"dotted: {TARGET_RATIO} x min(epoch 1, 2) over epochs 4-8; {cpu} ({vendor})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ------------------------------------------------------------------ the command line
def add_parser(sub):
    """The ``steady`` subcommand's options."""
    s = sub.add_parser("steady", description=__doc__.splitlines()[0],
                       help="every epoch timed on Fashion-MNIST (a slowdown after epoch 1 shows)")
    s.add_argument("--batch-sizes", type=comma_list(int), default=None, help="default 128")
    s.add_argument("--epochs", type=int, default=None, help=f"every one timed (default {EPOCHS})")
    s.add_argument("--n", type=int, default=None, help="the first N training images (default all 60,000)")
    add_data_dir_option(s)
    add_peers_option(s)
    add_rounds_option(s)
    s.add_argument("--json", default=None)
    add_output_options(s)
    return s


def data_missing(data_dir):
    """The one-line reason Fashion-MNIST cannot be read, or None when it is found."""
    from scratchvae.data.datasets import DataNotFound

    try:
        find_fashion(data_dir)
    except DataNotFound as e:
        return str(e)
    return None


def run(args, o):
    """The part from the parsed options and the run's ``o`` (:class:`benchmarks.suite.Run`); the full run skips it
    with a line when Fashion-MNIST is missing."""
    if o.full_run:
        missing = data_missing(o.data_dir)
        if missing:
            print(f"\nsteady: skipped: {missing}")
            return None
    return part_steady(batch_sizes=getattr(args, "batch_sizes", None) or ([32] if o.smoke else [128]),
                       epochs=given(args, "epochs", 2 if o.smoke else EPOCHS),
                       n=given(args, "n", 256 if o.smoke else None), data_dir=o.data_dir, rounds=o.rounds,
                       with_peers=o.with_peers, smoke=o.smoke,
                       json_path=given(args, "json", os.path.join(o.out, "steady.json")),
                       plot_path=os.path.join(o.out, "steady.png"))

"""The ``subnormal`` part: the ELBO step before and after training; does it slow down as subnormals build up?

    python -m benchmarks subnormal [--batch-size 32] [--epochs 2] [--reps 300] [--rounds 5] [--data-dir DIR]
                                   [--json FILE]
    python -m benchmarks.subnormal ...   # the same

Not part of the full run (``python -m benchmarks``): run it by name.

Trains the standard model (784-400-20, ReLU, Bernoulli, Adam 1e-3, float32)
with :class:`scratchvae.engine.FusedStep` (numba kernels) on Fashion-MNIST's
grey training images (Debian's dataset-fashion-mnist, or ``--data-dir``) for
``--epochs`` epochs, and times the step on one fixed minibatch:

- ``fresh``: before the first epoch;
- ``trained``: after the epochs;
- ``flushed``: the trained model again, after every subnormal number in its
  parameters and optimizer state was set to 0 by hand (what the kernels do as
  they write, since issue 18; on code before that, the difference to
  ``trained`` is the cost of computing on subnormals).

Each is the median of ``--reps`` steps (after 20 untimed ones), repeated in
``--rounds`` interleaved rounds; the subnormal numbers in the parameters and
the optimizer state are counted after training. Asserts nothing about speed.
"""
import statistics
import sys
import time

import numpy as np

from .common import add_data_dir_option, given, script_main, make_model, machine_info, machine_line, save_json


def subnormals(a):
    a = np.asarray(a)
    return int(((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)).sum())


def step_ms(fs, x, eps, reps):
    """Median milliseconds of forward_backward + gradients_finite + update on a copy of the state (left unchanged)."""
    saved = [a.copy() for a in (fs.flat_p, *fs.flat_state)]
    t = fs.opt.t
    times = []
    for i in range(reps + 20):
        t0 = time.perf_counter()
        fs.forward_backward(x, eps)
        fs.gradients_finite()
        fs.update()
        if i >= 20:
            times.append(time.perf_counter() - t0)
    for a, s in zip((fs.flat_p, *fs.flat_state), saved):
        a[...] = s
    fs.opt.t = t
    return 1e3 * statistics.median(times)


# ------------------------------------------------------------------ the command line
def add_arguments(p):
    """The options, on this module's own parser and on the ``subnormal`` subcommand of ``python -m benchmarks``."""
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2, help="epochs of training")
    p.add_argument("--reps", type=int, default=300, help="timed steps per measurement")
    p.add_argument("--rounds", type=int, default=None, dest="t_rounds", metavar="R",
                   help="interleaved rounds (default 5)")
    add_data_dir_option(p)
    p.add_argument("--json", default=None)


def add_parser(sub):
    s = sub.add_parser("subnormal", description=__doc__.splitlines()[0],
                       help="by hand: the step fresh, trained, and with its subnormals flushed "
                            "(not in the full run)")
    add_arguments(s)
    return s


def run(args, o=None):
    """The part from the parsed options (``--rounds`` and ``--data-dir`` also before the part name)."""
    epochs, rounds, reps = args.epochs, given(args, "t_rounds", given(args, "rounds", 5)), args.reps
    data_dir = args.t_data_dir or getattr(args, "data_dir", None)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if epochs < 0:
        raise ValueError(f"--epochs must be >= 0, got {epochs}")
    for name, v in (("--reps", reps), ("--rounds", rounds)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    from scratchvae.data.datasets import load_dataset
    from scratchvae.engine import FusedStep

    print(machine_line())
    data = load_dataset("fashion-mnist", data_dir)
    train_x = data.train_x.reshape(len(data.train_x), -1).astype(np.float32) / data.max_value
    model, opt = make_model()
    fs = FusedStep(model, opt, backend="numba")
    rng = np.random.default_rng(0)
    B = args.batch_size
    x = train_x[:B].copy()
    eps = rng.standard_normal((1, B, model.config.latent_dim)).astype(np.float32)
    fresh = [step_ms(fs, x, eps, reps)]
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(train_x))
        for i in range(0, len(order) - B + 1, B):
            noise = rng.standard_normal((1, B, model.config.latent_dim)).astype(np.float32)
            fs.forward_backward(train_x[order[i:i + B]], noise)
            fs.gradients_finite()
            fs.update()
    train_s = time.perf_counter() - t0
    counts = {"params": subnormals(fs.flat_p), **{f"state.{s}": subnormals(f) for s, f in
                                                   zip(opt.slots, fs.flat_state)}}
    trained_state = [a.copy() for a in (fs.flat_p, *fs.flat_state)]
    flushed_state = [np.where(np.abs(s) < np.finfo(s.dtype).tiny, s.dtype.type(0), s) for s in trained_state]
    rows = {"fresh": fresh, "trained": [], "flushed": []}
    for r in range(rounds):
        for name, state in (("trained", trained_state), ("flushed", flushed_state))[::1 if r % 2 == 0 else -1]:
            for dst, src in zip((fs.flat_p, *fs.flat_state), state):
                dst[...] = src
            rows[name].append(step_ms(fs, x, eps, reps))
    print(f"training: {epochs} epochs at batch {B} in {train_s:.1f} s; subnormal numbers after it: {counts}")
    print(f"{'state':8s} {'step ms (median of rounds)':>28s}  range")
    for name, ms in rows.items():
        print(f"{name:8s} {statistics.median(ms):28.3f}  {min(ms):.3f}-{max(ms):.3f}")
    if args.json:
        save_json({"machine": machine_info(), "batch_size": B, "epochs": epochs, "train_seconds": train_s,
                   "subnormals_after_training": counts,
                   "step_ms": {k: {"median": statistics.median(v), "rounds": v} for k, v in rows.items()}}, args.json)
    return rows


def main(argv=None):
    return script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    main()

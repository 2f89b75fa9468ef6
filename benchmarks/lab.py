"""``scratchvae lab``: its start time, each control's round trip measured in the browser, and the screenshots.

Starts ``scratchvae lab [RUN_DIR] --port 0`` as a user does (a fresh process) and times launch → first page
served, without and with a run folder. Then drives headless Chromium (:mod:`scratchvae.lab.webdriver`):
for each control, ``--moves`` moves, each timed by the page from the input event to its numbers updated
(``window.lab.timings``), one move at a time; prints the median and the spread. Last, writes one screenshot
per view into ``--out`` (docs/lab/ by default): decomposition.png, jensen.png, estimators.png, trained.png.

Without ``--run`` it first trains a 2-D latent model on the shipped digits (``--epochs``) into a temporary
folder, so the trained view has something to show.

Run::

    .venv/bin/python -m benchmarks.lab [--run RUN_DIR] [--out docs/lab] [--moves 30]
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VIEWS = ("decomposition", "jensen", "estimators", "trained")
# What each view shows in its screenshot: a q off the prior and off the posterior, so all three are visible.
SHOT_Q = {"m1": -0.3, "m2": 0.6, "v1": -1.0, "v2": -1.2}


def add_arguments(p):
    p.add_argument("--run", default=None, metavar="RUN_DIR", help="a run folder (default: train one, see --epochs)")
    p.add_argument("--epochs", type=int, default=100, help="epochs of the 2-D latent model trained without --run")
    p.add_argument("--out", default=os.path.join(REPO, "docs", "lab"), help="folder of the screenshots")
    p.add_argument("--moves", type=int, default=30, help="moves of each control that are timed")
    p.add_argument("--no-screenshots", action="store_true", help="only the timings")


def train_demo(folder, epochs):
    """A 2-D latent VAE on the shipped digits (the demo's model with J = 2), its run folder ``folder``."""
    from scratchvae import VAE, VAEConfig
    from scratchvae.data.datasets import load_digits
    from scratchvae.training.loop import TrainConfig, train

    model = VAE(VAEConfig(data_dim=64, latent_dim=2, hidden=(256,)), np.random.default_rng(0))
    train(model, load_digits(), TrainConfig(epochs=epochs), folder, progress=False, log=lambda line: None,
          plots=False)
    return folder


def start_lab(run=None, cwd=None):
    """Launch ``scratchvae lab [run] --port 0`` in ``cwd``; return (process, url, seconds from launch to the page
    served)."""
    t0 = time.perf_counter()
    argv = [sys.executable, "-m", "scratchvae", "lab", "--port", "0"] + ([run] if run else [])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    line = proc.stdout.readline()
    if not line.startswith("scratchvae lab: http"):
        proc.kill()
        raise RuntimeError(f"the lab did not start: {line}{proc.stderr.read()}")
    url = line.split()[2]
    with urllib.request.urlopen(url, timeout=60) as r:
        r.read()
    return proc, url, time.perf_counter() - t0


def stop_lab(proc):
    proc.send_signal(2)  # SIGINT, Ctrl-C
    proc.communicate(timeout=30)
    return proc.returncode


def settle(b):
    b.wait("return document.body.dataset.done !== undefined && !window.lab.busy();", timeout=30)
    errors = b.run("return window.lab.errors;")
    if errors:
        raise RuntimeError(f"the page reported errors: {errors}")


def slide(b, values):
    b.run("""for (const [id, v] of Object.entries(arguments[0])) {
               const el = document.getElementById(id); el.value = v; el.dispatchEvent(new Event("input"));
             }""", {k: str(v) for k, v in values.items()})
    settle(b)


def time_control(b, url, view, moves, rng):
    """``moves`` moves of the view's control, one at a time; the page's round trips in ms."""
    b.get(f"{url}?view={view}")
    settle(b)
    b.run("window.lab.timings.length = 0;")
    for i in range(moves):
        if view == "decomposition":
            slide(b, {"m1": round(rng.uniform(-2.5, 2.5), 2)})
        elif view == "jensen":
            slide(b, {"v1": round(rng.uniform(-3, 1.5), 2)})
        elif view == "estimators":
            slide(b, {"f0": float(rng.integers(0, 61)) / 2})
        else:
            b.move_pointer("#scatter", int(rng.integers(-200, 200)), int(rng.integers(-200, 200)))
            b.wait("return window.lab.timings.length >= arguments[0] && !window.lab.busy();", i + 1, timeout=30)
    return [t["ms"] for t in b.run("return window.lab.timings;") if t["view"] == view]


def screenshots(b, url, out):
    os.makedirs(out, exist_ok=True)
    written = []
    for view in VIEWS:
        b.get(f"{url}?view={view}")
        settle(b)
        if view in ("decomposition", "jensen"):
            slide(b, SHOT_Q)
        if view == "trained":
            b.move_pointer("#scatter", 60, -70)
            b.wait("return document.getElementById('image').dataset.z && !window.lab.busy();", timeout=30)
        written.append(b.screenshot(os.path.join(out, f"{view}.png")))
    return written


def run(args):
    from scratchvae.lab import webdriver

    if webdriver.find_browser() is None:
        raise ValueError(webdriver.INSTALL_HINT)
    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            run_dir, cwd = os.path.abspath(args.run), None
        else:  # the page names the run as given: runs/digits-2d, not a temporary path
            run_dir, cwd = os.path.join("runs", "digits-2d"), tmp
            train_demo(os.path.join(tmp, run_dir), args.epochs)
        proc, _, bare = start_lab()
        stop_lab(proc)
        proc, url, with_run = start_lab(run_dir, cwd)
        try:
            print(f"start, launch to the first page served: {bare:.2f} s without a run, {with_run:.2f} s with "
                  f"{run_dir}")
            rng = np.random.default_rng(0)
            with webdriver.Browser(1280, 1250) as b:
                print(f"round trip per control, input event to the page's numbers, {args.moves} moves each (ms):")
                print(f"  {'view (control)':<34} {'median':>7} {'min':>7} {'p90':>7} {'max':>7}")
                controls = {"decomposition": "slider mu_1", "jensen": "slider log var_1",
                            "estimators": "slider f0", "trained": "pointer over the plane"}
                for view in VIEWS:
                    ms = time_control(b, url, view, args.moves, rng)
                    print(f"  {view + ' (' + controls[view] + ')':<34} {statistics.median(ms):7.1f} {min(ms):7.1f} "
                          f"{np.percentile(ms, 90):7.1f} {max(ms):7.1f}")
                if not args.no_screenshots:
                    for path in screenshots(b, url, args.out):
                        print(f"wrote {path}")
        finally:
            stop_lab(proc)


def main(argv=None):
    from .common import script_main

    return script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    main()

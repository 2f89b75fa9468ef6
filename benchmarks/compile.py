"""The ``compile`` part: how long Numba takes to compile the kernels, cold and cached, and ``import scratchvae``.

    python -m benchmarks compile [--smoke] [--out DIR]

In a fresh process with an empty ``NUMBA_CACHE_DIR`` (cold), then again with
that folder (warm: the kernels read from the cache): the first numba float32
step of the standard model at batch 128 minus the median steady step after it
(:func:`child`). Then, in another fresh process, the time of ``import
scratchvae`` and whether it imported numba (it must not: the kernels load on
first use). Written: the numbers and ``compile.json``.
"""
import json
import os
import sys
import tempfile
import time

from .common import H, J, Stepper, add_output_options, run_child, save_json, step_seconds, table_header
from . import peers


def child(batch_size, hidden, latent):
    """Child process (``python -m benchmarks _compile BATCH HIDDEN LATENT``): the first step against a steady one."""
    batch_size, hidden, latent = int(batch_size), int(hidden), int(latent)
    st = Stepper("numba", batch_size, hidden=hidden, latent=latent)  # scratchvae._fast.kernels imported here
    x = peers.binary_data(batch_size)
    t0 = time.perf_counter()
    st.step(x)
    first = time.perf_counter() - t0
    steady = step_seconds(st, x, 20, warmup=2)
    print(json.dumps({"first_step_s": first, "steady_step_s": steady, "compile_s": first - steady}))


def child_import():
    """Child process (``python -m benchmarks _import``): the time of ``import scratchvae``, and whether numba came."""
    t0 = time.perf_counter()
    import scratchvae  # noqa: F401

    dt = time.perf_counter() - t0
    print(json.dumps({"import_s": dt, "numba_imported": "numba" in sys.modules}))


def part_compile(smoke=False, json_path=None):
    b, hid, lat = (32, 64, 8) if smoke else (128, H, J)
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        cold = run_child(["_compile", b, hid, lat], env)
        warm = run_child(["_compile", b, hid, lat], env)
    imp = run_child(["_import"])
    res = {"cold": cold, "warm": warm, "import": imp}
    print(table_header("numba compile time (first step − steady step, subprocess, fresh NUMBA_CACHE_DIR)"))
    print(f"  cold: {cold['compile_s']:.3f} s   warm (cached): {warm['compile_s']:.3f} s")
    print(f"  import scratchvae: {1e3 * imp['import_s']:.1f} ms, numba in sys.modules: {imp['numba_imported']}")
    assert not imp["numba_imported"], "import scratchvae imported numba"
    if json_path:
        save_json(res, json_path)
    return res


# ------------------------------------------------------------------ the command line
def add_parser(sub):
    s = sub.add_parser("compile", description=__doc__.splitlines()[0],
                       help="Numba compile time, cold and cached; the time of import scratchvae")
    add_output_options(s)
    return s


def run(args, o):
    return part_compile(o.smoke, json_path=os.path.join(o.out, "compile.json"))

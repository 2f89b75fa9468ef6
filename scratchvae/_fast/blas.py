"""The BLAS thread count: read and set at run time, without a dependency.

NumPy's wheels link OpenBLAS (symbols ``scipy_openblas_*64_``; a system NumPy
may link a plain OpenBLAS with ``openblas_*``). Its thread count is fixed from
``OPENBLAS_NUM_THREADS`` when NumPy is imported, which is before a command
line can be read, so ``scratchvae train --threads N`` calls OpenBLAS' own
``set_num_threads`` through ctypes instead, on the library this process has
loaded (the way threadpoolctl does it). Where no OpenBLAS is found (another
BLAS, another platform), :func:`get_threads` returns None and
:func:`set_threads` says so.

Why it matters: the matrix products are most of a training step, so the count
sets the speed; and OpenBLAS' sgemm rounds differently with 1 and with 2
threads at some shapes, so the last digits of a run depend on it (a run and
its resume must use the same count to agree bit for bit; the run folder
records it).

:class:`Pieces` also lends OpenBLAS' threads one pass of our own: the
optimizer's update and the finiteness check of a training step, cut into one
piece per thread (docs/performance.md, "The optimizer on OpenBLAS' threads").
"""
import contextlib
import ctypes
import os

import numpy as np

_PREFIXES = ("scipy_openblas_", "openblas_")
_SUFFIXES = ("64_", "")


def _library():
    """(ctypes library, get function, set function) of the OpenBLAS this process loaded, or None."""
    import numpy  # noqa: F401  (loads the BLAS)

    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype, get.argtypes = ctypes.c_int, []
                    put.restype, put.argtypes = None, [ctypes.c_int]
                    return lib, get, put
    return None


def core_name():
    """The name of the CPU kernels OpenBLAS chose (e.g. Haswell, SkylakeX), or None when it cannot be told.

    ``OPENBLAS_CORETYPE`` in the environment overrides OpenBLAS' own choice.
    """
    found = _library()
    if found is None:
        return None
    lib = found[0]
    for prefix in _PREFIXES:
        for suffix in _SUFFIXES:
            fn = getattr(lib, f"{prefix}get_corename{suffix}", None)
            if fn is not None:
                fn.restype, fn.argtypes = ctypes.c_char_p, []
                return fn().decode("ascii", "replace")
    return None


def get_threads():
    """The BLAS thread count in use, or None when the BLAS is not an OpenBLAS this module can reach."""
    found = _library()
    return None if found is None else int(found[1]())


def set_threads(n):
    """Set the BLAS thread count to ``n`` (a positive integer); ValueError if it cannot be set here."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the BLAS thread count must be a positive integer, got {n!r}")
    found = _library()
    if found is None:
        raise ValueError("--threads: no OpenBLAS found in this process; set the BLAS library's own "
                         "environment variable instead (e.g. OMP_NUM_THREADS)")
    found[2](n)
    os.environ["OPENBLAS_NUM_THREADS"] = str(n)  # children started from here inherit it
    return int(found[1]())


THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def _cpu_ticks(stat="/proc/stat"):
    """{cpu index: (idle ticks, all ticks)} from /proc/stat (idle and iowait count as idle)."""
    rows = {}
    with open(stat) as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                ticks = [int(v) for v in fields[:8]]
                rows[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))
    return rows


def idle_between(before, after, cpus):
    """How many of ``cpus`` were idle over half the time between two readings of :func:`_cpu_ticks`."""
    idle = 0
    for cpu in set(cpus) & set(before) & set(after):
        d_idle, d_all = after[cpu][0] - before[cpu][0], after[cpu][1] - before[cpu][1]
        idle += d_all > 0 and 2 * d_idle > d_all
    return idle


def usable_cpus():
    """The CPUs this process may run on."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def idle_cpus(seconds=0.2):
    """How many of the CPUs this process may run on are idle over the next ``seconds``, or None where the
    operating system does not say (no /proc/stat)."""
    import time

    try:
        before = _cpu_ticks()
        time.sleep(seconds)
        after = _cpu_ticks()
    except (OSError, ValueError, IndexError):
        return None
    return idle_between(before, after, usable_cpus())


def choose_threads():
    """The BLAS thread count for a command that was not given ``--threads``: (count or None, why).

    The environment's choice when it makes one (OPENBLAS_NUM_THREADS or
    OMP_NUM_THREADS); else one thread per CPU idle right now, at least one and
    at most OpenBLAS' own count. OpenBLAS' threads wait for work by spinning:
    a thread that has to share its CPU with another program stalls every
    product it takes part in, and two threads on a 2-CPU machine with one CPU
    busy were measured 5x slower than one (docs/performance.md, "Threads").
    None: leave the BLAS as it is (no OpenBLAS here, or no /proc/stat).
    """
    for var in THREAD_ENV:
        if os.environ.get(var):
            return None, f"as ${var} sets them"
    have = get_threads()
    if have is None:
        return None, "NumPy's BLAS is not an OpenBLAS this process can reach; its own settings apply"
    idle = idle_cpus()
    if idle is None:
        return None, "the idle CPUs cannot be read here; OpenBLAS' own count"
    return max(1, min(idle, have)), f"{idle} of {len(usable_cpus())} CPUs idle"


@contextlib.contextmanager
def one_thread_per_call():
    """Inside the block each OpenBLAS call runs on its caller's thread alone; the count is restored on exit.

    Yields the thread count OpenBLAS had (1 where no OpenBLAS is reachable):
    the number of threads that may then call it side by side.
    """
    found = _library()
    n = 1 if found is None else int(found[1]())
    if n <= 1:
        yield 1
        return
    found[2](1)
    try:
        yield n
    finally:
        found[2](n)


# OpenBLAS' mode bits for a routine it runs as a "legacy" level-1 routine
# (common_thread.h): BLAS_SINGLE is 2 since int8 and bfloat16 took 0 and 1;
# before them it was 0, and 2 (then BLAS_XDOUBLE) also took the
# single-precision path in a library built without extended precision, the
# usual build. A mode OpenBLAS does not know runs nothing, which run() sees.
_BLAS_SINGLE = 2
_ONE = np.ones(1, np.float32)  # alpha: OpenBLAS reads it, the routines ignore it
_ONE_ADDRESS = _ONE.ctypes.data


class Pieces:
    """Runs a compiled routine on OpenBLAS' own threads, one piece of a range of elements per thread.

    Between the matrix products of a training step, OpenBLAS' worker threads
    wait by spinning; a thread of ours would have to take a core from them.
    ``blas_level1_thread_with_return_value``, the entry OpenBLAS splits its
    own level-1 routines with, takes any routine of the level-1 signature
    and hands the pieces to those threads (the caller's thread runs the
    first), each piece given its own record: here float64 [lo, hi], which
    the routine overwrites when done (:func:`scratchvae._fast.kernels.piece_routine`).

    Use :meth:`find` (None where there is no such OpenBLAS). :meth:`run`
    says which pieces did not run (their record was not overwritten), and the
    caller runs those ranges itself.
    """

    def __init__(self, entry, threads):
        self._entry, self._threads = entry, threads
        self._plans = {}  # the arguments of a run -> what it needs, made once

    @classmethod
    def find(cls):
        """A :class:`Pieces` on the OpenBLAS this process loaded, or None (no OpenBLAS, or one without the entry)."""
        found = _library()
        if found is None:
            return None
        entry = getattr(found[0], "blas_level1_thread_with_return_value", None)
        if entry is None:
            return None
        entry.restype = ctypes.c_int
        entry.argtypes = [ctypes.c_int, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                          ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_long,
                          ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_int]
        return cls(entry, found[1])

    def threads(self):
        """OpenBLAS' thread count now: the number of pieces of the next :meth:`run`."""
        return int(self._threads())

    def run(self, routine, arena, header, size, threads):
        """Run ``routine`` (a C address) on ``threads`` pieces of range(size), each a multiple of 16 elements
        long but the last, with the addresses ``arena`` and ``header`` as its a and b.

        Returns (ok, missed): whether every piece that ran reported success,
        and the (lo, hi) ranges of the pieces that did not run.
        """
        key = (routine, arena, header, size, threads)
        plan = self._plans.get(key)
        if plan is None:  # the call's arguments as ctypes objects, and the records, made once
            edges = [(size * i // threads) // 16 * 16 for i in range(threads)] + [size]
            cuts = [float(e) for pair in zip(edges[:-1], edges[1:]) for e in pair]
            records = (ctypes.c_double * len(cuts))()
            values = (_BLAS_SINGLE, threads, 0, 0, _ONE_ADDRESS, arena, 0, header, 0,
                      ctypes.addressof(records), 0, routine, threads)
            args = tuple(t(v) for t, v in zip(self._entry.argtypes, values))
            plan = self._plans[key] = (cuts, records, args, [-1.0] * threads, [1.0] * threads)
        cuts, records, args, all_done, all_ok = plan
        records[:] = cuts
        self._entry(*args)
        got = records[:]
        if got[0::2] == all_done:  # the usual case
            return got[1::2] == all_ok, []
        missed = [(int(cuts[2 * i]), int(cuts[2 * i + 1])) for i in range(threads) if got[2 * i] != -1]
        return all(r == 1 for d, r in zip(got[0::2], got[1::2]) if d == -1), missed

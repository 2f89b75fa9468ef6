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
"""
import contextlib
import ctypes
import os

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

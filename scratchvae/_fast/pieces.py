"""The optimizer's pass and the finiteness check of a training step, in pieces run by OpenBLAS' own threads."""
import numba
import numpy as np
from numba import carray, types

from .kernels import adagrad_update, adam_update, all_finite, sgd_momentum_update


# The optimizer's pass and all_finite over the flat arrays of a training step,
# one piece per BLAS thread, run by OpenBLAS' own threads (scratchvae._fast.blas.Pieces):
# they wait, spinning, between the step's products, so a thread of ours would
# take a core from them. Each piece is the kernel above on a range of elements.

PIECE_OPS = {"adam_update": 0, "sgd_momentum_update": 1, "adagrad_update": 2, "all_finite": 3}
PIECE_HEADER = 9  # op, rows, stride, then the op's scalars (update_args: at most 6)
_PIECE_SIG = types.void(types.int64, types.int64, types.int64, types.float32, types.voidptr, types.int64,
                        types.voidptr, types.int64, types.voidptr, types.int64, types.voidptr)
_piece_routines = {}


def piece_routine(dtype):
    """The C address of the routine that runs one piece of an op of :data:`PIECE_OPS` on arrays of ``dtype``.

    OpenBLAS calls it as one of its level-1 routines, (m, n, k, alpha, a, lda,
    b, ldb, c, ldc, sb), and it reads three of those:

    - ``a``: the arena of :class:`scratchvae.engine.FusedStep`, ``rows`` arrays
      ``stride`` elements apart: row 0 the parameters, row 1 the gradient,
      rows 2… the optimizer's slots in its kernel's order;
    - ``b``: the header, :data:`PIECE_HEADER` float64: op, rows, stride, the op's scalars;
    - ``c``: this piece's record, float64 [lo, hi], the range of elements; the
      routine overwrites it with [-1, 1] when done, [-1, 0] when all_finite
      found a NaN or Inf.

    Compiled on first use for each dtype (and cached on disk).
    """
    dtype = np.dtype(dtype)
    if dtype not in _piece_routines:
        _piece_routines[dtype] = _make_piece_routine(dtype.type)
    return _piece_routines[dtype].address


def _make_piece_routine(dtype):
    @numba.cfunc(_PIECE_SIG, cache=True, error_model="numpy")
    def piece(m, n, k, alpha, a, lda, b, ldb, c, ldc, sb):
        rec = carray(c, (2,), np.float64)
        h = carray(b, (PIECE_HEADER,), np.float64)
        lo, hi = np.int64(rec[0]), np.int64(rec[1])
        op, rows, stride = np.int64(h[0]), np.int64(h[1]), np.int64(h[2])
        x = carray(a, (rows, stride), dtype)
        p, g = x[0, lo:hi], x[1, lo:hi]
        ok = True
        if op == 0:
            adam_update(p, x[2, lo:hi], x[3, lo:hi], g, h[3], h[4], h[5], h[6], h[7], h[8])
        elif op == 1:
            sgd_momentum_update(p, x[2, lo:hi], g, h[3], h[4])
        elif op == 2:
            adagrad_update(p, x[2, lo:hi], g, h[3], h[4])
        else:
            ok = all_finite(g)
        rec[1] = 1.0 if ok else 0.0
        rec[0] = -1.0

    return piece

"""The scalar math the kernels inline: float32 exp, log1p and tanh as SIMD polynomials, and the flush of
subnormal numbers.

float32 transcendental functions
--------------------------------
Without Intel SVML, Numba calls the scalar libm for ``exp``/``log1p``/``tanh``,
far slower than NumPy's SIMD loops. For float32 the kernels therefore use
branch-free polynomial versions that LLVM vectorizes: ``_exp`` (Cephes expf:
Cody-Waite reduction, degree-6 polynomial, the power of two built from
exponent bits; overflow to inf, nan propagation, flushed to 0 below
e^-87.34 instead of going denormal; ``_exp_neg_abs`` is the same for e^-|a|,
where nothing can overflow), ``_log1p_unit`` (log1p on [0, 1] as e·P(e), P of
degree 8) and ``_tanh`` (expm1(2|x|)/(expm1(2|x|)+2) from the same reduction).
Their accuracy against float64 is what tests/_fast/test_kernels.py holds them
to on dense grids (``EXP_RTOL_32``, ``ULP_RTOL_32``). The polynomials and the reduction are written with explicit fused
multiply-adds (``_fma_f32``, llvm.fma: one rounding, one instruction where
the CPU has FMA), not left to fastmath's contraction, so the numbers do not
depend on what LLVM chooses to fuse. float64 arrays use the scalar libm unchanged (exact, but
slower than NumPy's SIMD where NumPy has one: float64 is for checking, not
for speed).
"""
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

HELPER = dict(error_model="numpy", fastmath=False)  # scalar helpers, inlined by LLVM; explicit False: not inherited
_HELPER = HELPER
_f32 = types.float32


# ============================================================ scalar helpers
# Scalar functions inlined into the kernels' loops. Those that differ by dtype
# are a plain Python function (their meaning) plus an ``overload`` giving the
# compiled version for the type they are called with (float32: the SIMD
# polynomials; float64: libm). ``_as(0.5, v)`` is 0.5 in the type of v, so
# float32 math stays float32.

def _as(value, like):
    """``value`` cast to the type of the scalar ``like``."""
    return type(like)(value)


@overload(_as, jit_options=_HELPER)
def _as_ol(value, like):
    T = like

    def impl(value, like):
        return T(value)
    return impl


def _ftz(v):
    """v, or 0 where v is subnormal (0 < |v| < the smallest normal number of its type): flush to zero.

    Every float a kernel stores goes through it (the optimizers: the state
    they keep, not the parameter), and every value formed from a BLAS product
    before it is multiplied: no buffer, moment or state of the engine holds a
    subnormal (docs/performance.md, "Subnormal numbers"). NaN and ±Inf go
    through. Twin: :func:`scratchvae.ops.flushed`.
    """
    return 0.0 if abs(v) < np.finfo(type(v)).tiny else v


@overload(_ftz, jit_options=_HELPER)
def _ftz_ol(v):
    tiny = float(np.finfo(np.float32 if v == _f32 else np.float64).tiny)

    def impl(v):
        return _as(0.0, v) if abs(v) < _as(tiny, v) else v  # a NaN compares False: it goes through
    return impl


@intrinsic
def _pow2_f32(typingctx, k):
    """2**k as float32 for an integral float32 k in [-126, 127], from the exponent bits."""
    if k != _f32:
        return None

    def codegen(context, builder, sig, args):
        i = builder.fptosi(args[0], ir.IntType(32))
        i = builder.shl(builder.add(i, ir.Constant(ir.IntType(32), 127)), ir.Constant(ir.IntType(32), 23))
        return builder.bitcast(i, ir.FloatType())
    return _f32(_f32), codegen


@intrinsic
def _fma_f32(typingctx, a, b, c):
    """a·b + c for float32 with one rounding (llvm.fma: one instruction where the CPU has FMA)."""
    if not (a == b == c == _f32):
        return None

    def codegen(context, builder, sig, args):
        fl = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [fl], ir.FunctionType(fl, [fl, fl, fl]))
        return builder.call(fn, args)
    return _f32(_f32, _f32, _f32), codegen


@numba.njit(**_HELPER)
def _exp_reduced_f32(x):
    """(k, q) with e^x = 2^k (1 + q), k integral, for a float32 x in [-87.4, 88.75] or nan.

    Cephes expf: x = k ln2 + r with |r| <= ln2/2 (Cody-Waite: ln2 in two parts,
    k·C1 exact), then e^r − 1 = r + r² P(r), P of degree 5. The e^r − 1 form
    serves expm1 (tanh) as well as exp. A nan x gives k = 0 and q = nan.
    """
    f = np.float32
    k = np.floor(x * f(1.44269504088896341) + f(0.5))
    k = k if k == k else f(0.0)  # a nan-free exponent; the nan goes on in r
    r = _fma_f32(k, f(2.12194440e-4), _fma_f32(k, f(-0.693359375), x))
    p = f(1.9875691500e-4)
    p = _fma_f32(p, r, f(1.3981999507e-3))
    p = _fma_f32(p, r, f(8.3334519073e-3))
    p = _fma_f32(p, r, f(4.1665795894e-2))
    p = _fma_f32(p, r, f(1.6666665459e-1))
    p = _fma_f32(p, r, f(5.0000001201e-1))
    return k, p * (r * r) + r


def _exp(x):
    """e**x."""
    return np.exp(x)


@overload(_exp, jit_options=_HELPER)
def _exp_ol(x):
    if x != _f32:
        return lambda x: np.exp(x)
    f = np.float32

    def impl(x):
        # 2^k = 2^h 2^(k-h) in two normal factors so that e^88.75 overflows to
        # inf as in libm. Below e^-87.33654 (the smallest normal float32) the
        # result is flushed to 0 instead of going denormal: an error < 1.2e-38,
        # and denormal arithmetic is 10x slower. A nan goes through.
        xc = f(-87.33654) if x < f(-87.33654) else (f(88.75) if x > f(88.75) else x)
        k, q = _exp_reduced_f32(xc)
        h = np.floor(k * f(0.5))
        y = (q + f(1.0)) * _pow2_f32(h) * _pow2_f32(k - h)
        return f(0.0) if x < f(-87.33654) else y
    return impl


def _exp_neg_abs(a):
    """e**-|a|, in [0, 1]."""
    return np.exp(-np.abs(a))


@overload(_exp_neg_abs, jit_options=_HELPER)
def _exp_neg_abs_ol(a):
    if a != _f32:
        return lambda a: np.exp(-np.abs(a))
    f = np.float32

    def impl(a):
        # _exp for an argument x <= 0: nothing overflows, and 2^k (k >= -126)
        # is one normal factor. Flushed to 0 below e^-87.33654 as in _exp.
        x = -np.abs(a)
        k, q = _exp_reduced_f32(f(-87.33654) if x < f(-87.33654) else x)
        y = (q + f(1.0)) * _pow2_f32(k)
        return f(0.0) if x < f(-87.33654) else y
    return impl


def _log1p_unit(e):
    """log(1 + e) for e in [0, 1]."""
    return np.log1p(e)


@overload(_log1p_unit, jit_options=_HELPER)
def _log1p_unit_ol(e):
    if e != _f32:
        return lambda e: np.log1p(e)
    f = np.float32

    def impl(e):
        # log1p(e) = e P(e) on [0, 1], P of degree 8: the float64 least-squares
        # fit of log1p(e)/e at 2000 Chebyshev nodes of [0, 1], rounded to float32
        # (numpy.polynomial.polynomial.polyfit). Max relative error 1.7e-7 in
        # float32 (Horner's rule with fused multiply-adds), no division, full relative precision for tiny e (P(0) = 1).
        p = f(0.005253457929939032)
        p = _fma_f32(p, e, f(-0.02958850748836994))
        p = _fma_f32(p, e, f(0.07836166769266129))
        p = _fma_f32(p, e, f(-0.13674770295619965))
        p = _fma_f32(p, e, f(0.19111430644989014))
        p = _fma_f32(p, e, f(-0.24844369292259216))
        p = _fma_f32(p, e, f(0.33319270610809326))
        p = _fma_f32(p, e, f(-0.49999502301216125))
        p = _fma_f32(p, e, f(1.0))
        return e * p
    return impl


def _tanh(x):
    """tanh(x)."""
    return np.tanh(x)


@overload(_tanh, jit_options=_HELPER)
def _tanh_ol(x):
    if x != _f32:
        return lambda x: np.tanh(x)
    f = np.float32

    def impl(x):
        # tanh|x| = m / (m + 2) with m = expm1(2|x|) = (2^k − 1) + 2^k q: one
        # exp reduction and one division, accurate for tiny |x| too (m ≈ 2|x|).
        # |x| is capped at 9, where tanh is 1 in float32 (and m stays finite).
        ax = np.abs(x)
        y = f(2.0) * (f(9.0) if ax > f(9.0) else ax)  # a nan stays nan
        k, q = _exp_reduced_f32(y)
        two_k = _pow2_f32(k)
        m = (two_k - f(1.0)) + two_k * q
        t = m / (m + f(2.0))
        return -t if x < f(0.0) else t
    return impl

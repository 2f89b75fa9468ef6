"""The compiled kernel set: Numba kernels for the elementwise and reduction loops of the engine.

The only module of the package that imports numba. Each kernel has a twin of
the same name and signature in :mod:`scratchvae.reference`, written with the
readable ops of :mod:`scratchvae.ops`, :mod:`scratchvae.distributions` and
:mod:`scratchvae.optim`: the twin is the reference, and
``tests/test_kernels.py`` asserts the two agree before
``benchmarks/kernel_timing.py`` times them. :data:`KERNELS` is the table the
engine looks kernels up in.

Conventions (STYLE.md, point 5):

- outputs come first and are modified in place; every kernel returns None
  (but :func:`all_finite`, a predicate, and :func:`max_abs` and
  :func:`product_bound`, which return a number);
- inputs are only read. An output may be the very same array as an input
  only where a docstring says so (bias_act_forward: h is a; bias_act_backward: da
  is dh); partial overlaps are not supported;
- any strides work; C-contiguous rows are the fast case. The optimizer
  updates take 1-D arrays;
- the math runs in the dtype of the arrays (float32 in, float32 math); Python
  float scalars (``scale``, ``lr``...) are cast to that dtype first, as NumPy
  does with a Python scalar (NEP 50);
- the kernels compile lazily on first call (no eager signatures) and are
  cached on disk (``cache=True``), so importing this module compiles nothing.

Shape letters: N batch, O outputs of a layer, L samples (K for importance
samples), D data, J latent.

Compilation flags, and why (the measurements: docs/performance.md)
------------------------------------------------------------------
``error_model="numpy"``: a division by zero gives inf/nan as in NumPy instead
of a Python ZeroDivisionError; the check it adds also blocks SIMD.

``nogil=True``: a caller may run kernels from threads.

``fastmath``: off for all elementwise math. The kernels with a sum over the
last axis (the log-likelihoods, the KL, the log weights) are compiled with
``fastmath={"reassoc"}`` only, which lets LLVM split the running sum into SIMD
lanes (the order of a sum changes, as NumPy's pairwise sum also changes it);
without it the whole loop stays scalar. The per-element math of those kernels
lives in helpers compiled with ``fastmath=False`` set explicitly (Numba
otherwise lets a callee inherit the caller's flags), so the reassociation
reaches only the sum: e.g. ``acc + (x·η − softplus(η))`` may not become
``(acc + x·η) − softplus(η)``, which at η = 1e4 would lose the low bits of
acc, and the Cody-Waite reduction of exp stays exact.

``parallel``: not used. Between BLAS products, Numba's threads fight
OpenBLAS' spinning threads for the 2 cores of the benchmark machine, and a
training step got slower with prange, not faster. The optimizer's pass and
the finiteness check run on OpenBLAS' own threads instead, in pieces
(:func:`piece_routine`, :class:`scratchvae._fast.blas.Pieces`).

The scalar float32 math the kernels inline (exp, log1p, tanh as SIMD polynomials;
the flush of subnormal numbers) lives in :mod:`.f32math`; the routine that runs
the optimizer's pass in pieces on OpenBLAS' threads in :mod:`.pieces`.
"""
import numba
import numpy as np
from numba import types
from numba.extending import overload

from ..distributions import LOG_2PI
from ..ops import ACTIVATION_CODES, LEAKY_SLOPE
from .f32math import HELPER as _HELPER, _as, _exp, _exp_neg_abs, _ftz, _log1p_unit, _tanh

IDENTITY, RELU, LEAKY_RELU, TANH, SIGMOID, SOFTPLUS = (ACTIVATION_CODES[n] for n in (
    "identity", "relu", "leaky_relu", "tanh", "sigmoid", "softplus"))

_OPTS = dict(cache=True, nogil=True, error_model="numpy")  # elementwise kernels: strict IEEE
_REDUCE = dict(_OPTS, fastmath={"reassoc"})  # kernels whose only own float op is a running sum


@numba.njit(**_HELPER)
def _softplus_sigmoid(a):
    """(softplus(a), sigmoid(a)), stable, from one exp: e = e^{-|a|}."""
    zero, one = _as(0.0, a), _as(1.0, a)
    e = _exp_neg_abs(a)
    sp = max(a, zero) + _log1p_unit(e)
    sg = (one if a >= zero else e) / (one + e)  # 1/(1+e) or e/(1+e), as ops.sigmoid
    return sp, sg


@numba.njit(**_HELPER)
def _sigmoid(a):
    one = _as(1.0, a)
    e = _exp_neg_abs(a)
    return (one if a >= _as(0.0, a) else e) / (one + e)


# The activations and their derivatives d·f'(v) (h = f(v) cached), the same
# products as ops' ``_*_back``. A relu keeps a nan (as np.maximum).
@numba.njit(**_HELPER)
def _identity(v):
    return v


@numba.njit(**_HELPER)
def _identity_grad(d, v, h):
    return d


@numba.njit(**_HELPER)
def _relu(v):
    zero = _as(0.0, v)
    return zero if v < zero else v


@numba.njit(**_HELPER)
def _relu_grad(d, v, h):
    return d * (_as(1.0, v) if v > _as(0.0, v) else _as(0.0, v))


@numba.njit(**_HELPER)
def _leaky_relu(v):
    return v if v > _as(0.0, v) else _as(LEAKY_SLOPE, v) * v


@numba.njit(**_HELPER)
def _leaky_relu_grad(d, v, h):
    return d * (_as(1.0, v) if v > _as(0.0, v) else _as(LEAKY_SLOPE, v))


@numba.njit(**_HELPER)
def _tanh_act(v):
    return _tanh(v)


@numba.njit(**_HELPER)
def _tanh_grad(d, v, h):
    return d * (_as(1.0, h) - h * h)


@numba.njit(**_HELPER)
def _sigmoid_grad(d, v, h):
    return d * h * (_as(1.0, h) - h)


@numba.njit(**_HELPER)
def _softplus(v):
    return _softplus_sigmoid(v)[0]


@numba.njit(**_HELPER)
def _softplus_grad(d, v, h):
    return d * _sigmoid(v)


# code -> (f, d·f'), indexed by the activation codes
_ACT_FUNCS = {IDENTITY: (_identity, _identity_grad), RELU: (_relu, _relu_grad),
              LEAKY_RELU: (_leaky_relu, _leaky_relu_grad), TANH: (_tanh_act, _tanh_grad),
              SIGMOID: (_sigmoid, _sigmoid_grad), SOFTPLUS: (_softplus, _softplus_grad)}


@numba.njit(**_HELPER)
def _same(x, y):
    """Whether two arrays are the same memory (an output passed as an input too).

    An in-place call gets its own loop: with two array arguments that overlap,
    LLVM's runtime alias check fails and the vectorized loop is skipped.
    """
    return x.ctypes.data == y.ctypes.data and x.strides == y.strides and x.shape == y.shape


def _bias_act_loop(h, a, b, act):
    """The loop of :func:`bias_act_forward` for one activation code (a literal int)."""


@overload(_bias_act_loop, jit_options=_HELPER, prefer_literal=True)
def _bias_act_loop_ol(h, a, b, act):
    if not isinstance(act, types.IntegerLiteral):
        return None
    code = act.literal_value
    f = _ACT_FUNCS[code][0]  # one loop per activation: branch-free, so it vectorizes

    def impl(h, a, b, act):
        N, O = a.shape
        if code == IDENTITY and _same(h, a):  # identity in place: only a += b
            for n in range(N):
                for o in range(O):
                    a[n, o] = _ftz(a[n, o] + b[o])
            return
        for n in range(N):
            for o in range(O):
                v = _ftz(a[n, o] + b[o])
                a[n, o] = v
                h[n, o] = _ftz(f(v))
    return impl


def _act_backward_loop(da, db, dh, a, h, act):
    """The loop of :func:`bias_act_backward` for one activation code (a literal int)."""


@overload(_act_backward_loop, jit_options=_HELPER, prefer_literal=True)
def _act_backward_loop_ol(da, db, dh, a, h, act):
    if not isinstance(act, types.IntegerLiteral):
        return None
    fgrad = _ACT_FUNCS[act.literal_value][1]

    def impl(da, db, dh, a, h, act):
        N, O = a.shape
        for o in range(O):
            db[o] = 0
        if _same(da, dh):  # in place: read and write one array
            for n in range(N):  # row by row, as col_sum
                for o in range(O):
                    v = _ftz(fgrad(_ftz(da[n, o]), a[n, o], h[n, o]))
                    da[n, o] = v
                    db[o] += v
        else:
            for n in range(N):
                for o in range(O):
                    v = _ftz(fgrad(_ftz(dh[n, o]), a[n, o], h[n, o]))
                    da[n, o] = v
                    db[o] += v
        for o in range(O):
            db[o] = _ftz(db[o])
    return impl


@numba.njit(**_HELPER)
def _add(a, b):
    """a + b, strict: a kernel adding a bias as it reads keeps the add out of its sum's reassociation."""
    return a + b


@numba.njit(**_HELPER)
def _bernoulli_term(x, eta, s):
    """(x η − softplus(η), s (x − sigmoid(η))) for one element."""
    sp, sg = _softplus_sigmoid(eta)
    return x * eta - sp, s * (x - sg)


@numba.njit(**_HELPER)
def _gaussian_term(x, m, v, s):
    """(log 2π + v + (x−m)² e^{−v},  s (x−m) e^{−v},  s ½ ((x−m)² e^{−v} − 1)) for one element."""
    inv_var = _exp(-v)
    diff = x - m
    scaled = diff * inv_var
    term = _as(LOG_2PI, v) + v + diff * diff * inv_var
    return term, s * scaled, s * (_as(0.5, v) * (diff * scaled - _as(1.0, v)))


@numba.njit(**_HELPER)
def _kl_term(m, v, s):
    """(μ² + e^v − v − 1,  s μ,  s ½ (e^v − 1)) for one element."""
    one = _as(1.0, v)
    var = _exp(v)
    return m * m + var - v - one, s * m, s * (_as(0.5, v) * (var - one))


# ================================================================== kernels
@numba.njit(**_OPTS)
def bias_act_forward(h, a, b, act):
    """Bias and activation of a dense layer, in place: a += b, then h = f(a) (eq.37; f as under eq.39, eq.40).

    Parameters
    ----------
    h : (N, O) array, output: the activation f(a)
    a : (N, O) array, x @ W on entry, the pre-activation x @ W + b on exit
    b : (O,) array, the bias
    act : int, an activation code of :data:`ACT_CODES`

    Notes
    -----
    ``h`` may be the same array as ``a`` (not a partial overlap). With the
    identity that is the way to just add the bias; with another activation ``a``
    would end up holding f(a), and bias_act_backward needs the pre-activation.
    An unknown code raises ValueError.
    """
    if act == RELU:
        _bias_act_loop(h, a, b, RELU)
    elif act == LEAKY_RELU:
        _bias_act_loop(h, a, b, LEAKY_RELU)
    elif act == TANH:
        _bias_act_loop(h, a, b, TANH)
    elif act == SIGMOID:
        _bias_act_loop(h, a, b, SIGMOID)
    elif act == SOFTPLUS:
        _bias_act_loop(h, a, b, SOFTPLUS)
    elif act == IDENTITY:
        _bias_act_loop(h, a, b, IDENTITY)
    else:
        raise ValueError("unknown activation code")


@numba.njit(**_OPTS)
def bias_act_backward(da, db, dh, a, h, act):
    """Backward of :func:`bias_act_forward`: da = dh · f'(a) (eq.39), using the output h where cheaper, and
    the bias gradient db = Σ_n da[n] (eq.38) in the same pass.

    Parameters
    ----------
    da : (N, O) array, output; may be the same array as ``dh``
    db : (O,) array, output, summed row by row as :func:`col_sum`
    dh : (N, O) array, ∂loss/∂h
    a, h : (N, O) arrays, the pre-activation and activation of :func:`bias_act_forward`
    act : int, activation code

    Notes
    -----
    relu: [a > 0];  leaky_relu: 1 or 0.01;  tanh: 1 − h²;  sigmoid: h (1 − h);
    softplus: sigmoid(a);  identity: 1.
    """
    if act == RELU:
        _act_backward_loop(da, db, dh, a, h, RELU)
    elif act == LEAKY_RELU:
        _act_backward_loop(da, db, dh, a, h, LEAKY_RELU)
    elif act == TANH:
        _act_backward_loop(da, db, dh, a, h, TANH)
    elif act == SIGMOID:
        _act_backward_loop(da, db, dh, a, h, SIGMOID)
    elif act == SOFTPLUS:
        _act_backward_loop(da, db, dh, a, h, SOFTPLUS)
    elif act == IDENTITY:
        _act_backward_loop(da, db, dh, a, h, IDENTITY)
    else:
        raise ValueError("unknown activation code")


@numba.njit(**_OPTS)
def col_sum(db, dout):
    """Column sums: db = Σ_n dout[n] (the bias gradient of a dense layer, eq.38).

    Parameters
    ----------
    db : (O,) array, output
    dout : (N, O) array
    """
    N, O = dout.shape
    for o in range(O):
        db[o] = 0
    for n in range(N):  # row by row, as NumPy sums a C array over axis 0
        for o in range(O):
            db[o] += dout[n, o]
    for o in range(O):
        db[o] = _ftz(db[o])


@numba.njit(**_REDUCE)
def all_finite(g):
    """Whether every element of the 1-D array ``g`` is finite (no NaN, no ±Inf).

    Sums g·0, which is 0 for a finite element and NaN for NaN or ±Inf (and a
    NaN stays NaN): one branch-free vectorized pass, which cannot overflow to
    Inf on finite input as ``np.isfinite(g.sum())`` can.
    """
    zero = g.dtype.type(0)
    acc = zero
    for i in range(g.shape[0]):
        acc += g[i] * zero
    return acc == zero


def _bits(a):
    """The elements of the contiguous 1-D float array ``a`` as unsigned integers of the same width (a view)."""
    return a.view(np.uint32 if a.dtype.itemsize == 4 else np.uint64)


@overload(_bits, jit_options=_HELPER)
def _bits_impl(a):
    u = np.uint32 if a.dtype.bitwidth == 32 else np.uint64
    return lambda a: a.view(u)


@numba.njit(**_OPTS)
def max_abs(a):
    """max |a| over the array ``a`` (any shape; read in one pass if C-contiguous), NaN above every number (as
    np.max): NaN if an element is NaN, else inf if one is ±Inf.

    Without its sign bit, a float's bit pattern read as an unsigned integer
    orders as its magnitude does, NaN above inf above every finite value: an
    integer maximum, which vectorizes where a float one does not.
    """
    b = _bits(np.ascontiguousarray(a).reshape(-1))
    U = b.dtype.type
    mask = ~U(0) >> U(1)
    top = U(0)
    for i in range(b.shape[0]):
        top = max(top, b[i] & mask)
    out = np.empty(1, b.dtype)
    out[0] = top
    return out.view(a.dtype)[0]


@numba.njit(**_OPTS)
def product_bound(x, dout):
    """R · max|dout| · max(max|x|, 1) for x (R, I) and dout (R, O), as a float64: a bound on every element of
    the weight gradient xᵀ dout and of the bias gradient Σ_r dout (before rounding); NaN if either holds a NaN."""
    return x.shape[0] * np.float64(max_abs(dout)) * max(np.float64(max_abs(x)), 1.0)


# The log-likelihood kernels: a forward-only one (evaluation, and the first
# pass of an IWAE step) and one that also writes the gradient, scaled row by
# row by the upstream gradient dll[l, n] = ∂loss/∂ll[l, n] (the ELBO: the same
# −1/(L·N) everywhere; the IWAE bound: −w̃[l, n]/N, the normalized weights).

@numba.njit(**_REDUCE)
def bernoulli_loglik(ll, x, logits, b):
    """Bernoulli log-likelihood on logits (eq.41); twin: reference.bernoulli_loglik.

    Parameters
    ----------
    ll : (L, N) array, output: log p(x|z_l) = Σ_d [ x_d η_d − softplus(η_d) ] with η = logits + b
    x : (N, D) array with values in [0, 1]
    logits : (L, N, D) array, the decoder's output less its head's bias
    b : (D,) array, the head's bias, added as the logits are read (one pass over them fewer)
    """
    L, N, D = logits.shape
    for l in range(L):
        for n in range(N):
            acc = logits.dtype.type(0)
            for d in range(D):
                acc += _bernoulli_term(x[n, d], _ftz(_add(logits[l, n, d], b[d])), logits.dtype.type(0))[0]
            ll[l, n] = _ftz(acc)


@numba.njit(**_REDUCE)
def bernoulli_loglik_grad(ll, dlogits, db, x, logits, b, dll):
    """Bernoulli log-likelihood and its gradient in one pass (eq.41, eq.42); twin: reference.bernoulli_loglik_grad.

    Parameters
    ----------
    ll : (L, N) array, output, as :func:`bernoulli_loglik`
    dlogits : (L, N, D) array, output: dll[l, n] · (x − sigmoid(η)) with η = logits + b
    db : (D,) array, output: the head's bias gradient Σ_{l,n} dlogits[l, n], row by row as :func:`col_sum`
    x : (N, D) array with values in [0, 1]
    logits : (L, N, D) array, the decoder's output less its head's bias
    b : (D,) array, the head's bias, added as the logits are read
    dll : (L, N) array, the upstream gradient ∂loss/∂ll

    Notes
    -----
    Stable for any η (|η| = 1e4 included): softplus(η) = max(η, 0) + log1p(e^{−|η|}).
    """
    L, N, D = logits.shape
    for d in range(D):
        db[d] = 0
    for l in range(L):
        for n in range(N):
            s = dll[l, n]
            acc = logits.dtype.type(0)
            for d in range(D):
                term, g = _bernoulli_term(x[n, d], _ftz(_add(logits[l, n, d], b[d])), s)
                g = _ftz(g)
                acc += term
                dlogits[l, n, d] = g
                db[d] = _add(db[d], g)
            ll[l, n] = _ftz(acc)
    for d in range(D):
        db[d] = _ftz(db[d])


@numba.njit(**_REDUCE)
def gaussian_loglik(ll, x, dec, b):
    """Gaussian log-likelihood (eq.43) with a predicted log-variance; twin: reference.gaussian_loglik.

    Parameters
    ----------
    ll : (L, N) array, output: −½ Σ_d [ log 2π + s_d + (x_d − m_d)² e^{−s_d} ]
    x : (N, D) array
    dec : (L, N, 2D) array, the decoder's output [ m | s ] less its head's bias
    b : (2D,) array, the head's bias, added as dec is read

    Notes
    -----
    D is read off ``dec`` (half its last axis), not off ``x``: only then does
    LLVM see that the two halves of a row do not overlap, and vectorize.
    """
    L, N, D = dec.shape[0], dec.shape[1], dec.shape[2] // 2
    zero = dec.dtype.type(0)
    for l in range(L):
        for n in range(N):
            acc = zero
            for d in range(D):
                acc += _gaussian_term(x[n, d], _ftz(_add(dec[l, n, d], b[d])), _ftz(_add(dec[l, n, D + d], b[D + d])),
                                      zero)[0]
            ll[l, n] = _ftz(dec.dtype.type(-0.5) * acc)


@numba.njit(**_REDUCE)
def gaussian_loglik_grad(ll, ddec, db, x, dec, b, dll):
    """Gaussian log-likelihood with a predicted log-variance, and its gradient (eq.43, eq.44);
    twin: reference.gaussian_loglik_grad.

    Parameters
    ----------
    ll : (L, N) array, output, as :func:`gaussian_loglik`
    ddec : (L, N, 2D) array, output: dll · [ (x − m) e^{−s}  |  ½ [ (x − m)² e^{−s} − 1 ] ]
    db : (2D,) array, output: the head's bias gradient Σ_{l,n} ddec[l, n], row by row as :func:`col_sum`
    x : (N, D) array
    dec : (L, N, 2D) array, the decoder's output [ m | s ] less its head's bias
    b : (2D,) array, the head's bias, added as dec is read
    dll : (L, N) array, the upstream gradient ∂loss/∂ll

    Notes
    -----
    Takes the decoder's output whole, as :func:`kl_grad` takes the encoder's:
    handed the two halves as column views, Numba did not vectorize the loop.
    """
    L, N, D = dec.shape[0], dec.shape[1], dec.shape[2] // 2
    for d in range(2 * D):
        db[d] = 0
    for l in range(L):
        for n in range(N):
            s = dll[l, n]
            acc = dec.dtype.type(0)
            for d in range(D):
                term, gm, gv = _gaussian_term(x[n, d], _ftz(_add(dec[l, n, d], b[d])),
                                              _ftz(_add(dec[l, n, D + d], b[D + d])), s)
                gm, gv = _ftz(gm), _ftz(gv)
                acc += term
                ddec[l, n, d] = gm
                ddec[l, n, D + d] = gv
                db[d] = _add(db[d], gm)
                db[D + d] = _add(db[D + d], gv)
            ll[l, n] = _ftz(dec.dtype.type(-0.5) * acc)
    for d in range(2 * D):
        db[d] = _ftz(db[d])


@numba.njit(**_REDUCE)
def gaussian_loglik_shared(ll, x, mean, b, logvar_D):
    """Gaussian log-likelihood (eq.43) with one log-variance per pixel (learned or fixed);
    twin: reference.gaussian_loglik_shared.

    Parameters
    ----------
    ll : (L, N) array, output
    x : (N, D) array
    mean : (L, N, D) array, the decoder's output less its head's bias
    b : (D,) array, the head's bias, added as the mean is read
    logvar_D : (D,) array, shared by all (l, n)
    """
    L, N, D = mean.shape
    zero = mean.dtype.type(0)
    for l in range(L):
        for n in range(N):
            acc = zero
            for d in range(D):
                acc += _gaussian_term(x[n, d], _ftz(_add(mean[l, n, d], b[d])), logvar_D[d], zero)[0]
            ll[l, n] = _ftz(mean.dtype.type(-0.5) * acc)


@numba.njit(**_REDUCE)
def gaussian_loglik_shared_grad(ll, dmean, db, dlogvar_D, x, mean, b, logvar_D, dll):
    """:func:`gaussian_loglik_shared` and its gradient (eq.44); twin: reference.gaussian_loglik_shared_grad.

    Parameters
    ----------
    ll : (L, N) array, output
    dmean : (L, N, D) array, output: dll · (x − m) e^{−s}
    db : (D,) array, output: the head's bias gradient Σ_{l,n} dmean[l, n], row by row as :func:`col_sum`
    dlogvar_D : (D,) array, output (overwritten): Σ_{l,n} dll · ½ [ (x − m)² e^{−s} − 1 ]
    x : (N, D) array
    mean : (L, N, D) array, the decoder's output less its head's bias
    b : (D,) array, the head's bias, added as the mean is read
    logvar_D : (D,) array
    dll : (L, N) array, the upstream gradient ∂loss/∂ll
    """
    L, N, D = mean.shape
    for d in range(D):
        dlogvar_D[d] = 0
        db[d] = 0
    for l in range(L):
        for n in range(N):
            s = dll[l, n]
            acc = mean.dtype.type(0)
            for d in range(D):
                term, gm, gv = _gaussian_term(x[n, d], _ftz(_add(mean[l, n, d], b[d])), logvar_D[d], s)
                gm = _ftz(gm)
                acc += term
                dmean[l, n, d] = gm
                dlogvar_D[d] += _ftz(gv)
                db[d] = _add(db[d], gm)
            ll[l, n] = _ftz(mean.dtype.type(-0.5) * acc)
    for d in range(D):
        dlogvar_D[d] = _ftz(dlogvar_D[d])
        db[d] = _ftz(db[d])


# The encoder's output layer gives one (N, 2J) array: μ in its first J columns,
# v = log σ² in its last J (the split of VAE.encode). The KL and
# reparameterization kernels take that array whole, and write the gradient
# into one (N, 2J) array of the same layout, so that every inner loop runs
# with unit stride: handed the halves as separate column views (strided
# arrays to Numba), LLVM did not vectorize them.

@numba.njit(**_REDUCE)
def kl_grad(kl, denc, enc, scale):
    """Analytic KL( N(μ, e^v) ‖ N(0, I) ) per data point and its gradient (eq.23, eq.24).

    Parameters
    ----------
    kl : (N,) array, output: ½ Σ_j ( μ_j² + e^{v_j} − v_j − 1 )
    denc : (N, 2J) array, output: [ scale · μ  |  scale · ½ (e^v − 1) ]
    enc : (N, 2J) array, [ μ | v ]
    scale : float, the upstream gradient ∂loss/∂kl (e.g. β/N)

    Notes
    -----
    Writes (=) denc; :func:`reparam_backward` then adds onto it.
    """
    N, J = enc.shape[0], enc.shape[1] // 2
    s = enc.dtype.type(scale)
    for n in range(N):
        acc = enc.dtype.type(0)
        for j in range(J):
            term, gm, gv = _kl_term(enc[n, j], enc[n, J + j], s)
            acc += term
            denc[n, j] = _ftz(gm)
            denc[n, J + j] = _ftz(gv)
        kl[n] = _ftz(enc.dtype.type(0.5) * acc)


@numba.njit(**_OPTS)
def reparam_forward(z, std, enc, eps):
    """Reparameterized samples z = μ + σ ε with σ = exp(v/2) (eq.27).

    Parameters
    ----------
    z : (L, N, J) array, output
    std : (N, J) array, output: σ, kept for :func:`reparam_backward`
    enc : (N, 2J) array, [ μ | v ]
    eps : (L, N, J) array of standard normal noise
    """
    L, N, J = eps.shape
    half = enc.dtype.type(0.5)
    for n in range(N):
        for j in range(J):
            std[n, j] = _ftz(_exp(half * enc[n, J + j]))
    for l in range(L):
        for n in range(N):
            for j in range(J):
                z[l, n, j] = _ftz(enc[n, j] + std[n, j] * eps[l, n, j])


@numba.njit(**_OPTS)
def reparam_backward(denc, dz, eps, std):
    """Backward of :func:`reparam_forward` (eq.28), summed over the L samples, ADDED to denc.

    Parameters
    ----------
    denc : (N, 2J) array, accumulated: [ dμ | dv ] += [ Σ_l dz_l  |  Σ_l dz_l ε_l ½σ ]
    dz : (L, N, J) array, ∂loss/∂z
    eps : (L, N, J) array, the noise of the forward pass
    std : (N, J) array, σ from :func:`reparam_forward`

    Notes
    -----
    Accumulates (+=) so that the KL gradient can be written first by
    :func:`kl_grad`: z and the KL both depend on (μ, v). Zero denc first to
    get the reparameterization gradient alone.
    """
    L, N, J = dz.shape[0], dz.shape[1], denc.shape[1] // 2  # J off denc: see gaussian_loglik_grad
    half = dz.dtype.type(0.5)
    for l in range(L):  # sample by sample, so the inner loop runs over j (SIMD)
        for n in range(N):
            for j in range(J):
                g = _ftz(dz[l, n, j])
                denc[n, j] = _ftz(denc[n, j] + g)
                denc[n, J + j] = _ftz(denc[n, J + j] + g * eps[l, n, j] * (half * std[n, j]))


# ------------------------------------------------ importance-weighted bound
@numba.njit(**_REDUCE)
def log_weights(log_w, ll, z, eps, enc):
    """Log importance weights log w = log p(x|z) + log p(z) − log q(z|x) (eq.29, eq.35, eq.36); twin:
    reference.log_weights.

    Parameters
    ----------
    log_w : (K, N) array, output
    ll : (K, N) array, log p(x|z_k)
    z : (K, N, J) array, z_k = μ + σ ε_k
    eps : (K, N, J) array, ε_k
    enc : (N, 2J) array, [ μ | v ]

    Notes
    -----
    With z = μ + σ ε, log N(z; 0, I) − log N(z; μ, e^v) = −½ Σ_j (z_j² − ε_j² − v_j):
    the log 2π terms cancel and no division by σ² is needed.
    """
    K, N, J = z.shape
    half = z.dtype.type(0.5)
    for k in range(K):
        for n in range(N):
            acc = z.dtype.type(0)
            for j in range(J):
                acc += z[k, n, j] * z[k, n, j] - eps[k, n, j] * eps[k, n, j] - enc[n, J + j]
            log_w[k, n] = _ftz(ll[k, n] - half * acc)


@numba.njit(**_OPTS)
def iwae_weights(bound, dlogw, log_w, scale):
    """The bound L_K = log (1/K) Σ_k w_k per point (eq.29, eq.30) and scale · the normalized weights (eq.34);
    twin: reference.iwae_weights.

    Parameters
    ----------
    bound : (N,) array, output: L_K, by log-sum-exp
    dlogw : (K, N) array, output: scale · w_k / Σ_j w_j
    log_w : (K, N) array
    scale : float, e.g. −1/N, the gradient of the loss −mean_n L_K,n
    """
    K, N = log_w.shape
    T = log_w.dtype.type
    for n in range(N):
        m = log_w[0, n]
        for k in range(1, K):
            m = max(m, log_w[k, n])
        total = T(0)
        for k in range(K):
            w = _ftz(_exp(log_w[k, n] - m))
            dlogw[k, n] = w
            total += w
        bound[n] = _ftz(m + np.log(total) - np.log(T(K)))
        c = T(scale) / total
        for k in range(K):
            dlogw[k, n] = _ftz(dlogw[k, n] * c)


@numba.njit(**_OPTS)
def iwae_latent_grad(denc, dz, z, dlogw):
    """The parts of the IWAE gradient that do not go through the decoder (eq.35, eq.36); twin:
    reference.iwae_latent_grad.

    Parameters
    ----------
    denc : (N, 2J) array, output (written): [ 0 | ½ Σ_k dlogw_k ], from −log q = ½ Σ (log 2π + v + ε²) at fixed ε
    dz : (K, N, J) array, updated in place: dz −= dlogw · z, from log p(z) = −½ z² + const
    z : (K, N, J) array
    dlogw : (K, N) array, ∂loss/∂log w
    """
    K, N, J = z.shape
    half = z.dtype.type(0.5)
    for n in range(N):
        for j in range(2 * J):
            denc[n, j] = 0
    for k in range(K):
        for n in range(N):
            w = dlogw[k, n]
            for j in range(J):
                dz[k, n, j] = _ftz(_ftz(dz[k, n, j]) - w * z[k, n, j])
            for j in range(J):
                denc[n, J + j] += half * w
    for n in range(N):
        for j in range(J, 2 * J):
            denc[n, j] = _ftz(denc[n, j])


# ---------------------------------------------------------------- optimizers
# One pass over parameter, gradient and moments; 1-D contiguous arrays (flat
# views of all parameters). Each flushes the state it keeps (_ftz): a moment
# decays geometrically wherever the gradient is 0, into the subnormal numbers.
# The parameter (moved by steps of about lr, within 1e-38 of 0 only by chance)
# and the gradient (a product of flushed numbers, subnormal only when a sum
# underflows) are not flushed: two more compare-and-select passes saved
# (docs/performance.md, "Subnormal numbers"). SGD and Adagrad run the operations of
# scratchvae.optim in the same order (the same bits); Adam reorders the paper's
# bias correction into one division (the same up to a few roundings).

@numba.njit(**_OPTS)
def adam_update(p, m, v, g, lr, beta1, beta2, eps, bias1, bias2):
    """Adam step (Kingma & Ba 2015), in place on p, m, v.

    Parameters
    ----------
    p, m, v : (P,) arrays, parameters and first/second moments, updated
    g : (P,) array, the gradient
    lr, beta1, beta2, eps : float, the hyperparameters
    bias1, bias2 : float, 1 − beta1^t and 1 − beta2^t for this step t (computed by the caller)

    Notes
    -----
    m ← β1 m + (1−β1) g,  v ← β2 v + (1−β2) g²,
    p ← p − (lr/bias1) m / (sqrt(v)·r + eps) with r = 1/sqrt(bias2): the paper's
    lr m̂ / (sqrt(v̂) + eps) of :func:`scratchvae.optim.adam_update` up to rounding, with
    one division per element instead of two (tests/_fast/test_kernels.py bounds the difference).
    """
    T = p.dtype.type
    b1, c1, b2, c2 = T(beta1), T(1.0 - beta1), T(beta2), T(1.0 - beta2)
    step, r, e = T(lr / bias1), T(1.0 / np.sqrt(bias2)), T(eps)
    for i in range(p.shape[0]):
        gi = g[i]
        mi = _ftz(m[i] * b1 + c1 * gi)
        vi = _ftz(v[i] * b2 + c2 * (gi * gi))
        m[i] = mi
        v[i] = vi
        p[i] -= step * mi / (np.sqrt(vi) * r + e)


@numba.njit(**_OPTS)
def sgd_momentum_update(p, vel, g, lr, momentum):
    """SGD with heavy-ball momentum, in place: vel ← momentum·vel + g,  p ← p − lr·vel.

    Parameters
    ----------
    p, vel : (P,) arrays, updated
    g : (P,) array
    lr, momentum : float
    """
    T = p.dtype.type
    mom, step = T(momentum), T(lr)
    for i in range(p.shape[0]):
        vi = _ftz(vel[i] * mom + g[i])
        vel[i] = vi
        p[i] -= step * vi


@numba.njit(**_OPTS)
def adagrad_update(p, s, g, lr, eps):
    """Adagrad, in place: s ← s + g²,  p ← p − lr·g / (sqrt(s) + eps).

    Parameters
    ----------
    p, s : (P,) arrays, updated
    g : (P,) array
    lr, eps : float
    """
    T = p.dtype.type
    step, e = T(lr), T(eps)
    for i in range(p.shape[0]):
        gi = g[i]
        si = _ftz(s[i] + gi * gi)
        s[i] = si
        p[i] -= step * gi / (np.sqrt(si) + e)


KERNELS = {
    "bias_act_forward": bias_act_forward,
    "bias_act_backward": bias_act_backward,
    "col_sum": col_sum,
    "all_finite": all_finite,
    "max_abs": max_abs,
    "product_bound": product_bound,
    "bernoulli_loglik": bernoulli_loglik,
    "bernoulli_loglik_grad": bernoulli_loglik_grad,
    "gaussian_loglik": gaussian_loglik,
    "gaussian_loglik_grad": gaussian_loglik_grad,
    "gaussian_loglik_shared": gaussian_loglik_shared,
    "gaussian_loglik_shared_grad": gaussian_loglik_shared_grad,
    "kl_grad": kl_grad,
    "reparam_forward": reparam_forward,
    "reparam_backward": reparam_backward,
    "log_weights": log_weights,
    "iwae_weights": iwae_weights,
    "iwae_latent_grad": iwae_latent_grad,
    "adam_update": adam_update,
    "sgd_momentum_update": sgd_momentum_update,
    "adagrad_update": adagrad_update,
}

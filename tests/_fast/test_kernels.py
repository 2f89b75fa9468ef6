"""The Numba kernels agree with their NumPy twins (scratchvae._fast.kernels).

For every kernel: hypothesis draws small shapes (each of N, L, D, J, O in
1..6) and values, extremes included (logits ±1e4, logvar in [−30, 30], zeros),
in float32 and float64; the kernel and its twin run on copies of the same
inputs and must agree within the named tolerances below; the read-only inputs
must come back unchanged. A few fixed bigger cases reach the SIMD bodies of the
loops (hypothesis' tiny shapes only run their scalar remainders), on the
layer outputs as the fused engine passes them. The float32 kernels
use their own vectorized exp/log1p/tanh; their accuracy against float64 is
checked on dense grids.
"""
import ctypes
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from scratchvae._fast import f32math as F
from scratchvae._fast import kernels as K
from scratchvae._fast import pieces as PC
from scratchvae import reference as R
from scratchvae.ops import ACTIVATION_CODES, ACTIVATIONS, flushed

DTYPES = (np.float32, np.float64)

# Relative tolerance, kernel against twin. float32 (eps 1.2e-7): the kernels
# compute exp/log1p/tanh with their own polynomials (max relative error 2.3e-7)
# and NumPy with its own SIMD code (about the same), so a single element may
# differ by a few ulp; sums over D also run in another order. 1e-5 is ~80 ulp:
# room for that, far below any real bug. float64: the same libm on both sides,
# only the order of sums differs.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
# Absolute tolerance per unit of magnitude. A sum whose terms cancel (the
# Bernoulli ll at |η| = 1e4 is 1e4 − 1e4 per pixel) is only as precise as
# eps · Σ|term|, so sums are checked with atol = ATOL · Σ|term|; elementwise
# outputs with atol = ATOL (values near 0 after a cancellation, e.g. x − sigmoid(η)).
ATOL = {np.float32: 1e-5, np.float64: 1e-12}


def assert_same_sum(a, b, dt, terms_abs_sum, n):
    """Two kernels that sum the same n terms per row in two compiled loops agree to the sum's reordering.

    Bit equality holds only for the same compiled code on the same inputs.
    The forward-only likelihood kernels and their gradient twins compute
    identical terms (the same strict helpers) but sum them in different loops
    compiled with ``reassoc``: LLVM picks each loop's vector width and
    interleave by CPU (4x4 against 4x2 on one Intel Xeon), so the order of the
    additions differs. Each order's error is at most (n − 1)·u·Σ|term|, u the
    unit roundoff (Higham, Accuracy and Stability of Numerical Algorithms,
    2002, §4.2), so two orders differ by at most 2(n − 1)·u·Σ|term|.
    ``terms_abs_sum`` (per row, float64) bounds Σ|term|.
    """
    u = np.finfo(dt).eps / 2
    bound = 2 * max(n - 1, 1) * u * np.asarray(terms_abs_sum, np.float64)
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    assert (diff <= bound).all(), f"sums differ by {diff.max():.3g}, beyond reordering's {bound.max():.3g}"


# Accuracy of the float32 math against float64 truth: a few ulp.
ULP_RTOL_32 = 5e-7
# The float32 exp of the kernels: about the error its docstring states (8.2e-8 over 3e7 points of the normal
# range; 7.7e-8 measured on the grid below). Tighter than ULP_RTOL_32, so a polynomial coefficient off by a
# few ulp fails.
EXP_RTOL_32 = 8e-8
SMALLEST_NORMAL_32 = float(np.finfo(np.float32).tiny)  # below it the float32 exp flushes to 0

SETTINGS = settings(deadline=None, max_examples=25)  # deadline=None: the first call compiles
dims = st.integers(min_value=1, max_value=6)
ACTS = sorted(ACTIVATION_CODES.values())


def close(actual, expected, dt, mag=1.0):
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dt], atol=ATOL[dt] * max(float(mag), 1.0))


SUBNORMAL = "subnormal"  # an extreme of values(): a quarter of the dtype's smallest normal number


def values(lo, hi, extremes=(0.0,)):
    """A value strategy: uniform-ish floats in [lo, hi] plus some extremes."""
    def extreme(e, dt):
        return float(dt(np.finfo(dt).tiny / 4)) if e == SUBNORMAL else float(dt(e))
    return lambda dt: st.one_of(st.floats(lo, hi, width=np.finfo(dt).bits),
                                st.sampled_from([extreme(e, dt) for e in extremes]))


GENERIC = values(-10.0, 10.0, (0.0, -0.0, 1e-3, SUBNORMAL))
LOGITS = values(-30.0, 30.0, (0.0, 1e4, -1e4, 88.0, -88.0, 100.0, -100.0, 1e-6))
PREACT = values(-20.0, 20.0, (0.0, 1e4, -1e4, 100.0, -100.0, 0.5, -0.7, SUBNORMAL))
LOGVAR = values(-30.0, 30.0, (-30.0, 30.0, 0.0))
UNIT = values(0.0, 1.0, (0.0, 1.0))
POSITIVE = values(0.0, 100.0, (0.0, 1e-12))
UPSTREAM = values(-2.0, 2.0, (0.0, -1.0, 1e-30))  # ∂loss/∂ll per row: the ELBO's −1/(L·N), the IWAE's −w̃/N


def draw(data, dt, shape, kind):
    return data.draw(hnp.arrays(dt, shape, elements=kind(dt)))


def assert_no_subnormal(arrays, who):
    """No output holds a subnormal number: every kernel and twin stores flushed values (ops.flushed)."""
    for i, a in enumerate(arrays):
        tiny = np.finfo(a.dtype).tiny
        bad = (a != 0) & (np.abs(a) < tiny)
        assert not bad.any(), f"{who}: output {i} holds subnormals {a[bad][:3]}"


def run_both(kernel, twin, outs, ins, *scalars, unflushed=()):
    """Run kernel and twin on copies of outs/ins; check that ins were not mutated and that no output holds a
    subnormal (but those numbered in ``unflushed``: the optimizers' parameters); return both outputs."""
    outs_k = [o.copy() for o in outs]
    outs_t = [o.copy() for o in outs]
    ins_k = [i.copy() for i in ins]
    ins_t = [i.copy() for i in ins]
    kernel(*outs_k, *ins_k, *scalars)
    twin(*outs_t, *ins_t, *scalars)
    for before, after in zip(ins, ins_k):
        np.testing.assert_array_equal(after, before, err_msg=f"{kernel.__name__} mutated an input")
    for before, after in zip(ins, ins_t):
        np.testing.assert_array_equal(after, before, err_msg=f"{twin.__name__} mutated an input")
    assert_no_subnormal([o for i, o in enumerate(outs_k) if i not in unflushed], kernel.__name__)
    assert_no_subnormal([o for i, o in enumerate(outs_t) if i not in unflushed], "twin " + twin.__name__)
    return outs_k, outs_t


def garbage(shape, dt):
    """Output buffers start as garbage: a kernel must not read what it overwrites."""
    return np.full(shape, np.nan, dt)


# ------------------------------------------------------------- module shape
def test_codes_cover_the_activations_of_ops():
    assert set(ACTIVATION_CODES) == set(ACTIVATIONS)
    assert len(set(ACTIVATION_CODES.values())) == len(ACTIVATION_CODES)
    assert (K.IDENTITY, K.RELU, K.LEAKY_RELU, K.TANH, K.SIGMOID, K.SOFTPLUS) == tuple(
        ACTIVATION_CODES[n] for n in ("identity", "relu", "leaky_relu", "tanh", "sigmoid", "softplus"))


KERNELS = tuple(K.KERNELS)


def test_every_kernel_has_a_twin_with_the_same_signature():
    import inspect
    assert set(K.KERNELS) == set(R.KERNELS)
    for name in KERNELS:
        k, t = K.KERNELS[name], R.KERNELS[name]
        assert k.__name__ == t.__name__ == name
        assert inspect.signature(k.py_func) == inspect.signature(t), name


def test_import_compiles_nothing():
    code = ("import scratchvae._fast.kernels as K\n"
            "assert all(not k.signatures for k in K.KERNELS.values())\n"
            "import sys; assert 'numba' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- dense layer
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), N=dims, O=dims)
def test_bias_act_forward(dt, act, data, N, O):
    a = draw(data, dt, (N, O), PREACT)
    b = draw(data, dt, (O,), GENERIC)
    (h_k, a_k), (h_t, a_t) = run_both(K.bias_act_forward, R.bias_act_forward,
                                      [garbage((N, O), dt), a], [b], act)
    np.testing.assert_array_equal(a_k, a_t)  # the pre-activation a + b: one rounding on both sides
    close(h_k, h_t, dt)
    assert h_k.dtype == dt and a_k.dtype == dt


@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), N=dims, O=dims)
def test_bias_act_forward_identity_in_place(dt, data, N, O):
    """Documented aliasing: h may be a itself when the activation is the identity."""
    a = draw(data, dt, (N, O), PREACT)
    b = draw(data, dt, (O,), GENERIC)
    expected = flushed(a + b)
    K.bias_act_forward(a, a, b, K.IDENTITY)
    np.testing.assert_array_equal(a, expected)


@pytest.mark.parametrize("act", ACTS)
def test_bias_act_forward_in_place_any_activation_matches_twin(act):
    """h is a with another activation: a ends up holding f(a + b), as in the twin."""
    rng = np.random.default_rng(act)
    a, b = rng.standard_normal((5, 37)).astype(np.float32), rng.standard_normal(37).astype(np.float32)
    a_t = a.copy()
    K.bias_act_forward(a, a, b, act)
    R.bias_act_forward(a_t, a_t, b, act)
    close(a, a_t, np.float32)


def test_unknown_activation_code_raises():
    a, b = np.zeros((2, 3)), np.zeros(3)
    for fn, args in ((K.bias_act_forward, (a.copy(), a.copy(), b, 9)),
                     (R.bias_act_forward, (a.copy(), a.copy(), b, 9)),
                     (K.bias_act_backward, (a.copy(), b.copy(), a, a, a, -1)),
                     (R.bias_act_backward, (a.copy(), b.copy(), a, a, a, -1))):
        with pytest.raises(ValueError):
            fn(*args)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), N=dims, O=dims, alias=st.booleans())
def test_bias_act_backward(dt, act, data, N, O, alias):
    a = draw(data, dt, (N, O), PREACT)
    h = np.empty_like(a)
    R.bias_act_forward(h, a.copy(), np.zeros(O, dt), act)  # a consistent cached output
    dh = draw(data, dt, (N, O), GENERIC)
    expected, expected_db = np.empty_like(a), np.empty(O, dt)
    R.bias_act_backward(expected, expected_db, dh.copy(), a, h, act)
    if alias:  # documented aliasing: da may be dh itself (in place)
        da, db = dh.copy(), garbage((O,), dt)
        a0, h0 = a.copy(), h.copy()
        K.bias_act_backward(da, db, da, a, h, act)
        np.testing.assert_array_equal(a, a0)
        np.testing.assert_array_equal(h, h0)
    else:
        (da, db), (da_t, db_t) = run_both(K.bias_act_backward, R.bias_act_backward,
                                          [garbage((N, O), dt), garbage((O,), dt)], [dh, a, h], act)
        close(da_t, expected, dt)
    close(da, expected, dt)
    # the bias gradient: the column sums of da, to the bit those of col_sum on the kernel's own da
    col = garbage((O,), dt)
    K.col_sum(col, da)
    np.testing.assert_array_equal(db, col)
    close(db, expected_db, dt, np.abs(expected).sum(axis=0).max())


@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), N=dims, O=dims)
def test_col_sum(dt, data, N, O):
    dout = draw(data, dt, (N, O), GENERIC)
    (db,), (db_t,) = run_both(K.col_sum, R.col_sum, [garbage((O,), dt)], [dout])
    close(db, db_t, dt, np.abs(dout).sum(axis=0).max())


NONFINITE = (np.nan, np.inf, -np.inf)
def any_finite(dt):  # the whole finite range, subnormals and ±max included: a plain sum could overflow
    return st.floats(allow_nan=False, allow_infinity=False, width=np.finfo(dt).bits)


BAD = st.lists(st.tuples(st.integers(0, 39), st.sampled_from(NONFINITE)), max_size=3)  # (index mod n, value)


def with_bad(data, dt, n, bad):
    """A drawn finite (n,) array with the NaN/±Inf of ``bad`` put in."""
    g = draw(data, dt, (n,), any_finite)
    for i, v in bad:
        g[i % n] = v
    return g


@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), n=st.integers(1, 40), bad=BAD)
def test_all_finite(dt, data, n, bad):
    g = with_bad(data, dt, n, bad)
    got, want = K.all_finite(g), R.all_finite(g)
    assert got == want == (not bad)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("value", NONFINITE)
def test_all_finite_finds_one_bad_element_in_a_long_array(dt, value):
    g = np.full(100_003, np.finfo(dt).max, dt)  # every element finite; their sum is not
    assert K.all_finite(g) and R.all_finite(g)
    for i in (0, 4096, 100_002):  # the SIMD body and the scalar remainder
        h = g.copy()
        h[i] = value
        assert not K.all_finite(h) and not R.all_finite(h)


@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), n=st.integers(1, 40), bad=BAD)
def test_max_abs(dt, data, n, bad):
    a = with_bad(data, dt, n, bad)
    got, want = K.max_abs(a), R.max_abs(a)
    np.testing.assert_array_equal(got, want)  # NaN above inf above every number, as np.max
    if not bad:
        assert got == max(abs(float(v)) for v in a)


@pytest.mark.parametrize("dt", DTYPES)
def test_max_abs_on_a_long_array(dt):
    a = np.random.default_rng(0).standard_normal(100_003).astype(dt)
    a[77_777] = -np.finfo(dt).max  # the largest magnitude, negative
    assert K.max_abs(a) == R.max_abs(a) == np.finfo(dt).max
    for i in (0, 4096, 100_002):  # the SIMD body and the scalar remainder
        for v, want in ((np.inf, np.inf), (-np.inf, np.inf), (np.nan, np.nan)):
            b = a.copy()
            b[i] = v
            np.testing.assert_array_equal(K.max_abs(b), want)
            np.testing.assert_array_equal(R.max_abs(b), want)


@pytest.mark.parametrize("dt", DTYPES)
def test_product_bound_bounds_the_gradients_it_stands_for(dt):
    rng = np.random.default_rng(5)
    for scale in (1e-3, 1.0, 1e3):
        x = (rng.standard_normal((7, 5)) * scale).astype(dt)
        dout = rng.standard_normal((7, 3)).astype(dt)
        got, want = K.product_bound(x, dout), R.product_bound(x, dout)
        assert got == want == 7 * float(np.abs(dout).max()) * max(float(np.abs(x).max()), 1.0)
        x64, d64 = x.astype(np.float64), dout.astype(np.float64)
        assert np.abs(x64.T @ d64).max() <= got and np.abs(d64.sum(axis=0)).max() <= got
    x = np.full((2, 2), np.inf, dt)
    assert np.isnan(K.product_bound(x, np.zeros((2, 2), dt)))  # inf · 0: xᵀ dout is NaN, not proven finite
    assert np.isnan(R.product_bound(x, np.zeros((2, 2), dt)))


# ---------------------------------------------------------------- likelihoods
def bernoulli_terms(x, logits):
    """Σ_d |x η| + softplus(η) per row (L, N): a bound on Σ_d |x η − softplus(η)|."""
    x, e = x.astype(np.float64), logits.astype(np.float64)
    return (np.abs(x * e) + np.logaddexp(0, e)).sum(axis=-1)


def bernoulli_mag(x, logits):
    return bernoulli_terms(x, logits).max()


@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), L=dims, N=dims, D=dims)
def test_bernoulli_loglik_grad(dt, data, L, N, D):
    x = draw(data, dt, (N, D), UNIT)
    logits = draw(data, dt, (L, N, D), LOGITS)
    dll = draw(data, dt, (L, N), UPSTREAM)
    outs = [garbage((L, N), dt), garbage((L, N, D), dt), garbage((D,), dt)]
    (ll, dl, db), (ll_t, dl_t, db_t) = run_both(K.bernoulli_loglik_grad, R.bernoulli_loglik_grad, outs,
                                                [x, logits, np.zeros(D, dt), dll])
    assert np.isfinite(ll).all() and np.isfinite(dl).all()
    close(ll, ll_t, dt, bernoulli_mag(x, logits))
    close(dl, dl_t, dt)
    assert_head_db(db, dl)
    close(db_t, dl_t.sum(axis=(0, 1)), dt, np.abs(dl_t).sum(axis=(0, 1)).max())
    # from the output less the head's bias b, which the kernels add as they read, the same numbers;
    # each row of the gradient is scaled by its own dll
    pre, b = split_bias(data, dt, logits)
    (ll_b, dl_b, db_b), (ll_bt, _, _) = run_both(K.bernoulli_loglik_grad, R.bernoulli_loglik_grad, outs,
                                                 [x, pre, b, dll])
    np.testing.assert_array_equal(ll_b, ll)
    np.testing.assert_array_equal(dl_b, dl)
    np.testing.assert_array_equal(db_b, db)
    close(ll_bt, ll_t, dt, bernoulli_mag(x, logits))
    (ll_f,), (ll_ft,) = run_both(K.bernoulli_loglik, R.bernoulli_loglik, [garbage((L, N), dt)], [x, pre, b])
    assert_same_sum(ll_f, ll, dt, bernoulli_terms(x, logits), D)
    close(ll_ft, ll_t, dt, bernoulli_mag(x, logits))
    x64, e64 = x.astype(np.float64), logits.astype(np.float64)
    close(dl, dll[..., None].astype(np.float64) * (x64 - 0.5 * (1 + np.tanh(0.5 * e64))), dt)


def assert_head_db(db, dout):
    """The head's bias gradient of a likelihood kernel: col_sum of its own gradient output, to the bit."""
    want = np.empty(dout.shape[-1], dout.dtype)
    K.col_sum(want, dout.reshape(-1, dout.shape[-1]))
    np.testing.assert_array_equal(db, want)


def split_bias(data, dt, out):
    """(out − b, b) for a bias b drawn along the last axis, b_d = 0 where (out − b_d) + b_d is not exactly
    out in every row: a forward kernel adding b must then give the very numbers of one that reads ``out``."""
    b = draw(data, dt, out.shape[-1:], GENERIC)
    with np.errstate(over="ignore", invalid="ignore"):
        pre = (out - b).astype(dt)
        exact = ((pre + b).astype(dt) == out).all(axis=tuple(range(out.ndim - 1)))
    return np.where(exact, pre, out).astype(dt), np.where(exact, b, 0).astype(dt)


def gaussian_mag(x, mean, logvar):
    x, m, s = (np.asarray(v, np.float64) for v in (x, mean, logvar))
    with np.errstate(over="ignore"):
        q = (x - m) ** 2 * np.exp(-s)
    return q, (np.log(2 * np.pi) + np.abs(s) + q)


@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), L=dims, N=dims, D=dims)
def test_gaussian_loglik_grad(dt, data, L, N, D):
    x = draw(data, dt, (N, D), GENERIC)
    mean = draw(data, dt, (L, N, D), GENERIC)
    logvar = draw(data, dt, (L, N, D), LOGVAR)
    dll = draw(data, dt, (L, N), UPSTREAM)
    dec = np.concatenate([mean, logvar], axis=-1)  # [m | s], as the decoder's output layer gives them
    outs = [garbage((L, N), dt), garbage((L, N, 2 * D), dt), garbage((2 * D,), dt)]
    (ll, ddec, db), (ll_t, ddec_t, db_t) = run_both(K.gaussian_loglik_grad, R.gaussian_loglik_grad, outs,
                                                    [x, dec, np.zeros(2 * D, dt), dll])
    assert_head_db(db, ddec)
    close(db_t, ddec_t.sum(axis=(0, 1)), dt, np.abs(ddec_t).sum(axis=(0, 1)).max())
    _, terms = gaussian_mag(x, mean, logvar)
    close(ll, ll_t, dt, terms.sum(axis=-1).max())
    close(ddec, ddec_t, dt)
    pre, b = split_bias(data, dt, dec)
    (ll_b, ddec_b, db_b), _ = run_both(K.gaussian_loglik_grad, R.gaussian_loglik_grad, outs, [x, pre, b, dll])
    np.testing.assert_array_equal(ll_b, ll)
    np.testing.assert_array_equal(ddec_b, ddec)
    np.testing.assert_array_equal(db_b, db)
    (ll_f,), (ll_ft,) = run_both(K.gaussian_loglik, R.gaussian_loglik, [garbage((L, N), dt)], [x, pre, b])
    assert_same_sum(ll_f, ll, dt, 0.5 * terms.sum(axis=-1), D)
    close(ll_ft, ll_t, dt, terms.sum(axis=-1).max())
    # the first half is the gradient for the mean: dll (x − m) e^{−s}, by the docstring
    x64, m64, s64 = x.astype(np.float64), mean.astype(np.float64), logvar.astype(np.float64)
    d64 = dll[..., None].astype(np.float64)
    close(ddec[..., :D], d64 * (x64 - m64) * np.exp(-s64), dt, np.abs(d64 * (x64 - m64) * np.exp(-s64)).max())


@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), L=dims, N=dims, D=dims)
def test_gaussian_loglik_shared_grad(dt, data, L, N, D):
    x = draw(data, dt, (N, D), GENERIC)
    mean = draw(data, dt, (L, N, D), GENERIC)
    logvar = draw(data, dt, (D,), LOGVAR)
    dll = draw(data, dt, (L, N), UPSTREAM)
    outs = [garbage((L, N), dt), garbage((L, N, D), dt), garbage((D,), dt), garbage((D,), dt)]
    (ll, dm, db, dv), (ll_t, dm_t, db_t, dv_t) = run_both(K.gaussian_loglik_shared_grad,
                                                          R.gaussian_loglik_shared_grad,
                                                          outs, [x, mean, np.zeros(D, dt), logvar, dll])
    assert_head_db(db, dm)
    close(db_t, dm_t.sum(axis=(0, 1)), dt, np.abs(dm_t).sum(axis=(0, 1)).max())
    q, terms = gaussian_mag(x, mean, logvar)
    close(ll, ll_t, dt, terms.sum(axis=-1).max())
    close(dm, dm_t, dt)
    close(dv, dv_t, dt, (np.abs(dll[..., None]) * 0.5 * (q + 1)).sum(axis=(0, 1)).max())
    pre, b = split_bias(data, dt, mean)
    (ll_b, dm_b, db_b, dv_b), _ = run_both(K.gaussian_loglik_shared_grad, R.gaussian_loglik_shared_grad, outs,
                                           [x, pre, b, logvar, dll])
    for got, want in ((ll_b, ll), (dm_b, dm), (db_b, db), (dv_b, dv)):
        np.testing.assert_array_equal(got, want)
    (ll_f,), (ll_ft,) = run_both(K.gaussian_loglik_shared, R.gaussian_loglik_shared, [garbage((L, N), dt)],
                                 [x, pre, b, logvar])
    assert_same_sum(ll_f, ll, dt, 0.5 * terms.sum(axis=-1), D)
    close(ll_ft, ll_t, dt, terms.sum(axis=-1).max())


# ------------------------------------------------------- KL, reparameterization
@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), N=dims, J=dims, scale=st.floats(-2.0, 2.0))
def test_kl_grad(dt, data, N, J, scale):
    mu = draw(data, dt, (N, J), GENERIC)
    logvar = draw(data, dt, (N, J), LOGVAR)
    enc = np.concatenate([mu, logvar], axis=1)  # [μ | v], as the encoder's output layer gives them
    outs = [garbage((N,), dt), garbage((N, 2 * J), dt)]
    (kl, denc), (kl_t, denc_t) = run_both(K.kl_grad, R.kl_grad, outs, [enc], scale)
    m, v = mu.astype(np.float64), logvar.astype(np.float64)
    close(kl, kl_t, dt, (m * m + np.exp(v) + np.abs(v) + 1).sum(axis=-1).max())
    close(denc, denc_t, dt)
    # the halves are dμ and dv, by the formulas of the docstring
    close(denc[:, :J], dt(scale) * mu, dt)
    close(denc[:, J:], dt(scale) * (dt(0.5) * (np.exp(v) - 1)), dt, abs(scale) * np.exp(v).max())


@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), L=dims, N=dims, J=dims)
def test_reparam_forward(dt, data, L, N, J):
    mu = draw(data, dt, (N, J), GENERIC)
    logvar = draw(data, dt, (N, J), LOGVAR)
    eps = draw(data, dt, (L, N, J), GENERIC)
    enc = np.concatenate([mu, logvar], axis=1)
    (z, std), (z_t, std_t) = run_both(K.reparam_forward, R.reparam_forward,
                                      [garbage((L, N, J), dt), garbage((N, J), dt)], [enc, eps])
    close(std, std_t, dt)
    close(z, z_t, dt, np.abs(mu).max())  # μ + σε can cancel: error up to eps·|μ|
    close(std, np.exp(0.5 * logvar.astype(np.float64)), dt)  # σ from the second half, μ from the first
    close(z, mu + std * eps, dt, np.abs(mu).max())


@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), L=dims, N=dims, J=dims)
def test_reparam_backward_accumulates(dt, data, L, N, J):
    """reparam_backward adds (+=) onto what is in dmu and dlogvar (the KL gradient)."""
    denc0 = draw(data, dt, (N, 2 * J), GENERIC)  # [dμ | dv] so far (the KL gradient)
    dz = draw(data, dt, (L, N, J), GENERIC)
    eps = draw(data, dt, (L, N, J), GENERIC)
    std = np.exp(0.5 * draw(data, dt, (N, J), LOGVAR))
    (denc,), (denc_t,) = run_both(K.reparam_backward, R.reparam_backward, [denc0], [dz, eps, std])
    mag_mu = np.abs(denc0).max() + np.abs(dz).sum(axis=0).max()
    mag_v = np.abs(denc0).max() + np.abs(dz * eps * std.astype(np.float64)).sum(axis=0).max()
    close(denc[:, :J], denc_t[:, :J], dt, mag_mu)
    close(denc[:, J:], denc_t[:, J:], dt, mag_v)
    # from zero it is the reparameterization gradient alone (MATH.md)
    g = np.zeros((N, 2 * J), dt)
    K.reparam_backward(g, dz, eps, std)
    close(g[:, :J], dz.sum(axis=0), dt, mag_mu)
    close(g[:, J:], (dz * eps * (dt(0.5) * std)).sum(axis=0), dt, mag_v)


# ------------------------------------------------------------------ optimizers
# SGD and Adagrad: the twins do the same operations in the same order as the
# kernels (no FMA contraction without fastmath; sqrt and division correctly
# rounded on both sides), so the updates agree to the last bit. Adam: the twin
# is the paper's form (m̂ = m/bias1, v̂ = v/bias2, lr·m̂/(√v̂ + ε)), the kernel
# folds the corrections into lr/bias1 and 1/√bias2; m and v are still the same
# operations in the same order (bit for bit), p differs by rounding only.
#
# The bound on p, with u the unit roundoff: the step Δ = lr·m̂/(√v̂ + ε) of
# either form carries a relative error of at most 10u. The twin: lr, bias1,
# m/bias1 and the product (4); bias2 and v/bias2 (halved by the √), the √ and
# + ε (3); the division (1). The kernel: lr/bias1 in float64, then in T, and
# the product (3); 1/√bias2 in float64 (2) then in T, √v, the product and + ε
# (6); the division (1). Each rounding errs by at most u relative, or u·tiny
# absolute where an intermediate is subnormal (Higham, Accuracy and Stability
# of Numerical Algorithms, 2002, §2.1), which the division by √v̂ + ε scales.
# So the two steps differ by at most 20u·(|Δ| + tiny/(√v̂ + ε)); then p − Δ
# rounds on each side (≤ u·|p'|, p' the result) and a result below tiny is
# flushed to 0 (≤ tiny). ADAM_ROUNDINGS = 24 is those 20 with a fifth more
# room: a few ulp of the step. A slip in the formula (a bias correction left
# out, β1 for β2) moves p by a large fraction of Δ, thousands of times this.
ADAM_ROUNDINGS = 24


def adam_reordering_bound(dt, p_a, p_b, m, v, lr, bias1, bias2, eps):
    """How far two Adam steps' results ``p_a``, ``p_b`` (the kernel's, the twin's) may be apart, from the same
    p and the new m, v (above)."""
    u, tiny = np.finfo(dt).eps / 2, float(np.finfo(dt).tiny)
    den = np.sqrt(v.astype(np.float64) / bias2) + eps  # √v̂ + ε, from the new v (float64)
    step = np.abs(lr * (m.astype(np.float64) / bias1) / den)  # |Δ|
    return ADAM_ROUNDINGS * u * (step + tiny / den) + u * (np.abs(p_a.astype(np.float64)) + np.abs(p_b)) + tiny


def hyper(data):
    lr = data.draw(st.floats(1e-5, 1.0))
    beta1 = data.draw(st.floats(0.0, 0.99))
    beta2 = data.draw(st.floats(0.0, 0.9999))
    t = data.draw(st.integers(1, 1000))
    return lr, beta1, beta2, t


P = st.integers(min_value=1, max_value=40)


@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), n=P)
def test_adam_update(dt, data, n):
    p, m, g = (draw(data, dt, (n,), GENERIC) for _ in range(3))
    v = draw(data, dt, (n,), POSITIVE)
    lr, beta1, beta2, t = hyper(data)
    args = (lr, beta1, beta2, 1e-8, 1 - beta1**t, 1 - beta2**t)
    (p_k, m_k, v_k), (p_t, m_t, v_t) = run_both(K.adam_update, R.KERNELS["adam_update"], [p, m, v], [g], *args, unflushed=(0,))
    np.testing.assert_array_equal(m_k, m_t)  # the same operations in the same order
    np.testing.assert_array_equal(v_k, v_t)
    bound = adam_reordering_bound(dt, p_k, p_t, m_t, v_t, lr, args[4], args[5], args[3])
    diff = np.abs(p_k.astype(np.float64) - p_t.astype(np.float64))
    assert (diff <= bound).all(), f"p differs by {diff.max():.3g}, beyond the reordering's {bound[diff.argmax()]:.3g}"


def test_adam_reordering_bound_rejects_a_slip():
    """The bound has teeth: the twin with β1 and β2 swapped, or without the bias correction, is outside it."""
    rng = np.random.default_rng(0)
    right = (1e-2, 0.9, 0.999, 1e-8, 1 - 0.9**3, 1 - 0.999**3)  # lr, β1, β2, ε, bias1, bias2 at t = 3
    slips = {"beta1 and beta2 swapped": (1e-2, 0.999, 0.9, 1e-8, 1 - 0.999**3, 1 - 0.9**3),
             "no bias correction": right[:4] + (1.0, 1.0)}
    for dt in DTYPES:
        p, m, g = (rng.standard_normal(200).astype(dt) for _ in range(3))
        v = np.abs(rng.standard_normal(200)).astype(dt)
        (p_k, m_k, v_k), _ = run_both(K.adam_update, R.KERNELS["adam_update"], [p, m, v], [g], *right, unflushed=(0,))
        bound = adam_reordering_bound(dt, p_k, p_k, m_k, v_k, right[0], right[4], right[5], right[3])
        for slip, args in slips.items():
            _, (p_w, _, _) = run_both(K.adam_update, R.KERNELS["adam_update"], [p, m, v], [g], *args, unflushed=(0,))
            assert (np.abs(p_k.astype(np.float64) - p_w) > bound).all(), slip


def test_adam_update_matches_the_optimizer():
    """Five steps of the kernel on a flat array against Adam.step (the paper's form): m and v bit for bit, p
    within the reordering bound of each step, summed (a step moves p by Δ whatever p is, so differences add)."""
    from scratchvae.optim import Adam
    rng = np.random.default_rng(0)
    for dt in DTYPES:
        p = rng.standard_normal(1000).astype(dt)
        opt, flat = Adam(lr=1e-2), p.copy()
        m, v = np.zeros_like(p), np.zeros_like(p)
        allowed = np.zeros(p.shape)
        for _ in range(5):
            g = rng.standard_normal(1000).astype(dt)
            opt.step({"w": p}, {"w": g})
            args = (opt.lr, opt.beta1, opt.beta2, opt.eps, 1 - opt.beta1**opt.t, 1 - opt.beta2**opt.t)
            K.adam_update(flat, m, v, g, *args)
            allowed += adam_reordering_bound(dt, flat, p, m, v, opt.lr, args[4], args[5], opt.eps)
        np.testing.assert_array_equal(m, opt.state["m.w"])
        np.testing.assert_array_equal(v, opt.state["v.w"])
        assert (np.abs(flat.astype(np.float64) - p) <= allowed).all()


@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), n=P, lr=st.floats(1e-5, 1.0), momentum=st.floats(0.0, 0.99))
def test_sgd_momentum_update(dt, data, n, lr, momentum):
    p, vel, g = (draw(data, dt, (n,), GENERIC) for _ in range(3))
    outs_k, outs_t = run_both(K.sgd_momentum_update, R.KERNELS["sgd_momentum_update"], [p, vel], [g], lr, momentum, unflushed=(0,))
    for a, b in zip(outs_k, outs_t):
        np.testing.assert_array_equal(a, b)  # the same operations in the same order


@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), n=P, lr=st.floats(1e-5, 1.0))
def test_adagrad_update(dt, data, n, lr):
    p, g = (draw(data, dt, (n,), GENERIC) for _ in range(2))
    s = draw(data, dt, (n,), POSITIVE)
    outs_k, outs_t = run_both(K.adagrad_update, R.KERNELS["adagrad_update"], [p, s], [g], lr, 1e-10, unflushed=(0,))
    for a, b in zip(outs_k, outs_t):
        np.testing.assert_array_equal(a, b)  # the same operations in the same order


# ----------------------------------------------------- pieces (OpenBLAS' threads)
# The routine OpenBLAS runs for each piece, called here directly through its C
# address: on its record's range it is the optimizer kernel (rows: p, g, then
# the slots in the kernel's order), and outside it nothing changes.
PIECE = ctypes.CFUNCTYPE(None, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_float, ctypes.c_void_p,
                         ctypes.c_long, ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_long,
                         ctypes.c_void_p)
PIECE_CASES = {"adam_update": (2, (1e-2, 0.9, 0.999, 1e-8, 1 - 0.9**3, 1 - 0.999**3)),
               "sgd_momentum_update": (1, (0.1, 0.9)), "adagrad_update": (1, (0.1, 1e-8))}


def run_piece(dt, name, arena, args, lo, hi):
    header = np.zeros(PC.PIECE_HEADER)
    header[:3 + len(args)] = (PC.PIECE_OPS[name], arena.shape[0], arena.shape[1], *args)
    record = np.array([lo, hi], np.float64)
    PIECE(PC.piece_routine(dt))(1, 0, 0, 1.0, arena.ctypes.data, 0, header.ctypes.data, 0, record.ctypes.data, 0,
                               None)
    return record


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("name", list(PIECE_CASES))
def test_a_piece_is_its_kernel_on_its_range(dt, name):
    slots, args = PIECE_CASES[name]
    rng = np.random.default_rng(0)
    arena = rng.standard_normal((2 + slots, 80)).astype(dt)
    arena[2:] = np.abs(arena[2:])  # second moments and sums of squares are not negative
    before, want = arena.copy(), arena.copy()
    lo, hi = 16, 53
    p, g, *state = (row[lo:hi] for row in want)
    getattr(K, name)(p, *state, g, *args)
    got = run_piece(dt, name, arena, args, lo, hi)
    np.testing.assert_array_equal(got, [-1, 1])  # done
    np.testing.assert_array_equal(arena, want)  # the range updated as one pass would, the rest untouched
    assert (want[0, lo:hi] != before[0, lo:hi]).all()  # (an update that changes every parameter of the range)


@pytest.mark.parametrize("dt", DTYPES)
def test_a_finiteness_piece_looks_at_its_range_of_the_gradient(dt):
    arena = np.ones((4, 64), dt)
    arena[0, 20] = arena[2, 20] = np.nan  # not the gradient's row: not looked at
    np.testing.assert_array_equal(run_piece(dt, "all_finite", arena, (), 16, 48), [-1, 1])
    arena[1, 47] = np.inf
    np.testing.assert_array_equal(run_piece(dt, "all_finite", arena, (), 16, 48), [-1, 0])
    np.testing.assert_array_equal(run_piece(dt, "all_finite", arena, (), 48, 64), [-1, 1])  # after it


# ------------------------------------------------ fixed bigger cases (SIMD bodies)
def sprinkle(rng, a, extremes, frac=0.02):
    """Put some extreme values at random places of a."""
    mask = rng.random(a.shape) < frac
    a[mask] = rng.choice(np.asarray(extremes, a.dtype), size=int(mask.sum()))
    return a


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("N,O", [(7, 400), (33, 37), (128, 401)])
def test_dense_kernels_bigger(dt, N, O):
    rng = np.random.default_rng(N * O)
    for act in ACTS:
        a = sprinkle(rng, (rng.standard_normal((N, O)) * 4).astype(dt), [0, 1e4, -1e4, 100, -100])
        b = rng.standard_normal(O).astype(dt)
        (h, a1), (h_t, a1_t) = run_both(K.bias_act_forward, R.bias_act_forward, [garbage((N, O), dt), a], [b],
                                        act)
        np.testing.assert_array_equal(a1, a1_t)
        close(h, h_t, dt)
        dh = rng.standard_normal((N, O)).astype(dt)
        (da, db), (da_t, db_t) = run_both(K.bias_act_backward, R.bias_act_backward,
                                          [garbage((N, O), dt), garbage((O,), dt)], [dh, a1, h_t], act)
        close(da, da_t, dt)
        close(db, db_t, dt, np.abs(da_t).sum(axis=0).max())
    (db,), (db_t,) = run_both(K.col_sum, R.col_sum, [garbage((O,), dt)], [dh])
    close(db, db_t, dt, np.abs(dh).sum(axis=0).max())


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("L,N,D", [(1, 7, 784), (2, 5, 37), (3, 16, 100)])
def test_likelihood_kernels_bigger(dt, L, N, D):
    rng = np.random.default_rng(L * N * D)
    x = (rng.random((N, D)) < 0.5).astype(dt)
    x[:, ::3] = rng.random((N, len(range(0, D, 3))))  # some gray values
    logits = sprinkle(rng, (rng.standard_normal((L, N, D)) * 5).astype(dt), [1e4, -1e4, 0, 90, -90])
    scale = np.full((L, N), -1.0 / (L * N), dt)
    (ll, dl, db), (ll_t, dl_t, _) = run_both(K.bernoulli_loglik_grad, R.bernoulli_loglik_grad,
                                             [garbage((L, N), dt), garbage((L, N, D), dt), garbage((D,), dt)],
                                             [x, logits, np.zeros(D, dt), scale])
    close(ll, ll_t, dt, bernoulli_mag(x, logits))
    close(dl, dl_t, dt)
    assert_head_db(db, dl)
    mean = rng.random((L, N, D)).astype(dt)
    logvar = sprinkle(rng, rng.uniform(-5, 5, (L, N, D)).astype(dt), [-30, 30, 0])
    outs = [garbage((L, N), dt), garbage((L, N, 2 * D), dt), garbage((2 * D,), dt)]
    (ll, ddec, db), (ll_t, ddec_t, _) = run_both(K.gaussian_loglik_grad, R.gaussian_loglik_grad, outs,
                                                 [x, np.concatenate([mean, logvar], axis=-1), np.zeros(2 * D, dt),
                                                  scale])
    q, terms = gaussian_mag(x, mean, logvar)
    close(ll, ll_t, dt, terms.sum(axis=-1).max())
    close(ddec, ddec_t, dt)
    assert_head_db(db, ddec)
    logvar_D = logvar[0, 0].copy()
    outs = [garbage((L, N), dt), garbage((L, N, D), dt), garbage((D,), dt), garbage((D,), dt)]
    (ll, dm, db, dv), (ll_t, dm_t, _, dv_t) = run_both(K.gaussian_loglik_shared_grad, R.gaussian_loglik_shared_grad,
                                                       outs, [x, mean, np.zeros(D, dt), logvar_D, scale])
    q, terms = gaussian_mag(x, mean, logvar_D)
    close(ll, ll_t, dt, terms.sum(axis=-1).max())
    close(dm, dm_t, dt)
    assert_head_db(db, dm)
    close(dv, dv_t, dt, (1.0 / (L * N)) * (0.5 * (q + 1)).sum(axis=(0, 1)).max())


@pytest.mark.parametrize("dt", DTYPES)
def test_simd_sizes_with_the_packed_outputs_the_engine_passes(dt):
    """Sizes that reach the SIMD bodies, on the layer outputs as the engine passes them: the encoder's
    (N, 2J) [μ | v] and the decoder's (R, 2D) [mean | logvar] reshaped to (L, N, 2D)."""
    rng = np.random.default_rng(1)
    L, N, J, D = 2, 9, 20, 50
    enc = rng.standard_normal((N, 2 * J)).astype(dt)
    eps = rng.standard_normal((L, N, J)).astype(dt)
    z, std = np.empty((L, N, J), dt), np.empty((N, J), dt)
    z_t, std_t = np.empty_like(z), np.empty_like(std)
    K.reparam_forward(z, std, enc, eps)
    R.reparam_forward(z_t, std_t, enc, eps)
    close(z, z_t, dt, np.abs(enc).max())
    close(std, std_t, dt)
    # KL gradient written first, then the reparameterization gradient added, into one buffer
    dz = rng.standard_normal((L, N, J)).astype(dt)
    denc, denc_t = np.full((N, 2 * J), np.nan, dt), np.full((N, 2 * J), np.nan, dt)
    kl, kl_t = np.empty(N, dt), np.empty(N, dt)
    K.kl_grad(kl, denc, enc, 0.1)
    K.reparam_backward(denc, dz, eps, std)
    R.kl_grad(kl_t, denc_t, enc, 0.1)
    R.reparam_backward(denc_t, dz, eps, std)
    close(kl, kl_t, dt, 100)
    close(denc, denc_t, dt, 10)
    # predicted Gaussian variance: the decoder's (R, 2D) output [mean | logvar], reshaped to (L, N, 2D)
    x = rng.random((N, D)).astype(dt)
    dec = rng.standard_normal((L * N, 2 * D)).astype(dt)
    ddec, ddec_t = np.full_like(dec, np.nan), np.full_like(dec, np.nan)
    ll, ll_t = np.empty((L, N), dt), np.empty((L, N), dt)
    dll = np.full((L, N), -0.5, dt)
    b = rng.standard_normal(2 * D).astype(dt)  # the head's bias, added as the kernels read
    db, db_t = np.empty(2 * D, dt), np.empty(2 * D, dt)
    K.gaussian_loglik_grad(ll, ddec.reshape(L, N, 2 * D), db, x, (dec - b).reshape(L, N, 2 * D), b, dll)
    R.gaussian_loglik_grad(ll_t, ddec_t.reshape(L, N, 2 * D), db_t, x, (dec - b).reshape(L, N, 2 * D), b, dll)
    assert_head_db(db, ddec)
    _, terms = gaussian_mag(x, dec[:, :D].reshape(L, N, D), dec[:, D:].reshape(L, N, D))
    close(ll, ll_t, dt, terms.sum(axis=-1).max())
    close(ddec, ddec_t, dt)


# ------------------------------------------- accuracy of the float32 math itself
def sigmoid64(a):
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def grid32():
    return np.concatenate([np.linspace(-120, 100, 400_001), np.linspace(-2, 2, 200_001),
                           [0.0, -0.0, 1e-30, -1e-30, 1e4, -1e4]]).astype(np.float32)


def assert_rel(actual, truth, rtol, floor=SMALLEST_NORMAL_32):
    """Relative error below rtol where the truth is a normal float32; absolute below `floor` elsewhere."""
    actual = actual.astype(np.float64)
    normal = np.abs(truth) >= floor
    err = np.abs(actual - truth)
    assert (err[normal] <= rtol * np.abs(truth[normal])).all(), (err[normal] / np.abs(truth[normal])).max()
    assert (err[~normal] <= floor).all()


@pytest.mark.parametrize("act", [K.TANH, K.SIGMOID, K.SOFTPLUS])
def test_float32_activations_against_float64(act):
    a = grid32().reshape(1, -1)
    h = np.empty_like(a)
    K.bias_act_forward(h, a.copy(), np.zeros(a.shape[1], np.float32), act)
    a64 = a.astype(np.float64)
    truth = {K.TANH: np.tanh(a64), K.SIGMOID: sigmoid64(a64), K.SOFTPLUS: np.logaddexp(0, a64)}[act]
    assert_rel(h, truth, ULP_RTOL_32)


def test_float32_exp_against_float64():
    """std = exp(v/2) of reparam_forward: normal range, overflow to inf, flush below the smallest normal."""
    v = 2 * grid32().reshape(1, -1)
    std, z = np.empty_like(v), np.empty((1,) + v.shape, np.float32)
    K.reparam_forward(z, std, np.concatenate([np.zeros_like(v), v], axis=1), np.zeros_like(z))
    with np.errstate(over="ignore"):
        truth = np.exp(0.5 * v.astype(np.float64))
    big = truth > np.finfo(np.float32).max
    assert np.isposinf(std[big]).all()
    assert_rel(std[~big], truth[~big], EXP_RTOL_32)


def test_float32_bernoulli_against_float64():
    """log1p(e^{-|η|}) and sigmoid of the Bernoulli kernel, against float64, at every logit of the grid."""
    logits = grid32().reshape(1, 1, -1)
    for xv in (0.0, 1.0):
        x = np.full(logits.shape[1:], xv, np.float32)
        ll, dl = np.empty((1, 1), np.float32), np.empty_like(logits)
        K.bernoulli_loglik_grad(ll, dl, np.empty(logits.shape[-1], logits.dtype), x, logits,
                            np.zeros(logits.shape[-1], logits.dtype),
                            np.ones((1, 1), logits.dtype))
        e64 = logits.astype(np.float64)
        if xv == 0:  # −sigmoid(η) itself: relative accuracy down to the smallest normal
            assert_rel(dl, -sigmoid64(e64), ULP_RTOL_32)
        else:  # 1 − sigmoid(η) cancels in float32 (twin alike): absolute accuracy
            assert np.abs(dl - (1 - sigmoid64(e64))).max() <= ULP_RTOL_32
        truth = (xv * e64 - np.logaddexp(0, e64)).sum()
        assert abs(ll[0, 0] - truth) <= ATOL[np.float32] * bernoulli_mag(x, logits)


@pytest.mark.parametrize("dt", DTYPES)
def test_only_the_sum_is_reassociated(dt):
    """fastmath={"reassoc"} on the log-likelihood kernels must reach only their running sum.

    The per-element math sits in helpers compiled with fastmath=False set
    explicitly (otherwise Numba lets a callee inherit the caller's flags).
    With the flag on the whole body LLVM would be free to rewrite
    acc + (x η − softplus(η)) as (acc + x η) − softplus(η), which at η = 1e4
    loses the low bits of acc; here the terms at x = 1, η = 1e4 and x = 0,
    η = −1e4 are exactly 0, and the ll of the row must be as precise as the
    sum of its ordinary terms alone.
    """
    helpers = [K._bernoulli_term, K._gaussian_term, K._kl_term, K._softplus_sigmoid, F._exp_reduced_f32]
    assert all(h.targetoptions.get("fastmath") is False for h in helpers)
    rng = np.random.default_rng(7)
    D = 800
    logits = rng.standard_normal((1, 1, D)).astype(dt)
    x = (rng.random((1, D)) < 0.5).astype(dt)
    huge = rng.random(D) < 0.5
    logits[0, 0, huge] = np.where(x[0, huge] > 0, 1e4, -1e4)
    ll, dl = np.empty((1, 1), dt), np.empty_like(logits)
    K.bernoulli_loglik_grad(ll, dl, np.empty(logits.shape[-1], logits.dtype), x, logits,
                            np.zeros(logits.shape[-1], logits.dtype),
                            np.ones((1, 1), logits.dtype))
    small = ~huge
    truth = (x[0, small] * logits[0, 0, small].astype(np.float64) - np.logaddexp(0, logits[0, 0, small])).sum()
    mag_small = (np.abs(x[0, small] * logits[0, 0, small]) + np.logaddexp(0, logits[0, 0, small])).sum()
    assert abs(ll[0, 0] - truth) <= ATOL[dt] * mag_small


def test_nan_propagates():
    for act in ACTS:
        a = np.array([[np.nan, 1.0]], np.float32)
        h = np.empty_like(a)
        K.bias_act_forward(h, a, np.zeros(2, np.float32), act)
        assert np.isnan(h[0, 0]) and not np.isnan(h[0, 1]), act
    ll, dl = np.empty((1, 1), np.float32), np.empty((1, 1, 2), np.float32)
    K.bernoulli_loglik_grad(ll, dl, np.empty(2, np.float32), np.ones((1, 2), np.float32),
                            np.array([[[np.nan, 0]]], np.float32), np.zeros(2, np.float32), np.ones((1, 1), np.float32))
    assert np.isnan(ll).all() and np.isnan(dl[0, 0, 0]) and not np.isnan(dl[0, 0, 1])


# ------------------------------------------------- importance-weighted bound
@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), K_=dims, N=dims, J=dims)
def test_log_weights(dt, data, K_, N, J):
    mu = draw(data, dt, (N, J), GENERIC)
    logvar = draw(data, dt, (N, J), values(-8.0, 8.0, (0.0,)))
    enc = np.concatenate([mu, logvar], axis=1)
    eps = draw(data, dt, (K_, N, J), GENERIC)
    z = (mu + np.exp(dt(0.5) * logvar) * eps).astype(dt)
    ll = draw(data, dt, (K_, N), GENERIC)
    (lw,), (lw_t,) = run_both(K.log_weights, R.log_weights, [garbage((K_, N), dt)], [ll, z, eps, enc])
    mag = (np.abs(ll) + (z.astype(np.float64) ** 2 + eps.astype(np.float64) ** 2 + np.abs(logvar)).sum(-1)
           + J * np.log(2 * np.pi)).max()
    close(lw, lw_t, dt, mag)


@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), K_=dims, N=dims, scale=st.floats(-2.0, 2.0))
def test_iwae_weights(dt, data, K_, N, scale):
    log_w = draw(data, dt, (K_, N), values(-300.0, 50.0, (0.0, -1e4)))
    outs = [garbage((N,), dt), garbage((K_, N), dt)]
    (bound, dlogw), (bound_t, dlogw_t) = run_both(K.iwae_weights, R.iwae_weights, outs, [log_w], scale)
    close(bound, bound_t, dt, np.abs(log_w.astype(np.float64)).max())
    close(dlogw, dlogw_t, dt)
    # the normalized weights sum to one: Σ_k dlogw = scale for every point
    close(dlogw.sum(axis=0), np.full(N, scale), dt, abs(scale) * K_)


@pytest.mark.parametrize("dt", DTYPES)
@SETTINGS
@given(data=st.data(), K_=dims, N=dims, J=dims)
def test_iwae_latent_grad(dt, data, K_, N, J):
    z = draw(data, dt, (K_, N, J), GENERIC)
    dlogw = draw(data, dt, (K_, N), UPSTREAM)
    dz0 = draw(data, dt, (K_, N, J), GENERIC)
    # dz is updated in place: pass it as an output
    (denc, dz), (denc_t, dz_t) = run_both(K.iwae_latent_grad, R.iwae_latent_grad,
                                          [garbage((N, 2 * J), dt), dz0], [z, dlogw])
    close(dz, dz_t, dt, 30)
    close(denc, denc_t, dt, K_)
    close(denc[:, :J], np.zeros((N, J)), dt)
    close(dz, dz0.astype(np.float64) - dlogw[..., None].astype(np.float64) * z, dt, 30)

import numpy as np
import pytest
from hypothesis import given, strategies as st

from scratchvae.testing import gradcheck
from scratchvae.ops import (
    ACTIVATIONS, LEAKY_SLOPE, activation_backward, activation_forward, dense_backward, dense_forward, sigmoid,
    softplus,
)
from tests.strategies import dims, rng_from, seeds


def test_dense_worked_by_hand():
    # x = [[1, 2]], W = [[1, 0, -1], [2, 1, 0]], b = [0.5, 0, 0]
    # out = [1*1 + 2*2 + 0.5, 1*0 + 2*1, 1*-1 + 2*0] = [5.5, 2, -1]
    x = np.array([[1.0, 2.0]])
    W = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    b = np.array([0.5, 0.0, 0.0])
    out, cache = dense_forward(x, W, b)
    np.testing.assert_array_equal(out, [[5.5, 2.0, -1.0]])
    # dout = [[1, 0, 1]]: dx = dout Wᵀ = [1 - 1, 2 + 0] = [0, 2]; dW = xᵀ dout; db = dout
    dx, dW, db = dense_backward(np.array([[1.0, 0.0, 1.0]]), cache)
    np.testing.assert_array_equal(dx, [[0.0, 2.0]])
    np.testing.assert_array_equal(dW, [[1.0, 0.0, 1.0], [2.0, 0.0, 2.0]])
    np.testing.assert_array_equal(db, [1.0, 0.0, 1.0])


@given(n=dims, i=dims, o=dims, seed=seeds)
def test_dense_gradcheck(n, i, o, seed):
    rng = rng_from(seed)
    inputs = {"x": rng.standard_normal((n, i)), "W": rng.standard_normal((i, o)), "b": rng.standard_normal(o)}
    for r in gradcheck.check_op("dense", dense_forward, dense_backward, inputs, ("x", "W", "b"), rng):
        assert r.error <= gradcheck.TOLERANCE, r


EXPECTED = {
    "relu": lambda a: np.where(a > 0, a, 0.0),
    "leaky_relu": lambda a: np.where(a > 0, a, LEAKY_SLOPE * a),
    "tanh": np.tanh,
    "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
    "softplus": lambda a: np.log(1 + np.exp(a)),
    "identity": lambda a: a,
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_forward_matches_definition(name):
    a = np.linspace(-5, 5, 41)
    h, _ = activation_forward(name, a)
    np.testing.assert_allclose(h, EXPECTED[name](a), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@given(n=dims, o=dims, seed=seeds)
def test_activation_gradcheck(name, n, o, seed):
    rng = rng_from(seed)
    a = gradcheck._away_from_zero(rng, (n, o))
    a_before = a.copy()
    (r,) = gradcheck.check_op(name, lambda a: activation_forward(name, a), activation_backward, {"a": a}, ("a",), rng)
    assert r.error <= gradcheck.TOLERANCE
    np.testing.assert_array_equal(a, a_before)  # the check restores its input


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_keeps_dtype_and_inputs(name):
    a = np.array([[-2.0, -0.5, 0.5, 3.0]], dtype=np.float32)
    dh = np.ones_like(a)
    a0, dh0 = a.copy(), dh.copy()
    h, cache = activation_forward(name, a)
    da = activation_backward(dh, cache)
    assert h.dtype == np.float32 and da.dtype == np.float32
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(dh, dh0)


def test_sigmoid_and_softplus_are_stable_at_extremes():
    a = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        s, sp = sigmoid(a), softplus(a)
    np.testing.assert_allclose(s, [0.0, np.exp(-50.0), 0.5, 1.0, 1.0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(sp, [0.0, np.exp(-50.0), np.log(2.0), 50.0, 1e4], rtol=1e-12, atol=0)


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        activation_forward("swish", np.zeros(3))

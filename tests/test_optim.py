import numpy as np
import pytest

from scratchvae.optim import SGD, Adagrad, Adam, make_optimizer


def one_step(opt, p, g, steps=1):
    params = {"w": np.array(p, dtype=float)}
    for _ in range(steps):
        opt.step(params, {"w": np.array(g, dtype=float)})
    return params["w"]


def test_sgd_momentum_by_hand():
    # v1 = g = 2, p1 = 1 − 0.1·2 = 0.8; v2 = 0.5·2 + 2 = 3, p2 = 0.8 − 0.3 = 0.5
    np.testing.assert_allclose(one_step(SGD(lr=0.1, momentum=0.5), [1.0], [2.0], 2), [0.5])


def test_adagrad_by_hand():
    # s1 = 4, p1 = 1 − 0.1·2/2 = 0.9; s2 = 8, p2 = 0.9 − 0.1·2/sqrt(8)
    np.testing.assert_allclose(one_step(Adagrad(lr=0.1, eps=0.0), [1.0], [2.0], 2), [0.9 - 0.2 / np.sqrt(8)])


def test_adam_by_hand():
    # first step: m̂ = g, v̂ = g², so p moves by lr·g/(|g| + eps) ≈ lr·sign(g)
    np.testing.assert_allclose(one_step(Adam(lr=0.01, eps=0.0), [1.0, 1.0], [3.0, -0.5]), [0.99, 1.01])
    # second step with the same g: m̂ and v̂ are still g and g²
    np.testing.assert_allclose(one_step(Adam(lr=0.01, eps=0.0), [1.0], [3.0], 2), [0.98])


@pytest.mark.parametrize("name", ["sgd", "adagrad", "adam"])
def test_each_optimizer_minimizes_a_quadratic(name):
    target = np.array([1.0, -2.0, 3.0])
    opt = make_optimizer(name, lr=0.1 if name != "adagrad" else 0.5)
    params = {"w": np.zeros(3)}
    for _ in range(500):
        opt.step(params, {"w": params["w"] - target})  # gradient of ½‖w − target‖²
    np.testing.assert_allclose(params["w"], target, atol=1e-2)
    assert opt.t == 500


@pytest.mark.parametrize("bad", [dict(lr=0), dict(lr=-1), dict(lr=float("nan"))])
def test_bad_learning_rate(bad):
    with pytest.raises(ValueError, match="learning rate"):
        make_optimizer("adam", **bad)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop")


def test_state_round_trip_continues_identically():
    a = Adam(lr=0.1)
    pa = {"w": np.array([1.0, 2.0])}
    a.step(pa, {"w": np.array([0.3, -0.2])})
    b = Adam(lr=0.1)
    b.load_state(a.t, {k: v.copy() for k, v in a.state.items()})
    pb = {"w": pa["w"].copy()}
    g = {"w": np.array([0.1, 0.4])}
    a.step(pa, g)
    b.step(pb, g)
    assert pa["w"].tobytes() == pb["w"].tobytes()

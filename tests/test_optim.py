import numpy as np
import pytest

from scratchvae.optim import SGD, Adagrad, Adam, make_optimizer


# The worked examples below are exact in binary up to a few roundings of float64 (1/30, 1/15, 0.9).
BY_HAND_RTOL = 1e-14


def run(opt, p, gs):
    """``opt`` stepped once per gradient in ``gs`` on the parameter ``w`` = ``p`` (float64); returns w."""
    params = {"w": np.array(p, dtype=float)}
    for g in gs:
        opt.step(params, {"w": np.array(g, dtype=float)})
    return params["w"]


def test_sgd_momentum_by_hand():
    """Two steps with different gradients: the heavy ball v ← m·v + g (no dampening, not Nesterov)."""
    opt = SGD(lr=0.1, momentum=0.5)
    # step 1, g = 2: v = 0.5·0 + 2 = 2,  p = 1 − 0.1·2 = 0.8
    # step 2, g = 4: v = 0.5·2 + 4 = 5,  p = 0.8 − 0.1·5 = 0.3
    # (with dampening, v ← m·v + (1 − m)·g, step 1 would give p = 0.9; step 2 would differ too)
    np.testing.assert_allclose(run(opt, [1.0], [[2.0], [4.0]]), [0.3], rtol=BY_HAND_RTOL)
    np.testing.assert_allclose(opt.state["v.w"], [5.0], rtol=BY_HAND_RTOL)


def test_adagrad_by_hand():
    """Two steps with different gradients and ε = 1, large enough that its place shows: outside the root."""
    opt = Adagrad(lr=0.1, eps=1.0)
    # step 1, g = 3: s = 0 + 9 = 9,   p = 1 − 0.1·3/(√9 + 1) = 1 − 0.3/4 = 0.925
    # step 2, g = 4: s = 9 + 16 = 25, p = 0.925 − 0.1·4/(√25 + 1) = 0.925 − 0.4/6 = 0.925 − 1/15
    # (ε inside the root, 0.1·g/√(s + ε), gives 1 − 0.3/√10 = 0.905... at step 1)
    np.testing.assert_allclose(run(opt, [1.0], [[3.0], [4.0]]), [0.925 - 1 / 15], rtol=BY_HAND_RTOL)
    np.testing.assert_allclose(opt.state["s.w"], [25.0], rtol=BY_HAND_RTOL)


def test_adam_first_step_is_lr_times_the_sign():
    # step 1: m̂ = g and v̂ = g² for any β1, β2, so p moves by lr·g/(|g| + 0) = lr·sign(g)
    np.testing.assert_allclose(run(Adam(lr=0.01, eps=0.0), [1.0, 1.0], [[3.0, -0.5]]), [0.99, 1.01],
                               rtol=BY_HAND_RTOL)


def test_adam_by_hand():
    """Two steps with different gradients and β1 ≠ β2 (Kingma & Ba 2015, Algorithm 1): swapping β1 and β2,
    leaving out a bias correction or taking √ of the wrong quantity each changes p (see the comments)."""
    opt = Adam(lr=0.1, beta1=0.5, beta2=15 / 16, eps=0.0)
    # step 1, g = 2:  m = ½·0 + ½·2 = 1,               v = (15/16)·0 + (1/16)·4 = ¼
    #   m̂ = 1/(1 − ½) = 2,  v̂ = ¼/(1 − 15/16) = 4,   p = 1 − 0.1·2/√4 = 0.9
    #   (without the bias correction p = 1 − 0.1·1/√¼ = 0.8)
    # step 2, g = −2: m = ½·1 + ½·(−2) = −½,          v = (15/16)·¼ + (1/16)·4 = 15/64 + 16/64 = 31/64
    #   m̂ = −½/(1 − ¼) = −2/3,  v̂ = (31/64)/(1 − 225/256) = (31/64)·(256/31) = 4
    #   p = 0.9 − 0.1·(−2/3)/√4 = 0.9 + 1/30
    # (β1 and β2 swapped: step 2 has m = 15/16·1/8 − 2/16 = −1/128, m̂ = −2/31, v̂ = 3/¾ = 4,
    #  p = 0.9 + 0.1/31)
    np.testing.assert_allclose(run(opt, [1.0], [[2.0], [-2.0]]), [0.9 + 1 / 30], rtol=BY_HAND_RTOL)
    np.testing.assert_allclose(opt.state["m.w"], [-0.5], rtol=BY_HAND_RTOL)
    np.testing.assert_allclose(opt.state["v.w"], [31 / 64], rtol=BY_HAND_RTOL)
    assert opt.t == 2


def test_adam_epsilon_is_outside_the_root():
    # step 1, g = 2, ε = 2: m̂ = 2, v̂ = 4, p = 1 − 0.1·2/(√4 + 2) = 0.95 (inside: 1 − 0.2/√6 = 0.918...)
    np.testing.assert_allclose(run(Adam(lr=0.1, eps=2.0), [1.0], [[2.0]]), [0.95], rtol=BY_HAND_RTOL)


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

"""framework/layers/batch_norm.py: the book's batch norm, numbers and gradients, on every backend."""

import numpy as np

import backends
import pytest

from framework.layers import BatchNormalization
from framework.testing import check_backward
from tests.conftest import to_host

RNG = np.random.default_rng(61)


def layer(xp, d, dtype="float64", **kw):
    gamma = backends.to_device(1 + 0.5 * RNG.standard_normal(d), dtype)
    beta = backends.to_device(RNG.standard_normal(d), dtype)
    return BatchNormalization(gamma, beta, **kw)


def test_training_forward_normalises_and_moves_the_running_averages(xp):
    bn = BatchNormalization(backends.to_device(np.ones(3)), backends.to_device(np.zeros(3)),
                            momentum=0.9)
    np.testing.assert_array_equal(to_host(bn.running_var), [1.0, 1.0, 1.0])  # not the book's 0
    host = RNG.standard_normal((50, 3)) * [1.0, 2.0, 5.0] + [0.0, 3.0, -1.0]
    out = to_host(bn.forward(backends.to_device(host), train_flg=True))
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    var = host.var(axis=0)
    np.testing.assert_allclose(out.var(axis=0), var / (var + 1e-6), rtol=1e-12)
    np.testing.assert_allclose(to_host(bn.running_mean), 0.1 * host.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(to_host(bn.running_var), 0.9 + 0.1 * var, rtol=1e-12)


def test_inference_uses_the_running_averages(xp):
    bn = layer(xp, 4, running_mean=[1.0, 2.0, 3.0, 4.0], running_var=[4.0, 1.0, 0.25, 9.0])
    host = RNG.standard_normal((6, 4))
    before = to_host(bn.running_mean).copy()
    out = to_host(bn.forward(backends.to_device(host), train_flg=False))
    expected = (to_host(bn.gamma) * (host - [1, 2, 3, 4]) / np.sqrt(np.array([4, 1, .25, 9]) + 1e-6)
                + to_host(bn.beta))
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    np.testing.assert_array_equal(to_host(bn.running_mean), before)  # inference moves nothing


def test_an_untrained_layer_passes_activations_through_in_inference(xp):
    bn = BatchNormalization(backends.to_device(np.ones(5)), backends.to_device(np.zeros(5)))
    x = backends.to_device(RNG.standard_normal((3, 5)))
    np.testing.assert_allclose(to_host(bn.forward(x, train_flg=False)), to_host(x), rtol=1e-6)


@pytest.mark.parametrize("shape", [(5, 3), (3, 7), (4, 2, 2, 3)])
def test_backward_matches_central_differences(xp, shape):
    d = int(np.prod(shape[1:]))
    bn = layer(xp, d)
    x = backends.to_device(RNG.standard_normal(shape) * 2 + 1)
    report = check_backward(bn, x, params=("gamma", "beta"))
    assert set(report) == {"input 0", "gamma", "beta"}
    assert bn.forward(x).shape == shape and bn.backward(backends.to_device(np.ones(shape))).shape == shape


def test_float32_keeps_its_dtype(xp):
    bn = layer(xp, 6, dtype="float32")
    out = bn.forward(backends.to_device(RNG.standard_normal((4, 6)), "float32"))
    assert backends.dtype_name(out.dtype) == "float32" and backends.dtype_name(bn.running_var.dtype) == "float32"
    assert backends.dtype_name(bn.backward(backends.to_device(np.ones((4, 6)), "float32")).dtype) == "float32"


def test_stack_forms_have_no_side_effects_and_match_forward(xp):
    bn = layer(xp, 12)
    s = backends.to_device(RNG.standard_normal((3, 5, 3, 2, 2)))
    means = to_host(bn.running_mean).copy()
    for train in (True, False):
        stacked = bn.forward_stack(s, train)
        np.testing.assert_array_equal(to_host(bn.running_mean), means)
        for k in range(3):
            fresh = layer(xp, 12)
            fresh.gamma, fresh.beta = bn.gamma, bn.beta
            np.testing.assert_allclose(to_host(stacked[k, ...]), to_host(fresh.forward(s[k, ...], train)),
                                       rtol=1e-12, atol=1e-12)
    x = s[0, ...]
    for param in ("gamma", "beta"):
        index = backends.to_device([0, 11, 5])
        got = bn.perturbed_outputs(x, param, index, 0.5)
        assert got.shape == (3,) + tuple(x.shape)
        for k, flat in enumerate((0, 11, 5)):
            moved = {"gamma": to_host(bn.gamma).copy(), "beta": to_host(bn.beta).copy()}
            moved[param][flat] += 0.5
            moved = {k: backends.to_device(v) for k, v in moved.items()}
            np.testing.assert_allclose(
                to_host(got[k, ...]),
                to_host(BatchNormalization(moved["gamma"], moved["beta"]).forward(x)),
                rtol=1e-12, atol=1e-12)


def test_errors_name_the_layer_and_the_shapes(xp):
    bn = BatchNormalization(backends.to_device(np.ones(4)), backends.to_device(np.zeros(4)), name="BatchNorm2")
    with pytest.raises(ValueError, match=r"BatchNorm2: input has 6 features \(shape \(2, 6\)\), "
                                         r"gamma has 4"):
        bn.forward(backends.to_device(np.zeros((2, 6))))
    with pytest.raises(ValueError, match=r"BatchNorm2: expected a batch of shape"):
        bn.forward(backends.to_device(np.zeros(4)))
    with pytest.raises(ValueError, match="gamma and beta must be 1-D and of one shape"):
        BatchNormalization(backends.to_device(np.ones(4)), backends.to_device(np.zeros(3)))
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\], got 1.5"):
        BatchNormalization(backends.to_device(np.ones(4)), backends.to_device(np.zeros(4)), momentum=1.5)


@pytest.mark.parametrize("momentum", [0, 1])
def test_momentum_at_either_end_of_its_range(xp, momentum):
    """Both ends of [0, 1] are accepted: 1 keeps the running averages where they start
    (a frozen normalisation), 0 replaces them with each batch's statistics."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4)) * 3 + 2
    bn = BatchNormalization(backends.to_device(np.ones(4)), backends.to_device(np.zeros(4)),
                            momentum=momentum)
    bn.forward(backends.to_device(x), train_flg=True)
    want_mean, want_var = ((np.zeros(4), np.ones(4)) if momentum == 1
                           else (x.mean(axis=0), x.var(axis=0)))
    np.testing.assert_allclose(to_host(bn.running_mean), want_mean, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(to_host(bn.running_var), want_var, rtol=1e-6, atol=1e-12)


def test_the_warning_for_a_batch_of_one_points_at_the_code_that_called_forward(xp):
    """The warning's line is the caller's (here, this file), not the layer's own, so the
    user sees which of their lines trained on one sample."""
    from framework.layers.batch_norm import BatchOfOneWarning
    bn = BatchNormalization(backends.to_device(np.ones(4)), backends.to_device(np.zeros(4)))
    with pytest.warns(BatchOfOneWarning) as caught:
        bn.forward(backends.to_device(np.ones((1, 4))), train_flg=True)
    assert [w.filename for w in caught] == [__file__]

"""framework/layers/dropout.py: the book's dropout with a seeded generator on the device."""

import array_api_extra as xpx
import numpy as np
import pytest

import backends
from framework.layers import Dropout
from framework.testing import check_backward, check_parity
from tests.conftest import to_host


def test_training_keeps_one_minus_ratio_and_inference_scales(xp):
    layer = Dropout(0.3, seed=0)
    x = backends.to_device(np.ones((200, 500)))
    out = to_host(layer.forward(x, train_flg=True))
    assert set(np.unique(out)) == {0.0, 1.0}  # the book's dropout: not rescaled in training
    assert out.mean() == pytest.approx(0.7, abs=0.005)
    assert backends.backend_of(layer.mask) == backends.backend_of(x)  # drawn where x lives
    np.testing.assert_array_equal(to_host(layer.forward(backends.to_device(np.full((2, 3), 2.0)),
                                                        train_flg=False)),
                                  np.full((2, 3), 1.4))


def test_backward_applies_the_forward_mask(xp):
    layer = Dropout(0.5, seed=1)
    out = layer.forward(backends.to_device(np.arange(1.0, 41.0).reshape(4, 10)))
    dx = layer.backward(backends.to_device(np.full((4, 10), 3.0)))
    np.testing.assert_array_equal(to_host(dx) != 0, to_host(out) != 0)
    check_backward(Dropout(0.4, seed=2), backends.to_device(np.linspace(-1, 1, 24).reshape(4, 6)))


def test_a_seed_repeats_and_each_draw_is_new(xp):
    a, b, c = Dropout(0.5, seed=7), Dropout(0.5, seed=7), Dropout(0.5, seed=8)
    x = backends.to_device(np.ones((8, 64)))
    first = to_host(a.forward(x))
    np.testing.assert_array_equal(first, to_host(b.forward(x)))
    assert not np.array_equal(first, to_host(c.forward(x)))
    assert not np.array_equal(first, to_host(a.forward(x)))  # the counter moved on
    assert int(to_host(a.counter)[0]) == 2
    # the generator is a pure function of key and counter: rewinding repeats a mask
    a.counter = xpx.at(a.counter)[...].set(0)  # in place, or (JAX) a new counter
    np.testing.assert_array_equal(to_host(a.forward(x)), first)


def masks(seed):
    layer = Dropout(0.5, seed=seed)
    return [layer.forward(backends.to_device(np.ones((5, 7)), "float32")) for _ in range(3)]


def test_masks_are_the_same_on_every_backend():
    check_parity(masks, 3, rtol=0, atol=0)


def test_a_layer_made_on_one_backend_follows_data_of_another(xp):
    """The book's own DeepConvNet (its parameters NumPy's, our Dropout among its layers)
    under XPNET_BACKEND=torch: the layer's generator goes where the data is, at the
    position it had, and draws the masks a layer made there draws; and the other way,
    a layer made on NumPy given the default backend's arrays."""
    host = np.arange(1.0, 36.0, dtype=np.float32).reshape(5, 7)
    with backends.using("numpy"):
        reference = Dropout(0.5, seed=3)
        expected = [reference.forward(host) for _ in range(2)]
        on_numpy = Dropout(0.5, seed=3)
    moved_to_default = [on_numpy.forward(backends.to_device(host)) for _ in range(2)]
    made_here = Dropout(0.5, seed=3)  # the default backend's (made_here.key lives there)
    first = made_here.forward(host)  # NumPy data: book-style code
    assert type(first) is np.ndarray and type(made_here.counter) is np.ndarray
    dx = made_here.backward(np.ones_like(host))
    np.testing.assert_array_equal(dx != 0, first != 0)
    second = made_here.forward(host)
    np.testing.assert_array_equal(first, expected[0])
    np.testing.assert_array_equal(second, expected[1])
    # the layer made on NumPy moved to the default backend's data (nothing to move on NumPy)
    np.testing.assert_array_equal(to_host(moved_to_default[0]), expected[0])
    np.testing.assert_array_equal(to_host(moved_to_default[1]), expected[1])
    assert backends.backend_of(on_numpy.counter).name == backends.current().name
    assert int(to_host(on_numpy.counter)[0]) == 2


def test_a_layer_that_follows_its_data_leaves_the_old_backends_mask_behind(xp):
    """A mask drawn for NumPy data and held (a numerical gradient's ``hold_mask``) is not
    used on the default backend's data: the layer moves without it and draws that
    forward's mask there, at the generator's next position. (On NumPy nothing moves, and
    the held mask stays.)"""
    host = np.arange(1.0, 36.0, dtype=np.float32).reshape(5, 7)
    with backends.using("numpy"):
        reference = Dropout(0.5, seed=3)
        expected = [reference.forward(host) for _ in range(2)]
    layer = Dropout(0.5, seed=3)
    layer.forward(host)  # drawn for NumPy's data, on NumPy
    layer.hold_mask = True
    out = layer.forward(backends.to_device(host))
    stays = backends.current().name == "numpy"
    np.testing.assert_array_equal(to_host(out), expected[0] if stays else expected[1])
    assert backends.backend_of(layer.mask).name == backends.current().name


def test_current_mask_does_not_advance_the_generator(xp):
    layer = Dropout(0.5, seed=4)
    peeked = to_host(layer.current_mask((3, 9))).copy()
    assert int(to_host(layer.counter)[0]) == 0
    drawn = to_host(layer.forward(backends.to_device(np.ones((3, 9)))))
    np.testing.assert_array_equal(drawn, peeked)
    stack = layer.forward_stack(backends.to_device(np.ones((4, 3, 9))), True)
    for k in range(4):
        np.testing.assert_array_equal(to_host(stack[k, ...]), drawn)  # the current mask, fixed


def test_a_held_or_current_mask_of_another_shape_is_drawn_anew(xp):
    """``current_mask`` and a held mask are the last forward's only for inputs of its shape:
    a batch of another size gets a mask of its own shape."""
    layer = Dropout(0.5, seed=4)
    assert tuple(layer.current_mask((2, 3)).shape) == (2, 3)
    assert tuple(layer.current_mask((4, 3)).shape) == (4, 3)
    layer.hold_mask = True
    layer.forward(backends.to_device(np.ones((2, 3))))
    held = to_host(layer.forward(backends.to_device(np.ones((2, 3))))).copy()
    np.testing.assert_array_equal(to_host(layer.mask), held != 0)  # held: the same mask
    assert tuple(layer.forward(backends.to_device(np.ones((5, 3)))).shape) == (5, 3)
    assert tuple(layer.mask.shape) == (5, 3)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, "half", None, "0.5", False])
def test_ratio_outside_zero_one_is_refused(backend, ratio):
    with pytest.raises(ValueError, match=r"Dropout: dropout_ratio must lie in \[0, 1\)"):
        Dropout(ratio)

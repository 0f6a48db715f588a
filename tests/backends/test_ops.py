"""backends/ops/ and dispatch.py: every routed operation against a float64 NumPy reference,
on every backend, and the standard's versions against the fast paths.

On CuPy each test runs the fused kernels, the plain CuPy versions they
replace (the setting ``fused=False``) and, for products, the capture-safe GEMM.
"""

from functools import partial

import numpy as np

import backends
import pytest

from backends import dtype_name, ops_for, splitmix
from backends.ops import StandardOps, StridedOps
from tests.conftest import to_host


@pytest.fixture(params=["fast", "plain", "standard"])
def ops(request, backend):
    """The backend's ops; on CuPy once with the fused kernels and once without; and, where
    the backend has a fast path, the standard's reference (backends/ops/) on its arrays.
    JAX's wing is tested with XLA's convolution, which it runs on GPUs and TPUs only."""
    ops = ops_for(backend.asarray(np.zeros(1)))
    if request.param == "fast" and getattr(ops, "xla_conv", None) is False:
        ops = type(ops)(ops.xp, ops.backend, xla_conv=True)
    if request.param == "plain":
        if not hasattr(ops, "fused"):
            pytest.skip(f"{backend.name} has one version of each fast operation")
        with backends.configured(fused=False):
            yield ops_for(backend.asarray(np.zeros(1)))
        return
    if request.param == "standard":
        if type(ops) is StandardOps:
            pytest.skip(f"{backend.name} runs the standard's operations already")
        ops = StandardOps(backend.xp)
    yield ops


def tol(dtype):
    return {"float32": 2e-5, "float64": 1e-12}[np.dtype(dtype).name]


def reference_softmax_ce(x, t):
    x = x.astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    log_s = np.log(np.exp(shifted).sum(axis=1))
    y = np.exp(shifted - log_s[:, None])
    loss = (log_s - shifted[np.arange(len(t)), t]).mean()
    return loss, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n, c, label_dtype", [(100, 10, "uint8"), (7, 3, "int32"),
                                               (300, 10, "int64"), (1, 10, "int64")])
def test_softmax_cross_entropy_and_its_gradient(ops, backend, dtype, n, c, label_dtype):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((n, c)) * 5).astype(dtype)
    t = rng.integers(0, c, n).astype(label_dtype)
    xd, td = backend.asarray(x), backend.asarray(t)
    rows = backend.xp.arange(n)
    loss, y, labels = ops.softmax_cross_entropy(xd, td, rows)
    want_loss, want_y = reference_softmax_ce(x, t)
    assert dtype_name(loss.dtype) == dtype and loss.shape == ()
    np.testing.assert_allclose(float(loss), want_loss, rtol=tol(dtype))
    np.testing.assert_allclose(to_host(y), want_y, rtol=tol(dtype), atol=tol(dtype))

    dx = ops.softmax_cross_entropy_grad(y, labels, 0.5 / n, rows)
    want_dx = (want_y - np.eye(c)[t]) * 0.5 / n
    np.testing.assert_allclose(to_host(dx), want_dx, rtol=tol(dtype), atol=tol(dtype) / n)
    np.testing.assert_allclose(to_host(y), want_y, rtol=tol(dtype), atol=tol(dtype))  # untouched


def test_softmax_cross_entropy_survives_huge_scores(ops, backend):
    x = backend.asarray(np.array([[1000.0, 0.0, -1000.0], [-1e4, 1e4, 0.0]], dtype=np.float32))
    t = backend.asarray(np.array([0, 2], dtype=np.int64))
    loss, y, _ = ops.softmax_cross_entropy(x, t, backend.xp.arange(2))
    np.testing.assert_allclose(float(loss), 1e4 / 2, rtol=1e-6)
    np.testing.assert_allclose(to_host(y), [[1, 0, 0], [0, 1, 0]], atol=1e-30)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu_and_backward(ops, backend, dtype):
    x = np.array([[-2.0, -0.0, 0.0, 0.25, 3.5, -np.inf, np.inf, np.nan]], dtype=dtype)
    out, keep = ops.relu(backend.asarray(x))
    assert dtype_name(out.dtype) == dtype
    # the book's: 0 for -inf too (x * (x > 0) gave NaN there), a NaN passed on
    np.testing.assert_array_equal(to_host(out), [[0, 0, 0, 0.25, 3.5, 0, np.inf, np.nan]])
    assert not np.signbit(to_host(out)[0, :3]).any()
    # whatever each keeps, the book's mask (x <= 0) comes back from it
    np.testing.assert_array_equal(to_host(ops.relu_mask(keep)),
                                  [[True, True, True, False, False, True, False, True]])
    if type(ops) in (StandardOps, StridedOps) or ops.name in ("host", "cupy-fused"):
        assert dtype_name(keep.dtype) == "bool"  # NumPy's family: the booleans x > 0
    dout = backend.asarray(np.arange(1, 9, dtype=dtype)[None])
    dx = to_host(ops.relu_backward(dout, keep))
    np.testing.assert_array_equal(dx[:, :7], [[0, 0, 0, 4, 5, 0, 7]])
    assert dx[0, 7] in (0, 8)  # at a NaN input either (the contract leaves it open)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_and_backward(ops, backend, dtype):
    """Overflow-free for every finite x (the book's 1 / (1 + exp(-x)) overflows in exp for
    x below about -709 in float64, -88 in float32), exact at the ends and at 0."""
    x = np.array([[-1e4, -800.0, -90.0, -3.0, -0.0, 0.0, 0.5, 40.0, 1e4, -np.inf, np.inf]],
                 dtype=dtype)
    with np.errstate(over="ignore"):
        want = 1 / (1 + np.exp(-x.astype(np.float64)))
    out = ops.sigmoid(backend.asarray(x))
    assert dtype_name(out.dtype) == dtype and out.shape == x.shape
    # XLA's CPU code flushes subnormal results to zero (sigmoid(-90) in float32)
    np.testing.assert_allclose(to_host(out), want, rtol=tol(dtype), atol=np.finfo(dtype).tiny)
    np.testing.assert_array_equal(to_host(out)[0, [0, 4, 5, 8, 9, 10]], [0, 0.5, 0.5, 1, 0, 1])
    dout = np.linspace(-2, 3, x.size).astype(dtype)[None]
    y = to_host(out).astype(np.float64)
    dx = ops.sigmoid_backward(backend.asarray(dout), out)
    assert dtype_name(dx.dtype) == dtype
    np.testing.assert_allclose(to_host(dx), dout * (1 - y) * y, rtol=tol(dtype),
                               atol=tol(dtype) * 1e-3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_norm_operations(ops, backend, dtype):
    """Batch norm's five operations, chained as the layer chains them, against the book's
    forward pass and its backward chain (dxn, dxc, dstd, dvar, dmu: ch06's
    ``BatchNormalization.__backward``) in float64; the running averages in place where the
    library writes in place (a new array on JAX)."""
    rng = np.random.default_rng(11)
    n, d, eps, momentum = 6, 5, 1e-6, 0.9
    x, dout = rng.standard_normal((2, n, d)) * 3 + 1
    gamma, beta, rm, rv = rng.standard_normal((4, d))
    rv = np.abs(rv)
    dev = {k: backend.asarray(v.astype(dtype)) for k, v in
           dict(x=x, dout=dout, gamma=gamma, beta=beta, rm=rm, rv=rv).items()}
    mu = backend.xp.sum(dev["x"], axis=0) / n
    xc, sq = ops.batch_norm_center(dev["x"], mu)
    var = sq / n
    out, xn, std = ops.batch_norm_normalize(xc, var, dev["gamma"], dev["beta"], eps)
    new_rm, new_rv = ops.batch_norm_running(dev["rm"], dev["rv"], mu, var, momentum)
    dbeta, dgamma, dxn, s, sxn = ops.batch_norm_grad_sums(dev["dout"], xn, dev["gamma"])
    dx = ops.batch_norm_grad(dxn, xn, std, s / n, sxn / n)

    want_mu = x.mean(axis=0)
    want_xc = x - want_mu
    want_var = np.mean(want_xc ** 2, axis=0)
    want_std = np.sqrt(want_var + eps)
    want_xn = want_xc / want_std
    want_dxn = gamma * dout
    dxc = want_dxn / want_std
    dstd = -np.sum((want_dxn * want_xc) / (want_std * want_std), axis=0)
    dvar = 0.5 * dstd / want_std
    dxc += (2.0 / n) * want_xc * dvar
    want_dx = dxc - np.sum(dxc, axis=0) / n
    for got, want in [(out, gamma * want_xn + beta), (xn, want_xn), (std, want_std),
                      (new_rm, momentum * rm + (1 - momentum) * want_mu),
                      (new_rv, momentum * rv + (1 - momentum) * want_var),
                      (dbeta, dout.sum(axis=0)), (dgamma, np.sum(want_xn * dout, axis=0)),
                      (dxn, want_dxn), (s, want_dxn.sum(axis=0)),
                      (sxn, np.sum(want_dxn * want_xn, axis=0)), (dx, want_dx)]:
        assert dtype_name(got.dtype) == dtype and got.shape == want.shape
        np.testing.assert_allclose(to_host(got), want, rtol=tol(dtype), atol=tol(dtype) * 10)
    assert (new_rm is dev["rm"] and new_rv is dev["rv"]) == backend.mutable


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weight_decay_and_its_gradients(ops, backend, dtype):
    """The book's L2 penalty, 0.5 lam sum_W sum(W^2), a 0-d array of the weights' dtype,
    and lam W added to each weight's gradient as new arrays: the gradients given are left
    as they were (a layer's own dW)."""
    rng = np.random.default_rng(9)
    Ws = [rng.standard_normal(s).astype(dtype) for s in [(5, 4), (4, 3), (3, 2)]]
    gs = [rng.standard_normal(W.shape).astype(dtype) for W in Ws]
    Wd, gd = [backend.asarray(W) for W in Ws], [backend.asarray(g) for g in gs]
    lam = 0.1
    decay = ops.weight_decay(Wd, lam)
    assert dtype_name(decay.dtype) == dtype and decay.shape == ()
    want = 0.5 * lam * sum(np.sum(W.astype(np.float64) ** 2) for W in Ws)
    np.testing.assert_allclose(float(decay), want, rtol=tol(dtype))
    new = ops.weight_decay_grads(gd, Wd, lam)
    assert len(new) == 3
    for got, g, W, before in zip(new, gs, Ws, gd):
        assert dtype_name(got.dtype) == dtype and got is not before
        np.testing.assert_allclose(to_host(got), g + lam * W.astype(np.float64),
                                   rtol=tol(dtype), atol=tol(dtype))
        np.testing.assert_array_equal(to_host(before), g)


@pytest.mark.parametrize("start, stop", [(0, 4), (4, 8), (8, 10), (3, 3)])
def test_take_batch_and_set_at(ops, backend, start, stop):
    """The eager step's batch (rows ``order[start:stop]`` of the data, the last one short,
    an empty one too) and its loss written at an index: in place (the very array) where
    the library writes in place, a new array on JAX, the rest of it unchanged."""
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((10, 3, 2)).astype(np.float32), rng.integers(0, 9, 10)
    order = rng.permutation(10).astype(np.int32)
    xb, tb = ops.take_batch(backend.asarray(x), backend.asarray(t), backend.asarray(order),
                            start, stop)
    np.testing.assert_array_equal(to_host(xb), x[order[start:stop]])
    np.testing.assert_array_equal(to_host(tb), t[order[start:stop]])
    losses = backend.asarray(np.arange(5, dtype=np.float32))
    new = ops.set_at(losses, 3, backend.asarray(np.float32(-2.5)))
    assert (new is losses) == backend.mutable
    np.testing.assert_array_equal(to_host(new), [0, 1, 2, -2.5, 4])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sgd_update_in_place(ops, backend, dtype):
    """In place where the library writes in place (returning the very array); JAX's arrays
    are immutable: a new one is returned."""
    rng = np.random.default_rng(0)
    p, g = rng.standard_normal((2, 50, 7)).astype(dtype)
    pd = backend.asarray(p.copy())  # NumPy would share p
    new = ops.sgd_update(pd, backend.asarray(g), 0.1)
    assert (new is pd) == backend.mutable
    np.testing.assert_allclose(to_host(new), p - 0.1 * g, rtol=tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sgd_update_all_is_sgd_update_for_each(ops, backend, dtype):
    """The optimizer's one call per update: bit for bit ``sgd_update`` on each parameter,
    the mapping's arrays written in place (the same objects) where the library writes in
    place, and each key rebound to its new array on JAX."""
    rng = np.random.default_rng(3)
    shapes = {"W1": (5, 4), "b1": (4,), "W2": (4, 3)}
    ps = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    gs = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    params = {k: backend.asarray(p.copy()) for k, p in ps.items()}
    before = dict(params)
    grads = {k: backend.asarray(g) for k, g in gs.items()}
    assert ops.sgd_update_all(params, grads, 0.1) is None
    for key, p in ps.items():
        assert (params[key] is before[key]) == backend.mutable
        expected = ops.sgd_update(backend.asarray(p.copy()), grads[key], 0.1)
        np.testing.assert_array_equal(to_host(params[key]), to_host(expected))
        assert not np.array_equal(to_host(params[key]), p)  # it moved


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adam_step_size_and_update(ops, backend, dtype):
    """Three steps of the book's Adam, the counter on the device, against the host formula."""
    rng = np.random.default_rng(1)
    p, m, v = rng.standard_normal((3, 40, 9)).astype(dtype)
    v = np.abs(v)
    pd, md, vd = (backend.asarray(a.copy()) for a in (p, m, v))
    t = backend.asarray(np.float64(4.0))  # Adam's step count, where the parameters live
    for step in range(5, 8):
        g = rng.standard_normal((40, 9)).astype(dtype)
        before = t
        t, lr_t = ops.adam_step_size(t, 0.01, 0.9, 0.999)
        assert (t is before) == backend.mutable  # in place where arrays are written in place
        assert float(to_host(t)) == step and to_host(lr_t).dtype == np.float64
        want_lr = 0.01 * np.sqrt(1.0 - 0.999 ** step) / (1.0 - 0.9 ** step)
        # the host's to the last bit (Python's floats); a device's pow within a few ulps
        np.testing.assert_allclose(float(to_host(lr_t)), want_lr,
                                   rtol=0 if ops.name == "host" else 1e-14)
        given = (pd, md, vd)
        pd, md, vd = ops.adam_update(pd, backend.asarray(g), md, vd, lr_t, 0.9, 0.999)
        assert all((a is b) == backend.mutable for a, b in zip((pd, md, vd), given))
        m = m + 0.1 * (g.astype(np.float64) - m)
        v = v + 0.001 * (g.astype(np.float64) ** 2 - v)
        p = p - want_lr * m / (np.sqrt(v) + 1e-7)
    for got, want in ((pd, p), (md, m), (vd, v)):
        assert to_host(got).dtype == np.dtype(dtype)
        np.testing.assert_allclose(to_host(got), want, rtol=10 * tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule", ["momentum", "nesterov", "adagrad", "rmsprop"])
def test_optimizer_steps(ops, backend, dtype, rule):
    """Three steps of each of chapter 6's other optimizers against its formula in float64
    on the host; the parameter and the state written in place (the very arrays returned)
    where the library writes in place, new arrays on JAX."""
    rng = np.random.default_rng(5)
    p, s = rng.standard_normal((2, 30, 7)).astype(dtype)
    if rule in ("adagrad", "rmsprop"):  # sums of squares
        s = np.abs(s)
    pd, sd = backend.asarray(p.copy()), backend.asarray(s.copy())
    p, s = p.astype(np.float64), s.astype(np.float64)
    lr, mu, decay = 0.05, 0.9, 0.99
    for _ in range(3):
        g = rng.standard_normal((30, 7)).astype(dtype)
        given, gd, g = (pd, sd), backend.asarray(g), g.astype(np.float64)
        if rule == "momentum":
            pd, sd = ops.momentum_update(pd, gd, sd, lr, mu)
            s = mu * s - lr * g
            p = p + s
        elif rule == "nesterov":  # the velocity before the step's in p's
            pd, sd = ops.nesterov_update(pd, gd, sd, lr, mu)
            p = p + mu * mu * s - (1 + mu) * lr * g
            s = mu * s - lr * g
        elif rule == "adagrad":
            pd, sd = ops.adagrad_update(pd, gd, sd, lr)
            s = s + g * g
            p = p - lr * g / (np.sqrt(s) + 1e-7)
        else:
            pd, sd = ops.rmsprop_update(pd, gd, sd, lr, decay)
            s = decay * s + (1 - decay) * g * g
            p = p - lr * g / (np.sqrt(s) + 1e-7)
        assert all((a is b) == backend.mutable for a, b in zip((pd, sd), given))
    for got, want in ((pd, p), (sd, s)):
        assert to_host(got).dtype == np.dtype(dtype)
        np.testing.assert_allclose(to_host(got), want, rtol=10 * tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize("shape", [(7,), (100, 50), (100, 16, 14, 14)])
def test_uniform_draws_the_same_numbers_on_every_backend(ops, backend, shape):
    """Dropout's generator: the kernel on CuPy, the plain CuPy and NumPy array code all
    give the host's numbers bit for bit."""
    key, counter = np.array([2**62 + 12345], np.uint64), np.array([3], np.uint64)
    got = ops.uniform(backend.asarray(key), backend.asarray(counter), shape)
    assert tuple(got.shape) == shape and dtype_name(got.dtype) == "float64"
    np.testing.assert_array_equal(to_host(got), StandardOps(np).uniform(key, counter, shape))


def test_uniform_from_an_index_is_that_part_of_the_whole_draw(ops, backend):
    """A data-parallel rank's rows of a mask: ``first`` starts the generator's indices
    there, so rows 4-6 drawn alone are rows 4-6 of the whole batch's draw."""
    key, counter = np.array([987654321], np.uint64), np.array([5], np.uint64)
    whole = StandardOps(np).uniform(key, counter, (10, 6, 3))
    got = ops.uniform(backend.asarray(key), backend.asarray(counter), (3, 6, 3), first=4 * 18)
    np.testing.assert_array_equal(to_host(got), whole[4:7])


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.3, "a drawn number", "just below one"])
def test_keep_is_uniform_above_the_ratio(ops, backend, ratio):
    """Dropout's mask, ``uniform > ratio``: at a ratio equal to a drawn number and just
    below one the comparison's edge is met exactly."""
    key, counter = np.array([2**63 - 7], np.uint64), np.array([2**32 + 1], np.uint64)
    numbers = StandardOps(np).uniform(key, counter, (64, 33))
    if ratio == "a drawn number":
        ratio = float(numbers[5, 7])
    elif ratio == "just below one":
        ratio = float(np.nextafter(numbers[9, 2], 0))
    got = ops.keep(backend.asarray(key), backend.asarray(counter), (64, 33), ratio)
    assert tuple(got.shape) == (64, 33) and dtype_name(got.dtype) == "bool"
    np.testing.assert_array_equal(to_host(got), numbers > ratio)


def _words(value):
    """A 64-bit value as the generator's 32-bit words (``splitmix.state``'s other form)."""
    return np.array([value >> 32, value & 0xFFFFFFFF], np.uint32)


@pytest.mark.parametrize("key, counter, first", [
    (2**62 + 12345, 3, 0), (2**63 - 1, 2**32 - 1, 5), (1, 0, 2**32 - 40), (0, 2**40 + 7, 2**33)])
def test_the_generator_in_32_bit_words_draws_the_uint64_numbers(key, counter, first):
    """Where a device has no 64-bit integers (JAX without jax_enable_x64, array-api-strict's
    no_x64) the key and counter are (2,) uint32 words: the reference draws the same numbers
    and masks from them, indices crossing 2**32 included, and counts past a word's end."""
    import array_api_strict as xs
    want = StandardOps(np).uniform(np.array([key], np.uint64), np.array([counter], np.uint64),
                                   (4, 20), first)
    numpy_ops = StandardOps(np)
    got = numpy_ops.uniform(_words(key), _words(counter), (4, 20), first)
    np.testing.assert_array_equal(got, want)  # a device with float64: the very numbers
    for ratio in (0.5, float(want[2, 3]), float(np.nextafter(want[1, 1], 0))):
        np.testing.assert_array_equal(
            numpy_ops.keep(_words(key), _words(counter), (4, 20), ratio, first), want > ratio)
    counted = numpy_ops.increment(_words(counter))
    assert splitmix.value_of(counted) == counter + 1
    assert splitmix.value_of(numpy_ops.increment(_words(2**32 - 1))) == 2**32  # the carry
    # a device without 64-bit numbers: float32 numbers (rounded), the masks exact
    device = xs.Device("no_x64")
    strict = StandardOps(xs)
    k, c = (xs.asarray(_words(v), device=device) for v in (key, counter))
    host = xs.Device("CPU_DEVICE")
    got = np.asarray(strict.uniform(k, c, (4, 20), first).to_device(host))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2**-23, atol=0)
    for ratio in (0.5, float(want[2, 3]), float(np.nextafter(want[1, 1], 0))):
        keep = np.asarray(strict.keep(k, c, (4, 20), ratio, first).to_device(host))
        np.testing.assert_array_equal(keep, want > ratio)
    assert splitmix.value_of(np.asarray(strict.increment(c).to_device(host))) == counter + 1


def test_a_device_without_float64_draws_numpys_masks():
    """Apple's MPS (modelled by array-api-strict's ``no_float64``) has int64 but computes
    in float32: the numbers are rounded there, so ``uniform > ratio`` in float32 misses a
    ratio just below a drawn number; the mask, decided on the integers, does not."""
    import array_api_strict as xs
    device = xs.Device("no_float64")
    key, counter = np.array([2**62 + 99], np.uint64), np.array([7], np.uint64)
    want = StandardOps(np).uniform(key, counter, (8, 8))
    ratio = float(np.nextafter(want[3, 4], 0))  # float32 rounds both to one number
    strict = StandardOps(xs)
    k, c = (xs.asarray(a, device=device) for a in (key, counter))
    host = xs.Device("CPU_DEVICE")
    rounded = np.asarray(strict.uniform(k, c, (8, 8)).to_device(host))
    assert rounded.dtype == np.float32 and not rounded[3, 4] > np.float32(ratio)
    keep = np.asarray(strict.keep(k, c, (8, 8), ratio).to_device(host))
    np.testing.assert_array_equal(keep, want > ratio)
    assert keep[3, 4]


def test_a_generator_state_in_either_form_holds_its_value():
    """``splitmix.state`` makes the form the device holds, ``value_of`` reads either back,
    ``on_host`` gives a checkpoint's uint64; anything else is refused by name."""
    assert splitmix.value_of(_words(2**63 + 5)) == 2**63 + 5
    assert splitmix.value_of(np.array([2**64 - 1], np.uint64)) == 2**64 - 1
    assert splitmix.value_of(np.array([-1], np.int64)) == 2**64 - 1  # a pickle's int64
    held = splitmix.on_host(_words(2**40 + 3))
    assert held.dtype == np.uint64 and held.tolist() == [2**40 + 3]
    with pytest.raises(ValueError, match=r"\(1,\) uint64 array or \(2,\) uint32 words, got "
                                         r"float32 of shape \(2,\)"):
        splitmix.value_of(np.zeros(2, np.float32))


SHAPES = [(100, 784, 50), (100, 50, 10), (784, 100, 50), (50, 100, 10), (100, 10, 50),
          (1, 1, 1), (3, 37, 33), (65, 9, 130)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("layout", ["nn", "tn", "nt"])
def test_matmul_with_transposes_and_bias(backend, dtype, m, k, n, layout):
    """``a @ b (+ bias)`` as the layers call it (x W + b, x^T dout, dout W^T), on
    cuBLAS/NumPy and, on CuPy, on the capture-safe GEMM kernel too."""
    rng = np.random.default_rng(m * k + n)
    a = rng.standard_normal((m, k) if layout[0] == "n" else (k, m)).astype(dtype)
    b = rng.standard_normal((k, n) if layout[1] == "n" else (n, k)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype)
    ad, bd = backend.asarray(a), backend.asarray(b)
    if layout[0] == "t":
        a, ad = a.T, ad.T
    if layout[1] == "t":
        b, bd = b.T, bd.T
    want = a.astype(np.float64) @ b.astype(np.float64)
    ops = ops_for(ad)
    variants = [ops.matmul]
    if hasattr(ops, "gemm"):  # both capture-safe kernels, whatever the size would pick
        variants += [partial(ops.gemm, kernel="block"), partial(ops.gemm, kernel="tiles")]
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    for product in variants:
        got = to_host(product(ad, bd))
        assert got.shape == (m, n) and backends.dtype_name(got.dtype) == np.dtype(dtype).name
        assert np.all(np.abs(got - want) <= 4 * tol(dtype) * scale + 1e-30), product
        got = to_host(product(ad, bd, bias=backend.asarray(bias)))
        assert np.all(np.abs(got - (want + bias)) <= 4 * tol(dtype) * (scale + 1)), product


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_and_im2col_write_into_out(ops, backend, dtype):
    """The contract's ``out=``: the result written into the array given (a graph step's
    buffers stay where they were recorded) and returned, as without it; on a library
    whose arrays are immutable (JAX) the returned array is the result."""
    rng = np.random.default_rng(12)
    a, b = rng.standard_normal((5, 4)).astype(dtype), rng.standard_normal((4, 3)).astype(dtype)
    bias = rng.standard_normal(3).astype(dtype)
    x = rng.standard_normal((2, 3, 5, 4)).astype(dtype)
    col_shape = (3 * 3 * 3, 2 * 5 * 4)
    cases = [("matmul", lambda out: ops.matmul(backend.asarray(a), backend.asarray(b),
                                               backend.asarray(bias), out=out), (5, 3)),
             ("im2col", lambda out: ops.im2col(backend.asarray(x), 3, 3, 1, 1, 5, 4, out=out),
              col_shape)]
    for name, run, shape in cases:
        want = to_host(run(None))
        into = backend.asarray(np.full(shape, np.nan, dtype=dtype))
        got = run(into)
        np.testing.assert_array_equal(to_host(got), want, err_msg=name)
        if backend.mutable:
            assert got is into, name
            np.testing.assert_array_equal(to_host(into), want, err_msg=name)


@pytest.mark.parametrize("tile", [None, (8, 8)], ids=["tile-default", "tile-8x8"])
@pytest.mark.parametrize("m, k, n, layout", [(16, 144, 78400, "nn"), (144, 78400, 16, "nt"),
                                             (144, 16, 78400, "tn"), (64, 576, 4900, "nn"),
                                             (576, 4900, 64, "nt"), (100, 4320, 100, "nn")])
def test_gemm_on_the_convolutions_products(backend, m, k, n, layout, tile):
    """DeepConvNet's Conv2 and Conv6 products at batch 100 (forward, dW with K over every
    window, the columns' gradient) and SimpleConvNet's Affine: the tile kernel and its
    slices of K, deterministic, against cuBLAS; with the largest other tile too."""
    ops = ops_for(backend.asarray(np.zeros(1)))
    if not hasattr(ops, "gemm"):
        pytest.skip("the capture-safe GEMM exists on CuPy only (tests/backends/cuda/test_gemm.py "
                    "runs its source on the CPU)")
    rng = np.random.default_rng(k)
    a = backend.asarray(rng.standard_normal((m, k) if layout[0] == "n" else (k, m)),
                        dtype="float32")
    b = backend.asarray(rng.standard_normal((k, n) if layout[1] == "n" else (n, k)),
                        dtype="float32")
    a, b = (a if layout[0] == "n" else a.T), (b if layout[1] == "n" else b.T)
    got = ops.gemm(a, b, kernel="tiles", tile=tile)
    want = to_host(ops.matmul(a.astype("float64"), b.astype("float64")))
    scale = to_host(ops.matmul(abs(a).astype("float64"), abs(b).astype("float64")))
    assert np.all(np.abs(to_host(got) - want) <= 4 * tol("float32") * scale)
    np.testing.assert_array_equal(to_host(ops.gemm(a, b, kernel="tiles", tile=tile)),
                                  to_host(got))  # the same sums


def test_gemm_refuses_what_it_cannot_multiply(backend):
    ops = ops_for(backend.asarray(np.zeros(1)))
    if not hasattr(ops, "gemm"):
        pytest.skip("the capture-safe GEMM exists on CuPy only")
    a = backend.asarray(np.ones((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(3, 4\)"):
        ops.gemm(a, a)
    with pytest.raises(TypeError, match="float32 and float64"):
        ops.gemm(a, backend.asarray(np.ones((4, 2))))


@pytest.mark.parametrize("bad, dtype", [(3, "int64"), (3, "uint8"), (-1, "int64"),
                                        (-3, "int32"), (-1, "int8"), (-4, "int64"),
                                        (-100, "int64")])  # PyTorch's default ignore_index
def test_a_label_outside_the_classes_is_caught(backend, bad, dtype):
    """On the host the layer raises ValueError; on a GPU (CuPy's kernel, PyTorch's CUDA
    tensors) nothing can raise without a sync, so the loss is NaN, which stops the Trainer.
    A negative label (-1 .. -C would index from a row's end in NumPy) is caught too."""
    from framework.layers import SoftmaxWithLoss
    x = backend.asarray(np.zeros((2, 3), dtype=np.float32))
    t = backend.asarray(np.array([0, bad], dtype=dtype))
    layer = SoftmaxWithLoss()
    if not backends.is_device_array(x):
        low, high = min(0, bad), max(0, bad)
        with pytest.raises(ValueError, match=f"labels must lie in 0..2 for 3 classes, got "
                                             f"values {low}..{high}"):
            layer.forward(x, t)
    else:
        assert np.isnan(float(layer.forward(x, t)))
    layer.forward(x, backend.asarray(np.array([0, 2], dtype=dtype)))  # the device still usable
    assert float(layer.loss) == pytest.approx(np.log(3))
    dx = backends.to_numpy(layer.backward())
    np.testing.assert_allclose(dx, (np.full((2, 3), 1 / 3) - np.eye(3)[[0, 2]]) / 2, rtol=1e-6)


def test_the_hosts_labels_go_to_the_gradient_as_checked_flat_positions():
    """NumPy's fast path finds each label's position in the flattened scores once, in the
    forward pass, and its gradient reads them; labels as they are still work there."""
    ops = backends.ops_for(np.zeros(1))
    x = np.random.default_rng(3).standard_normal((4, 5))
    t = np.array([4, 0, 2, 2], dtype=np.uint8)
    loss, y, labels = ops.softmax_cross_entropy(x, t, np.arange(4))
    np.testing.assert_array_equal(labels.where, [4, 5, 12, 17])
    want = (y - np.eye(5)[t]) * 0.25
    np.testing.assert_array_equal(ops.softmax_cross_entropy_grad(y, labels, 0.25, None), want)
    np.testing.assert_array_equal(ops.softmax_cross_entropy_grad(y, t, 0.25, np.arange(4)),
                                  want)


def test_the_standards_path_indexes_no_row_past_its_end_on_a_device(monkeypatch):
    """Where the labels live on a GPU (PyTorch's CUDA or MPS tensors) an index past a row
    would be a device-side assert, which ends the process's use of the GPU (seen on an
    H200): such a sample reads column 0 and gives a NaN loss. NumPy stands in for the
    device here."""
    class OnADevice:
        @staticmethod
        def is_device_array(x):
            return True
    ops = StandardOps(np, OnADevice)
    x = np.zeros((2, 3))
    loss, y, _ = ops.softmax_cross_entropy(x, np.array([0, 3]), None)
    assert np.isnan(loss) and y.shape == (2, 3)
    loss, _, _ = ops.softmax_cross_entropy(x, np.array([0, 2]), None)
    assert loss == pytest.approx(np.log(3))


@pytest.mark.parametrize("bad", [3, -1, -3])
def test_numpys_api_on_a_device_gives_a_nan_loss_for_a_label_outside_its_row(bad):
    """CuPy's indexing wraps an index past an axis silently: there (CuPy's operations
    without the fused kernels) such a sample's loss is NaN, as the contract says. NumPy
    stands in for the device."""
    class OnADevice(StridedOps):
        device_arrays = True
    ops = OnADevice(np)
    x = np.random.default_rng(0).standard_normal((2, 3))
    loss, y, labels = ops.softmax_cross_entropy(x, np.array([0, bad]), np.arange(2))
    assert np.isnan(loss) and y.shape == (2, 3)
    good, _, _ = ops.softmax_cross_entropy(x, np.array([0, 2]), np.arange(2))
    want, _, _ = StandardOps(np).softmax_cross_entropy(x, np.array([0, 2]), None)
    assert float(good) == float(want)


def conv_reference(dtype, layout):
    """A batch (3, 2, 7, 6) in C order, channel-major or channels-last memory (images
    stored ``(N, H, W, C)`` and transposed, as many datasets come: a memory order that
    is not its own inverse), and the host array code, which the tests run on a C-order
    copy."""
    rng = np.random.default_rng(7)
    if layout == "channel-major":
        x = rng.standard_normal((2, 3, 7, 6)).astype(dtype).transpose(1, 0, 2, 3)
    elif layout == "channels-last":
        x = rng.standard_normal((3, 7, 6, 2)).astype(dtype).transpose(0, 3, 1, 2)
    else:
        x = rng.standard_normal((3, 2, 7, 6)).astype(dtype)
    return x, StridedOps(np)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["C", "channel-major", "channels-last"])
@pytest.mark.parametrize("fh, fw, stride, pad", [(3, 3, 1, 1), (2, 3, 2, 2), (2, 2, 2, 0)])
def test_im2col_and_col2im(ops, backend, dtype, layout, fh, fw, stride, pad):
    """The convolution's passes (on CuPy: the kernels of backends/cuda/kernels/conv.cu, and the
    plain CuPy versions) against the host's array code; the same sums in the same order."""
    x, host = conv_reference(dtype, layout)
    oh, ow = (7 + 2 * pad - fh) // stride + 1, (6 + 2 * pad - fw) // stride + 1
    col = ops.im2col(to_device(backend, x), fh, fw, stride, pad, oh, ow)
    x = np.ascontiguousarray(x)  # the host's results from C order
    np.testing.assert_array_equal(to_host(col), host.im2col(x, fh, fw, stride, pad, oh, ow))
    dcol = np.random.default_rng(8).standard_normal(col.shape).astype(dtype)
    dx = ops.col2im(backend.asarray(dcol), x.shape, fh, fw, stride, pad, oh, ow)
    assert dx.shape == x.shape and backends.dtype_name(dx.dtype) == np.dtype(dtype).name
    np.testing.assert_allclose(to_host(dx), host.col2im(dcol, x.shape, fh, fw, stride, pad, oh, ow),
                               rtol=tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["C", "channel-major", "channels-last"])
@pytest.mark.parametrize("ph, pw, stride, pad", [(2, 2, 2, 0), (3, 3, 2, 1), (2, 3, 1, 1)])
def test_max_pool_and_its_gradient(ops, backend, dtype, layout, ph, pw, stride, pad):
    x, host = conv_reference(dtype, layout)
    x[0, 0, :3, :3] = 0.5  # a tie: the first maximum wins
    oh, ow = (7 + 2 * pad - ph) // stride + 1, (6 + 2 * pad - pw) // stride + 1
    xd = to_device(backend, x)
    out, arg = ops.max_pool(xd, ph, pw, stride, pad, oh, ow)
    x = np.ascontiguousarray(x)  # the host's results from C order
    want_out, want_arg = host.max_pool(x, ph, pw, stride, pad, oh, ow)
    np.testing.assert_array_equal(to_host(out), want_out)
    # ``arg`` is what max_pool_grad takes back (PyTorch's wing keeps PyTorch's own index):
    # the gradient below says where it points, the tied window included
    dout = np.random.default_rng(9).standard_normal(out.shape).astype(dtype)
    dx = ops.max_pool_grad(backend.asarray(dout), arg, xd, ph, pw, stride, pad)
    assert dx.shape == x.shape
    np.testing.assert_allclose(to_host(dx), host.max_pool_grad(dout, want_arg, x, ph, pw, stride,
                                                                pad), rtol=tol(dtype))


@pytest.mark.parametrize("layout", ["C", "channel-major"])
def test_max_pool_gradient_of_a_dout_that_is_a_view(ops, backend, layout):
    """The book's 2 x 2 pooling at stride 2 on even planes (the host's compiled kernel's
    case): a ``dout`` that is a view, its rows not compact (a slice of a wider array), is
    read as the array it stands for, as its compact copy is."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 6, 8)).astype(np.float32)
    if layout == "channel-major":
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    xd = to_device(backend, x)
    out, arg = ops.max_pool(xd, 2, 2, 2, 0, 3, 4)
    wide = backend.asarray(rng.standard_normal((2, 3, 3, 7)).astype(np.float32))
    view = wide[..., :4]  # every row 7 apart: not compact
    compact = backend.asarray(to_host(view))
    got = ops.max_pool_grad(view, arg, xd, 2, 2, 2, 0)
    want = ops.max_pool_grad(compact, arg, xd, 2, 2, 2, 0)
    np.testing.assert_array_equal(to_host(got), to_host(want))
    host = StridedOps(np)  # and the host's array code agrees (PyTorch's arg is its own)
    host_arg = host.max_pool(x, 2, 2, 2, 0, 3, 4)[1]
    np.testing.assert_array_equal(to_host(want),
                                  host.max_pool_grad(to_host(view), host_arg, x, 2, 2, 2, 0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n, d, f", [(7, 5, 3), (4, 4, 4), (1, 6, 2)])
@pytest.mark.parametrize("input_grad", [True, False])
def test_affine_grad(ops, backend, dtype, n, d, f, input_grad):
    """The fully connected layer's three products (NumPy's host wing computes them itself,
    outside a convolutional network's call) against float64 NumPy; no dx without
    ``input_grad``, as the contract says (the first layer's dx is never used)."""
    rng = np.random.default_rng(n * d * f)
    x, dout, W = (rng.standard_normal(shape).astype(dtype) for shape in ((n, d), (n, f), (d, f)))
    dx, dW, db = ops.affine_grad(*(backend.asarray(a) for a in (x, dout, W)), input_grad)
    wide = [a.astype(np.float64) for a in (x, dout, W)]
    want = (wide[1] @ wide[2].T, wide[0].T @ wide[1], wide[1].sum(axis=0))
    assert (dx is None) == (not input_grad)
    for name, g, w in zip(("dx", "dW", "db"), (dx, dW, db), want):
        if g is not None:
            assert tuple(g.shape) == w.shape and dtype_name(g.dtype) == dtype, name
            np.testing.assert_allclose(to_host(g), w, rtol=tol(dtype), atol=tol(dtype),
                                       err_msg=name)


@pytest.mark.backends("numpy")  # PyTorch and array-api-strict refuse the mix themselves
def test_a_convolution_whose_bias_has_another_dtype_is_the_references(ops, backend):
    """NumPy's compiled direct convolution takes one dtype throughout: a float64 bias
    beside float32 images and filters goes the array code's way (handed to the kernel it
    would be read as float32s), and the results are the standard's."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4)  # float64
    ref = StandardOps(np)
    want, col = ref.conv(x, W, b, 1, 1, 6, 6)
    dout = rng.standard_normal(want.shape).astype(want.dtype)
    want_grads = ref.conv_grad(dout, x, W, col, 1, 1, True)
    xd, Wd, bd = (backend.asarray(a) for a in (x, W, b))
    out, saved = ops.conv(xd, Wd, bd, 1, 1, 6, 6)
    np.testing.assert_allclose(to_host(out), want, rtol=1e-5, atol=1e-5)
    got = ops.conv_grad(backend.asarray(dout), xd, Wd, saved, 1, 1, True)
    for name, g, w in zip(("dx", "dW", "db"), got, want_grads):
        np.testing.assert_allclose(to_host(g), w, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("ph, pw, stride, pad", [(12, 12, 1, 0), (2, 3, 2, 0), (3, 2, 2, 1),
                                                  (3, 5, 1, 2)])
def test_max_pool_against_the_standards_code(ops, backend, ph, pw, stride, pad):
    """Pooling and its gradient against the standard's code (backends/ops/reference.py),
    not the host's array code the test above compares with: windows of more than 127
    places (the offset of the maximum outgrows int8), windows that overlap along one
    axis only (their gradients add up there, and are written elsewhere), and a padding
    of more than half the shorter side of the window (PyTorch's own pooling refuses it,
    so its wing must keep the reference's code there)."""
    rng = np.random.default_rng(12)
    x = rng.permutation(2 * 2 * 13 * 14).reshape(2, 2, 13, 14).astype(np.float64) / 100
    x[0, 0, 11, 11] = 1e3  # the first window's maximum at its last place, offset 143
    oh, ow = (13 + 2 * pad - ph) // stride + 1, (14 + 2 * pad - pw) // stride + 1
    ref = StandardOps(np)
    want_out, want_arg = ref.max_pool(x, ph, pw, stride, pad, oh, ow)
    dout = rng.standard_normal(want_out.shape)
    want_dx = ref.max_pool_grad(dout, want_arg, x, ph, pw, stride, pad)
    xd = backend.asarray(x)
    out, arg = ops.max_pool(xd, ph, pw, stride, pad, oh, ow)
    np.testing.assert_array_equal(to_host(out), want_out)
    dx = ops.max_pool_grad(backend.asarray(dout), arg, xd, ph, pw, stride, pad)
    np.testing.assert_allclose(to_host(dx), want_dx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fh, fw, stride, pad", [(3, 3, 1, 1), (2, 3, 2, 2), (5, 5, 1, 0)])
@pytest.mark.parametrize("input_grad", [True, False])
def test_conv_and_its_gradients(ops, backend, dtype, fh, fw, stride, pad, input_grad):
    """The convolution's forward and backward (what each backend's wing computes them with:
    compiled kernels, CUDA kernels, PyTorch's own) against the standard's code in float64
    on NumPy."""
    x, _ = conv_reference(dtype, "C")
    rng = np.random.default_rng(11)
    W = rng.standard_normal((4, 2, fh, fw)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    oh, ow = (7 + 2 * pad - fh) // stride + 1, (6 + 2 * pad - fw) // stride + 1
    ref = StandardOps(np)
    wide = [a.astype(np.float64) for a in (x, W, b)]
    want_out, col = ref.conv(*wide, stride, pad, oh, ow)
    dout = rng.standard_normal(want_out.shape)
    want = ref.conv_grad(dout, wide[0], wide[1], col, stride, pad, True)
    xd, Wd, bd = (backend.asarray(a) for a in (x, W, b))
    out, saved = ops.conv(xd, Wd, bd, stride, pad, oh, ow)
    assert tuple(out.shape) == want_out.shape and dtype_name(out.dtype) == dtype
    atol = {"float32": 1e-4, "float64": 1e-12}[dtype]
    np.testing.assert_allclose(to_host(out), want_out, rtol=tol(dtype), atol=atol)
    got = ops.conv_grad(backend.asarray(dout.astype(dtype)), xd, Wd, saved, stride, pad,
                        input_grad)
    assert (got[0] is None) == (not input_grad)
    for name, g, w in zip(("dx", "dW", "db"), got, want):
        if g is not None:
            assert tuple(g.shape) == w.shape and dtype_name(g.dtype) == dtype, name
            np.testing.assert_allclose(to_host(g), w, rtol=tol(dtype), atol=atol, err_msg=name)


def test_the_reference_pool_arg_is_the_offset_of_the_first_maximum_in_its_window():
    """The standard's ``arg`` (and NumPy's and CuPy's): row-major in the window, int8."""
    x, host = conv_reference("float32", "C")
    x[0, 0, :3, :3] = 0.5
    _, arg = StandardOps(np).max_pool(x, 3, 3, 2, 1, 4, 3)
    _, want = host.max_pool(x, 3, 3, 2, 1, 4, 3)
    assert arg.dtype == np.int8
    np.testing.assert_array_equal(arg, want)
    # the first window reads rows -1..1 and columns -1..1: padding, then four tied 0.5s,
    # the first of which is its offset (1, 1)
    assert arg[0, 0, 0, 0] == 4


def to_device(backend, x):
    """``x`` on the backend with its memory layout kept (asarray would make it C order)."""
    order = sorted(range(x.ndim), key=lambda i: -x.strides[i])
    inverse = tuple(order.index(i) for i in range(x.ndim))
    return backend.xp.permute_dims(backend.asarray(np.ascontiguousarray(x.transpose(order))),
                                   inverse)


def test_relu_keeps_a_channel_major_layout(ops, backend):
    """The layers after a convolution keep its (C, N, H, W) memory, so the next one reads
    it in place (the plain CuPy versions may not: they are the unfused reference)."""
    x = to_device(backend, np.random.default_rng(3).standard_normal((4, 2, 5, 5))
                  .astype("float32").transpose(1, 0, 2, 3))
    out, keep = ops.relu(x)
    dx = ops.relu_backward(out, keep)
    if getattr(ops, "fused", True) and type(ops) is not StandardOps and \
            backend.name in ("numpy", "cupy"):
        for a in (out, keep, dx):  # the fast paths keep it (the standard has no strides)
            assert a.transpose(1, 0, 2, 3).flags.c_contiguous
    np.testing.assert_array_equal(to_host(dx), np.maximum(to_host(x), 0))

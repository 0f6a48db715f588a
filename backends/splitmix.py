"""SplitMix64 (Steele, Lea and Flood, 2014): the counter-based generator dropout draws from.

``uniform(xp, key, counter, shape)`` gives float64 numbers in [0, 1), a pure
function of the ``(1,)`` uint64 arrays ``key`` and ``counter`` and of each
element's index: element ``i`` is the top 53 bits of ``mix(i * GOLDEN +
mix(key ^ mix(counter)))``. ``first`` starts the indices there: a
data-parallel rank draws its rows of a batch's mask as ``uniform(...,
first=lo * row)``, the numbers one process draws for those rows. The CUDA
kernel ``backends/cuda/kernels/uniform.cu`` computes the same numbers with
the same constants (a test compares them). Where a device has no 64-bit
integers the key and counter are 32-bit words and :func:`uniform_words` and
:func:`keep_words` compute the same numbers and masks from them (the last
section).
"""

import math

from backends.arrays import has_float64, on_device_of

GOLDEN = 0x9E3779B97F4A7C15  # the increment
MIX1 = 0xBF58476D1CE4E5B9  # the finaliser's two multipliers
MIX2 = 0x94D049BB133111EB


def mix64(xp, z):
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic, a new array)."""
    u64 = xp.uint64
    z = z ^ (z >> u64(30))
    z *= u64(MIX1)
    z ^= z >> u64(27)
    z *= u64(MIX2)
    z ^= z >> u64(31)
    return z


def uniform(xp, key, counter, shape, first=0):
    """float64 numbers in [0, 1) on ``key``'s device, as the module docstring defines them,
    for the indices ``first, first + 1, ...``."""
    u64 = xp.uint64
    size = 1
    for n in shape:
        size *= int(n)
    start = mix64(xp, key ^ mix64(xp, counter))
    z = xp.arange(first, first + size, dtype=u64)
    z *= u64(GOLDEN)
    z += start
    z = mix64(xp, z)
    z >>= u64(11)  # the top 53 bits: every double in [0, 1) on a 2^-53 grid
    return (z.astype(xp.float64) * 2.0 ** -53).reshape(shape)


# --- the same numbers from 32-bit halves: for namespaces without 64-bit unsigned arithmetic --

M32 = 0xFFFFFFFF


def _mul32(a, b):
    """``(hi, lo)`` of the 64-bit product of 32-bit values held in int64 (arrays or ints):
    16-bit limbs, so no partial product leaves int64."""
    a1, a0 = a >> 16, a & 0xFFFF
    b1, b0 = b >> 16, b & 0xFFFF
    mid = a0 * b1 + a1 * b0
    low = a0 * b0 + ((mid & 0xFFFF) << 16)
    return (a1 * b1 + (mid >> 16) + (low >> 32)) & M32, low & M32


def _times(z, c):
    """``z * c`` mod 2^64 for ``z = (hi, lo)`` and a Python constant ``c``."""
    hi, lo = z
    ph, pl = _mul32(lo, c & M32)
    return (ph + _mul32(hi, c & M32)[1] + _mul32(lo, c >> 32)[1]) & M32, pl


def _plus(z, w):
    lo = z[1] + w[1]
    return (z[0] + w[0] + (lo >> 32)) & M32, lo & M32


def _xor_shift(z, s):
    """``z ^ (z >> s)`` for 0 < s < 32."""
    hi, lo = z
    return hi ^ (hi >> s), lo ^ (((lo >> s) | (hi << (32 - s))) & M32)


def _mix_halves(z):
    z = _times(_xor_shift(z, 30), MIX1)
    z = _times(_xor_shift(z, 27), MIX2)
    return _xor_shift(z, 31)


def _halves(xp, v):
    """A uint64 (or int64) array as ``(hi, lo)`` int64 arrays of its bit pattern."""
    v = xp.astype(v, xp.int64)  # the same 64 bits (values below 2^63 here: keys, counters)
    return (v >> 32) & M32, v & M32


def _drawn_halves(xp, key, counter, size, first):
    """The mixed 64-bit values of the indices ``first .. first + size - 1`` as ``(high,
    low)`` int64 arrays of 32-bit halves."""
    k, c = _halves(xp, key), _halves(xp, counter)
    mc = _mix_halves(c)
    start = _mix_halves((k[0] ^ mc[0], k[1] ^ mc[1]))
    index = xp.arange(first, first + size, dtype=xp.int64, **on_device_of(xp, key))
    return _mix_halves(_plus(_times((index >> 32, index & M32), GOLDEN), start))


def uniform_halves(xp, key, counter, shape, first=0):
    """:func:`uniform`'s numbers, bit for bit, computed in 32-bit halves held in int64
    (PyTorch has no 64-bit unsigned add or shift); float32 where the device has no
    float64 (Apple's MPS), which rounds each number to 24 bits. The numbers are made
    on ``key``'s device."""
    device = getattr(key, "device", None)  # none for JAX's tracers: the default's dtypes
    z = _drawn_halves(xp, key, counter, math.prod(int(n) for n in shape), first)
    real = xp.float64 if has_float64(xp, device) else xp.float32
    top = xp.astype(z[0], real) * float(2 ** 21) + xp.astype(z[1] >> 11, real)  # z >> 11
    return xp.reshape(top * 2.0 ** -53, tuple(shape))


def keep_halves(xp, key, counter, shape, ratio, first=0):
    """``uniform_halves(...) > ratio`` decided on the numbers before any rounding: the
    53-bit integer ``n = z >> 11`` (exact in int64) against ``floor(ratio * 2^53)``, as
    :func:`keep_words` does. A device without float64 (MPS) gets NumPy's masks too."""
    high, low = _drawn_halves(xp, key, counter, math.prod(int(n) for n in shape), first)
    n = high * 2 ** 21 + (low >> 11)
    return xp.reshape(n > math.floor(float(ratio) * 2.0 ** 53), tuple(shape))


# --- the same numbers from 32-bit words: for devices without 64-bit integers ---------------
#
# JAX without ``jax_enable_x64`` and array-api-strict's ``no_x64`` device have no int64 or
# uint64 at all, so there the generator's ``key`` and ``counter`` are ``(2,)`` uint32 arrays,
# the value's high and low words (:func:`state`), and its arithmetic runs on uint32, whose
# additions and multiplications wrap modulo 2^32 as the standard requires of unsigned types.


def state(backend, value):
    """The generator's ``key`` or ``counter`` holding the 64-bit ``value`` on ``backend``'s
    device: ``(1,)`` uint64, or ``(2,)`` uint32 words ``[high, low]`` where the device has
    no 64-bit integers."""
    value = int(value)
    if backend.has_int64():
        return backend.asarray([value], dtype="uint64")
    return backend.asarray([value >> 32, value & M32], dtype="uint32")


def value_of(host):
    """The 64-bit value a host (NumPy) copy of a ``key`` or ``counter`` holds, in either of
    :func:`state`'s forms (or int64, as a pickle keeps the uint64 one)."""
    if host.shape == (2,) and host.dtype.name == "uint32":
        return (int(host[0]) << 32) | int(host[1])
    if host.shape == (1,) and host.dtype.name in ("uint64", "int64"):
        return int(host[0]) & 0xFFFFFFFFFFFFFFFF
    raise ValueError(f"a dropout generator's key or counter is a (1,) uint64 array or (2,) "
                     f"uint32 words, got {host.dtype.name} of shape {tuple(host.shape)}")


def on_host(host):
    """A host copy of a ``key`` or ``counter`` (either form) as a checkpoint keeps it, in
    every backend's file alike: a ``(1,)`` uint64 NumPy array."""
    import numpy  # host I/O: what a checkpoint writes
    return numpy.array([value_of(host)], dtype=numpy.uint64)


def in_words(x):
    """Whether ``x`` is a ``key`` or ``counter`` held as 32-bit words."""
    return "uint32" in str(x.dtype)


def _word_product(a, b):
    """``(high, low)`` words of the 64-bit product of the uint32 array ``a`` and the Python
    constant ``0 <= b < 2^32``: 16-bit halves, whose products fit in 32 bits."""
    a1, a0 = a >> 16, a & 0xFFFF
    b1, b0 = b >> 16, b & 0xFFFF
    low, cross1, cross2 = a0 * b0, a0 * b1, a1 * b0
    middle = (low >> 16) + (cross1 & 0xFFFF) + (cross2 & 0xFFFF)  # below 3 * 2^16
    return (a1 * b1 + (cross1 >> 16) + (cross2 >> 16) + (middle >> 16),
            (low & 0xFFFF) | ((middle & 0xFFFF) << 16))


def _word(xp, value, like):
    """The Python integer ``0 <= value < 2^32`` as a uint32 array beside ``like``: JAX
    without 64 bits reads a bare integer above 2^31 - 1 as an int32, and refuses it."""
    return xp.asarray(value, dtype=xp.uint32, **on_device_of(xp, like))


def _words_times(xp, z, c):
    """``z * c`` mod 2^64 for ``z = (high, low)`` and a Python constant ``c``: the low words'
    full product, plus the cross products' low words (uint32's products wrap to them)."""
    high, low = z
    ph, pl = _word_product(low, c & M32)
    return ph + high * _word(xp, c & M32, low) + low * _word(xp, c >> 32, low), pl


def _words_plus(xp, z, w):
    low = z[1] + w[1]
    carry = xp.astype(low < w[1], low.dtype)  # 1 where the low words' sum wrapped
    return z[0] + w[0] + carry, low


def _words_xor_shift(z, s):
    """``z ^ (z >> s)`` for 0 < s < 32."""
    high, low = z
    return high ^ (high >> s), low ^ ((low >> s) | (high << (32 - s)))


def _words_mix(xp, z):
    """:func:`mix64` on ``(high, low)`` words."""
    z = _words_times(xp, _words_xor_shift(z, 30), MIX1)
    z = _words_times(xp, _words_xor_shift(z, 27), MIX2)
    return _words_xor_shift(z, 31)


def _drawn_words(xp, key, counter, size, first):
    """The mixed 64-bit values of the indices ``first .. first + size - 1`` as ``(high,
    low)`` uint32 arrays of ``size``: the words of what :func:`uniform` shifts and scales.
    (The words are kept as ``(1,)`` slices, never 0-d: NumPy warns where a scalar wraps.)"""
    mc = _words_mix(xp, (counter[0:1], counter[1:2]))
    start = _words_mix(xp, (key[0:1] ^ mc[0], key[1:2] ^ mc[1]))
    i = xp.arange(size, dtype=xp.uint32, **on_device_of(xp, key))
    low = i + _word(xp, first & M32, i)
    high = xp.astype(low < i, xp.uint32) + _word(xp, first >> 32, i)  # the low's carry
    return _words_mix(xp, _words_plus(xp, _words_times(xp, (high, low), GOLDEN), start))


def uniform_words(xp, key, counter, shape, first=0):
    """:func:`uniform`'s numbers from a ``key`` and ``counter`` held as uint32 words
    (:func:`state`): the same float64 numbers where the device has float64, and where it
    has none (JAX without ``jax_enable_x64``) those numbers rounded to float32."""
    high, low = _drawn_words(xp, key, counter, math.prod(int(n) for n in shape), first)
    real = xp.float64 if has_float64(xp, getattr(key, "device", None)) else xp.float32
    top = xp.astype(high, real) * float(2 ** 21) + xp.astype(low >> 11, real)  # z >> 11
    return xp.reshape(top * 2.0 ** -53, tuple(shape))


def keep_words(xp, key, counter, shape, ratio, first=0):
    """``uniform(...) > ratio`` from uint32 words, exactly, whatever floats the device has:
    a number is ``n * 2^-53`` for the 53-bit integer ``n = z >> 11``, and ``n * 2^-53 >
    ratio`` exactly where ``n > floor(ratio * 2^53)`` (``ratio * 2^53`` is exact in
    float64), compared word by word. Float32's rounding of the numbers never moves a mask."""
    high, low = _drawn_words(xp, key, counter, math.prod(int(n) for n in shape), first)
    threshold = math.floor(float(ratio) * 2.0 ** 53)
    above, rest = threshold >> 21, threshold & (2 ** 21 - 1)  # n's top 32 and low 21 bits
    above = _word(xp, above, high)
    keep = (high > above) | ((high == above) & ((low >> 11) > rest))
    return xp.reshape(keep, tuple(shape))


def increment_words(xp, counter):
    """``counter + 1`` on uint32 words: the low word, and the high one where it wrapped."""
    low = counter[1:2] + 1
    return xp.concat([counter[0:1] + xp.astype(low == 0, low.dtype), low])

"""SplitMix64 (Steele, Lea and Flood, 2014): the counter-based generator dropout draws from.

``uniform(xp, key, counter, shape)`` gives float64 numbers in [0, 1), a pure
function of the ``(1,)`` uint64 arrays ``key`` and ``counter`` and of each
element's index: element ``i`` is the top 53 bits of ``mix(i * GOLDEN +
mix(key ^ mix(counter)))``. ``first`` starts the indices there: a
data-parallel rank draws its rows of a batch's mask as ``uniform(...,
first=lo * row)``, the numbers one process draws for those rows. The CUDA
kernel ``backends/cuda/kernels/uniform.cu`` computes the same numbers with
the same constants (a test compares them).
"""

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


def uniform_halves(xp, key, counter, shape, first=0):
    """:func:`uniform`'s numbers, bit for bit, computed in 32-bit halves held in int64
    (PyTorch has no 64-bit unsigned add or shift); float32 where the device has no
    float64 (Apple's MPS), which rounds each number to 24 bits. The numbers are made
    on ``key``'s device."""
    device = getattr(key, "device", None)  # none for JAX's tracers: the default's dtypes
    n = 1
    for d in shape:
        n *= int(d)
    k, c = _halves(xp, key), _halves(xp, counter)
    mc = _mix_halves(c)
    start = _mix_halves((k[0] ^ mc[0], k[1] ^ mc[1]))
    index = xp.arange(first, first + n, dtype=xp.int64, **on_device_of(xp, key))
    z = _mix_halves(_plus(_times((index >> 32, index & M32), GOLDEN), start))
    real = xp.float64 if has_float64(xp, device) else xp.float32
    top = xp.astype(z[0], real) * float(2 ** 21) + xp.astype(z[1] >> 11, real)  # z >> 11
    return xp.reshape(top * 2.0 ** -53, tuple(shape))

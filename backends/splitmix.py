"""SplitMix64 (Steele, Lea and Flood, 2014): the counter-based generator dropout draws from.

``uniform(xp, key, counter, shape)`` gives float64 numbers in [0, 1), a pure
function of the ``(1,)`` uint64 arrays ``key`` and ``counter`` and of each
element's index: element ``i`` is the top 53 bits of ``mix(i * GOLDEN +
mix(key ^ mix(counter)))``. The CUDA kernel ``backends/cuda/kernels/uniform.cu``
computes the same numbers with the same constants (a test compares them).
"""

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


def uniform(xp, key, counter, shape):
    """float64 numbers in [0, 1) on ``key``'s device, as the module docstring defines them."""
    u64 = xp.uint64
    size = 1
    for n in shape:
        size *= int(n)
    start = mix64(xp, key ^ mix64(xp, counter))
    z = xp.arange(size, dtype=u64)
    z *= u64(GOLDEN)
    z += start
    z = mix64(xp, z)
    z >>= u64(11)  # the top 53 bits: every double in [0, 1) on a 2^-53 grid
    return (z.astype(xp.float64) * 2.0 ** -53).reshape(shape)

// Dropout's counter-based generator in one kernel, where the array code is some 25
// launches a draw: element i gets the top 53 bits of mix(i * GOLDEN + mix(key ^
// mix(counter))) as a double in [0, 1), in the same wrapping 64-bit arithmetic as
// backends/splitmix.py, so the numbers are the same bit for bit on every backend (a test
// checks these constants against that module's).
__device__ inline unsigned long long xpnet_mix64(unsigned long long z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// out[i] = the top 53 bits of mix((first + i) * GOLDEN + mix(key ^ mix(counter))) / 2^53;
// first > 0 draws the part of a larger draw that starts there (a data-parallel rank's rows)
extern "C" __global__ void xpnet_uniform(const unsigned long long* key,
                                         const unsigned long long* counter, double* out,
                                         long long size, long long first)
{
    const unsigned long long start = xpnet_mix64(key[0] ^ xpnet_mix64(counter[0]));
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        const unsigned long long z =
            xpnet_mix64((unsigned long long)(first + i) * 0x9E3779B97F4A7C15ULL + start);
        out[i] = (double)(z >> 11) * (1.0 / 9007199254740992.0);  // 2^-53: exact
    }
}

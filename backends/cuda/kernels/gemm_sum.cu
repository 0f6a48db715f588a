// The tile GEMM's slices added in slice order (no atomics: the same sums every run).
// T: the float type.
// C[i] = parts[0][i] + parts[1][i] + ... (+ bias[i % n]), the slices in order.
extern "C" __global__ void xpnet_gemm_sum(const T* parts, const T* bias, T* C, int slices,
                                          long long mn, int n, int has_bias)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < mn;
         i += (long long)blockDim.x * gridDim.x) {
        T s = parts[i];
        for (int z = 1; z < slices; ++z) s += parts[(long long)z * mn + i];
        if (has_bias) s += bias[i % n];
        C[i] = s;
    }
}

// C[M, N] = A[M, K] B[K, N] (+ bias[N]) for the fully connected nets' small products
// (at most 100 x 784 x 50): a block is 32 columns by TM rows of C, its KSPLIT warps split
// K and add their partial sums in shared memory. T: the float type; A and B with any
// element strides. backends/cuda/gemm.py plans the launch.
extern "C" __global__ void xpnet_gemm(const T* A, const T* B, const T* bias, T* C,
                                      int M, int N, int K,
                                      long long sa0, long long sa1,
                                      long long sb0, long long sb1, int has_bias)
{
    __shared__ T part[KSPLIT][TM][32];
    const int j = blockIdx.x * 32 + threadIdx.x;
    const int i0 = blockIdx.y * TM;
    const int rows = min(TM, M - i0);
    T acc[TM];
#pragma unroll
    for (int r = 0; r < TM; ++r) acc[r] = 0;
    if (j < N) {
        const T* a = A + i0 * sa0;
        for (int k = threadIdx.y; k < K; k += KSPLIT) {
            const T b = B[k * sb0 + j * sb1];
#pragma unroll
            for (int r = 0; r < TM; ++r)
                if (r < rows) acc[r] += a[r * sa0 + k * sa1] * b;
        }
    }
#pragma unroll
    for (int r = 0; r < TM; ++r) part[threadIdx.y][r][threadIdx.x] = acc[r];
    __syncthreads();
    if (threadIdx.y < rows && j < N) {
        const int r = threadIdx.y;
        T s = 0;
#pragma unroll
        for (int w = 0; w < KSPLIT; ++w) s += part[w][r][threadIdx.x];
        if (has_bias) s += bias[j];
        C[(long long)(i0 + r) * N + j] = s;
    }
}

// The convolutions' large products, whose K runs to N * out_h * out_w or whose C has
// tens of thousands of columns: each thread accumulates a TM x TN tile of C in registers
// over one slice of K (T: the float type). gemm_sum.cu adds the slices in order.
#define XPNET_MIN(a, b) ((a) < (b) ? (a) : (b))
// C[M, N] = A[M, K] B[K, N] (+ bias[N]), A and B with any element strides. Thread
// (x, y) of the grid accumulates the TM x TN tile of C from row y * TM and column
// x * TN over the slice k in [z * kc, (z + 1) * kc) of block z, in k order, and writes
// it into out + z * M * N (row-major). Tiles at the edges read the last row or column
// again for the rows and columns they do not store, so every load is in bounds.
extern "C" __global__ void xpnet_gemm_tiles(const T* A, const T* B, const T* bias, T* out,
                                            int M, int N, int K, int kc,
                                            long long sa0, long long sa1,
                                            long long sb0, long long sb1, int has_bias)
{
    const int j0 = (blockIdx.x * blockDim.x + threadIdx.x) * TN;
    const int i0 = (blockIdx.y * blockDim.y + threadIdx.y) * TM;
    if (i0 >= M || j0 >= N) return;
    const long long k0 = (long long)blockIdx.z * kc;
    const long long k1 = XPNET_MIN((long long)K, k0 + kc);
    const T* a[TM];
    const T* b[TN];
    T acc[TM][TN];
#pragma unroll
    for (int r = 0; r < TM; ++r) a[r] = A + (long long)XPNET_MIN(i0 + r, M - 1) * sa0;
#pragma unroll
    for (int c = 0; c < TN; ++c) b[c] = B + (long long)XPNET_MIN(j0 + c, N - 1) * sb1;
#pragma unroll
    for (int r = 0; r < TM; ++r)
#pragma unroll
        for (int c = 0; c < TN; ++c) acc[r][c] = 0;
    for (long long k = k0; k < k1; ++k) {
        T av[TM], bv[TN];
#pragma unroll
        for (int r = 0; r < TM; ++r) av[r] = a[r][k * sa1];
#pragma unroll
        for (int c = 0; c < TN; ++c) bv[c] = b[c][k * sb0];
#pragma unroll
        for (int r = 0; r < TM; ++r)
#pragma unroll
            for (int c = 0; c < TN; ++c) acc[r][c] += av[r] * bv[c];
    }
    T* dst = out + (long long)blockIdx.z * M * N;
    const int rows = XPNET_MIN(TM, M - i0), cols = XPNET_MIN(TN, N - j0);
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c)
            dst[(long long)(i0 + r) * N + j0 + c] = acc[r][c] + (has_bias ? bias[j0 + c] : (T)0);
}

// Softmax with cross-entropy for integer labels, and its gradient: one kernel each.
// T: the float type; L: the labels' integer type. A label outside 0..C-1 gives a NaN
// loss, which the Trainer stops on.
//
// xpnet_softmax_ce: one block does the whole batch (256 threads): each thread takes rows
// n, n + 256, ..., writes softmax(x_n) and adds log sum exp - x_n[t_n]; a tree sum gives
// the mean.
extern "C" __global__ void xpnet_softmax_ce(const T* x, const L* t, T* y, T* loss, int n, int c)
{
    __shared__ T part[256];
    T acc = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const T* row = x + (long long)i * c;
        T* out = y + (long long)i * c;
        T m = row[0];
        for (int k = 1; k < c; ++k) m = row[k] > m ? row[k] : m;
        T s = 0;
        for (int k = 0; k < c; ++k) { T e = exp(row[k] - m); out[k] = e; s += e; }
        for (int k = 0; k < c; ++k) out[k] /= s;
        const long long label = (long long)t[i];
        const T picked = (label >= 0 && label < c) ? row[label] - m : (T)__int_as_float(0x7fc00000);
        acc += log(s) - picked;
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) loss[0] = part[0] / n;
}

// xpnet_softmax_ce_grad: dx = (y - onehot(t)) * scale, one thread an element.
extern "C" __global__ void xpnet_softmax_ce_grad(const T* y, const L* t, T* dx, int n, int c,
                                                 T scale)
{
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n * c) return;
    const int i = (int)(idx / c);
    const long long k = idx - (long long)i * c;
    T v = y[idx];
    if ((long long)t[i] == k) v -= 1;
    dx[idx] = v * scale;
}

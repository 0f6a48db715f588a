// The CUDA-graph step's own kernels (T: the float type; L: the labels' integer type;
// I: the index type). A graph's kernel arguments are fixed at capture, so the batch
// offset and the loss slot come from a counter on the device, advanced by the last
// kernel of each replay.
//
// xpnet_gather: batch rows from the epoch's order, at step counter[0].
extern "C" __global__ void xpnet_gather(const T* x, const L* t, const I* order,
                                        const int* counter, T* xb, L* tb, int batch, int d)
{
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)batch * d) return;
    const int r = (int)(idx / d);
    const long long col = idx - (long long)r * d;
    const long long src = (long long)order[(long long)counter[0] * batch + r];
    xb[idx] = x[src * d + col];
    if (col == 0) tb[r] = t[src];
}

// xpnet_record: the step's loss into losses[counter], then the counter on by one.
extern "C" __global__ void xpnet_record(const T* loss, T* losses, int* counter)
{
    losses[counter[0]] = loss[0];
    counter[0] += 1;
}

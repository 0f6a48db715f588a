// The convolutional passes, one kernel each: im2col, col2im (as a gather), max pooling
// and its gradient (a gather). T: the float type; A: the argmax index type (signed char
// or int). Each kernel walks its outputs in a grid-stride loop and takes every array's
// strides in elements, so any memory layout works: the channel-major arrays the
// convolution layer makes are read and written in place. The backward passes are
// gathers, each output summing what reaches it in a fixed order: no atomics, and the
// same order as the array code on the host, so the results agree bit for bit.
#define XPNET_FOR_EACH(i, total) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (total); \
         i += (long long)blockDim.x * gridDim.x)

// Pixel i of a channel-major walk over (C, N, H, W): its sample, channel, row and column.
__device__ inline void xpnet_pixel(long long i, int n, int h, int w, long long* s,
                                   long long* ch, int* y, int* xx)
{
    *xx = (int)(i % w);
    i /= w;
    *y = (int)(i % h);
    i /= h;
    *s = i % n;
    *ch = i / n;
}

// Along one axis: whether pixel p is offset k of some window (p = o * stride + k - pad,
// 0 <= o < out), and which window o.
__device__ inline bool xpnet_window(int p, int k, int stride, int pad, int out, int* o)
{
    const int t = p + pad - k;
    if (t < 0 || t % stride != 0 || t / stride >= out) return false;
    *o = t / stride;
    return true;
}

// col[(ch, ki, kj), (s, oy, ox)] = x[s, ch, oy * stride + ki - pad, ox * stride + kj - pad],
// 0 outside the image; col row-major, x with element strides (xn, xc, xh, xw).
extern "C" __global__ void xpnet_im2col(
    const T* x, T* col, int n, int c, int h, int w, int fh, int fw, int stride, int pad,
    int oh, int ow, long long xn, long long xc, long long xh, long long xw)
{
    const long long cols = (long long)n * oh * ow;
    const long long total = (long long)c * fh * fw * cols;
    XPNET_FOR_EACH(i, total) {
        long long q = i % cols;
        const int ox = (int)(q % ow);
        q /= ow;
        const int oy = (int)(q % oh);
        const long long s = q / oh;
        long long r = i / cols;
        const int kj = (int)(r % fw);
        r /= fw;
        const int ki = (int)(r % fh);
        const long long ch = r / fh;
        const int y = oy * stride + ki - pad;
        const int xx = ox * stride + kj - pad;
        col[i] = (y >= 0 && y < h && xx >= 0 && xx < w)
            ? x[s * xn + ch * xc + y * xh + xx * xw] : (T)0;
    }
}

// The adjoint, as a gather: img[s, ch, y, xx] = sum over the filter offsets (ki, kj), in
// row-major order, of the column entries that came from that pixel. img with strides
// (gn, gc, gh, gw), walked channel-major (its layout after a convolution).
extern "C" __global__ void xpnet_col2im(
    const T* col, T* img, int n, int c, int h, int w, int fh, int fw, int stride, int pad,
    int oh, int ow, long long gn, long long gc, long long gh, long long gw)
{
    const long long cols = (long long)n * oh * ow;
    const long long total = (long long)c * n * h * w;
    XPNET_FOR_EACH(i, total) {
        long long s, ch;
        int y, xx, oy, ox;
        xpnet_pixel(i, n, h, w, &s, &ch, &y, &xx);
        T acc = (T)0;
        for (int ki = 0; ki < fh; ++ki) {
            if (!xpnet_window(y, ki, stride, pad, oh, &oy)) continue;
            for (int kj = 0; kj < fw; ++kj) {
                if (!xpnet_window(xx, kj, stride, pad, ow, &ox)) continue;
                acc += col[((ch * fh + ki) * fw + kj) * cols + (s * oh + oy) * ow + ox];
            }
        }
        img[s * gn + ch * gc + y * gh + xx * gw] = acc;
    }
}

// out[s, ch, oy, ox] = the window's maximum (outside the image: lowest, i.e. -inf) and
// arg its first maximum's index ki * pw + kj; out and arg share the strides (on, oc, oh_, ow_).
extern "C" __global__ void xpnet_max_pool(
    const T* x, T* out, A* arg, int n, int c, int h, int w, int ph, int pw, int stride,
    int pad, int oh, int ow, T lowest, long long xn, long long xc, long long xh,
    long long xw, long long on, long long oc, long long ooh, long long oow)
{
    const long long total = (long long)n * c * oh * ow;
    XPNET_FOR_EACH(i, total) {
        long long q = i;
        const int ox = (int)(q % ow);
        q /= ow;
        const int oy = (int)(q % oh);
        q /= oh;
        const long long ch = q % c;
        const long long s = q / c;
        T best = lowest;
        int best_k = 0;
        for (int ki = 0; ki < ph; ++ki) {
            for (int kj = 0; kj < pw; ++kj) {
                const int y = oy * stride + ki - pad;
                const int xx = ox * stride + kj - pad;
                const T v = (y >= 0 && y < h && xx >= 0 && xx < w)
                    ? x[s * xn + ch * xc + y * xh + xx * xw] : lowest;
                const int k = ki * pw + kj;
                if (k == 0 || v > best) {  // strictly: the first maximum keeps its place
                    best = v;
                    best_k = k;
                }
            }
        }
        const long long o = s * on + ch * oc + oy * ooh + ox * oow;
        out[o] = best;
        arg[o] = (A)best_k;
    }
}

// dx[s, ch, y, xx] = sum of dout over the windows whose first maximum is this pixel, in
// the order of the window offsets (ki, kj) row-major, as the host's array code adds them.
extern "C" __global__ void xpnet_max_pool_grad(
    const T* dout, const A* arg, T* dx, int n, int c, int h, int w, int ph, int pw,
    int stride, int pad, int oh, int ow, long long dn, long long dc, long long dh,
    long long dw, long long an, long long ac, long long ah, long long aw,
    long long gn, long long gc, long long gh, long long gw)
{
    const long long total = (long long)c * n * h * w;
    XPNET_FOR_EACH(i, total) {
        long long s, ch;
        int y, xx, oy, ox;
        xpnet_pixel(i, n, h, w, &s, &ch, &y, &xx);
        T acc = (T)0;
        for (int ki = 0; ki < ph; ++ki) {
            if (!xpnet_window(y, ki, stride, pad, oh, &oy)) continue;
            for (int kj = 0; kj < pw; ++kj) {
                if (!xpnet_window(xx, kj, stride, pad, ow, &ox)) continue;
                if ((int)arg[s * an + ch * ac + oy * ah + ox * aw] == ki * pw + kj)
                    acc += dout[s * dn + ch * dc + oy * dh + ox * dw];
            }
        }
        dx[s * gn + ch * gc + y * gh + xx * gw] = acc;
    }
}

/* Max pooling over 2 x 2 windows at stride 2, the book's every pooling layer, and its
   gradient, for one type (T, S, I: see prelude.h): one pass each over planes of the
   input, where NumPy makes fourteen passes over strided windows. The same outputs,
   first-maximum offsets and gradient as the array code (backends/ops.py), NaN included. */

#define L 8
#define EVEN 0, 2, 4, 6, 8, 10, 12, 14
#define ODD 1, 3, 5, 7, 9, 11, 13, 15
#define LOW 0, 8, 1, 9, 2, 10, 3, 11
#define HIGH 4, 12, 5, 13, 6, 14, 7, 15
#include "pool_block.h"
#undef L
#undef EVEN
#undef ODD
#undef LOW
#undef HIGH

#define L 4
#define EVEN 0, 2, 4, 6
#define ODD 1, 3, 5, 7
#define LOW 0, 4, 1, 5
#define HIGH 2, 6, 3, 7
#include "pool_block.h"
#undef L
#undef EVEN
#undef ODD
#undef LOW
#undef HIGH

/* one output at a time, for rows of 1-3 outputs */
INLINE void NAME(pool_1)(const T* r0, const T* r1, T* o, signed char* g)
{
    const T v[4] = {r0[0], r0[1], r1[0], r1[1]};
    T m = v[0];
    int k = 0;
    for (int q = 1; q < 4; ++q) {
        if (v[q] > m) { m = v[q]; k = q; }
        else if (v[q] != v[q]) m = v[q];
    }
    *o = m;
    *g = (signed char)k;
}

INLINE void NAME(pool_grad_1)(const T* d, const signed char* g, T* r0, T* r1)
{
    T* const at[4] = {r0, r0 + 1, r1, r1 + 1};
    for (int q = 0; q < 4; ++q) *at[q] = d[0] * (T)(g[0] == q);
}

/* Each row walks blocks of 8 outputs (4 in rows of 4-7, one at a time in shorter ones);
   a row's last block overlaps the one before instead of running past the row. */
#define POOL_ROW(BLOCK, ow, ...) do { \
        const int lanes_ = (ow) >= 8 ? 8 : (ow) >= 4 ? 4 : 1; \
        for (long j = 0; j < (ow); j += lanes_) { \
            const long at = j + lanes_ <= (ow) ? j : (ow) - lanes_; \
            if (lanes_ == 8) BLOCK(8, at, __VA_ARGS__); \
            else if (lanes_ == 4) BLOCK(4, at, __VA_ARGS__); \
            else BLOCK(1, at, __VA_ARGS__); \
        } } while (0)
#define POOL_CALL(lanes, at, r0, r1, o, g) \
    NAME(XPNET_CAT(pool, lanes))(r0 + 2 * (at), r1 + 2 * (at), o + (at), g + (at))
#define POOL_GRAD_CALL(lanes, at, d, g, r0, r1) \
    NAME(XPNET_CAT(pool_grad, lanes))(d + (at), g + (at), r0 + 2 * (at), r1 + 2 * (at))

/* out[p, i, j] = max of x[p, 2i + a, 2j + b] over a, b in {0, 1}, arg[p, i, j] the first
   maximum's offset 2a + b, for the planes p in [lo, hi): x (P, h, w), out and arg
   (P, h / 2, w / 2), each compact. */
void NAME(xpnet_max_pool)(const T* x, T* out, signed char* arg, long h, long w, long lo,
                          long hi)
{
    const long oh = h / 2, ow = w / 2;
    for (long r = lo * oh; r < hi * oh; ++r) {
        const long p = r / oh, i = r - p * oh;
        const T* r0 = x + (p * h + 2 * i) * w;
        POOL_ROW(POOL_CALL, ow, r0, r0 + w, out + r * ow, arg + r * ow);
    }
}

/* dx (P, h, w) from dout and arg (P, h / 2, w / 2) for the planes in [lo, hi), h and w
   even: each pixel is in one window, so each is written once. */
void NAME(xpnet_max_pool_grad)(const T* d, const signed char* arg, T* dx, long h, long w,
                               long lo, long hi)
{
    const long oh = h / 2, ow = w / 2;
    for (long r = lo * oh; r < hi * oh; ++r) {
        const long p = r / oh, i = r - p * oh;
        T* r0 = dx + (p * h + 2 * i) * w;
        POOL_ROW(POOL_GRAD_CALL, ow, d + r * ow, arg + r * ow, r0, r0 + w);
    }
}

#undef POOL_ROW
#undef POOL_CALL
#undef POOL_GRAD_CALL

"""The CPU's compiled kernels, built by the system's C compiler on first use.

Why: on the host, im2col + BLAS spends most of a convolution moving
memory. DeepConvNet's second layer writes a 45 MB column matrix to use
each element in 16 multiply-adds, so its product runs at 17-40 GFLOP/s
where one core can do well over 100 (docs/performance.md). These kernels
never build the columns. They read the zero-padded input ``(C, N, Hp, Wp)``
with each channel one flat row, where a filter tap is a fixed shift along
the row::

    out[f, j] = b[f] + sum_{c, i, k} W[f, c, i, k] * x[c, j + i * Wp + k]

for the grid position ``j`` of output pixel ``(n, y, x)``, ``(n Hp + y) Wp + x``.

* ``conv`` and ``dw`` (the grid kernels) compute a block of consecutive grid
  positions at once, a few vector registers filled by unaligned loads,
  whatever the number of filters; as a block is stored its valid outputs
  go to the compact channel-major output ``(F, N, OH, OW)`` and the rest
  (a border's worth of work) is dropped. ``dw`` sums ``dout`` placed on the
  same grid, zero where there is no output, against the shifted rows.
* ``conv_px`` and ``dw_px`` vectorise over the filters instead: a block of
  valid output pixels times up to four vectors of filters (laid out
  ``(C, fh, fw, F)``), ``dW`` from ``dout`` copied pixel-major. No border;
  they pay from two vectors of filters up (:mod:`backends.host_ops`
  chooses).
* The input's gradient at stride 1 is the same forward on ``dout`` padded
  by ``filter - 1 - pad``, with the filters turned 180 degrees and their
  two axes swapped.
* ``relu``: ReLU's forward in one pass instead of NumPy's two, the same bits.
* ``max_pool`` and ``max_pool_grad``: max pooling over 2 x 2 windows at stride
  2 (the book's every pooling layer) and its gradient, one pass each over
  planes of the input, where NumPy makes fourteen passes over strided
  windows: eight (or four) outputs of a row at a time, the two input rows'
  even and odd columns pulled apart by vector shuffles. The same outputs,
  first-maximum offsets and gradient as the array code, NaN included.

:func:`load` compiles :data:`SOURCE` with ``cc -O3 -march=native`` into
the cache folder (``XPNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/xpnet`` or
``~/.cache/xpnet``), once per source, compiler, flags and CPU, and loads it
with ctypes, which lets go of the GIL during a call (so
:class:`backends.host_ops.HostOps` runs parts of the work on its threads).
With no compiler, a failed build, or ``XPNET_HOST_KERNELS=0``, it returns
None with the reason and the host runs its NumPy code (im2col + BLAS).
The convolution runs here at stride 1 (every convolution of the book's
networks), all of it in float32 and float64.
"""

import ctypes
import hashlib
import os
import pathlib
import platform
import shutil
import string
import subprocess
import tempfile

ENV_VAR = "XPNET_HOST_KERNELS"
CACHE_ENV_VAR = "XPNET_CACHE_DIR"
FLAGS = ("-O3", "-march=native", "-fno-strict-aliasing", "-shared", "-fPIC")
DW_CHUNK = 2048  # grid positions a dW pass sums at a time (1024-16384 tried: 2048 best)

_PRELUDE = r'''
#ifdef __AVX512F__
#define VB 64  /* bytes in a vector register */
#define JB 4   /* vectors of outputs a grid block keeps in registers, per filter */
#define PB 6   /* pixels (or taps) a filter-vectorised block keeps in registers */
#else
#define VB 32
#define JB 2
#define PB 3
#endif
#define FV 4   /* vectors of filters a filter-vectorised block keeps in registers */
#define PX_CHUNK 128  /* pixels a filter-vectorised dW pass sums at a time: in L1 */
#define FB 4   /* filters a block keeps in registers */
#define CB 4   /* filter taps a dW block keeps in registers */
#include <string.h>
#define INLINE static inline __attribute__((always_inline))
/* SHUFFLE(a, b, mask type, indices...): lanes of a then b picked by constant indices;
   GCC before 12 has only __builtin_shuffle, which takes the indices as a vector. */
#if (defined(__clang__) || __GNUC__ >= 12) && !defined(XPNET_OLD_SHUFFLE)
#define SHUFFLE(a, b, mask_type, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUFFLE(a, b, mask_type, ...) __builtin_shuffle(a, b, (mask_type){__VA_ARGS__})
#endif
/* CALL(n, nv, q) with nv (1..FV vectors of filters) a literal, so the block unrolls */
#define BY_NV(CALL, n, nv, q) do { \
        if ((nv) == 4) CALL(n, 4, q); else if ((nv) == 3) CALL(n, 3, q); \
        else if ((nv) == 2) CALL(n, 2, q); else CALL(n, 1, q); } while (0)
int xpnet_block_floats(void) { return JB * VB / 4; }
int xpnet_block_doubles(void) { return JB * VB / 8; }
int xpnet_vector_bytes(void) { return VB; }
/* where output pixel p = (n, y, x) of an oh x ow output sits on an hp x wp grid */
static inline long grid_index(long p, long oh, long ow, long hp, long wp)
{
    const long n = p / (oh * ow), r = p - n * oh * ow, y = r / ow;
    return n * hp * wp + y * wp + (r - y * ow);
}
'''

# One copy per type ($T the C type, $S the suffix). Blocks are called with a
# literal nf / nc so the compiler unrolls them and keeps acc in registers.
_TEMPLATE = string.Template(r'''
enum { VL_$S = VB / sizeof($T), BL_$S = JB * VB / sizeof($T) };
typedef $T vec_$S __attribute__((vector_size(VB)));
typedef $T uvec_$S __attribute__((vector_size(VB), aligned(sizeof($T)), may_alias));

/* The block's valid outputs (grid row y < oh, column x < ow) to the compact
   (F, N, oh, ow) output, a run of a grid row at a time. */
INLINE void store_runs_$S(const int nf, $T tmp[FB][BL_$S], $T* out, long os, long j0,
                          long hp, long wp, long oh, long ow, long cells)
{
    const long image = hp * wp;
    long n = j0 / image, y = (j0 - n * image) / wp, x = j0 - n * image - y * wp;
    for (long l = 0; l < BL_$S && j0 + l < cells;) {
        long run = wp - x < BL_$S - l ? wp - x : BL_$S - l;
        if (y < oh && x < ow) {
            const long m = ow - x < run ? ow - x : run;
            $T* dst = out + (n * oh + y) * ow + x;
            for (int a = 0; a < nf; ++a) memcpy(dst + a * os, &tmp[a][l], m * sizeof($T));
        }
        l += run;
        x += run;
        if (x == wp) {
            x = 0;
            if (++y == hp) { y = 0; ++n; }
        }
    }
}

INLINE void conv_block_$S(const int nf, const $T* x, long xs, const $T* w, const $T* b,
                          int C, int KH, int KW, long wp, long j0, $T tmp[FB][BL_$S])
{
    const long taps = (long)C * KH * KW;
    vec_$S acc[FB][JB];
    for (int a = 0; a < nf; ++a)
        for (int v = 0; v < JB; ++v) acc[a][v] = (vec_$S){0} + b[a];
    for (int c = 0; c < C; ++c) {
        const $T* xc = x + c * xs + j0;
        const $T* wc = w + (long)c * KH * KW;
        for (int i = 0; i < KH; ++i)
            for (int k = 0; k < KW; ++k) {
                const $T* p = xc + i * wp + k;
                vec_$S xv[JB];
                for (int v = 0; v < JB; ++v) xv[v] = *(const uvec_$S*)(p + v * VL_$S);
                for (int a = 0; a < nf; ++a) {
                    const $T s = wc[a * taps + i * KW + k];
                    for (int v = 0; v < JB; ++v) acc[a][v] += s * xv[v];
                }
            }
    }
    for (int a = 0; a < nf; ++a)
        for (int v = 0; v < JB; ++v) *(uvec_$S*)(&tmp[a][v * VL_$S]) = acc[a][v];
}

/* out[f, n, y, x] = b[f] + sum_{c,i,k} w[f,c,i,k] xg[c, j + i wp + k], j = (n hp + y) wp + x,
   for y < oh, x < ow: the grid positions j in [lo, hi) (whole blocks) of a grid of `cells`
   positions. xg's rows (stride xs) reach j + (KH-1) wp + KW-1; out's rows have stride os. */
void xpnet_conv_$S(const $T* x, long xs, const $T* w, const $T* b, int F, int C, int KH,
                   int KW, long hp, long wp, long oh, long ow, long cells, $T* out, long os,
                   long lo, long hi)
{
    const long per_filter = (long)C * KH * KW;
    $T tmp[FB][BL_$S] __attribute__((aligned(64)));
    for (long j0 = lo; j0 < hi; j0 += BL_$S) {
        int f = 0;
        for (; f + FB <= F; f += FB) {
            conv_block_$S(FB, x, xs, w + f * per_filter, b + f, C, KH, KW, wp, j0, tmp);
            store_runs_$S(FB, tmp, out + f * os, os, j0, hp, wp, oh, ow, cells);
        }
        for (; f < F; ++f) {
            conv_block_$S(1, x, xs, w + f * per_filter, b + f, C, KH, KW, wp, j0, tmp);
            store_runs_$S(1, tmp, out + f * os, os, j0, hp, wp, oh, ow, cells);
        }
    }
}

INLINE void dw_block_$S(const int nf, const int nr, const $T* d, long ds, const $T* x,
                        const long* off, long lo, long hi, $T* dw, long rows)
{
    vec_$S acc[FB][CB];
    for (int a = 0; a < nf; ++a)
        for (int r = 0; r < nr; ++r) acc[a][r] = (vec_$S){0};
    for (long j = lo; j < hi; j += VL_$S) {
        vec_$S dv[FB], xv[CB];
        for (int a = 0; a < nf; ++a) dv[a] = *(const uvec_$S*)(d + a * ds + j);
        for (int r = 0; r < nr; ++r) xv[r] = *(const uvec_$S*)(x + off[r] + j);
        for (int a = 0; a < nf; ++a)
            for (int r = 0; r < nr; ++r) acc[a][r] += dv[a] * xv[r];
    }
    for (int a = 0; a < nf; ++a)
        for (int r = 0; r < nr; ++r) {
            $T s = 0;
            for (int l = 0; l < VL_$S; ++l) s += acc[a][r][l];
            dw[a * rows + r] += s;
        }
}

/* dw[f, t] += sum_{j in [lo, hi)} d[f, j] xg[c, j + i wp + k] for each tap t = (c, i, k);
   lo and hi whole vectors, d zero wherever the grid has no output. A chunk of j at a
   time, so the chunk's rows of d and xg stay in cache while every pair is summed. */
void xpnet_conv_dw_$S(const $T* d, long ds, const $T* x, long xs, int F, int C, int KH, int KW,
                      long wp, $T* dw, long lo, long hi, long chunk)
{
    const int rows = C * KH * KW;
    long off[rows];
    for (int t = 0; t < rows; ++t)
        off[t] = (t / (KH * KW)) * xs + (t / KW % KH) * wp + t % KW;
    for (long j0 = lo; j0 < hi; j0 += chunk) {
        const long j1 = j0 + chunk < hi ? j0 + chunk : hi;
        int f = 0;
        for (; f + FB <= F; f += FB) {
            int t = 0;
            for (; t + CB <= rows; t += CB)
                dw_block_$S(FB, CB, d + f * ds, ds, x, off + t, j0, j1, dw + f * rows + t, rows);
            for (; t < rows; ++t)
                dw_block_$S(FB, 1, d + f * ds, ds, x, off + t, j0, j1, dw + f * rows + t, rows);
        }
        for (; f < F; ++f) {
            int t = 0;
            for (; t + CB <= rows; t += CB)
                dw_block_$S(1, CB, d + f * ds, ds, x, off + t, j0, j1, dw + f * rows + t, rows);
            for (; t < rows; ++t)
                dw_block_$S(1, 1, d + f * ds, ds, x, off + t, j0, j1, dw + f * rows + t, rows);
        }
    }
}

/* Filter-vectorised: a block of PB output pixels (only valid ones, no grid waste)
   times nv vectors of filters; wt is (C, KH, KW, F), each tap a row of F filters. */
INLINE void px_block_$S(const int nb, const int nv, const $T* x, long xs, const $T* wt,
                        const $T* b, int F, int C, int KH, int KW, long wp, const long* base,
                        $T* out, long os, long p0)
{
    vec_$S acc[PB][FV];
    for (int q = 0; q < nb; ++q)
        for (int v = 0; v < nv; ++v) acc[q][v] = *(const uvec_$S*)(b + v * VL_$S);
    for (int c = 0; c < C; ++c) {
        const $T* xc = x + c * xs;
        for (int i = 0; i < KH; ++i)
            for (int k = 0; k < KW; ++k) {
                const $T* wv = wt + ((long)(c * KH + i) * KW + k) * F;
                vec_$S w[FV];
                for (int v = 0; v < nv; ++v) w[v] = *(const uvec_$S*)(wv + v * VL_$S);
                const long off = i * wp + k;
                for (int q = 0; q < nb; ++q) {
                    const $T s = xc[base[q] + off];
                    for (int v = 0; v < nv; ++v) acc[q][v] += s * w[v];
                }
            }
    }
    for (int v = 0; v < nv; ++v)
        for (int l = 0; l < VL_$S; ++l)
            for (int q = 0; q < nb; ++q) out[(long)(v * VL_$S + l) * os + p0 + q] = acc[q][v][l];
}

/* CALL(n, nv, q) over the filters f0 = 0, FV vectors, ... (nv of them in the last step):
   one block of n = PB pixels (or taps), else n one at a time. */
#define EACH_FILTER_BLOCK_$S(CALL, n, F) \
    for (int f0 = 0; f0 < (F); f0 += FV * VL_$S) { \
        const int nv = ((F) - f0) / VL_$S < FV ? ((F) - f0) / VL_$S : FV; \
        if ((n) == PB) \
            BY_NV(CALL, PB, nv, 0); \
        else \
            for (int q = 0; q < (n); ++q) BY_NV(CALL, 1, nv, q); \
    }

#define PX_CALL_$S(nb, nv, q) px_block_$S(nb, nv, x, xs, wt + f0, b + f0, F, C, KH, KW, wp, \
                                          base + (q), out + (long)f0 * os, os, p0 + (q))

/* out[f, n, y, x] as xpnet_conv_$S for the output pixels p in [lo, hi) of (N, oh, ow),
   F a whole number of vectors; wt the filters as (C, KH, KW, F). */
void xpnet_conv_px_$S(const $T* x, long xs, const $T* wt, const $T* b, int F, int C, int KH,
                      int KW, long hp, long wp, long oh, long ow, $T* out, long os, long lo,
                      long hi)
{
    long base[PB];
    for (long p0 = lo; p0 < hi; p0 += PB) {
        const int nb = hi - p0 < PB ? (int)(hi - p0) : PB;
        for (int q = 0; q < nb; ++q) base[q] = grid_index(p0 + q, oh, ow, hp, wp);
        EACH_FILTER_BLOCK_$S(PX_CALL_$S, nb, F);
    }
}

INLINE void dw_px_block_$S(const int nt, const int nv, const $T* d, int F, const $T* x,
                           const long* off, const long* base, long count, $T* dwt)
{
    vec_$S acc[PB][FV];
    for (int q = 0; q < nt; ++q)
        for (int v = 0; v < nv; ++v) acc[q][v] = (vec_$S){0};
    for (long e = 0; e < count; ++e) {
        vec_$S dv[FV];
        for (int v = 0; v < nv; ++v) dv[v] = *(const uvec_$S*)(d + e * F + v * VL_$S);
        for (int q = 0; q < nt; ++q) {
            const $T s = x[off[q] + base[e]];
            for (int v = 0; v < nv; ++v) acc[q][v] += s * dv[v];
        }
    }
    for (int q = 0; q < nt; ++q)
        for (int v = 0; v < nv; ++v)
            *(uvec_$S*)(dwt + (long)q * F + v * VL_$S) += acc[q][v];
}

#define DW_PX_CALL_$S(nt, nv, q) dw_px_block_$S(nt, nv, dc + f0, F, x, off + t0 + (q), base, \
                                                count, dwt + (long)(t0 + (q)) * F + f0)

/* dwt[t, f] += sum_p d[p, f] xg[c, grid(p) + i wp + k] for each tap t = (c, i, k), over the
   output pixels p in [lo, hi); d pixel-major (P, F), F a whole number of vectors. */
void xpnet_conv_dw_px_$S(const $T* d, int F, const $T* x, long xs, int C, int KH, int KW,
                         long hp, long wp, long oh, long ow, $T* dwt, long lo, long hi)
{
    const int rows = C * KH * KW;
    long off[rows], base[PX_CHUNK];
    for (int t = 0; t < rows; ++t)
        off[t] = (t / (KH * KW)) * xs + (t / KW % KH) * wp + t % KW;
    for (long p0 = lo; p0 < hi; p0 += PX_CHUNK) {
        const long count = hi - p0 < PX_CHUNK ? hi - p0 : PX_CHUNK;
        for (long e = 0; e < count; ++e) base[e] = grid_index(p0 + e, oh, ow, hp, wp);
        const $T* dc = d + p0 * F;
        for (int t0 = 0; t0 < rows; t0 += PB) {
            const int nt = rows - t0 < PB ? rows - t0 : PB;
            EACH_FILTER_BLOCK_$S(DW_PX_CALL_$S, nt, F);
        }
    }
}

/* ReLU in one pass: keep = x > 0 and y = maximum(x, 0), as NumPy's two passes compute
   them (+0.0 for x <= 0 and -inf, a NaN kept), over n elements in memory order. */
void xpnet_relu_$S(const $T* restrict x, $T* restrict y, unsigned char* restrict keep, long n)
{
    for (long i = 0; i < n; ++i) {
        const int k = x[i] > 0;
        keep[i] = (unsigned char)k;
        y[i] = (k | (x[i] != x[i])) ? x[i] : ($T)0;  /* | not ||: no branch, vectorised */
    }
}
''')


# Max pooling over 2 x 2 windows at stride 2, the book's every pooling layer: $L outputs of
# a row at a time from two input rows, whose even and odd columns shuffles pull apart
# into the windows' four offsets (the rows are too short, 4-14 outputs, for a compiler's
# own vectorised loops). $I: the integer type of $T's width, what a comparison gives.
_POOL_BLOCKS = string.Template(r'''
typedef $T pv${L}_$S __attribute__((vector_size($L * sizeof($T))));
typedef $T upv${L}_$S __attribute__((vector_size($L * sizeof($T)), aligned(sizeof($T)),
                                    may_alias));
typedef $I piv${L}_$S __attribute__((vector_size($L * sizeof($T))));
typedef signed char pcv${L}_$S __attribute__((vector_size($L)));

/* o[j] = the maximum of r0[2j], r0[2j+1], r1[2j], r1[2j+1] (a NaN wins, as in NumPy's
   maximum), g[j] the offset 0-3 of the first one strictly greater than those before. */
INLINE void pool${L}_$S(const $T* r0, const $T* r1, $T* o, signed char* g)
{
    const pv${L}_$S l0 = *(const upv${L}_$S*)r0, h0 = *(const upv${L}_$S*)(r0 + $L);
    const pv${L}_$S l1 = *(const upv${L}_$S*)r1, h1 = *(const upv${L}_$S*)(r1 + $L);
    const pv${L}_$S w[4] = {SHUFFLE(l0, h0, piv${L}_$S, $EVEN),
                            SHUFFLE(l0, h0, piv${L}_$S, $ODD),
                            SHUFFLE(l1, h1, piv${L}_$S, $EVEN),
                            SHUFFLE(l1, h1, piv${L}_$S, $ODD)};
    pv${L}_$S m = w[0];
    piv${L}_$S k = (piv${L}_$S){0};
    for (int q = 1; q < 4; ++q) {
        const piv${L}_$S gt = w[q] > m, take = gt | (w[q] != w[q]);
        m = (pv${L}_$S)(((piv${L}_$S)w[q] & take) | ((piv${L}_$S)m & ~take));
        k = (k & ~gt) | (gt & q);
    }
    *(upv${L}_$S*)o = m;
    const pcv${L}_$S kc = __builtin_convertvector(k, pcv${L}_$S);
    memcpy(g, &kc, $L);
}

/* The gradient: d[j] to the window offset g[j] of rows r0 and r1, 0 to the other three
   (d[j] times 1 or 0, as NumPy's multiply by the mask: a NaN stays NaN). */
INLINE void pool_grad${L}_$S(const $T* d, const signed char* g, $T* r0, $T* r1)
{
    const pv${L}_$S dv = *(const upv${L}_$S*)d;
    pcv${L}_$S kc;
    memcpy(&kc, g, $L);
    const piv${L}_$S k = __builtin_convertvector(kc, piv${L}_$S);
    pv${L}_$S z[4];
    for (int q = 0; q < 4; ++q) z[q] = dv * __builtin_convertvector(-(k == q), pv${L}_$S);
    *(upv${L}_$S*)r0 = SHUFFLE(z[0], z[1], piv${L}_$S, $LOW);
    *(upv${L}_$S*)(r0 + $L) = SHUFFLE(z[0], z[1], piv${L}_$S, $HIGH);
    *(upv${L}_$S*)r1 = SHUFFLE(z[2], z[3], piv${L}_$S, $LOW);
    *(upv${L}_$S*)(r1 + $L) = SHUFFLE(z[2], z[3], piv${L}_$S, $HIGH);
}
''')

# Each row walks blocks of 8 outputs (4 in rows of 4-7, one at a time in shorter ones);
# a row's last block overlaps the one before instead of running past the row.
_POOL_TEMPLATE = string.Template(r'''
#define POOL_ROW_$S(BLOCK, ow, ...) do { \
        const int lanes_ = (ow) >= 8 ? 8 : (ow) >= 4 ? 4 : 1; \
        for (long j = 0; j < (ow); j += lanes_) { \
            const long at = j + lanes_ <= (ow) ? j : (ow) - lanes_; \
            if (lanes_ == 8) BLOCK(8, $S, at, __VA_ARGS__); \
            else if (lanes_ == 4) BLOCK(4, $S, at, __VA_ARGS__); \
            else BLOCK(1, $S, at, __VA_ARGS__); \
        } } while (0)
#define POOL_CALL_$S(L, S, at, r0, r1, o, g) pool##L##_##S(r0 + 2 * (at), r1 + 2 * (at), \
                                                          o + (at), g + (at))
#define POOL_GRAD_CALL_$S(L, S, at, d, g, r0, r1) pool_grad##L##_##S(d + (at), g + (at), \
                                                                    r0 + 2 * (at), r1 + 2 * (at))

INLINE void pool1_$S(const $T* r0, const $T* r1, $T* o, signed char* g)
{
    const $T v[4] = {r0[0], r0[1], r1[0], r1[1]};
    $T m = v[0];
    int k = 0;
    for (int q = 1; q < 4; ++q) {
        if (v[q] > m) { m = v[q]; k = q; }
        else if (v[q] != v[q]) m = v[q];
    }
    *o = m;
    *g = (signed char)k;
}

INLINE void pool_grad1_$S(const $T* d, const signed char* g, $T* r0, $T* r1)
{
    $T* const at[4] = {r0, r0 + 1, r1, r1 + 1};
    for (int q = 0; q < 4; ++q) *at[q] = d[0] * ($T)(g[0] == q);
}

/* out[p, i, j] = max of x[p, 2i + a, 2j + b] over a, b in {0, 1}, arg[p, i, j] the first
   maximum's offset 2a + b, for the planes p in [lo, hi): x (P, h, w), out and arg
   (P, h / 2, w / 2), each compact. */
void xpnet_max_pool_$S(const $T* x, $T* out, signed char* arg, long h, long w, long lo,
                       long hi)
{
    const long oh = h / 2, ow = w / 2;
    for (long r = lo * oh; r < hi * oh; ++r) {
        const long p = r / oh, i = r - p * oh;
        const $T* r0 = x + (p * h + 2 * i) * w;
        POOL_ROW_$S(POOL_CALL_$S, ow, r0, r0 + w, out + r * ow, arg + r * ow);
    }
}

/* dx (P, h, w) from dout and arg (P, h / 2, w / 2) for the planes in [lo, hi), h and w
   even: each pixel is in one window, so each is written once. */
void xpnet_max_pool_grad_$S(const $T* d, const signed char* arg, $T* dx, long h, long w,
                            long lo, long hi)
{
    const long oh = h / 2, ow = w / 2;
    for (long r = lo * oh; r < hi * oh; ++r) {
        const long p = r / oh, i = r - p * oh;
        $T* r0 = dx + (p * h + 2 * i) * w;
        POOL_ROW_$S(POOL_GRAD_CALL_$S, ow, d + r * ow, arg + r * ow, r0, r0 + w);
    }
}
''')


def _pool_source(t, s, i):
    blocks = ""
    for lanes in (8, 4):
        def ints(seq):
            return ", ".join(map(str, seq))
        blocks += _POOL_BLOCKS.substitute(
            T=t, S=s, I=i, L=lanes, EVEN=ints(range(0, 2 * lanes, 2)),
            ODD=ints(range(1, 2 * lanes, 2)),
            LOW=ints(v for j in range(lanes // 2) for v in (j, j + lanes)),
            HIGH=ints(v for j in range(lanes // 2, lanes) for v in (j, j + lanes)))
    return blocks + _POOL_TEMPLATE.substitute(T=t, S=s)


FLOAT_TYPES = (("float", "float32", "int"), ("double", "float64", "long long"))
SOURCE = _PRELUDE + "".join(_TEMPLATE.substitute(T=t, S=s) + _pool_source(t, s, i)
                            for t, s, i in FLOAT_TYPES)

_ARGS_CONV = ["p", "l", "p", "p", "i", "i", "i", "i", "l", "l", "l", "l", "l", "p", "l", "l", "l"]
_ARGS_DW = ["p", "l", "p", "l", "i", "i", "i", "i", "l", "p", "l", "l", "l"]
_ARGS_CONV_PX = ["p", "l", "p", "p", "i", "i", "i", "i", "l", "l", "l", "l", "p", "l", "l", "l"]
_ARGS_DW_PX = ["p", "i", "p", "l", "i", "i", "i", "l", "l", "l", "l", "p", "l", "l"]
_ARGS_RELU = ["p", "p", "p", "l"]
_ARGS_POOL = ["p", "p", "p", "l", "l", "l", "l"]
_CTYPES = {"p": ctypes.c_void_p, "l": ctypes.c_long, "i": ctypes.c_int}

_loaded = None  # (Kernels or None, reason), once per process


class Kernels:
    """The compiled library: ``conv``, ``dw``, ``conv_px``, ``dw_px``, ``relu``, ``max_pool``
    and ``max_pool_grad``, each a dict by dtype name, and each dtype's block size for
    ``conv``."""

    def __init__(self, library, path):
        self.path = path
        self.conv, self.dw, self.conv_px, self.dw_px, self.relu = {}, {}, {}, {}, {}
        self.max_pool, self.max_pool_grad = {}, {}

        def function(name, args):
            f = getattr(library, name)
            f.argtypes = [_CTYPES[a] for a in args]
            f.restype = None
            return f

        for _, dtype, _ in FLOAT_TYPES:
            self.conv[dtype] = function(f"xpnet_conv_{dtype}", _ARGS_CONV)
            self.dw[dtype] = function(f"xpnet_conv_dw_{dtype}", _ARGS_DW)
            self.conv_px[dtype] = function(f"xpnet_conv_px_{dtype}", _ARGS_CONV_PX)
            self.dw_px[dtype] = function(f"xpnet_conv_dw_px_{dtype}", _ARGS_DW_PX)
            self.relu[dtype] = function(f"xpnet_relu_{dtype}", _ARGS_RELU)
            self.max_pool[dtype] = function(f"xpnet_max_pool_{dtype}", _ARGS_POOL)
            self.max_pool_grad[dtype] = function(f"xpnet_max_pool_grad_{dtype}", _ARGS_POOL)
        # outputs a block computes: grids are rounded up to whole blocks
        self.block = {"float32": library.xpnet_block_floats(),
                      "float64": library.xpnet_block_doubles()}
        self.vector_bytes = library.xpnet_vector_bytes()


def cache_dir(environ=None):
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_ENV_VAR):
        return pathlib.Path(environ[CACHE_ENV_VAR])
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "xpnet"


def _cpu_signature():
    # -march=native code is only good for this CPU: a cache shared between
    # machines (a network home folder) must not hand one CPU's build to another.
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features", "model name")):
                    return line
    except OSError:
        pass
    return platform.processor() + platform.machine()


def _compiler(environ):
    cc = environ.get("CC")
    if cc:
        return shutil.which(cc)
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def build(folder, environ=None, flags=FLAGS):
    """The kernels' shared library in ``folder``, compiled with ``flags`` unless there
    already: its path.

    Written to a temporary name and renamed, so a concurrent or interrupted
    build never leaves a half-written library behind. Raises ``RuntimeError``
    with the compiler's message when it fails.
    """
    environ = os.environ if environ is None else environ
    cc = _compiler(environ)
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang on PATH, or $CC)")
    key = hashlib.sha256("\n".join([SOURCE, cc, " ".join(flags), _cpu_signature()])
                         .encode()).hexdigest()[:16]
    folder = pathlib.Path(folder)
    path = folder / f"cpu_kernels-{key}.so"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src = pathlib.Path(tmp) / "cpu_kernels.c"
        src.write_text(SOURCE)
        out = pathlib.Path(tmp) / path.name
        flags = list(flags)
        done = subprocess.run([cc, *flags, "-o", str(out), str(src)],
                              capture_output=True, text=True)
        if done.returncode != 0 and "-march=native" in flags:  # not on some clang targets
            flags.remove("-march=native")
            done = subprocess.run([cc, *flags, "-o", str(out), str(src)],
                                  capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{cc} failed to build the host kernels: "
                               f"{done.stderr.strip()[-2000:]}")
        os.replace(out, path)
    return path


def load(environ=None):
    """``(Kernels, reason)`` the first time it succeeds, or ``(None, reason)``: once a process."""
    global _loaded
    if _loaded is not None and environ is None:
        return _loaded
    env = os.environ if environ is None else environ
    value = env.get(ENV_VAR, "1")
    if value not in ("0", "1"):
        raise ValueError(f"{ENV_VAR}={value!r}: expected 1 (the compiled kernels where a C "
                         f"compiler builds them, the default) or 0 (NumPy only: im2col + "
                         f"BLAS)")
    if value == "0":
        result = (None, f"off ({ENV_VAR}=0): NumPy only, im2col + BLAS")
    else:
        try:
            path = build(cache_dir(env), env)
            result = (Kernels(ctypes.CDLL(str(path)), path),
                      f"compiled kernels: the direct convolution, max pooling, ReLU ({path})")
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            result = (None, f"NumPy only, im2col + BLAS: the kernels are not built ({e})")
    if environ is None:
        _loaded = result
    return result

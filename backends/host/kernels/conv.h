/* The direct convolution at stride 1, for one type (T, S: see prelude.h).

   The input is zero-padded, each channel one flat row of hp x wp images, so filter
   tap (i, k) is the fixed shift i * wp + k along the row:

       out[f, j] = b[f] + sum_{c, i, k} W[f, c, i, k] * x[c, j + i * wp + k]

   for the grid position j = (n hp + y) wp + x of output pixel (n, y, x).

   - xpnet_conv and xpnet_conv_dw (the grid kernels) compute a block of consecutive
     grid positions at once, a few vector registers filled by unaligned loads, whatever
     the number of filters; a block's valid outputs go to the compact channel-major
     output (F, N, oh, ow) and the rest (a border's worth of work) is dropped. The
     forward keeps GF filters x JB vectors of positions in registers (prelude.h): each
     tap's JB loads feed GF x JB multiply-adds. dW sums
     dout placed on the same grid, zero where there is no output, against the shifted rows.
   - xpnet_conv_px and xpnet_conv_dw_px vectorise over the filters instead: a block of
     valid output pixels times up to four vectors of filters (laid out (C, fh, fw, F)),
     dW from dout copied pixel-major. No border; they pay from two vectors of filters up.

   Blocks are called with a literal nf / nc / nv so the compiler unrolls them and keeps
   acc in registers. */

enum { NAME(vlen) = VB / sizeof(T), NAME(blen) = JB * VB / sizeof(T) };
typedef T NAME(vec) __attribute__((vector_size(VB)));
typedef T NAME(uvec) __attribute__((vector_size(VB), aligned(sizeof(T)), may_alias));
#define VLEN NAME(vlen)  /* T's in a vector */
#define BLEN NAME(blen)  /* grid positions a grid block computes */
#define VEC NAME(vec)
#define UVEC NAME(uvec)  /* an unaligned vector */

/* The block's valid outputs (grid row y < oh, column x < ow) to the compact
   (F, N, oh, ow) output, a run of a grid row at a time. */
INLINE void NAME(store_runs)(const int nf, T tmp[GF][BLEN], T* out, long os, long j0,
                             long hp, long wp, long oh, long ow, long cells)
{
    const long image = hp * wp;
    long n = j0 / image, y = (j0 - n * image) / wp, x = j0 - n * image - y * wp;
    for (long l = 0; l < BLEN && j0 + l < cells;) {
        long run = wp - x < BLEN - l ? wp - x : BLEN - l;
        if (y < oh && x < ow) {
            const long m = ow - x < run ? ow - x : run;
            T* dst = out + (n * oh + y) * ow + x;
            for (int a = 0; a < nf; ++a) memcpy(dst + a * os, &tmp[a][l], m * sizeof(T));
        }
        l += run;
        x += run;
        if (x == wp) {
            x = 0;
            if (++y == hp) { y = 0; ++n; }
        }
    }
}

INLINE void NAME(conv_block)(const int nf, const T* x, long xs, const T* w, const T* b,
                             int C, int KH, int KW, long wp, long j0, T tmp[GF][BLEN])
{
    const long taps = (long)C * KH * KW;
    VEC acc[GF][JB];
    for (int a = 0; a < nf; ++a)
        for (int v = 0; v < JB; ++v) acc[a][v] = (VEC){0} + b[a];
    for (int c = 0; c < C; ++c) {
        const T* xc = x + c * xs + j0;
        const T* wc = w + (long)c * KH * KW;
        for (int i = 0; i < KH; ++i)
            for (int k = 0; k < KW; ++k) {
                const T* p = xc + i * wp + k;
                VEC xv[JB];
                for (int v = 0; v < JB; ++v) xv[v] = *(const UVEC*)(p + v * VLEN);
                for (int a = 0; a < nf; ++a) {
                    const T s = wc[a * taps + i * KW + k];
                    for (int v = 0; v < JB; ++v) acc[a][v] += s * xv[v];
                }
            }
    }
    for (int a = 0; a < nf; ++a)
        for (int v = 0; v < JB; ++v) *(UVEC*)(&tmp[a][v * VLEN]) = acc[a][v];
}

/* out[f, n, y, x] = b[f] + sum_{c,i,k} w[f,c,i,k] xg[c, j + i wp + k], j = (n hp + y) wp + x,
   for y < oh, x < ow: the grid positions j in [lo, hi) (whole blocks) of a grid of `cells`
   positions. xg's rows (stride xs) reach j + (KH-1) wp + KW-1; out's rows have stride os. */
void NAME(xpnet_conv)(const T* x, long xs, const T* w, const T* b, int F, int C, int KH,
                      int KW, long hp, long wp, long oh, long ow, long cells, T* out, long os,
                      long lo, long hi)
{
    const long per_filter = (long)C * KH * KW;
    T tmp[GF][BLEN] __attribute__((aligned(64)));
    for (long j0 = lo; j0 < hi; j0 += BLEN) {
        int f = 0;
        for (; f + GF <= F; f += GF) {
            NAME(conv_block)(GF, x, xs, w + f * per_filter, b + f, C, KH, KW, wp, j0, tmp);
            NAME(store_runs)(GF, tmp, out + f * os, os, j0, hp, wp, oh, ow, cells);
        }
#if GF > FB
        for (; f + FB <= F; f += FB) {  /* the rest, FB at a time */
            NAME(conv_block)(FB, x, xs, w + f * per_filter, b + f, C, KH, KW, wp, j0, tmp);
            NAME(store_runs)(FB, tmp, out + f * os, os, j0, hp, wp, oh, ow, cells);
        }
#endif
        for (; f < F; ++f) {
            NAME(conv_block)(1, x, xs, w + f * per_filter, b + f, C, KH, KW, wp, j0, tmp);
            NAME(store_runs)(1, tmp, out + f * os, os, j0, hp, wp, oh, ow, cells);
        }
    }
}

INLINE void NAME(dw_block)(const int nf, const int nr, const T* d, long ds, const T* x,
                           const long* off, long lo, long hi, T* dw, long rows)
{
    VEC acc[FB][CB];
    for (int a = 0; a < nf; ++a)
        for (int r = 0; r < nr; ++r) acc[a][r] = (VEC){0};
    for (long j = lo; j < hi; j += VLEN) {
        VEC dv[FB], xv[CB];
        for (int a = 0; a < nf; ++a) dv[a] = *(const UVEC*)(d + a * ds + j);
        for (int r = 0; r < nr; ++r) xv[r] = *(const UVEC*)(x + off[r] + j);
        for (int a = 0; a < nf; ++a)
            for (int r = 0; r < nr; ++r) acc[a][r] += dv[a] * xv[r];
    }
    for (int a = 0; a < nf; ++a)
        for (int r = 0; r < nr; ++r) {
            T s = 0;
            for (int l = 0; l < VLEN; ++l) s += acc[a][r][l];
            dw[a * rows + r] += s;
        }
}

/* dw[f, t] += sum_{j in [lo, hi)} d[f, j] xg[c, j + i wp + k] for each tap t = (c, i, k);
   lo and hi whole vectors, d zero wherever the grid has no output. A chunk of j at a
   time, so the chunk's rows of d and xg stay in cache while every pair is summed. */
void NAME(xpnet_conv_dw)(const T* d, long ds, const T* x, long xs, int F, int C, int KH,
                         int KW, long wp, T* dw, long lo, long hi, long chunk)
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
                NAME(dw_block)(FB, CB, d + f * ds, ds, x, off + t, j0, j1, dw + f * rows + t, rows);
            for (; t < rows; ++t)
                NAME(dw_block)(FB, 1, d + f * ds, ds, x, off + t, j0, j1, dw + f * rows + t, rows);
        }
        for (; f < F; ++f) {
            int t = 0;
            for (; t + CB <= rows; t += CB)
                NAME(dw_block)(1, CB, d + f * ds, ds, x, off + t, j0, j1, dw + f * rows + t, rows);
            for (; t < rows; ++t)
                NAME(dw_block)(1, 1, d + f * ds, ds, x, off + t, j0, j1, dw + f * rows + t, rows);
        }
    }
}

/* Filter-vectorised: a block of PB output pixels (only valid ones, no grid waste)
   times nv vectors of filters; wt is (C, KH, KW, F), each tap a row of F filters. */
INLINE void NAME(px_block)(const int nb, const int nv, const T* x, long xs, const T* wt,
                           const T* b, int F, int C, int KH, int KW, long wp, const long* base,
                           T* out, long os, long p0)
{
    VEC acc[PB][FV];
    for (int q = 0; q < nb; ++q)
        for (int v = 0; v < nv; ++v) acc[q][v] = *(const UVEC*)(b + v * VLEN);
    for (int c = 0; c < C; ++c) {
        const T* xc = x + c * xs;
        for (int i = 0; i < KH; ++i)
            for (int k = 0; k < KW; ++k) {
                const T* wv = wt + ((long)(c * KH + i) * KW + k) * F;
                VEC w[FV];
                for (int v = 0; v < nv; ++v) w[v] = *(const UVEC*)(wv + v * VLEN);
                const long off = i * wp + k;
                for (int q = 0; q < nb; ++q) {
                    const T s = xc[base[q] + off];
                    for (int v = 0; v < nv; ++v) acc[q][v] += s * w[v];
                }
            }
    }
    for (int v = 0; v < nv; ++v)
        for (int l = 0; l < VLEN; ++l)
            for (int q = 0; q < nb; ++q) out[(long)(v * VLEN + l) * os + p0 + q] = acc[q][v][l];
}

/* CALL(n, nv, q) over the filters f0 = 0, FV vectors, ... (nv of them in the last step):
   one block of n = PB pixels (or taps), else n one at a time. */
#define EACH_FILTER_BLOCK(CALL, n, F) \
    for (int f0 = 0; f0 < (F); f0 += FV * VLEN) { \
        const int nv = ((F) - f0) / VLEN < FV ? ((F) - f0) / VLEN : FV; \
        if ((n) == PB) \
            BY_NV(CALL, PB, nv, 0); \
        else \
            for (int q = 0; q < (n); ++q) BY_NV(CALL, 1, nv, q); \
    }

#define PX_CALL(nb, nv, q) NAME(px_block)(nb, nv, x, xs, wt + f0, b + f0, F, C, KH, KW, wp, \
                                          base + (q), out + (long)f0 * os, os, p0 + (q))

/* out[f, n, y, x] as xpnet_conv for the output pixels p in [lo, hi) of (N, oh, ow),
   F a whole number of vectors; wt the filters as (C, KH, KW, F). */
void NAME(xpnet_conv_px)(const T* x, long xs, const T* wt, const T* b, int F, int C, int KH,
                         int KW, long hp, long wp, long oh, long ow, T* out, long os, long lo,
                         long hi)
{
    long base[PB];
    for (long p0 = lo; p0 < hi; p0 += PB) {
        const int nb = hi - p0 < PB ? (int)(hi - p0) : PB;
        for (int q = 0; q < nb; ++q) base[q] = grid_index(p0 + q, oh, ow, hp, wp);
        EACH_FILTER_BLOCK(PX_CALL, nb, F);
    }
}

INLINE void NAME(dw_px_block)(const int nt, const int nv, const T* d, int F, const T* x,
                              const long* off, const long* base, long count, T* dwt)
{
    VEC acc[PB][FV];
    for (int q = 0; q < nt; ++q)
        for (int v = 0; v < nv; ++v) acc[q][v] = (VEC){0};
    for (long e = 0; e < count; ++e) {
        VEC dv[FV];
        for (int v = 0; v < nv; ++v) dv[v] = *(const UVEC*)(d + e * F + v * VLEN);
        for (int q = 0; q < nt; ++q) {
            const T s = x[off[q] + base[e]];
            for (int v = 0; v < nv; ++v) acc[q][v] += s * dv[v];
        }
    }
    for (int q = 0; q < nt; ++q)
        for (int v = 0; v < nv; ++v)
            *(UVEC*)(dwt + (long)q * F + v * VLEN) += acc[q][v];
}

#define DW_PX_CALL(nt, nv, q) NAME(dw_px_block)(nt, nv, dc + f0, F, x, off + t0 + (q), base, \
                                                count, dwt + (long)(t0 + (q)) * F + f0)

/* dwt[t, f] += sum_p d[p, f] xg[c, grid(p) + i wp + k] for each tap t = (c, i, k), over the
   output pixels p in [lo, hi); d pixel-major (P, F), F a whole number of vectors. */
void NAME(xpnet_conv_dw_px)(const T* d, int F, const T* x, long xs, int C, int KH, int KW,
                            long hp, long wp, long oh, long ow, T* dwt, long lo, long hi)
{
    const int rows = C * KH * KW;
    long off[rows], base[PX_CHUNK];
    for (int t = 0; t < rows; ++t)
        off[t] = (t / (KH * KW)) * xs + (t / KW % KH) * wp + t % KW;
    for (long p0 = lo; p0 < hi; p0 += PX_CHUNK) {
        const long count = hi - p0 < PX_CHUNK ? hi - p0 : PX_CHUNK;
        for (long e = 0; e < count; ++e) base[e] = grid_index(p0 + e, oh, ow, hp, wp);
        const T* dc = d + p0 * F;
        for (int t0 = 0; t0 < rows; t0 += PB) {
            const int nt = rows - t0 < PB ? rows - t0 : PB;
            EACH_FILTER_BLOCK(DW_PX_CALL, nt, F);
        }
    }
}

#undef EACH_FILTER_BLOCK
#undef PX_CALL
#undef DW_PX_CALL
#undef VLEN
#undef BLEN
#undef VEC
#undef UVEC

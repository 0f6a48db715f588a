/* What every host kernel shares: the vector width, the register blocks, and helpers.
   The kernels are written once with T (the C float type), S (the dtype's name, which
   ends every function's name: xpnet_conv_float32) and I (the integer of T's width);
   xpnet_host.c includes them once per type. */
#ifndef XPNET_PRELUDE_H
#define XPNET_PRELUDE_H

#ifdef __AVX512F__
#define VB 64  /* bytes in a vector register */
#define JB 3   /* vectors of outputs a grid block keeps in registers, per filter */
#define GF 8   /* filters a grid block keeps in registers: GF x JB accumulators */
#define PB 6   /* pixels (or taps) a filter-vectorised block keeps in registers */
#else
#define VB 32
#define JB 2
#if defined(__AVX2__)
#define GF 6   /* AVX2's 16 registers: 12 accumulators */
#else
#define GF 4   /* other targets: not measured with more */
#endif
#define PB 3
#endif
#define FV 4   /* vectors of filters a filter-vectorised block keeps in registers */
#define PX_CHUNK 128  /* pixels a filter-vectorised dW pass sums at a time: in L1 */
#define FB 4   /* filters a dW block keeps in registers (and a grid block past GF's) */
#define CB 4   /* filter taps a dW block keeps in registers */
#include <string.h>
#define INLINE static inline __attribute__((always_inline))

/* NAME(f): f_S, this type's copy of f (NAME(xpnet_conv) is xpnet_conv_float32). */
#define XPNET_PASTE(a, b) a##_##b
#define XPNET_CAT(a, b) XPNET_PASTE(a, b)
#define NAME(f) XPNET_CAT(f, S)

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

#endif

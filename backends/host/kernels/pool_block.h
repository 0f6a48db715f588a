/* L outputs of a pooled row from two input rows, for one type and one L (8 or 4): the
   rows' even and odd columns pulled apart by shuffles into the windows' four offsets
   (the rows are too short, 4-14 outputs, for a compiler's own vectorised loops). pool.h
   defines L and the shuffles' index lists EVEN, ODD, LOW and HIGH before each include. */

#define PV NAME(XPNET_CAT(pv, L))    /* L T's */
#define UPV NAME(XPNET_CAT(upv, L))  /* the same, unaligned */
#define PIV NAME(XPNET_CAT(piv, L))  /* L integers of T's width: what a comparison gives */
#define PCV NAME(XPNET_CAT(pcv, L))  /* L signed chars: the window offsets */
typedef T PV __attribute__((vector_size(L * sizeof(T))));
typedef T UPV __attribute__((vector_size(L * sizeof(T)), aligned(sizeof(T)), may_alias));
typedef I PIV __attribute__((vector_size(L * sizeof(T))));
typedef signed char PCV __attribute__((vector_size(L)));

/* o[j] = the maximum of r0[2j], r0[2j+1], r1[2j], r1[2j+1] (a NaN wins, as in NumPy's
   maximum), g[j] the offset 0-3 of the first one strictly greater than those before. */
INLINE void NAME(XPNET_CAT(pool, L))(const T* r0, const T* r1, T* o, signed char* g)
{
    const PV l0 = *(const UPV*)r0, h0 = *(const UPV*)(r0 + L);
    const PV l1 = *(const UPV*)r1, h1 = *(const UPV*)(r1 + L);
    const PV w[4] = {SHUFFLE(l0, h0, PIV, EVEN), SHUFFLE(l0, h0, PIV, ODD),
                     SHUFFLE(l1, h1, PIV, EVEN), SHUFFLE(l1, h1, PIV, ODD)};
    PV m = w[0];
    PIV k = (PIV){0};
    for (int q = 1; q < 4; ++q) {
        const PIV gt = w[q] > m, take = gt | (w[q] != w[q]);
        m = (PV)(((PIV)w[q] & take) | ((PIV)m & ~take));
        k = (k & ~gt) | (gt & q);
    }
    *(UPV*)o = m;
    const PCV kc = __builtin_convertvector(k, PCV);
    memcpy(g, &kc, L);
}

/* The gradient: d[j] to the window offset g[j] of rows r0 and r1, 0 to the other three
   (d[j] times 1 or 0, as NumPy's multiply by the mask: a NaN stays NaN). */
INLINE void NAME(XPNET_CAT(pool_grad, L))(const T* d, const signed char* g, T* r0, T* r1)
{
    const PV dv = *(const UPV*)d;
    PCV kc;
    memcpy(&kc, g, L);
    const PIV k = __builtin_convertvector(kc, PIV);
    PV z[4];
    for (int q = 0; q < 4; ++q) z[q] = dv * __builtin_convertvector(-(k == q), PV);
    *(UPV*)r0 = SHUFFLE(z[0], z[1], PIV, LOW);
    *(UPV*)(r0 + L) = SHUFFLE(z[0], z[1], PIV, HIGH);
    *(UPV*)r1 = SHUFFLE(z[2], z[3], PIV, LOW);
    *(UPV*)(r1 + L) = SHUFFLE(z[2], z[3], PIV, HIGH);
}

#undef PV
#undef UPV
#undef PIV
#undef PCV

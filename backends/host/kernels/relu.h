/* ReLU in one pass: keep = x > 0 and y = maximum(x, 0), as NumPy's two passes compute
   them (+0.0 for x <= 0 and -inf, a NaN kept), over n elements in memory order. */
void NAME(xpnet_relu)(const T* restrict x, T* restrict y, unsigned char* restrict keep, long n)
{
    for (long i = 0; i < n; ++i) {
        const int k = x[i] > 0;
        keep[i] = (unsigned char)k;
        y[i] = (k | (x[i] != x[i])) ? x[i] : (T)0;  /* | not ||: no branch, vectorised */
    }
}

/* The host kernels' one compilation unit: each kernel file once per type.

   backends/host/build.py compiles this file (cc -O3 -march=native -shared) into the
   library it loads with ctypes; the kernels are described in conv.h, relu.h and
   pool.h, and in backends/host/conv.py and ops.py, which drive them. */
#include "prelude.h"

#define T float
#define S float32
#define I int
#include "conv.h"
#include "relu.h"
#include "pool.h"
#undef T
#undef S
#undef I

#define T double
#define S float64
#define I long long
#include "conv.h"
#include "relu.h"
#include "pool.h"
#undef T
#undef S
#undef I

"""backends/cuda/kernels/*.cu, compiled by NVRTC as CuPy compiles them: no GPU needed.

The kernels' arithmetic is tested without a GPU by building their sources as
C++ (tests/backends/cuda/cpp_build.py); that cannot see a CUDA-only mistake (an
overload C++ lacks, a missing ``;`` in an ElementwiseKernel's body, a host
function called from device code). NVRTC, CUDA's runtime compiler, needs no
GPU: here it compiles each source as CuPy would, for every type it is
launched with, so such a mistake fails here instead of on a rare GPU run.
NVRTC comes with CUDA (and with CuPy's wheels' dependencies) or alone from
PyPI (``nvidia-cuda-nvrtc``, which the test extra installs on Linux x86-64 and
Arm; ``nvidia-cuda-nvrtc-cu12`` for CUDA 12); without it these tests skip. ``XPNET_NVRTC`` names the library file.

The kernel files are compiled as they are; the ElementwiseKernel bodies,
inline beside their launcher, are read from ``backends/cuda/ops.py``'s text,
not imported: it imports CuPy, which needs CUDA's other libraries to load.
"""

import ast
import ctypes
import ctypes.util
import glob
import os
import pathlib
import sys

import pytest

from backends.cuda import gemm as gemm_kernels
from backends.cuda.sources import names, source, with_defines

CUDA = pathlib.Path(__file__).resolve().parents[3] / "backends" / "cuda"
ARCH = "compute_80"  # Ampere and later (the H100 is compute_90): what NVRTC 12 and 13 take


def _find_nvrtc():
    candidates = [os.environ.get("XPNET_NVRTC")]
    for folder in sys.path:  # the pip wheels: nvidia/cuda_nvrtc/lib (CUDA 12), nvidia/cu13/lib
        candidates += sorted(glob.glob(os.path.join(folder or ".", "nvidia", "*", "lib",
                                                    "libnvrtc.so*")))
    candidates += sorted(glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*"))
    candidates.append(ctypes.util.find_library("nvrtc"))
    for path in filter(None, candidates):
        if "builtins" in path or ".alt." in path:
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError:
            continue
    return None, None


NVRTC, NVRTC_PATH = _find_nvrtc()
pytestmark = pytest.mark.skipif(
    NVRTC is None, reason="no NVRTC to compile the CUDA sources with (pip install "
                          "nvidia-cuda-nvrtc, or XPNET_NVRTC=/path/to/libnvrtc.so)")


def compile_cuda(source, name):
    """NVRTC's log for ``source``; raises AssertionError with it if the compile fails."""
    program = ctypes.c_void_p()
    assert NVRTC.nvrtcCreateProgram(ctypes.byref(program), source.encode(),
                                    f"{name}.cu".encode(), 0, None, None) == 0
    try:
        options = (ctypes.c_char_p * 1)(f"--gpu-architecture={ARCH}".encode())
        status = NVRTC.nvrtcCompileProgram(program, 1, options)
        size = ctypes.c_size_t()
        NVRTC.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        NVRTC.nvrtcGetProgramLog(program, log)
    finally:
        NVRTC.nvrtcDestroyProgram(ctypes.byref(program))
    text = log.value.decode(errors="replace").strip()
    assert status == 0, f"NVRTC ({NVRTC_PATH}) failed on {name}:\n{text}"
    return text


def _module(name):
    return ast.parse((CUDA / f"{name}.py").read_text())


def _elementwise_kernels(tree):
    """``(in_params, out_params, operation, name)`` of each ``cupy.ElementwiseKernel(...)``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "ElementwiseKernel":
            found.append(tuple(ast.literal_eval(a) for a in node.args))
    return found


FLOATS = ("float", "double")
LABELS = ("int", "long long", "unsigned char")  # int32 and int64 labels, and uint8 ones

# (test id, file, #defines): each kernel file with each set of types it is built with
RAW = ([(f"softmax_ce-{t}-{l}", "softmax_ce.cu", {"T": t, "L": l})
        for t in FLOATS for l in LABELS]
       + [(f"conv-{t}-{a}", "conv.cu", {"T": t, "A": a})
          for t in FLOATS for a in ("signed char", "int")]
       + [(f"gemm_block-{t}", "gemm_block.cu",
           {"T": t, "TM": gemm_kernels.BLOCK_TM, "KSPLIT": gemm_kernels.BLOCK_KSPLIT})
          for t in FLOATS]
       + [(f"gemm_tiles-{t}-{tm}x{tn}", "gemm_tiles.cu", {"T": t, "TM": tm, "TN": tn})
          for t in FLOATS for tm, tn in gemm_kernels.TILES]
       + [(f"gemm_sum-{t}", "gemm_sum.cu", {"T": t}) for t in FLOATS]
       + [(f"graph-{t}-{l}-{i}", "graph.cu", {"T": t, "L": l, "I": i})
          for t in FLOATS for l in ("int", "long long") for i in ("int", "long long")]
       + [("uniform", "uniform.cu", {})])


def test_every_kernel_file_is_compiled_here():
    assert sorted({file for _, file, _ in RAW}) == names()


@pytest.mark.parametrize("file, defines", [r[1:] for r in RAW], ids=[r[0] for r in RAW])
def test_each_kernel_file_compiles_for_each_type_it_is_launched_with(file, defines):
    # as backends.cuda.compiler builds it: the #defines, then the file
    assert "warning" not in compile_cuda(with_defines(source(file), **defines), file).lower()


ELEMENTWISE = _elementwise_kernels(_module("ops"))
NAMED_TYPES = {"float32": "float", "float64": "double", "bool": "bool", "int32": "int",
               "int64": "long long"}


def elementwise_source(in_params, out_params, operation, name, t):
    """What CuPy makes of an ElementwiseKernel for type ``T = t``: a grid-stride loop whose
    body sees each input as a value and each output as a reference to its element."""
    params, bindings = [], []
    for i, param in enumerate(p.strip() for p in f"{in_params}, {out_params}".split(",")):
        kind, var = param.split()
        ctype = NAMED_TYPES.get(kind, "T")
        output = i >= len(in_params.split(","))
        params.append(f"{'' if output else 'const '}{ctype}* {var}_")
        bindings.append(f"{ctype}{'&' if output else ''} {var} = {var}_[i];")
    return (f"typedef {t} T;\n"
            f'extern "C" __global__ void {name}({", ".join(params)}, long long n)\n'
            "{\n    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;\n"
            "         i += (long long)blockDim.x * gridDim.x) {\n"
            f"        {' '.join(bindings)}\n        {operation};\n    }}\n}}\n")


def test_the_elementwise_kernels_are_all_found():
    assert sorted(k[3] for k in ELEMENTWISE) == ["xpnet_adam", "xpnet_adam_step_size",
                                                 "xpnet_relu", "xpnet_sgd"]


@pytest.mark.parametrize("t", FLOATS)
@pytest.mark.parametrize("kernel", ELEMENTWISE, ids=[k[3] for k in ELEMENTWISE])
def test_each_elementwise_kernel_compiles(kernel, t):
    assert "warning" not in compile_cuda(elementwise_source(*kernel, t), kernel[3]).lower()


def test_a_mistake_in_a_source_fails_with_nvrtcs_message():
    with pytest.raises(AssertionError, match='xpnet_broken:\n.*identifier "x" is undefined'):
        compile_cuda('extern "C" __global__ void xpnet_broken(float* y) { y[0] = x; }',
                     "xpnet_broken")

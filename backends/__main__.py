"""``python -m backends``: which backend XPNET_BACKEND picks here and why, and the settings."""

import argparse
import os
import platform
import sys

import numpy

import backends
from backends.host import threads
from backends.registry import REGISTRY


def main(argv=None):
    argparse.ArgumentParser(
        prog="python -m backends", description=__doc__.strip("`").replace("``", "") +
        " Takes no options: the environment (XPNET_*) is what it reports on.").parse_args(argv)
    try:
        b = backends.current()  # reads (and checks) every setting
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    settings = backends.settings()
    print(f"backend: {b.name}")
    print(f"reason:  {b.reason}")
    print(f"device:  {b.description}")
    print(f"python:  {platform.python_version()}")
    print(f"numpy:   {numpy.__version__}")
    host = backends.ops_for(numpy.zeros(1))
    numpy_backend = backends.backend_class("numpy")
    _, kernels_why = numpy_backend.kernels(settings)
    print(f"host:    {host.threads} thread(s) for the CPU's passes (XPNET_HOST_THREADS="
          f"{settings.host_threads or 'unset'}); {threads.blas_summary()}")
    print(f"kernels: {kernels_why}")
    if b.name == "cupy":
        gpu = backends.ops_for(b.xp.zeros(1))
        rt = b.xp.cuda.runtime.runtimeGetVersion()
        drv = b.xp.cuda.runtime.driverGetVersion()
        print(f"CUDA:    runtime {rt // 1000}.{rt % 1000 // 10}, "
              f"driver {drv // 1000}.{drv % 1000 // 10}")
        print(f"graph:   the CUDA-graph step multiplies on {_graph_products(gpu, type(b))} "
              f"(XPNET_GRAPH_GEMM={settings.graph_gemm})")
    print("settings (XPNET_*, read once; README: 'Settings'):")
    for line in settings.lines():
        print(f"  {line}")
    print("namespaces (XPNET_BACKEND, and XPNET_DEVICE for the device):")
    for name in backends.NAMES:
        cls = backends.backend_class(name)
        usable, why = cls.usable()
        version = f" {cls.version()}" if usable else ""
        print(f"  {name:17}{'usable' if usable else 'unusable'}{version}: {why}")
    for name, why in REGISTRY.refused.items():
        print(f"  {name:17}refused: {why}")
    print(f"available: {', '.join(backends.available())}")
    print(f"mpi:     {_mpi()}")
    print(f"nccl:    {_nccl()}")
    return 0


def _graph_products(gpu, cupy_backend):
    """Where the CUDA-graph step's products go, in words, under ``graph_gemm``."""
    where = {"auto": "cuBLAS (a handle of our own) for large products, our kernel for "
                     "small ones", "cublas": "cuBLAS (a handle of our own)",
             "own": "our GEMM kernels"}[gpu.graph_gemm]
    if gpu.graph_gemm == "own":
        return where
    _, why = cupy_backend.cublas_handle()
    if why and gpu.graph_gemm == "auto":
        return f"our GEMM kernels: no cuBLAS handle of our own ({why})"
    if why:  # 'cublas' asked for, and not to be had: recording fails, eager runs
        return (f"nothing: no cuBLAS handle of our own ({why}), so the step cannot be "
                f"recorded and runs eagerly")
    return where


def _mpi():
    """mpi4py and the MPI library under it, for data-parallel training (mpiexec)."""
    try:
        import mpi4py
    except ImportError:
        return "mpi4py not installed (pip install 'xpnet[distributed]' for mpiexec runs)"
    try:
        from mpi4py import MPI
        library = " ".join(MPI.Get_library_version().splitlines()[0].split())  # MPICH pads it
    except Exception as e:  # mpi4py without a usable MPI library
        return f"mpi4py {mpi4py.__version__}, but no MPI library loads ({type(e).__name__}: {e})"
    return f"mpi4py {mpi4py.__version__} on {library}"


def _nccl():
    """CuPy's NCCL binding, for GPU-to-GPU collectives."""
    usable, why = backends.backend_class("cupy").usable()
    if not usable:
        return f"not usable: no CuPy GPU ({why})"
    try:
        from backends.cuda import nccl
        return f"NCCL {nccl.version()} (through CuPy): one GPU a rank sums GPU to GPU"
    except Exception as e:
        return f"not usable: CuPy has no NCCL here ({type(e).__name__}: {e})"


def _run():
    """``main()``, quiet when the reader of its output goes first (``| head``): the rest of
    the report is dropped, as other command-line tools do, not a traceback printed."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # stdout pointed at nothing, so that the interpreter's own flush at exit stays quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status


if __name__ == "__main__":
    sys.exit(_run())

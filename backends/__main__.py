"""``python -m backends``: which backend XPNET_BACKEND picks here, and why."""

import os
import platform
import sys

import numpy

import backends
from backends import namespaces, ops_for
from backends.host import build, threads


def main():
    try:
        b = backends.current()
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"backend: {b.name}")
    print(f"reason:  {b.reason}")
    print(f"device:  {b.description}")
    print(f"python:  {platform.python_version()}")
    print(f"numpy:   {numpy.__version__}")
    try:  # each reads a setting of the environment, and refuses a bad one by name
        host = ops_for(numpy.zeros(1))  # XPNET_HOST_THREADS
        _, conv_why = build.load()  # XPNET_HOST_KERNELS
        gpu = ops_for(b.xp.zeros(1)) if b.name == "cupy" else None  # XPNET_GRAPH_GEMM
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"host:    {host.threads} thread(s) for the CPU's passes ({threads.ENV_VAR}="
          f"{os.environ.get(threads.ENV_VAR, 'unset')}); {threads.blas_summary()}")
    print(f"kernels: {conv_why}")
    if gpu is not None:
        rt = b.xp.cuda.runtime.runtimeGetVersion()
        drv = b.xp.cuda.runtime.driverGetVersion()
        print(f"CUDA:    runtime {rt // 1000}.{rt % 1000 // 10}, "
              f"driver {drv // 1000}.{drv % 1000 // 10}")
        where = {"auto": "cuBLAS (a handle of our own) for large products, our kernel for "
                         "small ones", "cublas": "cuBLAS (a handle of our own)",
                 "own": "our GEMM kernels"}[gpu.graph_gemm]
        if gpu.graph_gemm != "own":
            from backends.cuda import cublas
            _, why = cublas.handle_or_reason()
            if why and gpu.graph_gemm == "auto":
                where = f"our GEMM kernels: no cuBLAS handle of our own ({why})"
            elif why:  # 'cublas' asked for, and not to be had: recording fails, eager runs
                where = (f"nothing: no cuBLAS handle of our own ({why}), so the step "
                         f"cannot be recorded and runs eagerly")
        print(f"graph:   the CUDA-graph step multiplies on {where} "
              f"(XPNET_GRAPH_GEMM={os.environ.get('XPNET_GRAPH_GEMM', 'unset')})")
    print("namespaces (XPNET_BACKEND, and XPNET_DEVICE for the device):")
    for name, library in namespaces.LIBRARIES.items():
        usable, why = library.usable()
        version = ""
        if usable:
            module = sys.modules.get(name if name != "torch" else "torch")
            version = f" {getattr(module, '__version__', '')}" if module else ""
        print(f"  {name:17}{'usable' if usable else 'unusable'}{version}: {why}")
    for name, why in namespaces.REFUSED.items():
        print(f"  {name:17}refused: {why}")
    print(f"available: {', '.join(backends.available())}")
    print(f"mpi:     {_mpi()}")
    print(f"nccl:    {_nccl()}")
    return 0


def _mpi():
    """mpi4py and the MPI library under it, for data-parallel training (mpiexec)."""
    try:
        import mpi4py
    except ImportError:
        return "mpi4py not installed (pip install 'xpnet[distributed]' for mpiexec runs)"
    try:
        from mpi4py import MPI
        library = MPI.Get_library_version().splitlines()[0].strip()
    except Exception as e:  # mpi4py without a usable MPI library
        return f"mpi4py {mpi4py.__version__}, but no MPI library loads ({type(e).__name__}: {e})"
    return f"mpi4py {mpi4py.__version__} on {library}"


def _nccl():
    """CuPy's NCCL binding, for GPU-to-GPU collectives."""
    cupy, why = backends._probe_cupy()
    if cupy is None:
        return f"not usable: no CuPy GPU ({why})"
    try:
        from backends.cuda import nccl
        return f"NCCL {nccl.version()} (through CuPy): one GPU a rank sums GPU to GPU"
    except Exception as e:
        return f"not usable: CuPy has no NCCL here ({type(e).__name__}: {e})"


if __name__ == "__main__":
    sys.exit(main())

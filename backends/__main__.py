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
    try:
        host = ops_for(numpy.zeros(1))
    except ValueError as e:  # a bad XPNET_HOST_THREADS
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"host:    {host.threads} thread(s) for the CPU's passes ({threads.ENV_VAR}="
          f"{os.environ.get(threads.ENV_VAR, 'unset')}); {threads.blas_summary()}")
    try:
        _, conv_why = build.load()
    except ValueError as e:  # a bad XPNET_HOST_KERNELS
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"kernels: {conv_why}")
    if b.name == "cupy":
        cupy = b.xp
        rt = cupy.cuda.runtime.runtimeGetVersion()
        drv = cupy.cuda.runtime.driverGetVersion()
        print(f"CUDA:    runtime {rt // 1000}.{rt % 1000 // 10}, "
              f"driver {drv // 1000}.{drv % 1000 // 10}")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

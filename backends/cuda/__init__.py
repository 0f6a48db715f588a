"""The CuPy wing: fused kernels, the graph step's GEMMs, and the CUDA graph's mechanics.

``ops.py`` (:class:`~backends.cuda.ops.CupyOps`, what ``ops_for`` gives a CuPy
array), ``gemm.py``, ``conv.py`` and ``uniform.py`` (how each kernel is
launched; they import no CuPy, so the tests run them on the CPU),
``graph.py`` (capture, replay, the graph's memory pool and batch feed),
``compiler.py`` (kernels built and cached), ``sources.py`` (the ``kernels/*.cu``
files and their types), ``cublas.py`` (cuBLAS on a handle of our own, which a
capture may record: the graph's large products, ``XPNET_GRAPH_GEMM``), ``nccl.py`` (GPU-to-GPU sums
for data-parallel training). Only ``ops.py``, ``compiler.py``, ``graph.py`` and
``nccl.py`` import CuPy (``cublas.py`` inside the functions that call it).
"""

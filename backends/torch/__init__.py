"""The PyTorch wing: PyTorch's tensors (CPU, CUDA, ROCm, Apple's MPS) as a backend.

``backend.py`` (:class:`~backends.torch.backend.TorchBackend`: the library, its devices,
moving tensors in and out), ``ops.py`` (:class:`~backends.torch.ops.TorchOps`: the
operations on PyTorch's own functions) and ``graph.py`` (the step recorded as a
``torch.cuda.CUDAGraph`` on CUDA and ROCm).
"""

"""The PyTorch wing: PyTorch's tensors (CPU, CUDA, ROCm, Apple's MPS) as a backend.

``backend.py`` (:class:`~backends.torch.backend.TorchBackend`: the library, its devices,
moving tensors in and out); its operations are the standard's
(:class:`backends.ops.StandardOps`) on array-api-compat's torch namespace.
"""

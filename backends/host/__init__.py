"""The NumPy wing: the host's operations on every core, and C kernels of ours.

``ops.py`` (:class:`~backends.host.ops.HostOps`, what ``ops_for`` gives a NumPy
array), ``threads.py`` (the pool, and NumPy's BLAS lent to it per network
call), ``conv.py`` (the direct convolution's driver), ``build.py`` (compiling
``kernels/`` on first use, the cache, the ctypes binding), ``allocator.py``
(glibc's malloc policy for steady steps).
"""

"""xpnet's settings: every ``XPNET_*`` environment variable, read once and checked by name.

:class:`Settings` is an immutable snapshot. The registry (:mod:`backends.registry`)
reads the environment into one the first time a setting is needed and keeps it for
the process; nothing else in xpnet reads an ``XPNET_*`` variable. A bad value is a
``ValueError`` naming the variable, what it was given and what it takes. Inside a
program a change is scoped, ``with backends.configured(host_kernels=False): ...``, and
given back on the way out; ``python -m backends`` prints the settings in force.

:data:`VARIABLES` is the table: each variable, the field it sets, its default and what
it means. The README's table of variables is this one.
"""

import dataclasses
import difflib
import os
import warnings

#: Values XPNET_GRAPH_GEMM takes: where the CUDA-graph step multiplies.
GRAPH_GEMM_MODES = ("auto", "own", "cublas")


def _optional_text(name, raw):
    return raw or None


def _switch(meaning):
    """A parser for a variable that is ``1`` (on) or ``0`` (off)."""
    def parse(name, raw):
        if raw not in ("0", "1"):
            raise ValueError(f"{name}={raw!r}: expected {meaning}")
        return raw == "1"
    return parse


def _threads(name, raw):
    try:
        threads = int(raw)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"{name}={raw!r}: expected a positive integer, the number of "
                         f"threads xpnet uses on the CPU (1: none of its own, BLAS left alone)")
    return threads


def _mirror(example):
    """A parser for a download mirror: a base URL, ending in '/'."""
    def parse(name, raw):
        if not raw.endswith("/"):
            raise ValueError(f"{name}={raw!r} must be a base URL ending in '/', e.g. {example}")
        return raw
    return parse


def _graph_gemm(name, raw):
    mode = raw.strip().lower()
    if mode not in GRAPH_GEMM_MODES:
        raise ValueError(f"{name}={raw!r}; expected 'auto' (cuBLAS for the large "
                         f"products in the CUDA graph, xpnet's kernels for the small), 'own' "
                         f"(xpnet's GEMM kernels only) or 'cublas' (cuBLAS, on a handle of "
                         f"xpnet's own, for every product)")
    return mode


@dataclasses.dataclass(frozen=True)
class Variable:
    """One environment variable: the :class:`Settings` field it sets, the field's default
    (also what an unset or empty variable means), how its text is parsed and checked,
    and what it does, in words."""

    name: str
    field: str
    default: object
    parse: object
    meaning: str


VARIABLES = (
    Variable("XPNET_BACKEND", "backend", "auto", lambda n, raw: raw.strip().lower(),
             "the array library: auto (CuPy where it sees a GPU, else NumPy), numpy, cupy, "
             "torch, jax, array_api_strict"),
    Variable("XPNET_DEVICE", "device", None, _optional_text,
             "the library's device: cpu, cuda:N, mps, device1... (default: the library's)"),
    Variable("XPNET_HOST_THREADS", "host_threads", None, _threads,
             "threads for the CPU's passes (default: the cores this process may use, at "
             "most 8; 1: none of xpnet's own, BLAS left alone)"),
    Variable("XPNET_HOST_KERNELS", "host_kernels", True, _switch(
        "1 (the compiled kernels where a C compiler builds them, the default) or 0 (NumPy "
        "only: im2col + BLAS)"),
        "1: the compiled C kernels on the CPU (convolution, pooling, ReLU); 0: NumPy only"),
    Variable("XPNET_CACHE_DIR", "cache_dir", None, _optional_text,
             "where the C kernels are built and kept (default: $XDG_CACHE_HOME/xpnet or "
             "~/.cache/xpnet); used only where it and its folder are the user's own and "
             "private"),
    Variable("XPNET_FUSED", "fused", True, _switch(
        "1 (CuPy's fused kernels, the default) or 0 (plain CuPy operations)"),
        "1: CuPy's fused kernels; 0: plain CuPy operations (to measure what they gain)"),
    Variable("XPNET_CUDA_GRAPH", "cuda_graph", True, _switch(
        "1 (the Trainer's graph='auto' may record the step as a CUDA graph, the default) "
        "or 0 (graph='auto' runs eagerly)"),
        "1: the Trainer's graph='auto' may replay the step as a CUDA graph; 0: eager"),
    Variable("XPNET_GRAPH_GEMM", "graph_gemm", "auto", _graph_gemm,
             "where a CUDA-graph step multiplies: auto (cuBLAS for large products), "
             "cublas, own (xpnet's kernels)"),
    Variable("XPNET_DATA_DIR", "data_dir", None, _optional_text,
             "a folder to look for datasets in (itself, or its subfolder named for the "
             "dataset), before xpnet's cache, ~/.cache/xpnet/<dataset>"),
    Variable("XPNET_MNIST_MIRROR", "mnist_mirror", None,
             _mirror("https://ossci-datasets.s3.amazonaws.com/mnist/"),
             "the base URL (ending in '/') to download MNIST from, instead of its mirrors"),
    Variable("XPNET_FASHION_MNIST_MIRROR", "fashion_mnist_mirror", None,
             _mirror("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
             "the base URL (ending in '/') to download Fashion-MNIST from, instead of its "
             "mirrors"),
)


#: Variables of xpnet's own test suite, which the library does not read: no warning.
TEST_VARIABLES = ("XPNET_NVRTC", "XPNET_PLANTED_RAN")


class UnknownVariableWarning(UserWarning):
    """An ``XPNET_*`` environment variable that xpnet does not read (a misspelt name, most
    likely): its value changes nothing."""


def unknown_variables(environ):
    """``(name, closest known name or None)`` for each ``XPNET_*`` variable of ``environ``
    that is none of :data:`VARIABLES` (nor of the test suite's)."""
    known = {v.name[len("XPNET_"):]: v.name for v in VARIABLES}  # compared past the prefix
    return [(name, next((known[k] for k in difflib.get_close_matches(
                name[len("XPNET_"):], list(known), n=1, cutoff=0.7)), None))
            for name in sorted(environ) if name.startswith("XPNET_")
            and name not in known.values() and name not in TEST_VARIABLES]


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the ``XPNET_*`` variables said when they were read (see :data:`VARIABLES`), and
    ``fast_paths``, which no variable sets: False gives NumPy's, CuPy's and PyTorch's
    arrays the standard's reference operations, as every other library gets (the
    benchmark's ``xpnet-standard`` row)."""

    backend: str = "auto"
    device: object = None
    host_threads: object = None
    host_kernels: bool = True
    cache_dir: object = None
    fused: bool = True
    cuda_graph: bool = True
    graph_gemm: str = "auto"
    data_dir: object = None
    mnist_mirror: object = None
    fashion_mnist_mirror: object = None
    fast_paths: bool = True

    @classmethod
    def read(cls, environ=None):
        """The settings ``environ`` (default ``os.environ``) gives: ``ValueError`` naming the
        first variable whose value is not one it takes. An ``XPNET_*`` variable that is
        none of them (``XPNET_THREADS`` for ``XPNET_HOST_THREADS``), which would change
        nothing without a word, is an :class:`UnknownVariableWarning` naming the closest."""
        env = os.environ if environ is None else environ
        for name, close in unknown_variables(env):
            hint = f"; did you mean {close}?" if close else ""
            # said of the environment, not of a line of code that read it
            warnings.warn_explicit(f"{name} is not a variable xpnet reads, so it changes "
                                   f"nothing{hint} (python -m backends lists the variables)",
                                   UnknownVariableWarning, "<environment>", 0,
                                   module=__name__)
        values = {}
        for v in VARIABLES:
            raw = env.get(v.name)
            if raw is not None and raw.strip() != "":
                values[v.field] = v.parse(v.name, raw)
        return cls(**values)

    def replace(self, **changes):
        """A copy with ``changes`` (field -> value); ``TypeError`` naming an unknown field."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"backends.configured: no setting {', '.join(sorted(unknown))}; "
                            f"the settings are {', '.join(f.name for f in dataclasses.fields(self))}")
        from backends.arrays import check_flag  # here: the arrays module imports NumPy
        for name, value in changes.items():  # a string such as "no" would be true
            if isinstance(getattr(self, name), bool):
                changes[name] = check_flag("backends.configured", name, value)
        for v in VARIABLES:  # a mirror's URL as its variable takes it
            if v.field.endswith("_mirror") and changes.get(v.field) is not None:
                changes[v.field] = v.parse(v.field, str(changes[v.field]))
        if "graph_gemm" in changes:
            changes["graph_gemm"] = _graph_gemm("graph_gemm", str(changes["graph_gemm"]))
        if "host_threads" in changes and changes["host_threads"] is not None:
            changes["host_threads"] = _threads("host_threads", str(changes["host_threads"]))
        return dataclasses.replace(self, **changes)

    def lines(self):
        """One line a variable, what it holds in these settings (``(default)`` where it is
        the default), then ``fast_paths`` where it is off: what ``python -m backends``
        prints."""
        out = []
        for v in VARIABLES:
            value = getattr(self, v.field)
            shown = ("1" if value else "0") if isinstance(value, bool) else \
                "" if value is None else str(value)
            out.append(f"{v.name}={shown}" + (" (default)" if value == v.default else ""))
        if not self.fast_paths:
            out.append("fast_paths off: NumPy, CuPy and PyTorch compute with the standard's "
                       "operations")
        return out

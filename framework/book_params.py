"""The book's parameter files: ``params.pkl`` (chapter 7's trained SimpleConvNet) and
``deep_convnet_params.pkl`` (chapter 8's DeepConvNet, 99.35% on MNIST's test set), read
without running any code they might hold.

The book's ``save_params`` pickles a dict of NumPy arrays by parameter name, and its
``load_params`` unpickles whatever the file holds, which can run any code the file's
author chose. Here the file is unpickled by an unpickler that knows only the names NumPy's
arrays are rebuilt from (``ndarray``, ``dtype``, the functions that rebuild an array or a
scalar from its bytes, in ``numpy.core`` as the book's files name them or ``numpy._core``
as NumPy 2 does, and ``_codecs.encode`` for protocol 2's bytes, written as Latin-1 text);
any other name a pickle asks for stops the read with an error that names it, before
anything of it runs. Those names get stand-ins of ours that check what they are given (a
plain number dtype, a shape, exactly the bytes it needs) and build the array from its bytes:
NumPy's own rebuilders trust their input, and a damaged file (a dtype's state, an array's
length) could crash the interpreter, where it is now called damaged. Host-side I/O, so
NumPy by name.
"""

import math
import pickle

import numpy as np  # host-side: a file read into host arrays; checkpoint.py sends them on

#: the first byte of a pickle of protocol 2 or later (the book's files are protocol 3 and 4)
PICKLE_START = b"\x80"


#: the most elements a parameter array of the book's may have (its largest, DeepConvNet's
#: first dense layer, has 64 * 4 * 4 * 50): a damaged shape asks for no more memory
MAX_ELEMENTS = 2**28


class Refused(pickle.UnpicklingError):
    """A pickle asked for a name that does not rebuild an array."""


class Damaged(pickle.UnpicklingError):
    """A pickle's description of an array or dtype that is not one NumPy wrote."""


def _dtype(name, align=False, copy=True):
    """A plain number dtype by NumPy's short name (``'f4'``), checked before NumPy sees any
    more of the pickle: NumPy's own ``dtype.__setstate__`` trusts its input, and a damaged
    state (a field count, an element size) can crash the interpreter."""
    if not isinstance(name, str) or not isinstance(align, bool) or not isinstance(copy, bool):
        raise Damaged(f"a dtype of {name!r}")
    try:
        dtype = np.dtype(name)
    except (TypeError, ValueError):
        raise Damaged(f"an unknown dtype {name!r}") from None
    plain = dtype.kind in "biufc" and dtype.fields is None and dtype.subdtype is None
    return _DtypeState(dtype, plain)


class _DtypeState:
    """A dtype being rebuilt: its byte order comes with the pickle's ``BUILD``. One that is
    not a plain number type (text, objects) is only named: its arrays are never built."""

    __slots__ = ("dtype", "plain")

    def __init__(self, dtype, plain):
        self.dtype, self.plain = dtype, plain

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) >= 2
                and state[1] in ("<", ">", "|", "=")):
            raise Damaged(f"a dtype state {state!r:.80}")
        # NumPy writes (3, byte order, None, None, None, -1, -1, 0) for a number type
        if self.plain and state != (3, state[1], None, None, None, -1, -1, 0):
            raise Damaged(f"a dtype state {state!r:.80}")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


class NotNumbers:
    """What an array of text or objects in the pickle stands for: its dtype, named."""

    def __init__(self, dtype):
        self.dtype = dtype


def _dtype_of(value):
    if not isinstance(value, _DtypeState):
        raise Damaged(f"{type(value).__name__} where a dtype belongs")
    return value.dtype if value.plain else None


def _shape(value):
    if not (isinstance(value, tuple) and all(type(n) is int and 0 <= n for n in value)
            and math.prod(value) <= MAX_ELEMENTS):
        raise Damaged(f"a shape of {value!r:.80}")
    return value


def _from_bytes(data, dtype, shape, order="C"):
    """A new host array of ``shape`` from exactly as many bytes as it needs."""
    # (protocol 5's in-band buffers come as bytes or a bytearray; an out-of-band one, which
    # would come as a PickleBuffer, is refused by the unpickler: it is given no buffers)
    if not isinstance(data, (bytes, bytearray)) or order not in ("C", "F"):
        raise Damaged(f"array data of {type(data).__name__}, order {order!r}")
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise Damaged(f"{len(data)} bytes for an array of shape {shape} and dtype {dtype}")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy()


class _ArrayState:
    """An array being rebuilt by ``_reconstruct`` and the pickle's ``BUILD``: ``array``
    once built."""

    __slots__ = ("array",)

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1
                and isinstance(state[3], bool)):
            raise Damaged(f"an array state of {type(state).__name__}")
        shape, dtype = _shape(state[1]), _dtype_of(state[2])
        self.array = NotNumbers(state[2].dtype) if dtype is None else \
            _from_bytes(state[4], dtype, shape, "F" if state[3] else "C")


_NDARRAY = object()  # what the pickle's 'numpy ndarray' stands for: only _reconstruct's


def _reconstruct(cls, shape, typecode):
    if cls is not _NDARRAY or shape != (0,) or typecode != b"b":
        raise Damaged("an array made otherwise than NumPy makes one")
    return _ArrayState()


def _scalar(dtype, data):
    plain = _dtype_of(dtype)
    return NotNumbers(dtype.dtype) if plain is None else _from_bytes(data, plain, ())[()]


def _frombuffer(data, dtype, shape, order):  # protocol 5's
    plain = _dtype_of(dtype)
    return NotNumbers(dtype.dtype) if plain is None else \
        _from_bytes(data, plain, _shape(shape), order)


def _numpy_names():
    """``(module, name) -> object`` for what NumPy's own pickles of arrays and scalars name
    (in ``numpy.core`` as NumPy 1 wrote them, ``numpy._core`` as NumPy 2 does): checked
    stand-ins, never NumPy's own functions, which trust what they are given."""
    names = {("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _dtype,
             ("_codecs", "encode"): _latin1}
    builders = {"multiarray": {"_reconstruct": _reconstruct, "scalar": _scalar},
                "numeric": {"_frombuffer": _frombuffer}}
    for module, functions in builders.items():
        for package in ("numpy.core", "numpy._core"):
            names.update({(f"{package}.{module}", name): f for name, f in functions.items()})
    return names


def _latin1(text, encoding):
    """Protocol 2's bytes, ``_codecs.encode(text, "latin1")``, and no other codec (a codec is
    looked up by name, which may import its module)."""
    if encoding != "latin1" or not isinstance(text, str):
        raise Refused(f"it asks for _codecs.encode with {encoding!r}; protocol 2's bytes "
                      f"are 'latin1'")
    return text.encode("latin1")


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that rebuilds NumPy arrays, dicts, lists and numbers, and nothing else."""

    allowed = _numpy_names()

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise Refused(
                f"it asks for {module}.{name}, which is not part of a NumPy array; "
                f"a file of the book's parameters holds arrays only") from None


def _arrays(value):
    """The loaded value with each array being rebuilt replaced by its array."""
    if isinstance(value, _ArrayState):
        if value.array is None:
            raise Damaged("an array whose contents never came")
        return value.array
    if isinstance(value, _DtypeState):
        return value.dtype
    if isinstance(value, dict):
        return {k: _arrays(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_arrays(v) for v in value)
    return value


def is_pickle(path):
    """True where ``path`` starts as a pickle does (protocol 2 or later)."""
    with open(path, "rb") as f:
        return f.read(1) == PICKLE_START


def read(path):
    """The book's parameters in ``path``: a dict of host arrays by parameter name.
    ``ValueError`` saying what the file holds where it is not such a dict, or what it asked
    for that is not an array's; ``OSError`` where it cannot be read."""
    with open(path, "rb") as f:
        try:
            loaded = _ArraysOnly(f).load()
            loaded = _arrays(loaded)
        except Refused as e:
            raise ValueError(f"not read: {e}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
                AttributeError, MemoryError, RecursionError, OverflowError) as e:  # malformed
            raise ValueError(f"damaged pickle ({type(e).__name__}: {e})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"it holds a {type(loaded).__name__}; expected the book's dict of "
                         f"arrays by parameter name ('W1', 'b1', ...)")
    params = {}
    for key, value in loaded.items():
        if not isinstance(key, str):
            raise ValueError(f"entry {key!r} is not named by a string ({type(key).__name__}); "
                             f"expected arrays of numbers by parameter name ('W1', 'b1', ...)")
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
            kind = (f"an array of {value.dtype}" if isinstance(value, (np.ndarray, NotNumbers))
                    else type(value).__name__)
            raise ValueError(f"entry {key!r} is {kind}; expected arrays of numbers by "
                             f"parameter name")
        params[key] = value
    return params

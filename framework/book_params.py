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
anything of it runs. Host-side I/O, so NumPy by name.
"""

import pickle

import numpy as np  # host-side: a file read into host arrays; checkpoint.py sends them on

#: the first byte of a pickle of protocol 2 or later (the book's files are protocol 3 and 4)
PICKLE_START = b"\x80"


def _numpy_names():
    """``(module, name) -> object`` for what NumPy's own pickles of arrays and scalars name,
    taken from NumPy itself (its module names moved in NumPy 2)."""
    names = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
             ("_codecs", "encode"): _latin1}
    builders = {"multiarray": [np.zeros(1).__reduce__()[0], np.float64(0).__reduce__()[0]],
                "numeric": [np.zeros(1).__reduce_ex__(5)[0]]}  # protocol 5's _frombuffer
    for module, functions in builders.items():
        for package in ("numpy.core", "numpy._core"):
            names.update({(f"{package}.{module}", f.__name__): f for f in functions})
    return names


def _latin1(text, encoding):
    """Protocol 2's bytes, ``_codecs.encode(text, "latin1")``, and no other codec (a codec is
    looked up by name, which may import its module)."""
    if encoding != "latin1" or not isinstance(text, str):
        raise Refused(f"it asks for _codecs.encode with {encoding!r}; protocol 2's bytes "
                      f"are 'latin1'")
    return text.encode("latin1")


class Refused(pickle.UnpicklingError):
    """A pickle asked for a name that does not rebuild an array."""


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
        except Refused as e:
            raise ValueError(f"not read: {e}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
                AttributeError, MemoryError) as e:  # truncated or malformed
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
            kind = (f"an array of {value.dtype}" if isinstance(value, np.ndarray)
                    else type(value).__name__)
            raise ValueError(f"entry {key!r} is {kind}; expected arrays of numbers by "
                             f"parameter name")
        params[key] = value
    return params

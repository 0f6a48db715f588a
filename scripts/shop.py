"""Printing for the apple/orange shop scripts."""


def number(x):
    """A price as a reader writes it: 715 not 715.0000000000001, 3.3 not 3.3000000000000003.

    Rounding to 10 decimals drops the binary-fraction noise of 1.1 * 650.
    """
    r = round(float(x), 10)
    return str(int(r)) if r.is_integer() else repr(r)


def show(**values):
    for name, value in values.items():
        print(f"{name}: {number(value)}")

"""backends/host/allocator.py: where glibc serves large blocks during a training run."""

import ctypes
import ctypes.util

import numpy as np
import pytest

from backends.host import allocator


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]


def mapped_bytes():
    """Bytes glibc holds in blocks mapped one by one (``mallinfo2().hblkhd``)."""
    try:
        mallinfo2 = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallinfo2
    except (OSError, AttributeError):
        pytest.skip("not glibc 2.33 or later: no mallinfo2")
    mallinfo2.restype = MallInfo2
    return mallinfo2().hblkhd


BIG = 48 * 2**20  # above glibc's largest mmap threshold, like DeepConvNet's 45 MB columns
OUTSIDE = 320 * 2**20


def held_while_alive(nbytes):
    """How much more glibc holds in mapped blocks while an array of ``nbytes`` lives."""
    before = mapped_bytes()
    a = np.ones(nbytes // 8)
    grown = mapped_bytes() - before
    del a
    return grown


LARGE_BLOCKS = """
import json
import backends
from tests.backends.host.test_allocator import BIG, OUTSIDE, held_while_alive
seen = {}
backends.tune_host_allocator()
# outside: glibc's way, mapped on its own
seen["outside"] = held_while_alive(OUTSIDE)
with backends.large_blocks_from_heap() as on:
    seen["on"] = on
    seen["inside"] = held_while_alive(BIG)
    with backends.large_blocks_from_heap() as inner:
        seen["inner"] = inner  # nested: still in force
    # the inner block gave nothing back: a block larger than the heap has free (the BIG
    # one freed) still comes from it
    seen["after inner"] = held_while_alive(2 * BIG)
# given back (a block the heap now has room for still comes from it: kept for reuse)
seen["given back"] = held_while_alive(OUTSIDE)
print(json.dumps(seen))
"""


def test_large_blocks_come_from_the_heap_inside_and_are_mapped_again_after():
    """In a process of its own: whether glibc can grow its heap for a 96 MB block depends
    on what the process mapped before (after some hundreds of other tests it served the
    block from a mapping of its own, mmap switched off or not), and the policy is the
    process's."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT
    mapped_bytes()  # skips where glibc has no mallinfo2
    r = subprocess.run([sys.executable, "-c", LARGE_BLOCKS], capture_output=True, text=True,
                       timeout=300, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr[-3000:]
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen["outside"] >= OUTSIDE, seen
    assert seen["on"] and seen["inner"], seen
    assert seen["inside"] == 0 and seen["after inner"] == 0, seen
    assert seen["given back"] >= OUTSIDE, seen


@pytest.mark.parametrize("environ, expected", [
    ({}, 65536),
    ({"MALLOC_MMAP_MAX_": "7"}, 7),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1:glibc.malloc.mmap_max=9"}, 9),
])
def test_gives_back_what_glibc_had_before(monkeypatch, environ, expected):
    for name in ("MALLOC_MMAP_MAX_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert allocator._mmap_max_outside() == expected


TRAINING_RUN = """
import ctypes, ctypes.util, json
import numpy as np
from framework.trainer import Trainer
from models import TwoLayerNet

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2

def mapped_while_alive(nbytes):
    before = mallinfo2().hblkhd
    a = np.ones(nbytes // 8)
    grown = mallinfo2().hblkhd - before
    del a
    return grown

MB = 2**20
seen = {}

class Probe(TwoLayerNet):
    def gradient(self, x, t):
        seen.setdefault("during", mapped_while_alive(MB))
        return super().gradient(x, t)

rng = np.random.default_rng(0)
x = rng.random((40, 4), dtype=np.float32)
t = rng.integers(0, 3, 40)
trainer = Trainer(Probe(4, 4, 3, seed=0), x, t, x, t, epochs=1, mini_batch_size=10,
                  verbose=False)
seen["built"] = mapped_while_alive(MB)
trainer.train()
seen["after"] = mapped_while_alive(MB)
print(json.dumps(seen))
"""


def test_a_training_run_gives_the_malloc_policy_back():
    """The Trainer's run on the CPU keeps a 1 MB temporary on the heap (no fresh pages),
    and neither building a Trainer nor the process after its run keeps that policy: a
    1 MB block is mapped on its own again, as glibc does by default. In a process of its
    own, since other tests fix the policy for good (tune_host_allocator)."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT
    mapped_bytes()  # skips where glibc has no mallinfo2
    r = subprocess.run([sys.executable, "-c", TRAINING_RUN], capture_output=True, text=True,
                       timeout=300, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT,
                                                       XPNET_BACKEND="numpy"))
    assert r.returncode == 0, r.stderr[-3000:]
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen["during"] == 0, seen  # inside the run: from the heap
    assert seen["built"] >= 2**20, seen  # before it: glibc's own policy
    assert seen["after"] >= 2**20, seen  # given back

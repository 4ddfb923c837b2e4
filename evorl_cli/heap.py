"""A long run's resident memory stays flat (freed C heap memory goes back to the operating system), and
Python's collector leaves the set-up's objects alone.

Architecture mutations resize the population's tensors every few generations (parameters, Adam
moments, gradients, the update's intermediates), so a long run frees and allocates blocks of ever
different sizes. glibc's malloc keeps freed memory for reuse, and each time a large block it had
mapped on its own is freed it raises the size from which it maps blocks on their own, so later
large blocks come from the heap, where the freed ones fragment it. The resident set then grew 16%
from generation 20 to 200 of `benchmarks/memory.py` while the networks had shrunk again. A fixed
mmap threshold keeps the largest blocks out of the heap (each goes back when freed), and
`malloc_trim` once a generation returns the heap's free pages. Elsewhere (macOS, Windows, musl)
both do nothing.

The threshold is 32 MiB (glibc's largest), not lower: every block above it is a fresh mapping
whose pages fault in (zeroed) on first use, and fixing it also pins the trim threshold, which glibc
otherwise raises with it. The update's [P, batch, width] intermediates are allocated and freed
every minibatch, so any of them above the threshold is mapped, faulted in and unmapped each time:
- at 256 KiB (trim threshold 128 KiB) population 16 trained at 3-5k env steps/s against 8-17k
  without (alternated runs, same load);
- at 4 MiB population 16 ran as fast as without, but population 64's 8 MiB intermediates were
  mapped each minibatch: 16,300 env steps/s against 33,700 without, half the time in the kernel
  (24M page faults in 2 generations). At 32 MiB: 35,400, 0.3M faults (`benchmarks/scaling.py`'s
  P=64, 2 generations, one thread, alternated under the same load).
A large population trains in slices of members (`ppo.members_per_pass`), so its intermediates
stay well below the threshold too.
Memory over a long run (`benchmarks/memory.py`, 200 generations): the peak grew 4.1% from
generation 20 at 32 MiB, 4.6% at 4 MiB; with trimming alone 9.5%, with neither 15.9%.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import platform
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # blocks from this size are mapped on their own (glibc: 128 KiB rising to 32 MiB, its cap)
TRIM_THRESHOLD = 64 << 20  # free heap top kept for reuse between minibatches; malloc_trim returns it once a generation


@lru_cache(maxsize=1)
def _glibc():
    """The C library when it is glibc (the functions below are glibc's), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def keep_large_blocks_off_the_heap() -> None:
    """Fix glibc's mmap and trim thresholds (they otherwise rise as large blocks are freed).
    Process-wide; idempotent."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def release_free_memory() -> None:
    """Hand the heap's free pages back to the operating system (a few milliseconds)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@contextmanager
def set_up_objects_frozen() -> Iterator[None]:
    """Keep Python's full garbage collections off what exists when a run starts.

    Importing torch, Hydra and Gymnasium leaves a large heap of long-lived objects, and every full
    collection walks all of it: on Acrobot one took 67 ms of a 2.3 s run, landing wherever the
    allocation count ran out (often in a confirmation). Frozen, they are skipped; collections
    still see everything the run makes. Unfrozen when the run ends, so a process that trains
    again (a sweep, the tests) collects them as before.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()

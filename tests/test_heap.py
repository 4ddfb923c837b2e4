"""Freed tensors leave the resident set, however large the blocks freed before them (glibc's own
mmap threshold would have risen to them and kept the next ones in the heap, resident after their
free: 16 MiB of the 128 below, without heap.py). The long-run figure: benchmarks/memory.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evorl_cli import heap

pytestmark = pytest.mark.skipif(heap._glibc() is None, reason="glibc only (elsewhere heap.py does nothing)")


def _resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_freed_large_blocks_leave_the_resident_set():
    heap.keep_large_blocks_off_the_heap()
    torch.ones(64 * 2**20 // 4)  # a 64 MiB block, freed: glibc's own rule would now keep smaller ones in the heap
    heap.release_free_memory()
    before = _resident_mib()
    for mib in (48, 32, 24, 16, 8):  # shrinking blocks, as networks that lose units free smaller tensors
        block = torch.ones(mib * 2**20 // 4)
        assert _resident_mib() > before + 0.8 * mib  # it was really resident
        del block
    heap.release_free_memory()
    assert _resident_mib() < before + 4, "freed blocks stayed resident"

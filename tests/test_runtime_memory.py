"""`keep_freed_memory`: memory freed by one training step is reused by the next without page faults."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A fresh process frees a 16 MiB block (the size of one large activation) and then touches one of the
# same size again. glibc's defaults serve the first with mmap and give it back on free, so the second
# faults all of its pages in anew; with the freed memory kept, the second reuses the first's pages.
REUSE_FAULTS = """
import ctypes, ctypes.util, resource, sys
from vidkd.utils.runtime import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 16 * 2**20
def touch_and_free():
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
touch_and_free()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch_and_free()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults_on_reuse(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", REUSE_FAULTS, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_keeping_freed_memory_lets_the_next_block_reuse_its_pages():
    default, kept = _faults_on_reuse("default"), _faults_on_reuse("keep")
    pages = 16 * 2**20 // 4096
    assert default > pages // 2, default  # glibc's defaults: the block's pages are faulted in again
    assert kept < pages // 20, kept  # kept: reused

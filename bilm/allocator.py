"""Keep freed memory in the process: a program-wide setting of glibc's malloc that the
``bilm`` command and the ``bin/`` scripts apply once, first (library code never does).

Why. TensorFlow's CPU allocator takes every tensor from the C library's ``malloc``, and glibc
serves a block over its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and gives it back
with ``munmap`` when freed. A training step at bilm-tf's small shape makes and frees several
such tensors (the character CNN's activations, the sampled softmax's logits), so every step
touches ~600 MiB of pages the kernel must map and zero again: ~160,000 page faults per step, a
third of the process's CPU time spent in the kernel (measured with ``/usr/bin/time``,
docs/performance.md), possibly more on a virtual machine whose host takes freed pages back. With
the blocks taken from the heap and freed memory kept there, the next step reuses the same pages:
the faults fall ~14x and a 40-batch run is ~20% shorter. The price is that the process keeps its
peak memory until it exits (measured: 1.84 -> 1.91 GB for that run), which a training or
embedding job reaches within its first steps anyway.

``BILM_MALLOC=system`` leaves the C library's defaults alone. On other C libraries (macOS,
musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

__all__ = ["ENV", "keep_freed_memory"]

ENV = "BILM_MALLOC"

_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
_M_MMAP_MAX = -4

logger = logging.getLogger(__name__)


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve large blocks from its heap and keep freed memory (see the
    module doc); True when applied, False where it is not glibc or ``BILM_MALLOC=system``."""
    if os.environ.get(ENV, "").strip().lower() == "system" or not sys.platform.startswith(
            "linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018  (glibc's own symbol: not musl)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt answers 1 on success; a trim threshold of -1 turns trimming off (mallopt(3))
    applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))
    logger.debug("malloc keeps freed memory: %s", applied)
    return applied

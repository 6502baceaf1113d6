"""bilm.allocator: the ``bilm`` command keeps freed memory in the process, so that a large
block freed by one step is reused by the next without the kernel mapping and zeroing its pages
again (docs/performance.md: ~160,000 page faults per training step at the small shape)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Frees and reallocates a 64 MiB block (over glibc's largest mmap threshold, like the character
# CNN's activations) 20 times and counts the page faults that cost; SETUP runs first.
# The block comes from the C library's malloc, as TensorFlow's CPU allocator takes its tensors
# (numpy would ask the kernel for huge pages, which hides the faults).
CHILD = """
import ctypes, json, resource
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
{setup}
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = libc.malloc(64 * 2**20)
    ctypes.memset(block, 1, 64 * 2**20)  # every page touched
    libc.free(block)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({{"faults": faults, "applied": applied}}))
"""


def faults(setup: str, **env: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD.format(setup=setup)], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="glibc's malloc settings: Linux only")

DIRECT = "from bilm.allocator import keep_freed_memory\napplied = keep_freed_memory()"
# the command applies it (bilm._shell.run_main): a command that needs no TensorFlow
VIA_CLI = ("import contextlib, io\nfrom bilm.cli import main\n"
           "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['models']) == 0\n"
           "from bilm.allocator import keep_freed_memory\napplied = None")


def test_freed_blocks_are_reused_without_new_page_faults():
    default = faults("applied = False")
    kept = faults(DIRECT)
    assert kept["applied"] is True
    block_pages = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    # glibc's default maps each block afresh: every round faults in every page
    assert default["faults"] >= 15 * block_pages, default
    # kept: the first round's pages serve the other 19
    assert kept["faults"] <= 3 * block_pages, kept


def test_the_bilm_command_applies_it_and_BILM_MALLOC_system_opts_out():
    block_pages = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    assert faults(VIA_CLI)["faults"] <= 3 * block_pages
    assert faults(VIA_CLI, BILM_MALLOC="system")["faults"] >= 15 * block_pages
    opted_out = faults(DIRECT, BILM_MALLOC="system")
    assert opted_out["applied"] is False and opted_out["faults"] >= 15 * block_pages

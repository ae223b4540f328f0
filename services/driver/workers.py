"""Torch set up for the Ray worker it runs in, whichever engine's: a pack's epoch task or
an unpacked trial."""

from __future__ import annotations

import ctypes
import functools

import ray
import torch

# mallopt's parameters (malloc.h), and the values keep_freed_memory sets: the largest
# threshold glibc takes for mapping a block of its own (32 MiB on 64-bit), and 1 GiB.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MAX_MMAP_THRESHOLD, KEEP_FREED_BYTES = 32 * 2**20, 2**30


def torch_for_this_worker() -> str:
    """Set torch up for the Ray task or trial it runs in; the device to train on."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))
    # Adam's second moments of parameters with no gradient (the bias before BatchNorm)
    # sink into subnormal floats, which the CPU handles many times slower.
    torch.set_flush_denormal(True)
    keep_freed_memory()
    return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


@functools.cache  # once per process: the settings hold for its life
def keep_freed_memory() -> None:
    """Have glibc's malloc keep freed memory for the next allocation. By default blocks
    over 128 KiB are mapped fresh and freed memory above the heap's top goes back to
    the kernel, so a step's activations (11 MB for 40 members at batch size 512) were
    page-faulted in anew every step: ~1/10 of the step. The worker's memory stays at
    its peak instead, which the pack's memory estimate already counts."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to set
        return
    libc.mallopt(M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD)
    libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES)

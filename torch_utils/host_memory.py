"""Keep freed host memory in the process, so CPU training does not page-fault its activations in again each step.

Why: glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh mmap and returns it to
the kernel on free. A batch of 16 at 32x32 with 512 channels is 32 MiB per activation, so on CPU each such tensor
is page-faulted (zero-filled by the kernel, 4 KiB at a time) every time it is made. That costs more than the
elementwise op that fills it: on the 2-core machine of this project one training iteration of `--cfg=cifar`
(batch 16, one thread) took 40 s with glibc's defaults and 32 s with freed memory kept (official code: 58 s and
38 s), measured before conv2d_winograd's forward, which gains only with memory kept (`benchmarks/
bench_vs_official.py --host-memory`). GPU memory has PyTorch's caching allocator and is not affected.

`keep_freed_host_memory()` asks glibc (mallopt) to serve large blocks from its heap and not to trim it, which is
what MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<huge> in the environment would do. The cost: the process's resident
memory stays at its high-water mark instead of shrinking after a peak. Set RLO_KEEP_HOST_MEMORY=0 to keep glibc's
defaults; explicit MALLOC_* settings in the environment are respected and left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV = "RLO_KEEP_HOST_MEMORY"

# glibc's mallopt parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

_GLIBC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
_applied: bool | None = None


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 -- only glibc has it; musl's mallopt ignores these settings
        return libc
    except (OSError, AttributeError):
        return None


def requested() -> bool:
    """Whether RLO_KEEP_HOST_MEMORY asks for the setting (the default); ValueError naming it when unreadable."""
    value = os.environ.get(ENV, "1").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{ENV}={os.environ[ENV]!r}: expected 1 (keep freed host memory, the default) or 0")


def keep_freed_host_memory() -> bool:
    """Apply the setting once per process; True when glibc took it (False: not glibc, opted out, or env set)."""
    global _applied
    if _applied is not None:
        return _applied
    libc = _libc() if requested() and not any(name in os.environ for name in _GLIBC_ENV) else None
    if libc is None:
        _applied = False
        return _applied
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # mallopt returns 1 on success. The trim threshold is an int: 2**31-1 bytes kept on top of the heap at most.
    _applied = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied

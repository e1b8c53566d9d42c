"""The process allocator, tuned for a runtime that frees and reallocates the same large buffers.

Every run allocates its intermediate tensors afresh. With glibc's defaults, a buffer over its
(adaptive) mmap threshold is mapped from the system and unmapped when freed, and the heap's free
top is returned to the system; either way the next run's buffer of the same size page-faults on
every 4 KB page as it is first written (EfficientNet-B0: its first 4.8 MB Swish took 5.6 ms a
run, 2.6 ms with the setting below; GPT-2 small page-faulted 10752 times a run, then none).
onnxruntime avoids this with its own arena; onnxpy's tensors are numpy arrays from malloc, so the
equivalent is to keep freed memory in the heap for reuse: allocations of any size come from the
heap, and freed memory stays there. The mmap threshold alone cannot do it past 32 MB (glibc's
largest), a size batches reach: at batch 8 MobileNetV2's 96-channel 112x112 expansion is 38.5 MB,
and mapping, faulting and unmapping it every run took mobilenet_v2 from 49.5 to 68 ms and
efficientnet_b0 from 69 to 82 ms at 2 threads; so mapped allocations are turned off altogether
(glibc still maps when the heap cannot grow). Like onnxruntime's arena
(``enable_cpu_mem_arena``, on by default), it trades memory returned to the system for speed; the
setting is process-wide, made once, and only where the C library is glibc.
"""
from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4  # how many allocations may be mapped at once: 0, none
_TRIM_THRESHOLD = 2**31 - 1  # mallopt's largest value: the heap's free top is (almost) never given back

_tuned = False


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse; True if it now does."""
    global _tuned
    if _tuned or not sys.platform.startswith("linux"):
        return _tuned
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and other C libraries: leave them be
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _tuned = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _tuned

"""Spin-waiting without the GIL, so that the pool's threads take up work within about 20 us.

A thread that blocks on a lock sleeps in the kernel, and on a virtual machine its CPU halts: waking
it takes 40-170 us, as long as a small convolution. Between parallel regions of one run the pool's
helpers (and the thread that waits for them) instead poll a counter for a while in compiled code,
with the GIL released, and block only when nothing comes; while a run is in progress they poll
until it ends (``Pool.holding``), as onnxruntime's pool spins. (What remains of the 20 us is taking
the GIL from the thread that posted the work.) The loads are atomic (acquire) so the
compiler cannot hoist them out of the loop, with x86's ``pause`` between them. Imported only by a pool
with helper threads (numba's import is not free).
"""
from __future__ import annotations

import platform
import time

import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic

_PAUSE = "llvm.x86.sse2.pause" if platform.machine().lower() in ("x86_64", "amd64") else None


def _element(context, builder, signature, args):  # pragma: no cover - compile-time
    """The array argument's type and a pointer to its element at the index argument."""
    array_type = signature.args[0]
    view = context.make_array(array_type)(context, builder, args[0])
    return array_type, cgutils.get_item_pointer(context, builder, array_type, view, [args[1]], wraparound=False)


@intrinsic
def _load_acquire(typingctx, array, index):  # pragma: no cover - compile-time
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array_type, pointer = _element(context, builder, signature, args)
        if _PAUSE:
            builder.call(cgutils.get_or_insert_function(builder.module, llvm_ir.FunctionType(llvm_ir.VoidType(), []),
                                                        _PAUSE), [])
        return builder.load_atomic(pointer, "acquire", array_type.dtype.bitwidth // 8)

    return array.dtype(array, index), codegen


@intrinsic
def _store_release(typingctx, array, index, value):  # pragma: no cover - compile-time
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array_type, pointer = _element(context, builder, signature, args)
        stored = context.cast(builder, args[2], signature.args[2], array_type.dtype)
        builder.store_atomic(stored, pointer, "release", array_type.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(array, index, value), codegen


@njit(cache=True, nogil=True)
def finish_then_wait(finished, posted, index, rounds, hold):  # pragma: no cover - compiled
    """Count one more job finished by helper ``index``, once the GIL is released (so that the
    thread waiting for it does not wake only to block on the GIL), then ``wait_change`` for the
    next job posted to it."""
    done = finished[index] + 1
    _store_release(finished, index, done)
    return wait_change(posted, index, done, rounds, hold)


@njit(cache=True, nogil=True)
def wait_change(counters, index, old, rounds, hold):  # pragma: no cover - compiled
    """Poll ``counters[index]`` at least ``rounds`` times, and on while ``hold[0]`` is not 0; True as
    soon as it differs from ``old``."""
    spun = 0
    while spun < rounds or _load_acquire(hold, 0) != 0:
        if _load_acquire(counters, index) != old:
            return True
        spun += 1
    return False


def rounds_per_microsecond() -> float:
    """Polls per microsecond on this CPU (``pause`` takes 10-140 cycles depending on the model)."""
    probe = np.zeros(1, dtype=np.int64)
    wait_change(probe, 0, 0, 1, probe)  # compiled or loaded before timing
    start = time.perf_counter()
    wait_change(probe, 0, 0, 20000, probe)
    return 20000 / max(1e-6, (time.perf_counter() - start) * 1e6)

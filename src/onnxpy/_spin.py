"""Spin-waiting without the GIL, so that the pool's threads take up work within about 20 us.

A thread that blocks on a lock sleeps in the kernel, and on a virtual machine its CPU halts: waking
it takes 40-170 us, as long as a small convolution. Between parallel regions of one run the pool's
helpers (and the thread that waits for them) instead poll a counter for a while in compiled code,
with the GIL released, and block only when nothing comes; while a run is in progress they poll
until it ends (``Pool.holding``), as onnxruntime's pool spins. (What remains of the 20 us is taking
the GIL from the thread that posted the work.) The loads are atomic (acquire) so the
compiler cannot hoist them out of the loop, with x86's ``pause`` between them. Imported only by a pool
with helper threads (numba's import is not free).

A compiled kernel's pieces need no GIL at all (``region``): the thread that starts the region stores
the kernel's arguments as numba lays them out in memory, and the helpers, still in their polling loop,
call a compiled trampoline that reads them back and calls the kernel's own machine code through its
address, taking pieces from a shared atomic counter. A region then costs a few microseconds, not the
25-40 us of a helper taking the GIL to run a Python piece, so kernels of 20-100 us can split.
"""
from __future__ import annotations

import platform
import time

import numba
import numpy as np
from llvmlite import ir as llvm_ir
from numba import cfunc, njit
from numba._dispatcher import compute_fingerprint
from numba.core import cgutils, types
from numba.core.errors import NumbaError
from numba.core.registry import cpu_target
from numba.extending import intrinsic

_PAUSE = "llvm.x86.sse2.pause" if platform.machine().lower() in ("x86_64", "amd64") else None
# a compiled region's control block (``Pool._control``): the region now open (its number, 0 when
# none), the last number given, the trampoline's address, the stored arguments' address, the count of
# pieces, the next piece to take, and how many helpers are inside the region
OPEN, NUMBER, TRAMPOLINE, ARGUMENTS, COUNT, NEXT, INSIDE = range(7)
CONTROL_SIZE = 8
SLOT_BYTES = 8192  # room for a region's stored arguments
_RETURN_BYTES = 256  # room for what a kernel called through its address returns (ignored)


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


@intrinsic
def _add(typingctx, array, index, value):  # pragma: no cover - compile-time
    """Atomically add ``value`` to ``array[index]`` (sequentially consistent: a full barrier);
    the value before."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array_type, pointer = _element(context, builder, signature, args)
        added = context.cast(builder, args[2], signature.args[2], array_type.dtype)
        return builder.atomic_rmw("add", pointer, added, "seq_cst")

    return array.dtype(array, index, value), codegen


def _unowned(context, builder, value_type, value):  # pragma: no cover - compile-time
    """``value`` with every array's owner (meminfo, parent) cleared: a copy read by another thread
    then neither counts references nor frees what the thread that stored it owns."""
    if isinstance(value_type, types.Array):
        array = context.make_array(value_type)(context, builder, value)
        array.meminfo = cgutils.get_null_value(array.meminfo.type)
        array.parent = cgutils.get_null_value(array.parent.type)
        return array._getvalue()
    if isinstance(value_type, types.BaseTuple):
        for k, member in enumerate(value_type.types):
            part = _unowned(context, builder, member, builder.extract_value(value, k))
            value = builder.insert_value(value, part, k)
    return value


@intrinsic
def _store(typingctx, slot, value):  # pragma: no cover - compile-time
    """Store ``value`` (its arrays unowned) at the start of the array ``slot``; its address."""
    def codegen(context, builder, signature, args):
        view = context.make_array(signature.args[0])(context, builder, args[0])
        value = _unowned(context, builder, signature.args[1], args[1])
        stored = context.data_model_manager[signature.args[1]].as_data(builder, value)  # as a pointer reads it
        builder.store(stored, builder.bitcast(view.data, stored.type.as_pointer()))
        return builder.ptrtoint(view.data, llvm_ir.IntType(64))

    return types.int64(slot, value), codegen


def _pointer_type() -> llvm_ir.Type:
    return llvm_ir.IntType(8).as_pointer()


@intrinsic
def _call_kernel(typingctx, address, head, lo, hi, tail):  # pragma: no cover - compile-time
    """Call the compiled kernel at ``address`` (numba's calling convention) with ``(*head, lo, hi,
    *tail)``. Its return value is dropped, uncounted: the arguments must be unowned (``_store``), and
    the kernel return None or one of them."""
    argument_types = tuple(head.types) + (lo, hi) + tuple(tail.types)

    def codegen(context, builder, signature, args):
        values = ([builder.extract_value(args[1], k) for k in range(len(head.types))] + [args[2], args[3]]
                  + [builder.extract_value(args[4], k) for k in range(len(tail.types))])
        packer = context.get_arg_packer(argument_types)
        pointer = _pointer_type()
        function = llvm_ir.FunctionType(llvm_ir.IntType(32), [pointer, pointer.as_pointer()]
                                        + list(packer.argument_types))
        kernel = builder.inttoptr(args[0], function.as_pointer())
        returned = cgutils.alloca_once(builder, llvm_ir.ArrayType(llvm_ir.IntType(8), _RETURN_BYTES))
        raised = cgutils.alloca_once(builder, pointer)
        builder.call(kernel, [builder.bitcast(returned, pointer), raised]
                     + list(packer.as_arguments(builder, values)))
        return context.get_dummy_value()

    return types.none(address, head, lo, hi, tail), codegen


@intrinsic
def _call_trampoline(typingctx, address, arguments, piece):  # pragma: no cover - compile-time
    """Call the trampoline at ``address`` for piece ``piece`` of the arguments stored at ``arguments``."""
    def codegen(context, builder, signature, args):
        function = llvm_ir.FunctionType(llvm_ir.VoidType(), [_pointer_type(), llvm_ir.IntType(64)])
        trampoline = builder.inttoptr(args[0], function.as_pointer())
        builder.call(trampoline, [builder.inttoptr(args[1], _pointer_type()), args[2]])
        return context.get_dummy_value()

    return types.none(address, arguments, piece), codegen


@njit(inline="always")
def _invoke(arguments, piece):  # pragma: no cover - compiled
    """Piece ``piece`` of a region's ``arguments``: (kernel address, bounds, head, tail)."""
    bounds = arguments[1]
    _call_kernel(arguments[0], arguments[2], bounds[piece], bounds[piece + 1], arguments[3])


@intrinsic
def _load(typingctx, pointer):  # pragma: no cover - compile-time
    """The value stored (by ``_store``) at ``pointer``."""
    def codegen(context, builder, signature, args):
        model = context.data_model_manager[pointer.dtype]
        return model.load_from_data_pointer(builder, builder.bitcast(args[0], model.get_data_type().as_pointer()))

    return pointer.dtype(pointer), codegen


def _piece(stored, piece):  # pragma: no cover - compiled (as a C callback per argument type)
    _invoke(_load(stored), piece)


@njit(cache=True, nogil=True)
def region(arguments, trampoline, control, slot):  # pragma: no cover - compiled
    """Run the pieces of ``arguments`` (``kernel(*head, bounds[i], bounds[i + 1], *tail)`` for each
    i) on this thread and on the helpers polling ``control``; returns when all are done."""
    count = arguments[1].size - 1
    control[ARGUMENTS] = _store(slot, arguments)
    control[TRAMPOLINE] = trampoline
    control[COUNT] = count
    control[NEXT] = 0
    number = control[NUMBER] + 1
    control[NUMBER] = number
    _store_release(control, OPEN, number)
    piece = _add(control, NEXT, 1)
    while piece < count:  # on the stored, unowned copy, as the helpers: the kernel's return is dropped
        _call_trampoline(trampoline, control[ARGUMENTS], piece)
        piece = _add(control, NEXT, 1)
    _add(control, OPEN, -number)  # closed: a helper that has not yet entered stays out
    while _load_acquire(control, INSIDE) != 0:
        pass


@njit(inline="always")
def _join(control, last):  # pragma: no cover - compiled
    """Take pieces of the open region unless it is ``last``; the number of the region seen."""
    number = _load_acquire(control, OPEN)
    if number == 0 or number == last:
        return last
    _add(control, INSIDE, 1)
    if _add(control, OPEN, 0) == number:  # still open now that the thread closing it will wait for us
        trampoline, arguments, count = control[TRAMPOLINE], control[ARGUMENTS], control[COUNT]
        piece = _add(control, NEXT, 1)
        while piece < count:
            _call_trampoline(trampoline, arguments, piece)
            piece = _add(control, NEXT, 1)
    _add(control, INSIDE, -1)
    return number


@njit(cache=True, nogil=True)
def serve(posted, finished, index, rounds, hold, control):  # pragma: no cover - compiled
    """A helper's polling: take part in the compiled regions opened in ``control``, and return True
    as soon as a Python job is posted to it (``posted[index]`` ahead of ``finished[index]``), or
    False after ``rounds`` polls without work once ``hold[0]`` is 0."""
    spun = 0
    last = 0
    while spun < rounds or _load_acquire(hold, 0) != 0:
        if _load_acquire(posted, index) != finished[index]:
            return True
        seen = _join(control, last)
        if seen != last:
            last = seen
            spun = 0
        spun += 1
    return False


@njit(cache=True, nogil=True)
def finish_then_serve(finished, posted, index, rounds, hold, control):  # pragma: no cover - compiled
    """Count one more job finished by helper ``index``, once the GIL is released (so that the
    thread waiting for it does not wake only to block on the GIL), then ``serve``."""
    _store_release(finished, index, finished[index] + 1)
    return serve(posted, finished, index, rounds, hold, control)


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


_entries: dict[tuple[object, bytes], tuple[int, int] | None] = {}
_trampolines: list[object] = []  # kept alive: the helpers call them by address


def entry(kernel, head: tuple, tail: tuple) -> tuple[int, int] | None:
    """The machine-code addresses of ``kernel`` (a numba dispatcher) for these arguments and of a
    trampoline that calls it on stored arguments of their types, compiled (or loaded from numba's
    cache) on first use; None where the arguments cannot be stored (a kind numba cannot take, or
    too large)."""
    try:
        key = (kernel, compute_fingerprint((head, tail)))
    except (TypeError, ValueError, NotImplementedError):
        return None
    if key not in _entries:
        _entries[key] = _compile_entry(kernel, head, tail)
    return _entries[key]


def _compile_entry(kernel, head: tuple, tail: tuple) -> tuple[int, int] | None:
    head_types, tail_types = (tuple(numba.typeof(v) for v in part) for part in (head, tail))
    signature = head_types + (types.int64, types.int64) + tail_types
    try:
        kernel.compile(signature)  # (a dictionary lookup where it is compiled already)
    except NumbaError:  # as the kernel's own call would type them otherwise: that call says what is wrong
        return None
    compiled = kernel.overloads[signature]
    stored = numba.typeof((0, np.zeros(2, dtype=np.int64), head, tail))
    context = cpu_target.target_context
    if (context.get_abi_sizeof(context.get_value_type(compiled.signature.return_type)) > _RETURN_BYTES
            or context.get_abi_sizeof(context.get_data_type(stored)) > SLOT_BYTES):
        return None
    trampoline = cfunc(types.void(types.CPointer(stored), types.int64), cache=True)(_piece)
    _trampolines.append(trampoline)
    return compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name), trampoline.address


def prepare() -> float:
    """Compile (or load) the polling loops, so that the helpers poll from their start; the polls per
    microsecond on this CPU (``pause`` takes 10-140 cycles depending on the model)."""
    probe, control = np.zeros(1, dtype=np.int64), np.zeros(CONTROL_SIZE, dtype=np.int64)
    finish_then_serve(np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64), 0, 1, probe, control)
    serve(probe, probe, 0, 1, probe, control)
    wait_change(probe, 0, 0, 1, probe)
    start = time.perf_counter()
    wait_change(probe, 0, 0, 20000, probe)
    return 20000 / max(1e-6, (time.perf_counter() - start) * 1e6)

"""Explicit SIMD vectors for the compiled kernels (``_jit``), where LLVM's own vectoriser does not
find the register blocking: a ``Vector`` is one 64-byte register of float32 or float64 lanes (a zmm
register with AVX-512; two ymm halves without), held in a variable like a scalar, so that a kernel
can keep a block of accumulators in registers across a loop of taps.

The loads and stores take an array and an element index, with no bounds check and no
negative-index wraparound (numba's check on signed indices costs more than the multiply-add it
guards): callers keep every lane inside the array. Imported with ``_jit``, never on its own.
"""
from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, models, register_model

BYTES = 64  # a vector's size: lanes = BYTES // itemsize


class Vector(types.Type):
    """A vector of ``BYTES // itemsize`` lanes of a float dtype."""

    def __init__(self, dtype: types.Float):
        self.dtype = dtype
        self.lanes = BYTES // (dtype.bitwidth // 8)
        super().__init__(name=f"Vector({dtype} x {self.lanes})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes))


def _pointer(context, builder, array_type, array, index):  # pragma: no cover - compile-time
    view = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, view, [index], wraparound=False)


def _splat(builder, vector_type: ir.VectorType, value):  # pragma: no cover - compile-time
    one = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(ir.IntType(32), vector_type.count),
                                                        [0] * vector_type.count))


@intrinsic
def lanes(typingctx, array):  # pragma: no cover - compile-time
    """The number of lanes of a vector of array's dtype (a compile-time constant)."""
    count = Vector(array.dtype).lanes

    def codegen(context, builder, signature, args):
        return ir.Constant(ir.IntType(64), count)

    return types.int64(array), codegen


@intrinsic
def load(typingctx, array, index):  # pragma: no cover - compile-time
    """array[index:index + lanes] (unaligned)."""
    vector = Vector(array.dtype)

    def codegen(context, builder, signature, args):
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1])
        vector_type = context.get_value_type(vector)
        return builder.load(builder.bitcast(pointer, vector_type.as_pointer()), align=array.dtype.bitwidth // 8)

    return vector(array, index), codegen


@intrinsic
def load_even(typingctx, array, index):  # pragma: no cover - compile-time
    """array[index + 2 i] for each lane i: one load of 2 x lanes elements and one shuffle."""
    vector = Vector(array.dtype)

    def codegen(context, builder, signature, args):
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1])
        wide = ir.VectorType(context.get_value_type(array.dtype), 2 * vector.lanes)
        both = builder.load(builder.bitcast(pointer, wide.as_pointer()), align=array.dtype.bitwidth // 8)
        even = ir.Constant(ir.VectorType(ir.IntType(32), vector.lanes), [2 * i for i in range(vector.lanes)])
        return builder.shuffle_vector(both, ir.Constant(wide, ir.Undefined), even)

    return vector(array, index), codegen


@intrinsic
def store(typingctx, array, index, value):  # pragma: no cover - compile-time
    """array[index:index + lanes] = value (unaligned)."""
    def codegen(context, builder, signature, args):
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(pointer, args[2].type.as_pointer()), align=array.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(array, index, value), codegen


@intrinsic
def prefetch(typingctx, array, index):  # pragma: no cover - compile-time
    """A hint to bring array[index]'s cache line in for a short use (never faults): non-temporal, so
    that streaming a packed product's weights (GPT-2 reads 500 MB a run) does not evict what the
    nodes around it use from L2 and L3 (GPT-2 from TorchScript at 2 threads 0.93-0.97x against
    the hint for every level, interleaved; a Split's first numpy call after the product 46 -> 34 us)."""
    def codegen(context, builder, signature, args):
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1])
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        signature_type = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        function = cgutils.get_or_insert_function(builder.module, signature_type, "llvm.prefetch.p0")
        builder.call(function, [builder.bitcast(pointer, byte_pointer), ir.Constant(i32, 0), ir.Constant(i32, 0),
                                ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(array, index), codegen


@intrinsic
def splat(typingctx, value):  # pragma: no cover - compile-time
    """A float in every lane."""
    vector = Vector(value)

    def codegen(context, builder, signature, args):
        return _splat(builder, context.get_value_type(vector), args[0])

    return vector(value), codegen


@intrinsic
def splat_from(typingctx, array, index):  # pragma: no cover - compile-time
    """array[index] in every lane (a broadcast load)."""
    vector = Vector(array.dtype)

    def codegen(context, builder, signature, args):
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1])
        return _splat(builder, context.get_value_type(vector), builder.load(pointer))

    return vector(array, index), codegen


@intrinsic
def fma(typingctx, a, b, c):  # pragma: no cover - compile-time
    """a * b + c, rounded once, lane by lane."""
    def codegen(context, builder, signature, args):
        vector_type = args[0].type
        name = f"llvm.fma.v{vector_type.count}f{a.dtype.bitwidth}"
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector_type, [vector_type] * 3),
                                                  name)
        return builder.call(function, list(args))

    return a(a, b, c), codegen


def _lanewise(operation: str, doc: str):
    """An intrinsic of two vectors applying the IR builder's ``operation`` (fadd, fmul, ...) lane by lane."""
    def typer(typingctx, a, b):  # pragma: no cover - compile-time
        def codegen(context, builder, signature, args):
            return getattr(builder, operation)(*args)

        return a(a, b), codegen

    typer.__doc__ = doc
    return intrinsic(typer)


add = _lanewise("fadd", "a + b, lane by lane.")
sub = _lanewise("fsub", "a - b, lane by lane.")
mul = _lanewise("fmul", "a * b, lane by lane.")
div = _lanewise("fdiv", "a / b, lane by lane.")


@intrinsic
def blend(typingctx, old, new, first):  # pragma: no cover - compile-time
    """old in the lanes below ``first``, new in the others."""
    def codegen(context, builder, signature, args):
        count = args[0].type.count
        index = ir.VectorType(ir.IntType(64), count)
        lane = ir.Constant(index, list(range(count)))
        below = builder.icmp_signed("<", lane, _splat(builder, index, args[2]))
        return builder.select(below, args[0], args[1])

    return old(old, new, first), codegen


@intrinsic
def maximum(typingctx, a, b):  # pragma: no cover - compile-time
    """The larger of a and b, lane by lane, NaN where either is NaN (as np.maximum)."""
    def codegen(context, builder, signature, args):
        x, y = args
        first = builder.or_(builder.fcmp_ordered(">", x, y), builder.fcmp_unordered("uno", x, x))
        return builder.select(first, x, y)

    return a(a, b), codegen


@intrinsic
def clamp(typingctx, value, lo, hi):  # pragma: no cover - compile-time
    """lo where value < lo, hi where value > hi, else value (NaN stays NaN), lane by lane."""
    def codegen(context, builder, signature, args):
        v, low, high = args
        v = builder.select(builder.fcmp_ordered("<", v, low), low, v)
        return builder.select(builder.fcmp_ordered(">", v, high), high, v)

    return value(value, lo, hi), codegen


def _swap_masks(lanes: int, half: int) -> tuple[list[int], list[int]]:
    """Shuffle masks of one step of a block transpose: in each run of 2 x half lanes, the first
    vector keeps its first half and takes the second vector's first half as its second; the second
    vector takes the first's second half as its first and keeps its own second half."""
    first, second = [], []
    for lane in range(lanes):
        base, j = lane - lane % (2 * half), lane % (2 * half)
        first.append(base + j if j < half else lanes + base + j - half)
        second.append(base + half + j if j < half else lanes + base + j)
    return first, second


@intrinsic
def transpose(typingctx, src, src_at, src_stride, rows, dst, dst_at, dst_stride, dst_rows):  # pragma: no cover
    """A lanes x lanes block transposed from src to dst: dst[dst_at + j dst_stride + i] =
    src[src_at + i src_stride + j], in registers (log2(lanes) steps of two-vector shuffles). Source
    rows from ``rows`` on repeat the last one (they stay inside src); only destination rows below
    ``dst_rows`` are stored."""
    if not all(isinstance(t, types.Integer) for t in (src_at, src_stride, rows, dst_at, dst_stride, dst_rows)):
        return None
    vector = Vector(src.dtype)

    def codegen(context, builder, signature, args):
        src_v, src_at_v, src_step, rows_v, dst_v, dst_at_v, dst_step, dst_rows_v = [
            v if isinstance(t, types.Array) else context.cast(builder, v, t, types.intp)
            for v, t in zip(args, signature.args)]
        vector_type = context.get_value_type(vector)
        count, align = vector.lanes, src.dtype.bitwidth // 8
        index_type, mask_type = context.get_value_type(types.intp), ir.VectorType(ir.IntType(32), count)
        last = builder.sub(rows_v, ir.Constant(index_type, 1))
        vectors = []
        for i in range(count):
            row = builder.select(builder.icmp_signed("<", ir.Constant(index_type, i), rows_v),
                                 ir.Constant(index_type, i), last)
            pointer = _pointer(context, builder, signature.args[0], src_v,
                               builder.add(src_at_v, builder.mul(row, src_step)))
            vectors.append(builder.load(builder.bitcast(pointer, vector_type.as_pointer()), align=align))
        half = count // 2
        while half:
            first, second = (ir.Constant(mask_type, mask) for mask in _swap_masks(count, half))
            for r in range(count):
                if not r & half:
                    a, b = vectors[r], vectors[r + half]
                    vectors[r] = builder.shuffle_vector(a, b, first)
                    vectors[r + half] = builder.shuffle_vector(a, b, second)
            half //= 2
        for j in range(count):
            at = ir.Constant(index_type, j)
            with cgutils.if_likely(builder, builder.icmp_signed("<", at, dst_rows_v)):
                pointer = _pointer(context, builder, signature.args[4], dst_v,
                                   builder.add(dst_at_v, builder.mul(at, dst_step)))
                builder.store(vectors[j], builder.bitcast(pointer, vector_type.as_pointer()), align=align)
        return context.get_dummy_value()

    return types.none(src, src_at, src_stride, rows, dst, dst_at, dst_stride, dst_rows), codegen


@intrinsic
def pow2(typingctx, n):  # pragma: no cover - compile-time
    """2^n of a float32 vector of whole numbers n in [-126, 128] (128 gives +inf), written straight
    into the exponent bits."""
    if not isinstance(n, Vector) or n.dtype != types.float32:
        return None

    def codegen(context, builder, signature, args):
        count = args[0].type.count
        ints = ir.VectorType(ir.IntType(32), count)
        bits = builder.add(builder.fptosi(args[0], ints), ir.Constant(ints, [127] * count))
        return builder.bitcast(builder.shl(bits, ir.Constant(ints, [23] * count)), args[0].type)

    return n(n), codegen

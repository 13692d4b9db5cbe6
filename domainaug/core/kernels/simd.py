"""LLVM intrinsics for what numba's own code cannot express in vector form.

numba compiles ``int32`` arithmetic to ``int64`` (which halves the vector width) and has no bit cast
of a scalar; and LLVM does not turn a 16x16 tile copy with a transposed index into register
shuffles. These few functions emit the IR directly. They do no bounds checks: callers guarantee
that every index they pass is inside the arrays.

numba's on-disk cache keys a kernel on its own file only, so kernels in other files would keep the
old code after an edit of this one: ``kernels/__init__.py`` drops the cache when this file's hash
changes (``drop_stale_caches``).
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

__all__ = ["split_sqrt2", "exp2i", "transpose_tile16", "TILE"]

#: Side of the tile ``transpose_tile16`` moves.
TILE = 16
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


@intrinsic
def split_sqrt2(typingctx, x):
    """``x = 2 ** e * m`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` for a positive normal float32 ``x``:
    ``(e, m)`` as float32, from the bits (0.0 gives ``(-127, 1.0)``)."""
    if x != types.float32:
        return None
    sig = types.UniTuple(types.float32, 2)(types.float32)

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], _I32)
        # 0x3F3504F3 is sqrt(1/2): subtracting it before the shift puts m in [sqrt(1/2), sqrt(2))
        e = builder.ashr(builder.sub(bits, ir.Constant(_I32, 0x3F3504F3)), ir.Constant(_I32, 23))
        m = builder.bitcast(builder.sub(bits, builder.shl(e, ir.Constant(_I32, 23))), ir.FloatType())
        return context.make_tuple(builder, signature.return_type, [builder.sitofp(e, ir.FloatType()), m])
    return sig, codegen


@intrinsic
def exp2i(typingctx, w):
    """``2 ** w`` as float32 for an int32 ``w`` in ``[-127, 127]``; -127 gives +0.0 (its bits are 0)."""
    if w != types.int32:
        return None

    def codegen(context, builder, signature, args):
        bits = builder.shl(builder.add(args[0], ir.Constant(_I32, 127)), ir.Constant(_I32, 23))
        return builder.bitcast(bits, ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def transpose_tile16(typingctx, src, src_start, src_step, dst, dst_start, dst_step):
    """``dst[dst_start + k * dst_step + i] = src[src_start + i * src_step + k]`` for ``i, k < 16``.

    16 vector loads of 16 contiguous elements, the transpose in 4 rounds of 16 two-register
    shuffles, 16 vector stores. ``src`` and ``dst`` are 1-D contiguous arrays of one dtype; steps
    may be negative.
    """
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array) and src.dtype == dst.dtype):
        return None
    sig = types.void(src, src_start, src_step, dst, dst_start, dst_step)

    def codegen(context, builder, signature, args):
        s_arr = context.make_array(signature.args[0])(context, builder, args[0])
        d_arr = context.make_array(signature.args[3])(context, builder, args[3])
        element = context.get_data_type(signature.args[0].dtype)
        align = context.get_abi_sizeof(element)
        vector = ir.VectorType(element, TILE).as_pointer()
        s0, ss, d0, ds = (context.cast(builder, args[k], signature.args[k], types.int64) for k in (1, 2, 4, 5))

        def at(data, start, step, k):
            offset = builder.add(start, builder.mul(step, ir.Constant(_I64, k)))
            return builder.bitcast(builder.gep(data, [offset]), vector)

        rows = [builder.load(at(s_arr.data, s0, ss, i), align=align) for i in range(TILE)]
        masks = ir.VectorType(_I32, TILE)
        for s in (8, 4, 2, 1):       # swap the off-diagonal s x s blocks of every 2s x 2s block
            lo = ir.Constant(masks, [c if not c & s else TILE + c - s for c in range(TILE)])
            hi = ir.Constant(masks, [c + s if not c & s else TILE + c for c in range(TILE)])
            new = list(rows)
            for a in (a for a in range(TILE) if not a & s):
                new[a] = builder.shuffle_vector(rows[a], rows[a + s], lo)
                new[a + s] = builder.shuffle_vector(rows[a], rows[a + s], hi)
            rows = new
        for k in range(TILE):
            builder.store(rows[k], at(d_arr.data, d0, ds, k), align=align)
        return context.get_dummy_value()
    return sig, codegen

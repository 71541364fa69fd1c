"""``borrow(a)``: the same array without its reference count, for compiled hot loops.

numba counts references to an array's memory with atomic increments and decrements
(``NRT_incref``/``NRT_decref``, a ``lock`` instruction each).  Every slice, every array
assigned to a variable and many calls with array arguments take and drop such a reference:
in the capture loop that was about a third of the time per packet (measured with perf on a
DiskReader over a page-cached chips_32 file).  A borrowed view has a null ``meminfo``, like
an array numba received from a foreign pointer: slices of it carry no reference and cost no
atomic operation.

Safe only where the owner provably outlives every use: the capture loop borrows the arrays
it was called with (the Python caller holds them for the whole call) and never returns or
stores a borrowed array.
"""
from __future__ import annotations

from numba import types
from numba.core import config
from numba.core import cgutils
from numba.extending import intrinsic


def _borrow_python(arr):
    """Under NUMBA_DISABLE_JIT=1 the loops run as Python: an array is its own borrow."""
    return arr


@intrinsic
def _borrow_compiled(typingctx, arr):
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, value=args[0])
        ary.meminfo = cgutils.get_null_value(ary.meminfo.type)
        return ary._getvalue()

    return arr(arr), codegen


borrow = _borrow_python if config.DISABLE_JIT else _borrow_compiled

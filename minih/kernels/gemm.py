"""gemm: BLAS's matrix product on blocks of bigger arrays, callable inside Numba kernels.

    gemm(alpha, a, b, beta, c, trans_a=False, trans_b=False)
    c = alpha * op(a) @ op(b) + beta * c, in place, with op(x) = x.T if trans_x else x

a, b, c are 2-D float32 or float64 arrays (one dtype) whose rows are contiguous but
may lie further apart than their length: a block of a bigger array, such as one
(batch, head)'s rows of a [B, T, H, E] array or a block pattern[b, h, i0:i1, :i1] of
the attention pattern. Rows must not overlap and must start a whole number of
elements apart, and c must not share memory with a or b; both versions check this
(ValueError). beta = 0 ignores what c held (it may be uninitialised). trans_a and
trans_b are bools; alpha and beta real numbers.

Why: Numba's np.dot inside a kernel takes contiguous matrices only, so such a block
must first be copied. BLAS itself takes any spacing of the rows (the "leading
dimension"), and alpha and beta: it reads the block where it is and can add into c.
Numba's np.dot calls BLAS (scipy's OpenBLAS) through a small C function of Numba's,
numba_xxgemm; this module calls the same function, with the leading dimensions of
the views. That function is Numba-internal, not public API: written and tested with
Numba 0.68.1 only, and tests/test_kernels.py checks gemm against NumPy for both
dtypes, every transpose, strided views and size-1 dimensions. (It passes sizes to
BLAS as 32-bit integers: no matrix here comes near 2^31 rows.)

Row-major arrays, column-major BLAS: a row-major [M, N] matrix whose rows are ld
elements apart is, to Fortran BLAS, the column-major [N, M] matrix with leading
dimension ld, its transpose. So C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T:
one BLAS call with the two operands swapped and the same transpose flags.

Plain Python (the kernels' .py_func, in the tests) runs the NumPy version below.
"""
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload
from numba.np.linalg import check_blas_return, ensure_blas


# The checks take each view as plain integers, (rows, cols, row stride, column stride,
# address), strides in bytes: then one compiled version serves every call, whatever the
# arrays' layouts. (Checks that took the arrays themselves compiled once per layout and
# call site: 3 s more to compile the attention kernels.)

@numba.njit(cache=True)
def _rows_ok(view, itemsize):
    """The view's rows are contiguous, do not overlap, and start whole elements apart. (The
    stride of an axis of length 1 means nothing: NumPy may store 0 or a negative value.)"""
    rows, cols, row_stride, col_stride, _ = view
    if cols > 1 and col_stride != itemsize:
        return False
    return rows == 1 or (row_stride >= cols * itemsize and row_stride % itemsize == 0)


@numba.njit(cache=True)
def _span(view, itemsize):
    """[start, end) of the bytes the view's elements occupy (the view passed _rows_ok)."""
    rows, cols, row_stride, _, start = view
    return start, start + (rows - 1) * row_stride + cols * itemsize


@numba.njit(cache=True)
def _check(a, b, c, trans_a, trans_b, itemsize):
    """Raise ValueError unless c = op(a) @ op(b) is a product BLAS can do on these views."""
    M, N = c[0], c[1]
    K = a[0] if trans_a else a[1]
    if ((a[1] if trans_a else a[0]) != M or (b[1] if trans_b else b[0]) != K
            or (b[0] if trans_b else b[1]) != N):
        raise ValueError("gemm: op(a) @ op(b) does not have c's shape")
    if M == 0 or N == 0 or K == 0:
        return                                                   # nothing for BLAS to read
    if not (_rows_ok(a, itemsize) and _rows_ok(b, itemsize) and _rows_ok(c, itemsize)):
        raise ValueError("gemm: the rows of a, b and c must be contiguous, must not overlap, "
                         "and must start a whole number of elements apart")
    c0, c1 = _span(c, itemsize)
    a0, a1 = _span(a, itemsize)
    b0, b1 = _span(b, itemsize)
    if (a0 < c1 and c0 < a1) or (b0 < c1 and c0 < b1):
        raise ValueError("gemm: c must not share memory with a or b")


def _view(x):
    return x.shape[0], x.shape[1], x.strides[0], x.strides[1], x.ctypes.data


def gemm(alpha, a, b, beta, c, trans_a=False, trans_b=False):
    """c = alpha * op(a) @ op(b) + beta * c in place (the NumPy version; see the module doc)."""
    _check(_view(a), _view(b), _view(c), bool(trans_a), bool(trans_b), c.itemsize)
    product = alpha * ((a.T if trans_a else a) @ (b.T if trans_b else b))
    if beta == 0:
        c[...] = product                                         # c's old values are ignored
    else:
        c[...] = product + beta * c


@intrinsic
def _address(typingctx, x):
    """The address of array x's first element, as an integer: x.ctypes.data without
    building the ctypes view, which made the checks cost ~1.5 us per gemm call."""
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.ptrtoint(array.data, cgutils.intp_t)
    return types.intp(x), codegen


@overload(_view)
def _view_jit(x):
    return lambda x: (x.shape[0], x.shape[1], x.strides[0], x.strides[1], _address(x))


@intrinsic
def _xxgemm(typingctx, trans_a, trans_b, M, N, K, alpha, a, b, beta, c):
    """One call of Numba's C helper numba_xxgemm (Fortran BLAS order, operands swapped)."""
    ensure_blas()                                                # scipy's BLAS is importable
    sig = types.void(trans_a, trans_b, M, N, K, alpha, a, b, beta, c)

    def codegen(context, builder, signature, args):
        ta, tb, M, N, K, alpha, a, b, beta, c = args
        dtype = signature.args[9].dtype
        A = context.make_array(signature.args[6])(context, builder, a)
        B = context.make_array(signature.args[7])(context, builder, b)
        C = context.make_array(signature.args[9])(context, builder, c)
        intp, char = cgutils.intp_t, ir.IntType(8)
        void_p = char.as_pointer()
        itemsize = ir.Constant(intp, context.get_abi_sizeof(context.get_data_type(dtype)))

        def leading_dim(arr):                                    # row spacing, in elements
            ld = builder.sdiv(builder.extract_value(arr.strides, 0), itemsize)
            cols = builder.extract_value(arr.shape, 1)
            # a single row's stride means nothing (_rows_ok); BLAS only needs ld >= cols
            return builder.select(builder.icmp_signed("<", ld, cols), cols, ld)

        def flag(t):
            return builder.select(t, ir.Constant(char, ord("t")), ir.Constant(char, ord("n")))

        def slot(value, ty):                                     # BLAS takes alpha, beta by pointer
            return builder.bitcast(cgutils.alloca_once_value(
                builder, context.cast(builder, value, ty, dtype)), void_p)

        fnty = ir.FunctionType(ir.IntType(32), [char, char, char, intp, intp, intp, void_p,
                                                void_p, intp, void_p, intp, void_p, void_p, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        kind = ir.Constant(char, ord("s" if dtype == types.float32 else "d"))
        data = [builder.bitcast(x.data, void_p) for x in (A, B, C)]
        # C^T [N, M] = op(B)^T op(A)^T: B first, then A
        status = builder.call(fn, (kind, flag(tb), flag(ta), N, M, K,
                                   slot(alpha, signature.args[5]), data[1], leading_dim(B),
                                   data[0], leading_dim(A), slot(beta, signature.args[8]),
                                   data[2], leading_dim(C)))
        check_blas_return(context, builder, status)
        return context.get_dummy_value()

    return sig, codegen


@overload(gemm)
def _gemm_jit(alpha, a, b, beta, c, trans_a=False, trans_b=False):
    arrays = (a, b, c)
    if not all(isinstance(x, types.Array) and x.ndim == 2 for x in arrays) or \
            len({x.dtype for x in arrays}) != 1 or c.dtype not in (types.float32, types.float64):
        raise TypingError(f"gemm takes 2-D float32 or float64 arrays of one dtype, got {arrays}")
    if not c.mutable:
        raise TypingError("gemm writes into c, which is read-only")
    if not all(isinstance(x, (types.Integer, types.Float)) for x in (alpha, beta)):
        raise TypingError(f"gemm's alpha and beta must be real numbers, got {alpha}, {beta}")
    if not all(isinstance(t, (bool, types.Boolean, types.Omitted)) for t in (trans_a, trans_b)):
        raise TypingError(f"gemm's trans_a and trans_b must be bools, got {trans_a}, {trans_b}")

    def impl(alpha, a, b, beta, c, trans_a=False, trans_b=False):
        _check(_view(a), _view(b), _view(c), True if trans_a else False, True if trans_b else False,
               c.itemsize)
        M, N = c.shape
        K = a.shape[0] if trans_a else a.shape[1]
        if M == 0 or N == 0:
            return
        if K == 0:                                               # an empty sum: c = beta * c
            for i in range(M):
                for j in range(N):
                    c[i, j] = c[i, j] * beta if beta != 0 else 0
            return
        _xxgemm(trans_a, trans_b, M, N, K, alpha, a, b, beta, c)
    return impl

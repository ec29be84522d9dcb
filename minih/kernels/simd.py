"""Eight lanes at a time, written out: a small SIMD vector type for Numba kernels.

    load8(row, j) -> x        x = row[j:j+8]          row: a 1-D C-contiguous float array
    store8(row, j, x)         row[j:j+8] = x
    splat8(s) -> x            x = [s, s, s, s, s, s, s, s]
    fma8(a, b, c) -> x        x = a * b + c, lane by lane (one rounding where the CPU has FMA)
    mul8(a, b) -> x           x = a * b, lane by lane

Why: LLVM's loop vectoriser vectorises one loop along its own index, and that is all it
does. The attention's small products (d_head = 16 on one side) want what a BLAS
micro-kernel does instead: hold a tile of 4 rows x 16 columns of the result in eight
vector registers while the summed dimension streams past, so that every number loaded
is used four or eight times. Written as scalar loops, LLVM did not find that blocking
(docs/04_numba.md, "Tried on the forward and not kept": two rows per sweep, sixteen
scalar accumulators); written with these functions it is in the source, one line
per vector instruction, as C code writes it with intrinsics such as _mm256_fmadd_ps.
Eight lanes is one AVX2 register of float32 (a float64 vector takes two; LLVM splits
it).

In jitted code x is a value of type Vec8(dtype), an LLVM vector <8 x float> (or
<8 x double>) that lives in a register. In plain Python (NUMBA_DISABLE_JIT=1, or a
kernel's .py_func) these functions run as written below, on NumPy arrays of 8, so a
kernel built from them can be stepped through and tested without the JIT: the same
numbers up to fma8's rounding (fused when compiled on a CPU with FMA, two roundings in
Python).

No bounds checks when compiled, as for Numba's own indexing: load8 and store8 touch
row[j:j+8], and the caller keeps 0 <= j <= len(row) - 8. The Python versions check it
(IndexError): tests/test_kernels.py runs the tile kernels with NUMBA_DISABLE_JIT=1, so
a kernel that reads or writes past a row fails there.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, models, overload, register_model

LANES = 8


# --- the plain Python versions (what the names mean) ----------------------------------------

def _in_row(row, j):
    if not 0 <= j <= len(row) - LANES:
        raise IndexError(f"row[{j}:{j + LANES}] is not inside a row of length {len(row)}")


def load8(row, j):
    """row[j:j+8], as a vector."""
    _in_row(row, j)
    return row[j:j + LANES].copy()


def store8(row, j, x):
    """row[j:j+8] = x."""
    _in_row(row, j)
    row[j:j + LANES] = x


def splat8(s):
    """The vector [s] * 8 (s's dtype)."""
    return np.full(LANES, s)


def fma8(a, b, c):
    """a * b + c, lane by lane."""
    return a * b + c


def mul8(a, b):
    """a * b, lane by lane."""
    return a * b


# --- the compiled versions: one LLVM vector instruction each --------------------------------

class Vec8(types.Type):
    """Numba's type of a vector of 8 float32 or float64 values."""

    def __init__(self, dtype):
        self.dtype = dtype
        super().__init__(name=f"Vec8({dtype})")


@register_model(Vec8)
class _Vec8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        lane = dmm.lookup(fe_type.dtype).get_value_type()            # float or double
        super().__init__(dmm, fe_type, ir.VectorType(lane, LANES))


_FLOATS = (types.float32, types.float64)


def _vector_pointer(context, builder, row_type, row, j, j_type):
    """The address of row[j], as a pointer to an 8-lane vector."""
    data = context.make_array(row_type)(context, builder, row).data
    element = builder.gep(data, [context.cast(builder, j, j_type, types.intp)])
    return builder.bitcast(element, context.get_value_type(Vec8(row_type.dtype)).as_pointer())


def _check_row(name, row, j):
    if not (isinstance(row, types.Array) and row.ndim == 1 and row.layout == "C"
            and row.dtype in _FLOATS):
        raise TypingError(f"{name} takes a 1-D C-contiguous float32 or float64 array, got {row}")
    if not isinstance(j, types.Integer):
        raise TypingError(f"{name}'s index must be an integer, got {j}")


def _check_vectors(name, *xs):
    if not all(isinstance(x, Vec8) for x in xs) or len({x.dtype for x in xs}) != 1:
        raise TypingError(f"{name} takes vectors of one dtype, got {xs}")


@intrinsic
def _load8(typingctx, row, j):
    def codegen(context, builder, sig, args):
        ptr = _vector_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        return builder.load(ptr, align=context.get_abi_sizeof(context.get_data_type(row.dtype)))
    return Vec8(row.dtype)(row, j), codegen


@intrinsic
def _store8(typingctx, row, j, x):
    def codegen(context, builder, sig, args):
        ptr = _vector_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        builder.store(args[2], ptr, align=context.get_abi_sizeof(context.get_data_type(row.dtype)))
        return context.get_dummy_value()
    return types.void(row, j, x), codegen


@intrinsic
def _splat8(typingctx, s):
    def codegen(context, builder, sig, args):
        vec = context.get_value_type(sig.return_type)
        one = builder.insert_element(ir.Constant(vec, ir.Undefined), args[0],
                                     ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined),   # lane 0 everywhere
                                      ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))
    return Vec8(s)(s), codegen


@intrinsic
def _fma8(typingctx, a, b, c):
    def codegen(context, builder, sig, args):
        vec = context.get_value_type(sig.return_type)
        # llvm.fmuladd: fused where the CPU has FMA (one rounding), a multiply and an add elsewhere
        name = f"llvm.fmuladd.v{LANES}f{32 if a.dtype == types.float32 else 64}"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3), name)
        return builder.call(fn, args)
    return a(a, b, c), codegen


@intrinsic
def _mul8(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return builder.fmul(args[0], args[1])
    return a(a, b), codegen


@overload(load8)
def _load8_jit(row, j):
    _check_row("load8", row, j)
    return lambda row, j: _load8(row, j)


@overload(store8)
def _store8_jit(row, j, x):
    _check_row("store8", row, j)
    _check_vectors("store8", x)
    if not row.mutable or x.dtype != row.dtype:
        raise TypingError(f"store8 writes a vector into a writable row of its dtype, got {row}, {x}")
    return lambda row, j, x: _store8(row, j, x)


@overload(splat8)
def _splat8_jit(s):
    if s not in _FLOATS:
        raise TypingError(f"splat8 takes a float32 or float64 scalar, got {s}")
    return lambda s: _splat8(s)


@overload(fma8)
def _fma8_jit(a, b, c):
    _check_vectors("fma8", a, b, c)
    return lambda a, b, c: _fma8(a, b, c)


@overload(mul8)
def _mul8_jit(a, b):
    _check_vectors("mul8", a, b)
    return lambda a, b: _mul8(a, b)

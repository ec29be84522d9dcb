"""Sixteen lanes at a time, written out: a small SIMD vector type for Numba kernels.

    load16(row, j) -> x         x = row[j:j+16]         row: a 1-D C-contiguous float array
    store16(row, j, x)          row[j:j+16] = x
    splat16(s) -> x             x = [s] * 16
    fma16(a, b, c) -> x         a * b + c, lane by lane (one rounding where the CPU has FMA)
    mul16, add16, sub16         a * b, a + b, a - b, lane by lane
    max16(a, b) -> x            the larger of a and b, lane by lane
    hmax16(x), hsum16(x)        the largest lane, the sum of the lanes (a scalar)
    exp16(x) -> y               exp(x), lane by lane, for x <= 0 (float32: a polynomial)
    causal16(x, j, i, fill)     lane l keeps x[l] if key j + l <= query i, else fill

Why: LLVM's loop vectoriser vectorises one loop along its own index, and that is all it
does. The attention's small products (d_head = 16 on one side) want what a BLAS
micro-kernel does instead: hold a tile of 8 rows x 16 columns of the result in eight
vector registers while the summed dimension streams past, so that every number loaded
is used eight or sixteen times. Written as scalar loops, LLVM did not find that blocking
(docs/04_numba.md); written with these functions it is in the source, one line per
vector instruction, as C code writes it with intrinsics such as _mm512_fmadd_ps.
Sixteen lanes is one AVX-512 register of float32, or two AVX2 registers, which LLVM
uses in pairs by itself (a float64 vector takes two or four).

In jitted code x is a value of type Vec16(dtype), an LLVM vector <16 x float> (or
<16 x double>) that lives in a register. In plain Python (NUMBA_DISABLE_JIT=1, or a
kernel's .py_func) these functions run as written below, on NumPy arrays of 16, so a
kernel built from them can be stepped through and tested without the JIT: the same
numbers up to rounding (fma16, and the multiply-adds inside exp16, are fused when
compiled on a CPU with FMA, two roundings in Python; hsum16 adds in another order).

No bounds checks when compiled, as for Numba's own indexing: load16 and store16 touch
row[j:j+16], and the caller keeps 0 <= j <= len(row) - 16. The Python versions check it
(IndexError): tests/test_kernels.py runs the attention kernels with NUMBA_DISABLE_JIT=1,
so a kernel that reads or writes past a row fails there.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, models, overload, register_model

LANES = 16

# exp16 in float32 (the Cephes expf; its constants are float32 numbers): with x <= 0,
# split x = k ln2 + r, |r| <= ln2 / 2, so exp(x) = 2^k exp(r): exp(r) by a polynomial,
# 2^k from its bits. Below EXP_MIN (near float32's smallest normal number, 1.2e-38) the
# result is exactly 0, which the causal mask's -inf relies on. Above EXP_MAX (not the
# softmax's case) x is taken as EXP_MAX, so that 2^k stays a float32: exp(88) = 1.7e38.
EXP_MIN, EXP_MAX = -87.0, 88.0
LOG2_E = 1.4426950408889634
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4            # ln 2 = LN2_HI + LN2_LO, in two parts
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
            4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)


# --- the plain Python versions (what the names mean) ----------------------------------------

def _in_row(row, j):
    if not 0 <= j <= len(row) - LANES:
        raise IndexError(f"row[{j}:{j + LANES}] is not inside a row of length {len(row)}")


def load16(row, j):
    """row[j:j+16], as a vector."""
    _in_row(row, j)
    return row[j:j + LANES].copy()


def store16(row, j, x):
    """row[j:j+16] = x."""
    _in_row(row, j)
    row[j:j + LANES] = x


def splat16(s):
    """The vector [s] * 16 (s's dtype)."""
    return np.full(LANES, s)


def fma16(a, b, c):
    """a * b + c, lane by lane."""
    return a * b + c


def mul16(a, b):
    """a * b, lane by lane."""
    return a * b


def add16(a, b):
    """a + b, lane by lane."""
    return a + b


def sub16(a, b):
    """a - b, lane by lane."""
    return a - b


def max16(a, b):
    """a where a > b, else b, lane by lane (so a NaN in a gives b, one in b stays)."""
    return np.where(a > b, a, b)


def hmax16(x):
    """The largest lane of x, by halving as compiled: max16 of the lower and upper halves,
    16 -> 8 -> 4 -> 2 -> 1 lanes (so a NaN lane may or may not win, as in max16)."""
    while len(x) > 1:
        half = len(x) // 2
        x = max16(x[:half], x[half:])
    return x[0]


def hsum16(x):
    """The sum of the lanes of x."""
    return x.sum()


def exp16(x):
    """exp(x) lane by lane, for x <= 0. float64: np.exp. float32: the polynomial of EXP_POLY,
    exactly 0 below EXP_MIN, exp(EXP_MAX) above EXP_MAX; a NaN stays NaN."""
    if x.dtype == np.float64:
        with np.errstate(over="ignore"):                         # inf, as libm's exp gives
            return np.exp(x)
    f = np.float32
    with np.errstate(invalid="ignore"):                          # NaN compares, NaN to int
        below = x < f(EXP_MIN)
        xc = np.where(below, f(EXP_MIN), np.where(x > f(EXP_MAX), f(EXP_MAX), x))  # keeps NaN
        k = np.floor(xc * f(LOG2_E) + f(0.5))                    # round(x / ln 2)
        r = xc - k * f(LN2_HI) - k * f(LN2_LO)                   # x - k ln 2
        p = f(EXP_POLY[0])
        for c in EXP_POLY[1:]:
            p = p * r + f(c)
        exp_r = p * r * r + r + f(1)
        k = np.where(np.isnan(k), f(0), k)                       # NaN: any k; exp_r is NaN
        two_k = ((k.astype(np.int32) + 127) << 23).view(np.float32)  # 2^k from its bits
        return np.where(below, f(0), exp_r * two_k)


def causal16(x, j, i, fill):
    """Lane l of x is key j + l's value for query i: keep it for j + l <= i, else fill."""
    return np.where(j + np.arange(LANES) <= i, x, x.dtype.type(fill))


# --- the compiled versions: a few LLVM vector instructions each -----------------------------

class Vec16(types.Type):
    """Numba's type of a vector of 16 float32 or float64 values."""

    def __init__(self, dtype):
        self.dtype = dtype
        super().__init__(name=f"Vec16({dtype})")


@register_model(Vec16)
class _Vec16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        lane = dmm.lookup(fe_type.dtype).get_value_type()            # float or double
        super().__init__(dmm, fe_type, ir.VectorType(lane, LANES))


_FLOATS = (types.float32, types.float64)
_I32 = ir.IntType(32)


def _vector_pointer(context, builder, row_type, row, j, j_type):
    """The address of row[j], as a pointer to a 16-lane vector."""
    data = context.make_array(row_type)(context, builder, row).data
    element = builder.gep(data, [context.cast(builder, j, j_type, types.intp)])
    return builder.bitcast(element, context.get_value_type(Vec16(row_type.dtype)).as_pointer())


def _broadcast(builder, value, vec_type):
    """[value] * 16 as an LLVM vector: insert into lane 0, shuffle lane 0 everywhere."""
    one = builder.insert_element(ir.Constant(vec_type, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(vec_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


def _suffix(dtype):
    """LLVM's name for the vector type in intrinsic names: v16f32 or v16f64."""
    return f"v{LANES}f{32 if dtype == types.float32 else 64}"


def _call(builder, name, vec_type, args):
    """Call the LLVM intrinsic `name` on vectors of vec_type (it returns one too)."""
    fn = cgutils.get_or_insert_function(builder.module,
                                        ir.FunctionType(vec_type, [a.type for a in args]), name)
    return builder.call(fn, args)


def _halve(builder, x, op):
    """Reduce the lanes of x with op: add the upper half to the lower, 16 -> 8 -> 4 -> 2 -> 1."""
    n = LANES
    while n > 1:
        n //= 2
        lo = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(_I32, n), list(range(n))))
        hi = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(_I32, n), list(range(n, 2 * n))))
        x = op(lo, hi)
    return builder.extract_element(x, ir.Constant(_I32, 0))


def _larger(builder, a, b):
    """a where a > b, else b (max16's rule; one vmaxps on x86)."""
    return builder.select(builder.fcmp_ordered(">", a, b), a, b)


@intrinsic
def _load16(typingctx, row, j):
    def codegen(context, builder, sig, args):
        ptr = _vector_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        return builder.load(ptr, align=context.get_abi_sizeof(context.get_data_type(row.dtype)))
    return Vec16(row.dtype)(row, j), codegen


@intrinsic
def _store16(typingctx, row, j, x):
    def codegen(context, builder, sig, args):
        ptr = _vector_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        builder.store(args[2], ptr, align=context.get_abi_sizeof(context.get_data_type(row.dtype)))
        return context.get_dummy_value()
    return types.void(row, j, x), codegen


@intrinsic
def _splat16(typingctx, s):
    def codegen(context, builder, sig, args):
        return _broadcast(builder, args[0], context.get_value_type(sig.return_type))
    return Vec16(s)(s), codegen


@intrinsic
def _fma16(typingctx, a, b, c):
    def codegen(context, builder, sig, args):
        # llvm.fmuladd: fused where the CPU has FMA (one rounding), a multiply and an add elsewhere
        return _call(builder, f"llvm.fmuladd.{_suffix(a.dtype)}", args[0].type, args)
    return a(a, b, c), codegen


def _binary(op):
    """An intrinsic for the lane-by-lane builder op (fmul, fadd, fsub) or a (builder, a, b) rule."""
    @intrinsic
    def _vector_op(typingctx, a, b):
        def codegen(context, builder, sig, args):
            if isinstance(op, str):
                return getattr(builder, op)(args[0], args[1])
            return op(builder, args[0], args[1])
        return a(a, b), codegen
    return _vector_op


_mul16, _add16, _sub16, _max16 = (_binary(op) for op in ("fmul", "fadd", "fsub", _larger))


@intrinsic
def _hmax16(typingctx, x):
    def codegen(context, builder, sig, args):
        return _halve(builder, args[0], lambda a, b: _larger(builder, a, b))
    return x.dtype(x), codegen


@intrinsic
def _hsum16(typingctx, x):
    def codegen(context, builder, sig, args):
        return _halve(builder, args[0], builder.fadd)
    return x.dtype(x), codegen


@intrinsic
def _exp16(typingctx, x):
    def codegen(context, builder, sig, args):
        x = args[0]
        vec = x.type
        if sig.args[0].dtype == types.float64:
            return _call(builder, "llvm.exp.v16f64", vec, [x])   # libm's exp, lane by lane
        const = lambda c: ir.Constant(vec, [c] * LANES)         # noqa: E731
        ivec = ir.VectorType(_I32, LANES)
        # x - k ln2 as two fused multiply-adds (llvm.fma), so that LLVM keeps ln2's two parts:
        # written with fsub and fmul, Numba's pass gives them the kernels' FASTMATH, and its
        # "reassoc" lets LLVM fold x - k LN2_HI - k LN2_LO into x - k ln2 with one float32
        # ln2 (3e-7 instead of 1e-7 relative error near x = -87; tests/test_simd.py). Numba
        # leaves flags off vector calls. The polynomial may be reordered: that costs nothing.
        mul, add = builder.fmul, builder.fadd
        fma = lambda a, b, c: _call(builder, "llvm.fma.v16f32", vec, [a, b, c])   # noqa: E731
        # the lines of the Python exp16 above, one for one
        below = builder.fcmp_ordered("<", x, const(EXP_MIN))
        above = builder.fcmp_ordered(">", x, const(EXP_MAX))
        xc = builder.select(below, const(EXP_MIN), builder.select(above, const(EXP_MAX), x))
        k = _call(builder, "llvm.floor.v16f32", vec, [add(mul(xc, const(LOG2_E)), const(0.5))])
        r = fma(k, const(-LN2_LO), fma(k, const(-LN2_HI), xc))  # x - k LN2_HI - k LN2_LO
        p = const(EXP_POLY[0])
        for c in EXP_POLY[1:]:
            p = add(mul(p, r), const(c))
        exp_r = add(add(mul(mul(p, r), r), r), const(1.0))
        k = builder.select(builder.fcmp_unordered("uno", k, k), const(0.0), k)  # no NaN to int
        bits = builder.shl(builder.add(builder.fptosi(k, ivec), ir.Constant(ivec, [127] * LANES)),
                           ir.Constant(ivec, [23] * LANES))
        return builder.select(below, const(0.0), builder.fmul(exp_r, builder.bitcast(bits, vec)))
    return x(x), codegen


@intrinsic
def _causal16(typingctx, x, j, i, fill):
    def codegen(context, builder, sig, args):
        lanes = ir.VectorType(ir.IntType(64), LANES)
        j64, i64 = (context.cast(builder, v, t, types.int64) for v, t in zip(args[1:3], sig.args[1:3]))
        last = _broadcast(builder, builder.sub(i64, j64), lanes)   # lanes l <= i - j are keys <= i
        keep = builder.icmp_signed("<=", ir.Constant(lanes, list(range(LANES))), last)
        fill_value = context.cast(builder, args[3], sig.args[3], sig.args[0].dtype)
        return builder.select(keep, args[0], _broadcast(builder, fill_value, args[0].type))
    return x(x, j, i, fill), codegen


# --- typing: which arguments each function takes (a clear TypingError otherwise) -------------

def _check_row(name, row, j):
    if not (isinstance(row, types.Array) and row.ndim == 1 and row.layout == "C"
            and row.dtype in _FLOATS):
        raise TypingError(f"{name} takes a 1-D C-contiguous float32 or float64 array, got {row}")
    if not isinstance(j, types.Integer):
        raise TypingError(f"{name}'s index must be an integer, got {j}")


def _check_vectors(name, *xs):
    if not all(isinstance(x, Vec16) for x in xs) or len({x.dtype for x in xs}) != 1:
        raise TypingError(f"{name} takes vectors of one dtype, got {xs}")


@overload(load16)
def _load16_jit(row, j):
    _check_row("load16", row, j)
    return lambda row, j: _load16(row, j)


@overload(store16)
def _store16_jit(row, j, x):
    _check_row("store16", row, j)
    _check_vectors("store16", x)
    if not row.mutable or x.dtype != row.dtype:
        raise TypingError(f"store16 writes a vector into a writable row of its dtype, got {row}, {x}")
    return lambda row, j, x: _store16(row, j, x)


@overload(splat16)
def _splat16_jit(s):
    if s not in _FLOATS:
        raise TypingError(f"splat16 takes a float32 or float64 scalar, got {s}")
    return lambda s: _splat16(s)


@overload(fma16)
def _fma16_jit(a, b, c):
    _check_vectors("fma16", a, b, c)
    return lambda a, b, c: _fma16(a, b, c)


def _overload_binary(python_function, vector_op):
    @overload(python_function)
    def _jit(a, b):
        _check_vectors(python_function.__name__, a, b)
        return lambda a, b: vector_op(a, b)


for _f, _op in ((mul16, _mul16), (add16, _add16), (sub16, _sub16), (max16, _max16)):
    _overload_binary(_f, _op)


@overload(hmax16)
def _hmax16_jit(x):
    _check_vectors("hmax16", x)
    return lambda x: _hmax16(x)


@overload(hsum16)
def _hsum16_jit(x):
    _check_vectors("hsum16", x)
    return lambda x: _hsum16(x)


@overload(exp16)
def _exp16_jit(x):
    _check_vectors("exp16", x)
    return lambda x: _exp16(x)


@overload(causal16)
def _causal16_jit(x, j, i, fill):
    _check_vectors("causal16", x)
    if not (isinstance(j, types.Integer) and isinstance(i, types.Integer) and fill in _FLOATS):
        raise TypingError(f"causal16 takes a vector, two integers and a float, got {x}, {j}, {i}, {fill}")
    return lambda x, j, i, fill: _causal16(x, j, i, fill)

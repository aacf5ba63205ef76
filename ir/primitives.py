"""Every primitive of fusegrad, each declared once.

An entry says all the compiler knows about an op: its kind, its shape/dtype rule
(`infer`), its NumPy meaning (`impl`, the reference interpreter), its VJP rule
(graph operations, so the backward is IR and can itself be differentiated), and how
a kernel spells one element (`scalar`). Backends never learn op names.

VJP rules receive ``(g, *inputs, out, **params)`` and return one cotangent (or
None, for no gradient) per input. Cotangents of elementwise inputs may have the
broadcast shape; the differentiation pass sums them back to the input's shape.
"""
from __future__ import annotations

import math

import numpy as np

from fusegrad.ir import ops
from fusegrad.ir import shapes as S
from fusegrad.ir.errors import BoundsError
from fusegrad.ir.primitive import (COSTLY, ELEMENTWISE, INDEX, LAYOUT, MATMUL, REDUCTION, Monoid,
                                   literal, primitive)


# ---------------------------------------------------------------- constants

const = primitive(
    "const", kind=ELEMENTWISE,
    # size=True: a number derived from shapes (a mean's count, 1/N); kernels take it
    # as an argument, not a literal (ir/ops.py `size_const` says why).
    infer=lambda *, value, dtype, size=False: ((), np.dtype(dtype)),
    impl=lambda *, value, dtype, size=False: np.asarray(value, dtype=dtype),
    scalar=lambda *, dtype, value, size=False: literal(value, dtype),
)

# ---------------------------------------------------------------- unary

neg = primitive(
    "neg", kind=ELEMENTWISE, infer=S.elementwise_numeric, impl=np.negative,
    vjp=lambda g, x, y: [-g],
    scalar="-{0}", grad_fn="NegBackward0", modular=True,
)
exp = primitive(
    "exp", kind=ELEMENTWISE, infer=S.elementwise_floating, impl=np.exp,
    vjp=lambda g, x, y: [g * y],
    # `scalar_math`: each target's math namespace (codegen/scalar_math.py on the CPU).
    scalar="scalar_math.exp({0})", grad_fn="ExpBackward0", cost=COSTLY,
)
log = primitive(
    "log", kind=ELEMENTWISE, infer=S.elementwise_floating, impl=np.log,
    vjp=lambda g, x, y: [g / x],
    scalar="scalar_math.log({0})", grad_fn="LogBackward0", cost=COSTLY,
)
sin = primitive(
    "sin", kind=ELEMENTWISE, infer=S.elementwise_floating, impl=np.sin,
    vjp=lambda g, x, y: [g * ops.cos(x)],
    scalar="scalar_math.sin({0})", grad_fn="SinBackward0", cost=COSTLY,
)
cos = primitive(
    "cos", kind=ELEMENTWISE, infer=S.elementwise_floating, impl=np.cos,
    vjp=lambda g, x, y: [-(g * ops.sin(x))],
    scalar="scalar_math.cos({0})", grad_fn="CosBackward0", cost=COSTLY,
)
tanh = primitive(
    "tanh", kind=ELEMENTWISE, infer=S.elementwise_floating, impl=np.tanh,
    vjp=lambda g, x, y: [g * (1 - y * y)],
    scalar="scalar_math.tanh({0})", grad_fn="TanhBackward0", cost=COSTLY,
)
sqrt = primitive(
    "sqrt", kind=ELEMENTWISE, infer=S.elementwise_floating, impl=np.sqrt,
    vjp=lambda g, x, y: [g / (2 * y)],
    scalar="math.sqrt({0})", grad_fn="SqrtBackward0",
)
abs_ = primitive(
    "abs", kind=ELEMENTWISE, infer=S.elementwise, impl=np.abs,
    vjp=lambda g, x, y: [g * ops.sign(x)],
    scalar="abs({0})", grad_fn="AbsBackward0",
)
sign = primitive(
    "sign", kind=ELEMENTWISE, infer=S.elementwise, impl=np.sign,
    vjp=lambda g, x, y: [None],
    # Comparisons rather than np.sign, which numba.cuda cannot compile; NaN and the
    # sign of zero pass through unchanged, as np.sign gives them.
    scalar="({one} if {0} > {zero} else (-{one} if {0} < {zero} else {0}))",
    grad_fn="SignBackward0",
)


def _sigmoid_impl(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    # `out`, where given, receives the result (as a ufunc's out): runtime/host.py
    # computes a large array's blocks into their rows of one result on its threads.
    with np.errstate(over="ignore"):
        if out is None or x.dtype != out.dtype or x.dtype.kind != "f":
            return _into(out, (1 / (1 + np.exp(-x))).astype(x.dtype, copy=False))
        np.negative(x, out=out)   # the same operations in place: the same bits
        np.exp(out, out=out)
        np.add(out, 1, out=out)
        return np.divide(1, out, out=out)


def _into(out: np.ndarray | None, result: np.ndarray) -> np.ndarray:
    """`result`, or, where an impl was given `out`, `out` holding it (cast as
    `conformed` casts)."""
    if out is None:
        return result
    np.copyto(out, result, casting="unsafe")
    return out


sigmoid = primitive(
    "sigmoid", kind=ELEMENTWISE, infer=S.elementwise_floating, impl=_sigmoid_impl,
    vjp=lambda g, x, y: [g * (y * (1 - y))],
    scalar="{one} / ({one} + scalar_math.exp(-{0}))", grad_fn="SigmoidBackward0", cost=COSTLY,
)


# Elements from which relu fills its result with zeros first (below, the extra call
# costs more than the faster loop gains).
_RELU_ZEROS_MIN = 1 << 14


def _relu_impl(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    # np.maximum keeps a NaN, and + 0 turns the -0.0 it may give for -0.0 into +0.0:
    # the kernels' `0 if x <= 0 else x`, without np.where's branch on every element
    # (0.5 ms against 4.4 for 2^20 float32, half of them negative, on the 2-core VM).
    if out is not None and out.dtype != x.dtype:
        return _into(out, _relu_impl(x))
    if x.dtype.kind == "f" and x.size >= _RELU_ZEROS_MIN:
        # Against a scalar, np.maximum runs NumPy's scalar loop; against an array of
        # zeros (the result's own memory, filled first) its SIMD loop: 2^20 float32
        # took 0.61 ms so and 0.23 so, float64 0.92 and 0.69 (on the 2-core EPYC VM).
        result = np.empty(x.shape, x.dtype) if out is None else out
        result.fill(0)
        np.maximum(x, result, out=result)
        return np.add(result, 0, out=result)
    result = np.asarray(np.maximum(x, 0, out=out))   # (a NumPy scalar for a 0-d x)
    if result.dtype.kind == "f":
        np.add(result, 0, out=result)
    return result.astype(x.dtype, copy=False)


# `x <= 0` rather than `x > 0` so that NaN passes through, as in NumPy and PyTorch.
relu = primitive(
    "relu", kind=ELEMENTWISE, infer=S.elementwise, impl=_relu_impl,
    vjp=lambda g, x, y: [ops.where(ops.gt(x, 0), g, 0)],
    scalar="({zero} if {0} <= {zero} else {0})", grad_fn="ReluBackward0",
)


def _integer_pow_scalar(x: str, *, dtype: np.dtype, n: int) -> str:
    if n == 0:
        return literal(1, dtype)
    if 0 < n <= 4:
        return " * ".join([x] * n)
    if -4 <= n < 0:
        return f"{literal(1, dtype)} / ({' * '.join([x] * -n)})"
    # An integer base has an unsigned 64-bit exponent (np.uint8(300) would be 44), so
    # that the power is unsigned arithmetic, which wraps (see codegen.loops._wrapped).
    return f"{x} ** {literal(n, dtype if dtype.kind == 'f' else np.uint64)}"


def _integer_pow_impl(x: np.ndarray, *, n: int, out: np.ndarray | None = None) -> np.ndarray:
    if x.dtype.kind in "iub":
        # In 64 bits, whose low bits are those of the power in x's dtype (the
        # interpreter casts back, wrapping as NumPy would); NumPy 2 refuses
        # uint8 ** 300, since 300 is no uint8.
        return _into(out, np.power(x.astype(np.uint64 if x.dtype.kind == "u" else np.int64), n))
    if x.dtype.kind == "f" and 1 <= abs(n) <= 4 and (out is None or out.dtype == x.dtype):
        return _repeated_product(x, n, out)
    if n >= 0 and (out is None or out.dtype == x.dtype):
        return np.power(x, n, out=out)
    return _into(out, np.power(x, n) if n >= 0 else np.power(x, float(n)).astype(x.dtype))


def _repeated_product(x: np.ndarray, n: int, out: np.ndarray | None) -> np.ndarray:
    """x**n of a float array for 1 <= |n| <= 4 as the kernels spell it (`x * x * x`,
    `1 / (x * x)`): the same roundings, so eager and compiled results agree bit for
    bit (PyTorch's x**2 is its x * x too), and np.power(x, 2) took 4x x * x's time.
    Only the last step writes `out`, which may be `x` itself."""
    k = abs(n)
    power = x
    for step in range(2, k + 1):
        last = step == k and n > 0
        power = np.multiply(power, x, out=out if last else None)
    if n < 0:
        return np.divide(x.dtype.type(1), power, out=out)
    if k == 1:
        return x.copy() if out is None else _into(out, x)
    return power


def _integer_pow_vjp(g, x, y, *, n):
    # x**0 is constant: the general rule would give 0 * x**-1 = NaN at x = 0.
    if n == 0:
        return [None]
    return [g * (n * ops.integer_pow(x, n - 1))]


integer_pow = primitive(
    "integer_pow", kind=ELEMENTWISE, infer=lambda x, *, n: S.elementwise(x),
    impl=_integer_pow_impl,
    vjp=_integer_pow_vjp,
    scalar=_integer_pow_scalar, grad_fn="PowBackward0", modular=True,
)
cast = primitive(
    "cast", kind=ELEMENTWISE,
    infer=lambda x, *, dtype: (x.shape, np.dtype(dtype)),
    impl=lambda x, *, dtype: x.astype(dtype),
    vjp=lambda g, x, y, *, dtype: [ops.cast(g, x.dtype) if x.dtype.kind == "f" else None],
    scalar=lambda x, *, dtype: f"np.{np.dtype(dtype).name}({x})", grad_fn="ToCopyBackward0",
)

# The identity, with no gradient: for terms whose value cannot change the result,
# like the shift of a stable logsumexp (JAX's stop_gradient, PyTorch's detach).
stop_gradient = primitive(
    "stop_gradient", kind=ELEMENTWISE, infer=S.elementwise, impl=lambda x: x,
    vjp=lambda g, x, y: [None],
    scalar="{0}",
)

# ---------------------------------------------------------------- binary

add = primitive(
    "add", kind=ELEMENTWISE, infer=S.elementwise, impl=np.add,
    vjp=lambda g, a, b, y: [g, g],
    scalar="{0} + {1}", grad_fn="AddBackward0", modular=True,
)
sub = primitive(
    "sub", kind=ELEMENTWISE, infer=S.elementwise_numeric, impl=np.subtract,
    vjp=lambda g, a, b, y: [g, -g],
    scalar="{0} - {1}", grad_fn="SubBackward0", modular=True,
)
mul = primitive(
    "mul", kind=ELEMENTWISE, infer=S.elementwise, impl=np.multiply,
    vjp=lambda g, a, b, y: [g * b, g * a],
    scalar="{0} * {1}", grad_fn="MulBackward0", modular=True,
)
div = primitive(
    "div", kind=ELEMENTWISE, infer=S.elementwise_floating, impl=np.true_divide,
    vjp=lambda g, a, b, y: [g / b, -(g * y) / b],
    scalar="{0} / {1}", grad_fn="DivBackward0",
)


def _pow_vjp(g, a, b, y):
    # The rules of PyTorch's pow_backward_self and pow_backward_exponent (JAX agrees
    # wherever its result is finite).
    # d/da = b * a**(b-1), but 0 where b == 0: a**0 is constant, and the formula
    # gives 0 * 0**-1 = NaN at a = 0 (x[:, None] ** np.arange(n), polynomial features).
    da = ops.where(ops.eq(b, 0), 0, g * (b * a ** (b - 1)))
    # d/db = a**b * log(a), but 0 where a == 0 and b >= 0 (0**b is constant there,
    # and the formula gives 0 * -inf = NaN); for b < 0 it stays inf * -inf = -inf.
    # The masked base is replaced by 1 before the log so that the masked branch
    # stays finite, and so do second derivatives (0 * inf would be NaN).
    flat = ops.eq(ops.where(ops.ge(b, 0), a, 1), 0)
    db = ops.where(flat, 0, g * (y * ops.log(ops.where(flat, 1, a))))
    return [da, db]


pow_ = primitive(
    "pow", kind=ELEMENTWISE, infer=S.elementwise_floating, impl=np.power,
    vjp=_pow_vjp, scalar="{0} ** {1}", grad_fn="PowBackward1", cost=COSTLY,
)


def _choose_vjp(g, a, b, y, a_wins):
    # Ties split the gradient in half, as JAX and PyTorch's maximum/minimum do.
    half = g * 0.5
    return [ops.where(a_wins, g, ops.where(ops.eq(a, b), half, 0)),
            ops.where(a_wins, 0, ops.where(ops.eq(a, b), half, g))]


maximum = primitive(
    "maximum", kind=ELEMENTWISE, infer=S.elementwise, impl=np.maximum,
    vjp=lambda g, a, b, y: _choose_vjp(g, a, b, y, ops.gt(a, b)),
    # NaN-propagating like np.maximum: a NaN on either side wins.
    scalar="({0} if {0} >= {1} or {0} != {0} else {1})", grad_fn="MaximumBackward0",
)
minimum = primitive(
    "minimum", kind=ELEMENTWISE, infer=S.elementwise, impl=np.minimum,
    vjp=lambda g, a, b, y: _choose_vjp(g, a, b, y, ops.lt(a, b)),
    scalar="({0} if {0} <= {1} or {0} != {0} else {1})", grad_fn="MinimumBackward0",
)


def _infix(name: str, impl, symbol: str, infer=S.comparison):
    """A binary op spelled with a Python operator and without a gradient (comparisons,
    and the bitwise ops below)."""
    return primitive(name, kind=ELEMENTWISE, infer=infer, impl=impl,
                     vjp=lambda g, a, b, y: [None, None], scalar="{0} %s {1}" % symbol)


lt = _infix("lt", np.less, "<")
le = _infix("le", np.less_equal, "<=")
gt = _infix("gt", np.greater, ">")
ge = _infix("ge", np.greater_equal, ">=")
eq = _infix("eq", np.equal, "==")
ne = _infix("ne", np.not_equal, "!=")

_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _where_impl(cond, a, b, out: np.ndarray | None = None) -> np.ndarray:
    """np.where(cond, a, b), choosing bits without branching: NumPy's where branches
    on every element, 4.4 ms for 2^20 float32 under a random mask (a relu's
    gradient) on the 2-core VM, against 0.6 for these masks of all ones or zeros.
    Bits are copied as they are: NaN, infinities and -0.0 come through."""
    a, b = np.asarray(a), np.asarray(b)
    dtype = a.dtype
    bits = _UNSIGNED.get(dtype.itemsize)
    if (cond.__class__ is not np.ndarray or cond.dtype != np.bool_ or cond.ndim == 0
            or bits is None or b.dtype != dtype or dtype.hasobject
            or (out is not None and out.dtype != dtype)):
        return _into(out, np.where(cond, a, b))
    shape = np.broadcast_shapes(cond.shape, a.shape, b.shape)
    result = out.view(bits) if out is not None else None
    ones = np.subtract(0, cond, dtype=bits)   # all ones where cond, zeros elsewhere
    if result is None and ones.shape == shape:
        result = ones   # (written in place: fewer new arrays, faster)
    if b.ndim == 0 and not b.view(bits):      # where(cond, g, 0): a gradient passed on
        return np.bitwise_and(a.view(bits), ones, out=result).view(dtype)
    if a.ndim == 0 and not a.view(bits):      # where(cond, 0, g)
        np.invert(ones, out=ones)
        return np.bitwise_and(b.view(bits), ones, out=result).view(dtype)
    picked = np.bitwise_and(a.view(bits), ones, out=result if result is not ones else None)
    np.invert(ones, out=ones)
    other = np.bitwise_and(b.view(bits), ones, out=ones if ones.shape == shape else None)
    return np.bitwise_or(picked, other, out=picked if picked.shape == shape else None).view(dtype)


where = primitive(
    "where", kind=ELEMENTWISE, infer=S.select, impl=_where_impl,
    vjp=lambda g, c, a, b, y: [None, ops.where(c, g, 0), ops.where(c, 0, g)],
    scalar="({1} if {0} else {2})", grad_fn="WhereBackward0",
)

# ---------------------------------------------------------------- layout

broadcast_to = primitive(
    "broadcast_to", kind=ELEMENTWISE, infer=S.broadcast_to,
    impl=lambda x, *, shape: np.broadcast_to(x, shape),
    vjp=lambda g, x, y, *, shape: [ops.sum_to(g, x.shape)],
    scalar="{0}", grad_fn="ExpandBackward0",
)
reshape = primitive(
    "reshape", kind=LAYOUT, infer=S.reshape,
    impl=lambda x, *, shape: np.asarray(x).reshape(shape),   # np.reshape, less its wrapper
    vjp=lambda g, x, y, *, shape: [ops.reshape(g, x.shape)],
    grad_fn="ViewBackward0",
)
transpose = primitive(
    "transpose", kind=LAYOUT, infer=S.transpose,
    impl=lambda x, *, perm: np.asarray(x).transpose(perm),   # np.transpose, less its wrapper
    vjp=lambda g, x, y, *, perm: [ops.transpose(g, tuple(np.argsort(perm)))],
    grad_fn="PermuteBackward0",
)



def _slices(index):
    # slice.indices() spells "down to the first element" as stop=-1, which NumPy
    # would read as "the last element": say None instead.
    return tuple(slice(start, None if stop < 0 else stop, step) for start, stop, step in index)


# Basic indexing with static bounds: `index` holds one normalized (start, stop,
# step) per axis. Its transpose, `scatter_slice`, puts a cotangent back in place.
slice_ = primitive(
    "slice", kind=LAYOUT, infer=S.slice_shape,
    impl=lambda x, *, index: x[_slices(index)],
    vjp=lambda g, x, y, *, index: [ops.scatter_slice(g, x.shape, index)],
    grad_fn="SliceBackward0", host_only=True,
)
scatter_slice = primitive(
    "scatter_slice", kind=LAYOUT, infer=S.scatter_shape,
    impl=lambda g, *, shape, index: _scatter(g, shape, index),
    vjp=lambda g, x, y, *, shape, index: [ops.slice_array(g, index)],
    grad_fn="SliceBackwardBackward0", host_only=True,   # PyTorch's slice_backward
)


def _scatter(g, shape, index):
    out = np.zeros(shape, dtype=g.dtype)
    out[_slices(index)] = g
    return out


# ---------------------------------------------------------------- reductions


def _sum_impl(x, *, axes, keepdims):
    # np.sum's own reduction, without its Python wrapper (a third of an eager sum)
    return np.add.reduce(np.asarray(x), axis=axes, keepdims=keepdims, dtype=x.dtype)


reduce_sum = primitive(
    "reduce_sum", kind=REDUCTION, infer=S.reduction, impl=_sum_impl,
    vjp=lambda g, x, y, *, axes, keepdims: [ops.expand_reduced(g, x.shape, axes, keepdims)],
    grad_fn="SumBackward1",
    # In 64 bits: a sequential float32 sum of 10^7 terms would lose about three digits.
    monoid=Monoid(identity=0, update="{acc} += {x}", block="block_sum", block_continues=False,
                  atomic="add", widen=True, kinds="fiu"),
)


def _chooser_vjp(g, x, y, *, axes, keepdims):
    # The gradient goes to the elements equal to the extremum, shared evenly among ties.
    y_full = ops.expand_reduced(y, x.shape, axes, keepdims)
    hits = ops.cast(ops.eq(x, y_full), x.dtype)
    count = ops.reduce_sum(hits, axes, keepdims=True)
    share = ops.expand_reduced(g, x.shape, axes, keepdims) / ops.broadcast_to(count, x.shape)
    return [share * hits]


reduce_max = primitive(
    "reduce_max", kind=REDUCTION, infer=S.nonempty_reduction,
    impl=lambda x, *, axes, keepdims: np.max(x, axis=axes, keepdims=keepdims),
    vjp=_chooser_vjp, grad_fn="MaxBackward1",
    # Once the accumulator is NaN no comparison replaces it.
    monoid=Monoid(identity=float("-inf"),
                  update="{acc} = {x} if {x} > {acc} or {x} != {x} else {acc}",
                  block="block_max", block_continues=True, atomic="max", nan_wins=True),
)
reduce_min = primitive(
    "reduce_min", kind=REDUCTION, infer=S.nonempty_reduction,
    impl=lambda x, *, axes, keepdims: np.min(x, axis=axes, keepdims=keepdims),
    vjp=_chooser_vjp, grad_fn="MinBackward1",
    monoid=Monoid(identity=float("inf"),
                  update="{acc} = {x} if {x} < {acc} or {x} != {x} else {acc}",
                  block="block_min", block_continues=True, atomic="min", nan_wins=True),
)
argmax = primitive(
    "argmax", kind=INDEX, infer=S.index_reduction,
    impl=lambda x, *, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims), host_only=True,
)
argmin = primitive(
    "argmin", kind=INDEX, infer=S.index_reduction,
    impl=lambda x, *, axis, keepdims: np.argmin(x, axis=axis, keepdims=keepdims), host_only=True,
)

# ---------------------------------------------------------------- matmul

def _matmul_vjp(g, a, b, y):
    # Operands with 2 or more dimensions whose batch dimensions broadcast (issue 11,
    # item 1): each cotangent is summed back over the batch dimensions its operand
    # was broadcast along. For matrices it is g @ b.T and a.T @ g, as before.
    return [ops.sum_to(ops.matmul(g, ops.matrix_transpose(b)), a.shape),
            ops.sum_to(ops.matmul(ops.matrix_transpose(a), g), b.shape)]


matmul = primitive(
    "matmul", kind=MATMUL, infer=S.matmul, impl=np.matmul, vjp=_matmul_vjp,
    grad_fn="MmBackward0",
)

# ---------------------------------------------------------------- more elementwise math
# (issue 11, item 6.) Spelled with `math.*`, which Numba compiles for float32 and
# float64 alike and CUDA provides; log1p and expm1 with `scalar_math.*`, whose float32
# versions vectorize (codegen/scalar_math.py).


def _unary_math(name: str, impl, vjp, function: str, grad_fn: str, cost: int = COSTLY,
                namespace: str = "math"):
    return primitive(name, kind=ELEMENTWISE, infer=S.elementwise_floating, impl=impl, vjp=vjp,
                     scalar=f"{namespace}.{function}({{0}})", grad_fn=grad_fn, cost=cost)


log1p = _unary_math("log1p", np.log1p, lambda g, x, y: [g / (1 + x)], "log1p", "Log1PBackward0",
                    namespace="scalar_math")
expm1 = _unary_math("expm1", np.expm1, lambda g, x, y: [g * (y + 1)], "expm1", "Expm1Backward0",
                    namespace="scalar_math")
tan = _unary_math("tan", np.tan, lambda g, x, y: [g * (1 + y * y)], "tan", "TanBackward0")
arctan = _unary_math("arctan", np.arctan, lambda g, x, y: [g / (1 + x * x)], "atan",
                     "AtanBackward0")
sinh = _unary_math("sinh", np.sinh, lambda g, x, y: [g * ops.cosh(x)], "sinh", "SinhBackward0")
cosh = _unary_math("cosh", np.cosh, lambda g, x, y: [g * ops.sinh(x)], "cosh", "CoshBackward0")
arcsin = _unary_math("arcsin", np.arcsin, lambda g, x, y: [g / ops.sqrt(1 - x * x)], "asin",
                     "AsinBackward0")
arccos = _unary_math("arccos", np.arccos, lambda g, x, y: [-(g / ops.sqrt(1 - x * x))], "acos",
                     "AcosBackward0")
log2 = _unary_math("log2", np.log2, lambda g, x, y: [g / (x * float(np.log(2)))], "log2",
                   "Log2Backward0")
log10 = _unary_math("log10", np.log10, lambda g, x, y: [g / (x * float(np.log(10)))], "log10",
                    "Log10Backward0")
exp2 = primitive(
    "exp2", kind=ELEMENTWISE, infer=S.elementwise_floating, impl=np.exp2,
    vjp=lambda g, x, y: [g * (y * float(np.log(2)))],
    scalar=lambda x, *, dtype: f"{literal(2, dtype)} ** {x}", grad_fn="Exp2Backward0", cost=COSTLY,
)

# Rounding to an integral value. Numba's math.floor and math.ceil return an int64,
# so each spelling keeps the argument itself where it is already integral, infinite
# or NaN (|x| >= 2**52, or the comparison is false), and copysign restores the sign
# of a zero result (np.ceil(-0.5) is -0.0). The gradient is zero almost everywhere.
_INTEGRAL = 4503599627370496.0   # 2**52: every float64 (and float32) this large is whole


def _rounding(name: str, impl, grad_fn: str, integral: str):
    def scalar(x: str, *, dtype) -> str:
        whole = integral.format(x=x)
        return (f"(np.{np.dtype(dtype).name}(math.copysign({whole}, {x})) "
                f"if abs({x}) < {_INTEGRAL!r} else {x})")
    return primitive(name, kind=ELEMENTWISE, infer=S.elementwise_floating, impl=impl,
                     vjp=lambda g, x, y: [None], scalar=scalar, grad_fn=grad_fn)


floor = _rounding("floor", np.floor, "FloorBackward0", "math.floor({x})")
ceil = _rounding("ceil", np.ceil, "CeilBackward0", "math.ceil({x})")
# Half to even, as np.round: the floor, plus one above the half and at an odd half.
round_ = _rounding(
    "round", np.round, "RoundBackward0",
    "(math.floor({x}) + 1 if {x} - math.floor({x}) > 0.5 or "
    "({x} - math.floor({x}) == 0.5 and math.floor({x}) % 2 == 1) else math.floor({x}))")


def _arctan2_vjp(g, a, b, y):
    # atan2(a, b) is the angle of the point (b, a).
    radius2 = a * a + b * b
    return [g * b / radius2, -(g * a) / radius2]


arctan2 = primitive(
    "arctan2", kind=ELEMENTWISE, infer=S.elementwise_floating, impl=np.arctan2,
    vjp=_arctan2_vjp, scalar="math.atan2({0}, {1})", grad_fn="Atan2Backward0", cost=COSTLY,
)
hypot = primitive(
    "hypot", kind=ELEMENTWISE, infer=S.elementwise_floating, impl=np.hypot,
    vjp=lambda g, a, b, y: [g * a / y, g * b / y],
    scalar="math.hypot({0}, {1})", grad_fn="HypotBackward0", cost=COSTLY,
)


# ---------------------------------------------------------------- logical, bitwise, modular
# (issue 11, item 4) `&`, `|`, `^`, `~` are NumPy's: logical on bool masks, bitwise on
# integers. `//` and `%` floor (the remainder has the divisor's sign), for integers
# and floats, as NumPy and Python; an integer divisor of 0 gives 0 (Numba's
# error_model="numpy", as NumPy without its warning).

bitwise_and = _infix("bitwise_and", np.bitwise_and, "&", S.elementwise_integral)
bitwise_or = _infix("bitwise_or", np.bitwise_or, "|", S.elementwise_integral)
bitwise_xor = _infix("bitwise_xor", np.bitwise_xor, "^", S.elementwise_integral)


def _invert_scalar(x: str, *, dtype: np.dtype) -> str:
    # Python's `~True` is -2: a mask is negated logically.
    return f"(not {x})" if dtype.kind == "b" else f"~{x}"


invert = primitive(
    "invert", kind=ELEMENTWISE, infer=S.elementwise_integral, impl=np.invert,
    vjp=lambda g, x, y: [None], scalar=_invert_scalar,
)


def _int64_guarded(text: str, at_minus_one: str, dtype: np.dtype) -> str:
    # int64 MIN // -1 and MIN % -1 trap on x86 (idiv overflows); narrower integers
    # are computed in 64 bits by Numba and cannot overflow. NumPy gives MIN and 0.
    if dtype == np.dtype(np.int64):
        return f"({at_minus_one} if {{1}} == -1 else {text})"
    return text


def _floor_divide_scalar(a: str, b: str, *, dtype: np.dtype) -> str:
    # Negation in uint64, which wraps (MIN stays MIN) where signed negation need not.
    negated = "np.int64(np.uint64(0) - np.uint64({0}))"
    return _int64_guarded("{0} // {1}", negated, dtype).format(a, b)


def _remainder_scalar(a: str, b: str, *, dtype: np.dtype) -> str:
    return _int64_guarded("{0} % {1}", "np.int64(0)", dtype).format(a, b)


def _quiet(function):
    def impl(a, b):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return function(a, b)
    impl.__name__ = function.__name__
    return impl


floor_divide = primitive(
    "floor_divide", kind=ELEMENTWISE, infer=S.elementwise_numeric, impl=_quiet(np.floor_divide),
    # Piecewise constant: zero gradient, as PyTorch (which has none) and JAX.
    vjp=lambda g, a, b, y: [None, None], scalar=_floor_divide_scalar,
)
remainder = primitive(
    "remainder", kind=ELEMENTWISE, infer=S.elementwise_numeric, impl=_quiet(np.remainder),
    # a - b * floor(a / b): PyTorch's remainder backward.
    vjp=lambda g, a, b, y: [g, -(g * ops.floor_divide(a, b))],
    scalar=_remainder_scalar, grad_fn="RemainderBackward0",
)


# ---------------------------------------------------------------- gathers (issue 11, item 2)
# `gather(x, *indices, batch=b)` is NumPy's ``x[a0, ..., a(b-1), i0, i1, ...]`` where
# each `a` is an arange over one of x's `b` leading (batch) axes, broadcast along that
# axis of the index arrays (which share one shape beginning with those axes): plain
# integer-array indexing (b = 0) and take_along_axis (b = ndim - 1) are both gathers.
# Its transpose, `scatter_add`, adds each value into its place; duplicate indices
# accumulate (np.add.at). Each is the other's VJP, so second derivatives work. Both
# run as host steps (NumPy), where an out-of-range index is NumPy's IndexError, raised
# as BoundsError with the user's line (ir/interpreter.py); negative indices wrap.

def _advanced_index(shape, indices, batch: int) -> tuple:
    ndim = indices[0].ndim
    aranges = tuple(np.arange(shape[axis]).reshape((1,) * axis + (-1,) + (1,) * (ndim - axis - 1))
                    for axis in range(batch))
    return aranges + tuple(indices)


def _bounds_error(error: IndexError, name: str, shape) -> BoundsError:
    return BoundsError(f"{name}: {error} (an index array into an array of shape {tuple(shape)}); "
                       f"valid indices along an axis of size n are -n ... n-1")


def _gather_impl(x, *indices, batch):
    try:
        return x[_advanced_index(x.shape, indices, batch)]
    except IndexError as error:
        raise _bounds_error(error, "gather", x.shape) from None


def _scatter_add_impl(g, *indices, shape, batch):
    out = np.zeros(shape, dtype=g.dtype)
    try:
        np.add.at(out, _advanced_index(shape, indices, batch), g)
    except IndexError as error:
        raise _bounds_error(error, "scatter_add", shape) from None
    return out


def _gather_vjp(g, x, *indices_and_out, batch):
    indices = indices_and_out[:-1]
    return [ops.scatter_add(g, indices, x.shape, batch)] + [None] * len(indices)


def _scatter_add_vjp(g, values, *indices_and_out, shape, batch):
    indices = indices_and_out[:-1]
    return [ops.gather(g, indices, batch)] + [None] * len(indices)


gather = primitive(
    "gather", kind=LAYOUT, infer=S.gather, impl=_gather_impl, vjp=_gather_vjp,
    grad_fn="IndexBackward0", host_only=True,
)
scatter_add = primitive(
    "scatter_add", kind=LAYOUT, infer=S.scatter_add, impl=_scatter_add_impl,
    vjp=_scatter_add_vjp, grad_fn="ScatterAddBackward0", host_only=True,
)


# ---------------------------------------------------------------- functional updates (issue 11, item 3)
# ``x[idx] = v`` at index arrays: `scatter` writes `values` (gather's result shape) into a
# copy of x. Where an index repeats, NumPy's assignment keeps one of the writes; the VJP
# finds which by scattering the positions of the values (`iota`) the same way, so that
# only the value that was kept gets a gradient, and x none where it was overwritten.

def _scatter_impl(x, values, *indices, batch):
    out = np.array(x)
    try:
        out[_advanced_index(x.shape, indices, batch)] = values
    except IndexError as error:
        raise _bounds_error(error, "scatter", x.shape) from None
    return out


def _scatter_vjp(g, x, values, *indices_and_out, batch):
    indices = indices_and_out[:-1]
    overwritten = ops.scatter(g, ops.broadcast_to(ops.const(0, g.dtype), values.shape), indices,
                              batch)
    positions = ops.iota(values.shape)
    unwritten = ops.broadcast_to(ops.const(-1, positions.dtype), x.shape)
    kept = ops.eq(ops.gather(ops.scatter(unwritten, positions, indices, batch), indices, batch),
                  positions)
    return [overwritten, ops.where(kept, ops.gather(g, indices, batch), 0)] + [None] * len(indices)


scatter = primitive(
    "scatter", kind=LAYOUT, infer=S.scatter, impl=_scatter_impl, vjp=_scatter_vjp,
    grad_fn="IndexPutBackward0", host_only=True,
)
# The positions 0, 1, ... of an array of `shape`, in C order (an index, no gradient).
iota = primitive(
    "iota", kind=INDEX, infer=lambda *, shape: (tuple(shape), np.dtype(np.int64)),
    impl=lambda *, shape: np.arange(int(np.prod(shape, dtype=np.int64))).reshape(shape),
    host_only=True,
)


# ---------------------------------------------------------------- cumulative sums and products
# (issue 11, item 7) Scans along one axis, run as host steps (NumPy's cumsum and
# cumprod, sequential within each line, as in NumPy); CUDA copies them to the host.
# prod is a composition over cumprod (ops.prod): CUDA has no atomic multiply to give
# a product a reduction Monoid, and cumprod's VJP already handles zeros exactly.

from fusegrad.ir.errors import ShapeError  # noqa: E402 (this section's own import)

CUMULATIVE = "cumulative"   # one output element from the elements before it along `axis`


def _cumulative_shape(x, *, axis: int):
    if not 0 <= axis < x.ndim:
        raise ShapeError(f"axis {axis} is out of range for {x.type_str}")
    return x.shape, x.dtype


def _reverse_cumsum(v, axis: int):
    """sum_{j >= i} v_j along `axis`: the transpose of cumsum."""
    return ops.flip(ops.cumsum(ops.flip(v, axis), axis), axis)


def _cumprod_vjp(g, x, y, *, axis):
    """d y_l / d x_i = prod_{k <= l, k != i} x_k for l >= i (PyTorch's cumprod_backward,
    written without data-dependent branches). Where x_i != 0 that is y_l / x_i, so the
    cotangent is reverse_cumsum(g * y) / x_i, the same polynomial wherever x_i != 0. At
    the first or second zero of a line it is reverse_cumsum(g * y'), y' the cumprod of x
    with that one zero replaced by 1: the same polynomial (at the second zero it holds
    the first zero as a factor, so its derivative in that zero is right). At a later
    zero it is 0 with all its first derivatives (two other zeros are factors). So the
    cotangent is exact at zeros, and so is its own derivative (Hessians)."""
    zero = ops.eq(x, 0)
    nth_zero = ops.where(zero, ops.cumsum(ops.cast(zero, np.int64), axis), 0)
    at_zero = 0   # at a third or later zero
    for n in (2, 1):
        nth = ops.eq(nth_zero, n)
        y_without = ops.cumprod(ops.where(nth, 1, x), axis)
        at_zero = ops.where(nth, _reverse_cumsum(g * y_without, axis), at_zero)
    elsewhere = _reverse_cumsum(g * y, axis) / ops.where(zero, 1, x)
    return [ops.where(zero, at_zero, elsewhere)]


cumsum = primitive(
    "cumsum", kind=CUMULATIVE, infer=_cumulative_shape,
    impl=lambda x, *, axis: np.cumsum(x, axis=axis, dtype=x.dtype),
    vjp=lambda g, x, y, *, axis: [_reverse_cumsum(g, axis)],
    grad_fn="CumsumBackward0", host_only=True,
)
cumprod = primitive(
    "cumprod", kind=CUMULATIVE, infer=_cumulative_shape,
    impl=lambda x, *, axis: np.cumprod(x, axis=axis, dtype=x.dtype),
    vjp=_cumprod_vjp, grad_fn="CumprodBackward0", host_only=True,
)


# ---------------------------------------------------------------- erf, erfc
# (issue 11, item 6, rest) NumPy has no erf: the interpreter's meaning is libm's erf
# per element, as a NumPy ufunc compiled by Numba on first use (np.vectorize of
# math.erf took 0.5 s for 10^6 elements, and the eager API runs the interpreter).
# erf's kernel spelling is scalar_math.erf (vectorized in float32); erfc keeps libm's,
# whose relative accuracy in the far tail 1 - erf cannot give.

def _erf(x):
    return math.erf(x)


def _erfc(x):
    return math.erfc(x)


def _libm_ufunc(function):
    compiled = []

    def impl(x: np.ndarray) -> np.ndarray:
        if not compiled:
            from numba import vectorize  # only when an erf is interpreted
            compiled.append(vectorize(["float32(float32)", "float64(float64)"])(function))
        return np.asarray(compiled[0](x)).astype(x.dtype, copy=False)
    impl.__name__ = function.__name__.lstrip("_")
    return impl


_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)

erf = _unary_math("erf", _libm_ufunc(_erf),
                  lambda g, x, y: [g * (ops.exp(-(x * x)) * _TWO_OVER_SQRT_PI)], "erf",
                  "ErfBackward0", namespace="scalar_math")
erfc = _unary_math("erfc", _libm_ufunc(_erfc),
                   lambda g, x, y: [-(g * (ops.exp(-(x * x)) * _TWO_OVER_SQRT_PI))], "erfc",
                   "ErfcBackward0")


# ---------------------------------------------------------------- loops (issue 11, item 12)

from fusegrad.ir import loops as _loops  # noqa: E402  (after ops: its rules build graphs)

# JAX's lax.scan: the body graph (params["body"], a `loops.Body`) once per step; outputs
# final carries, stacked ys, and the carry entering each step (the backward's residual).
scan = primitive(
    "scan", kind="loop", infer=_loops.scan_types, impl=_loops.scan_impl, vjp=_loops.scan_vjp,
    grad_fn="ScanBackward0", multiple_results=True,
    # The host runs the loop (runtime/executable.py, ScanStep) over the body compiled
    # once; on CUDA the reference interpreter runs it, on the host.
    host_only=True,
)

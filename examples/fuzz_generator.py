"""Writing random programs (`fuzz_programs.Program`) from a seed, reproducibly.

The generator evaluates every statement with NumPy as it writes it, so it knows each
value's shape, dtype and range. Domains are kept safe (log of x*x + 1, exp of small
values, powers of positive bases) and a value that grows beyond `LIMIT` is squashed
(tanh, x / (1 + |x|), ...), so that the oracles' answers are well conditioned even
after hundreds of operations. Integer arithmetic is kept free of overflow: a
statement whose integers would wrap is dropped (wrapping is a known defect, item 3
of issue 9, exercised only with `include_known`). So are the spellings of the other
known open defects: `include_known` writes them too.
"""
from __future__ import annotations

import itertools
from typing import Callable

import numpy as np

from fuzz_programs import FLOATS, NP, Program, Stmt, quiet

LIMIT = 4.0        # floats beyond this magnitude are squashed before further use
INT_LIMIT = 60     # integers beyond this are only compared or cast, never grown
MAX_ELEMENTS = 25_000
INTS = ("int8", "uint8", "int16", "int32", "int64")


# ---------------------------------------------------------------- the generator

class Generator:
    """Builds one program of about `size` statements from `seed`."""

    def __init__(self, seed: int, size: int, include_known: bool = False,
                 families: tuple[str, ...] | None = None) -> None:
        self.families = families or tuple(FAMILIES)   # the statement families it draws from
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.size = size
        self.include_known = include_known
        a, b, c = (int(d) for d in self.rng.choice([2, 3, 4, 5], 3, replace=False))
        # Sometimes rows longer than the kernels' block of 1024 (codegen/body.py: BLOCK),
        # and kernels run threaded however small (runtime/executable.py).
        self.threaded = bool(self.rng.random() < 0.3)
        self.small_dims = (a, b, c)
        if self.rng.random() < 0.2:
            b = int(self.rng.choice([1031, 2053]))
        self.dims = (a, b, c)
        self.shapes = [(), (1,), (b,), (a, 1), (1, b), (a, b), (c, a, b), (c, 1, b), (1, a, 1)]
        self.float = str(self.rng.choice(FLOATS))
        self.inputs: dict[str, np.ndarray] = {}
        self.env: dict[str, np.ndarray] = {}
        self.stmts: list[Stmt] = []
        self.squashed: set[str] = set()   # values too large to use but through their squash
        self.names = (f"v{i}" for i in itertools.count())

    # ------------------------------------------------------------ values

    def new_input(self, shape, dtype: str | None = None) -> str:
        dtype = dtype or self.float
        kind = np.dtype(dtype).kind
        if kind == "f":
            name = f"x{sum(np.dtype(a.dtype).kind == 'f' for a in self.inputs.values())}"
            if self.rng.random() < 0.2:   # small integers: exact ties for max, argmax, ==
                array = self.rng.integers(-2, 3, shape).astype(dtype)
            else:
                array = self.rng.uniform(-2, 2, shape).astype(dtype)
        elif kind == "b":
            name = f"m{len(self.inputs)}"
            array = self.rng.random(shape) < 0.5
        else:
            name = f"i{len(self.inputs)}"
            low = 0 if kind == "u" else -3
            array = self.rng.integers(low, 5, shape).astype(dtype)
        if array.ndim >= 2 and self.rng.random() < 0.2:
            array = np.asfortranarray(array)   # compile_grad copies it to C order
        self.inputs[name] = array
        self.env[name] = array
        return name

    def values(self, accept: Callable[[np.ndarray], bool]) -> list[str]:
        return [n for n, v in self.env.items() if n not in self.squashed and accept(v)]

    def pick(self, accept: Callable[[np.ndarray], bool]) -> str | None:
        """A value passing `accept`: mostly one of the latest (depth), sometimes any (sharing)."""
        names = self.values(accept)
        if not names:
            return None
        if self.rng.random() < 0.6:
            return names[-1 - min(int(self.rng.geometric(0.5)) - 1, len(names) - 1)]
        return names[int(self.rng.integers(len(names)))]

    def emit(self, op: str, template: str, *args: str) -> str | None:
        """Add `out = template(args)` if its value is finite and its integers do not wrap."""
        if any(a is None for a in args):
            return None
        expr = template.format(*args)
        try:
            with quiet():
                value = np.asarray(eval(expr, {"xp": NP}, self.env))
        except ValueError:   # NumPy refuses it too: the maximum of an empty slice
            return None
        except (TypeError, IndexError) as error:
            raise AssertionError(f"generator wrote an invalid statement {expr!r}: {error}")
        if value.size > MAX_ELEMENTS or value.dtype.kind == "f" and not np.isfinite(value).all():
            return None
        if value.dtype.kind in "iu" and not self.include_known and not self._exact(expr, value):
            return None
        name = next(self.names)
        self.env[name] = value
        self.stmts.append(Stmt(name, expr, args, op, str(value.dtype)))
        if value.dtype.kind == "f" and value.size and np.abs(value).max() > LIMIT:
            return self.squash(name)
        return name

    def _exact(self, expr: str, value: np.ndarray) -> bool:
        """Integers computed in their own dtype equal the same computed in int64 (no wrap)."""
        wide = {n: (v.astype(np.int64) if v.dtype.kind in "iu" else v) for n, v in self.env.items()}
        with quiet():
            exact = np.asarray(eval(expr, {"xp": NP}, wide))
        return bool(np.array_equal(value.astype(np.int64), exact)) and np.abs(exact).max(initial=0) < 1000

    def squash(self, name: str) -> str:
        self.squashed.add(name)
        template = str(self.rng.choice(["xp.tanh({0})", "{0} / (1 + xp.abs({0}))",
                                        "xp.sin({0})", "xp.sigmoid({0})",
                                        "xp.log({0} * {0} + 1)", "{0} / (1 + {0} * {0})"]))
        return self.emit("squash", template, name) or name

    # ------------------------------------------------------------ the program

    def generate(self) -> Program:
        for _ in range(int(self.rng.integers(2, 5))):
            self.new_input(self.shapes[int(self.rng.integers(len(self.shapes)))])
        for _ in range(int(self.rng.integers(0, 3))):
            dtype = str(self.rng.choice(INTS + ("bool",)))
            self.new_input(self.shapes[int(self.rng.integers(1, len(self.shapes)))], dtype)
        if self.rng.random() < 0.2:   # a float input of the other precision: promotions
            self.new_input((self.dims[1],), FLOATS[1 - FLOATS.index(self.float)])
        families = list(self.families)
        weights = np.array([FAMILIES[f][0] for f in families], dtype=float)
        while len(self.stmts) < self.size:
            family = families[int(self.rng.choice(len(families), p=weights / weights.sum()))]
            FAMILIES[family][1](self)
        return self.finish()

    def finish(self) -> Program:
        """The program whose loss sums every value no statement reads, each weighted."""
        used = {a for s in self.stmts for a in s.args}
        terms = [s.out for s in self.stmts if s.out not in used]
        dtypes = [self.env[t].dtype for t in terms]
        weights = [self.rng.standard_normal(self.env[t].shape).astype(
            dtype if dtype.kind == "f" else self.float) for t, dtype in zip(terms, dtypes)]
        return Program(self.seed, self.inputs, self.stmts, terms, weights, self.float,
                       self.threaded)

    # ------------------------------------------------------------ helpers for families

    def is_float(self, v: np.ndarray) -> bool:
        return v.dtype.kind == "f"

    def small_float(self, v: np.ndarray) -> bool:
        return v.dtype.kind == "f" and np.abs(v).max(initial=0) <= 3

    def broadcastable(self, a: str, accept) -> str | None:
        shape = self.env[a].shape
        def fits(v):
            try:
                np.broadcast_shapes(shape, v.shape)
            except ValueError:
                return False
            return accept(v)
        return self.pick(fits)

    def promotes_alike(self, a: np.ndarray, b: np.ndarray) -> bool:
        """fusegrad promotes int + float to the float (PyTorch, JAX); NumPy widens int32/int64
        with float32 to float64. Mix implicitly only where the two agree."""
        kinds = {a.dtype.kind, b.dtype.kind}
        if "f" not in kinds or kinds <= {"f", "b"}:
            return True
        f, i = (a, b) if a.dtype.kind == "f" else (b, a)
        return f.dtype == np.float64 or i.dtype.itemsize <= 2

    def axis_choice(self, ndim: int):
        options: list = [None] + list(range(ndim)) + [a - ndim for a in range(ndim)]
        if ndim >= 2:
            options += [tuple(sorted(self.rng.choice(ndim, 2, replace=False).tolist()))]
        return options[int(self.rng.integers(len(options)))]

    def choice(self, options):
        return options[int(self.rng.integers(len(options)))]


# ---------------------------------------------------------------- statement families

UNARY = [
    ("neg", "-{0}"), ("tanh", "xp.tanh({0})"), ("sin", "xp.sin({0})"), ("cos", "xp.cos({0})"),
    ("sigmoid", "xp.sigmoid({0})"), ("relu", "xp.relu({0})"), ("abs", "xp.abs({0})"),
    ("sign", "xp.sign({0})"), ("log", "xp.log({0} * {0} + 1)"),
    ("sqrt", "xp.sqrt({0} * {0} + 0.25)"), ("square", "{0} ** 2"), ("cube", "{0} ** 3"),
    ("pow0", "{0} ** 0"), ("reciprocal", "(1 + {0} * {0}) ** -1"),
    ("inverse_square", "(1.5 + xp.tanh({0})) ** -2"), ("pow_const", "xp.sigmoid({0}) ** 1.5"),
    ("rpow", "2.0 ** xp.tanh({0})"), ("clip", "xp.clip({0}, -0.7, 0.6)"),
    ("scale", "{0} * 0.5"), ("shift", "{0} - 1.25"), ("rsub", "2 - {0}"), ("div_const", "{0} / 3"),
    ("rdiv", "1.5 / (1 + {0} * {0})"), ("softsign", "{0} / (1 + xp.abs({0}))"),
]
KNOWN_UNARY = [("pow_whole_float", "{0} ** 2.0")]   # issue 9 item 9


def unary(g: Generator) -> None:
    table = UNARY + (KNOWN_UNARY if g.include_known else [])
    op, template = g.choice(table)
    a = g.pick(g.is_float)
    if op == "clip" and not g.include_known and _on_the_bounds(g.env[a]):
        # Found by this fuzzer: fusegrad's clamp halves the gradient at a bound
        # (maximum/minimum split ties); PyTorch's passes it whole.
        return
    g.emit(op, template, a)
    if g.rng.random() < 0.1:   # exp needs a small argument; kept rarer than the rest
        small = g.pick(g.small_float)
        if small:
            g.emit("exp", "xp.exp({0})", small)


def _on_the_bounds(value: np.ndarray) -> bool:
    bounds = np.array([-0.7, 0.6], value.dtype)
    return bool(np.isin(value, bounds).any())


BINARY = [
    ("add", "{0} + {1}"), ("sub", "{0} - {1}"), ("mul", "{0} * {1}"),
    ("div", "{0} / (1 + {1} * {1})"), ("maximum", "xp.maximum({0}, {1})"),
    ("minimum", "xp.minimum({0}, {1})"), ("pow", "(1.5 + xp.tanh({0})) ** xp.tanh({1})"),
]


def binary(g: Generator) -> None:
    op, template = g.choice(BINARY)
    a = g.pick(g.is_float)
    b = g.broadcastable(a, g.is_float)
    g.emit(op, template, a, b)


COMPARE = ["<", "<=", ">", ">="]


def compare(g: Generator) -> None:
    a = g.pick(lambda v: v.dtype.kind in "fiu")
    b = g.broadcastable(a, lambda v: v.dtype.kind in "fiu" and g.promotes_alike(g.env[a], v))
    which = int(g.rng.integers(4 + 2 + (2 if g.include_known else 0)))
    if which < 4:
        g.emit("compare", f"{{0}} {COMPARE[which]} {{1}}", a, b)
    elif which < 6:
        g.emit("equal", ("xp.eq({0}, {1})", "xp.ne({0}, {1})")[which - 4], a, b)
    else:   # the operators: issue 9 item 1
        g.emit("equal_operator", ("({0} == {1})", "({0} != {1})")[which - 6], a, b)
    if g.rng.random() < 0.5:   # against a constant
        constant = "0.3" if g.env[a].dtype.kind == "f" else "1"
        g.emit("compare_const", f"{{0}} {g.choice(COMPARE)} {constant}", a)


# Found by this fuzzer: a fused kernel adds booleans as integers (True + True = 2);
# a Python int with a bool array becomes a bool constant (m * 2 is m).
KNOWN_BOOLS = [("or", "{0} + {1}"), ("bool_times_int", "{0} * 2 + {1}")]


def select(g: Generator) -> None:
    c = g.pick(lambda v: v.dtype == np.bool_)
    if c is None:
        return compare(g)
    a = g.broadcastable(c, lambda v: v.dtype.kind in "fiu")
    if a is None:
        return None
    form = int(g.rng.integers(4))
    if form == 0:
        constant = "0.0" if g.env[a].dtype.kind == "f" else "0"
        g.emit("where", f"xp.where({{0}}, {{1}}, {constant})", c, a)
        return
    if form == 1 and g.env[a].dtype.kind == "f":   # the mask idiom: bool times float
        g.emit("mask", "{0} * {1}", c, a)
        return
    if form == 2:   # masks combined: and, or (NumPy's bool arithmetic), counted
        d = g.broadcastable(c, lambda v: v.dtype == np.bool_)
        table = [("and", "{0} * {1}")] + (KNOWN_BOOLS if g.include_known else [])
        op, template = g.choice(table)
        g.emit(op, template, c, d)
        return
    b = g.pick(lambda v: _broadcasts(v.shape, g.env[a].shape, g.env[c].shape)
               and v.dtype.kind in "fiu" and g.promotes_alike(g.env[a], v))
    g.emit("where", "xp.where({0}, {1}, {2})", c, a, b)


def _broadcasts(*shapes) -> bool:
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        return False
    return True


def casts(g: Generator) -> None:
    """Between the float precisions, and booleans counted (a sum of bools is an int64)."""
    if g.rng.random() < 0.6:
        a = g.pick(g.is_float)
        g.emit("cast_float", f"{{0}}.astype('{g.choice(FLOATS)}')", a)
        return
    m = g.pick(lambda v: v.dtype == np.bool_ and v.ndim >= 1)
    if m is not None:
        g.emit("count", f"{{0}}.sum(axis={g.axis_choice(g.env[m].ndim)!r})", m)


def integers(g: Generator) -> None:
    a = g.pick(lambda v: v.dtype.kind in "iu" and np.abs(v).max(initial=0) <= INT_LIMIT)
    if a is None:
        g.new_input(g.choice(g.shapes[1:]), g.choice(["int32", "int64", "int8"]))
        return
    form = int(g.rng.integers(6))
    if form == 0:
        b = g.broadcastable(a, lambda v: v.dtype.kind in "iu" and np.abs(v).max(initial=0) <= INT_LIMIT)
        op, template = g.choice([("int_add", "{0} + {1}"), ("int_mul", "{0} * {1}"),
                                 ("int_sub", "{0} - {1}"), ("int_max", "xp.maximum({0}, {1})")])
        g.emit(op, template, a, b)
    elif form == 1:
        op, template = g.choice([("int_scale", "{0} * 2 + 1"), ("int_square", "{0} ** 2"),
                                 ("int_abs", "xp.abs({0})"), ("int_neg", "-{0}")])
        g.emit(op, template, a)
    elif form == 2:
        g.emit("cast", f"{{0}}.astype('{g.float}')", a)
    elif form == 3:   # an implicit int -> float promotion
        f = g.broadcastable(a, lambda v: v.dtype.kind == "f" and g.promotes_alike(g.env[a], v))
        if f:
            g.emit("int_times_float", "{0} * {1}", f, a)
    elif form == 4 and g.env[a].ndim and (g.include_known or g.env[a].dtype.itemsize >= 4):
        # Sums of 8- and 16-bit integers wrap in fusegrad (found by this fuzzer): NumPy
        # and PyTorch sum them in int64.
        g.emit("int_sum", f"{{0}}.sum(axis={g.axis_choice(g.env[a].ndim)!r})", a)
    elif form == 5 and g.include_known:   # issue 9 item 4: x ** integer array
        f = g.broadcastable(a, g.is_float)
        g.emit("pow_int_array", "{0} ** xp.abs({1})", f, a)


REDUCE = [("sum", "{0}.sum(axis={axis!r}, keepdims={keep})"),
          ("mean", "{0}.mean(axis={axis!r}, keepdims={keep})"),
          ("max", "{0}.max(axis={axis!r}, keepdims={keep})"),
          ("min", "{0}.min(axis={axis!r}, keepdims={keep})"),
          ("var", "{0}.var(axis={axis!r}, keepdims={keep})"),
          ("logsumexp", "xp.logsumexp({0}, axis={axis!r}, keepdims={keep})")]


def reduce(g: Generator) -> None:
    a = g.pick(lambda v: v.dtype.kind == "f" and v.ndim >= 1)
    if a is None:
        return unary(g)
    ndim = g.env[a].ndim
    form = int(g.rng.integers(10))
    if form == 0:
        g.emit("softmax", f"xp.softmax({{0}}, axis={int(g.rng.integers(-ndim, ndim))})", a)
    elif form == 1:
        op = g.choice(["argmax", "argmin"])
        arg = g.emit(op, f"xp.{op}({{0}}, axis={int(g.rng.integers(-ndim, ndim))})", a)
        labels = arg and g.broadcastable(arg, lambda v: v.dtype.kind in "iu")
        if labels:   # the accuracy idiom: argmax compared with integer labels
            g.emit("equal", "xp.eq({0}, {1})", arg, labels)
    else:
        op, template = g.choice(REDUCE)
        g.emit(op, template.replace("{axis!r}", repr(g.axis_choice(ndim)))
               .replace("{keep}", str(bool(g.rng.random() < 0.4))), a)


def layout(g: Generator) -> None:
    a = g.pick(g.is_float) if g.rng.random() < 0.85 else g.pick(lambda v: v.dtype.kind != "f")
    if a is None:
        return
    shape = g.env[a].shape
    form = int(g.rng.integers(5))
    if form == 0:
        g.emit("reshape", f"{{0}}.reshape({_reshape_target(g, shape)!r})", a)
    elif form == 1 and len(shape) >= 2:
        if len(shape) == 2 or g.rng.random() < 0.3:
            g.emit("transpose", "{0}.T", a)
        else:
            perm = tuple(int(p) for p in g.rng.permutation(len(shape)))
            g.emit("permute", f"xp.permute({{0}}, {perm!r})", a)
    elif form == 2:
        g.emit("broadcast_to", f"xp.broadcast_to({{0}}, {_broadcast_target(g, shape)!r})", a)
    else:
        g.emit("slice", "{0}" + _index(g, shape), a)


def _reshape_target(g: Generator, shape) -> tuple:
    size = int(np.prod(shape, dtype=np.int64))
    options = [(size,), (1, size), (size, 1), (-1,)]
    for d in g.dims:
        if size % d == 0 and size > d:
            options += [(d, size // d), (size // d, 1, d), (1, d, -1)]
    return g.choice(options)


def _broadcast_target(g: Generator, shape) -> tuple:
    target = [g.choice(g.dims) if d == 1 else d for d in shape]
    if g.rng.random() < 0.5 or not target:
        target = [g.choice(g.small_dims)] + target
    return tuple(target)


def _index(g: Generator, shape) -> str:
    items = []
    for size in shape:
        if size == 0:
            items.append(":")
            continue
        form = int(g.rng.integers(8))
        items.append([":", "1:", ":-1", "::2", "::-1", f"{int(g.rng.integers(size))}",
                      f"{int(g.rng.integers(size))}:", "-1:"][form] if size > 1 else
                     g.choice([":", "0", "-1:"]))
        if g.rng.random() < 0.02:   # empty
            items[-1] = g.choice([f"{size}:", ":0", "1:1"])
    if g.rng.random() < 0.3:
        items.insert(int(g.rng.integers(len(items) + 1)), "None")
    if len(items) > 1 and g.rng.random() < 0.3:
        items = ["..."] + items[1:]
    return "[" + (", ".join(items) or "None") + "]"


def matmul(g: Generator) -> None:
    a = g.pick(lambda v: v.dtype.kind == "f" and v.ndim in (1, 2))
    if a is None:
        return layout(g)
    k = g.env[a].shape[-1]
    b = g.pick(lambda v: v.dtype.kind == "f" and v.ndim in (1, 2) and v.shape[0] == k)
    if b is None or g.rng.random() < 0.3:
        shape = (k,) if g.rng.random() < 0.3 else (k, g.choice(g.small_dims))
        b = g.new_input(shape)
    g.emit("matmul", "{0} @ {1}", a, b)


# name -> (weight, family)
FAMILIES = {"unary": (6, unary), "binary": (6, binary), "compare": (1.5, compare),
            "select": (2, select), "integers": (1, integers), "reduce": (2.5, reduce),
            "layout": (2, layout), "matmul": (1, matmul), "casts": (0.7, casts)}


def handwritten(inputs: dict[str, np.ndarray], lines: list[tuple[str, ...]],
                threaded: bool = False) -> Program:
    """A program of the given statements, each (op label, template, *operand names),
    over `inputs`; statements are named v0, v1, ... (no squashing, no dropping)."""
    g = Generator(0, len(lines), include_known=True)
    g.float = next(str(a.dtype) for a in inputs.values() if a.dtype.kind == "f")
    g.threaded = threaded
    g.inputs, g.env = dict(inputs), dict(inputs)
    for op, template, *args in lines:
        expr = template.format(*args)
        with quiet():
            value = np.asarray(eval(expr, {"xp": NP}, g.env))
        name = next(g.names)
        g.env[name] = value
        g.stmts.append(Stmt(name, expr, tuple(args), op, str(value.dtype)))
    return g.finish()


def generate(seed: int, size: int = 120, include_known: bool = False,
             families: tuple[str, ...] | None = None) -> Program:
    """A program of `size` statements (a few more: squashing follows the last), drawn
    from `families` (default: all)."""
    return Generator(seed, size, include_known, families).generate()


# ---------------------------------------------------------------- issue 11's ops
# Batched matmul and einsum, axis moves, integer-array gathers (index arrays as integer
# inputs and as constants, repeated and negative), functional updates, scans and
# products, shape builders and the new elementwise functions. Values stay small
# (tanh before products), and gradients the oracles cannot agree on (std and norm
# at 0) are not written.

def _float_of_shape(g: Generator, shape) -> str:
    """A float value of `shape`: an existing one when there is, else a new input."""
    shape = tuple(shape)
    name = g.pick(lambda v: v.dtype.kind == "f" and v.shape == shape)
    return name if name and g.rng.random() < 0.7 else g.new_input(shape)


def _index_input(g: Generator, shape, size: int) -> str:
    """Integer indices into an axis of `size`, negative ones and repeats included."""
    name = f"i{len(g.inputs)}"
    dtype = g.choice(["int64", "int32"])
    g.inputs[name] = g.env[name] = g.rng.integers(-size, size, shape).astype(dtype)
    return name


def batched_matmul(g: Generator) -> None:
    a, b, c = g.small_dims
    form = int(g.rng.integers(6))
    if form == 0:      # x(B,T,D) @ W(D,E)
        # (autograd's own @ cannot differentiate broadcast batch dimensions: xp.matmul)
        g.emit("bmatmul", "xp.matmul({0}, {1})", _float_of_shape(g, (c, a, b)), _float_of_shape(g, (b, a)))
    elif form == 1:    # q @ k.swapaxes(-1, -2)
        g.emit("bmatmul_swap", "{0} @ xp.swapaxes({1}, -1, -2)",
               _float_of_shape(g, (c, a, b)), _float_of_shape(g, (c, a, b)))
    elif form == 2:    # broadcast batch dimensions
        g.emit("bmatmul_broadcast", "xp.matmul({0}, {1})",
               _float_of_shape(g, (1, a, b)), _float_of_shape(g, (c, b, a)))
    elif form == 3:    # vector @ batch, batch @ vector
        template = g.choice(["xp.matmul({0}, {1})", "xp.matmul(xp.swapaxes({1}, -1, -2), {0})"])
        g.emit("bmatmul_vector", template, _float_of_shape(g, (b,)), _float_of_shape(g, (c, b, a)))
    else:
        pattern, shapes = g.choice([
            ("ij,jk->ik", [(a, b), (b, c)]), ("bij,bjk->bik", [(c, a, b), (c, b, a)]),
            ("ij,ij->i", [(a, b), (a, b)]), ("ij->ji", [(a, b)]), ("ij,j->i", [(a, b), (b,)]),
            ("i,j->ij", [(a,), (b,)]), ("bij->bj", [(c, a, b)]), ("bij,bkj->bik", [(c, a, b), (c, c, b)]),
            ("ij,kj->", [(a, b), (c, b)]), ("...ij,jk->...ik", [(c, a, b), (b, a)]),
        ])
        names = [_float_of_shape(g, s) for s in shapes]
        g.emit("einsum", f"xp.einsum({pattern!r}, " + ", ".join(f"{{{k}}}" for k in range(len(names))) + ")",
               *names)


def axes_moves(g: Generator) -> None:
    a = g.pick(lambda v: v.ndim >= 2)
    if a is None:
        return batched_matmul(g)
    ndim = g.env[a].ndim
    form = int(g.rng.integers(3))
    if form == 0:
        src, dst = (int(d) for d in g.rng.integers(-ndim, ndim, 2))
        g.emit("moveaxis", f"xp.moveaxis({{0}}, {src}, {dst})", a)
    elif form == 1:
        perm = tuple(int(p) for p in g.rng.permutation(ndim))
        g.emit("transpose_axes", f"{{0}}.transpose({perm!r})", a)
    else:
        d1, d2 = (int(d) for d in g.rng.integers(-ndim, ndim, 2))
        g.emit("swapaxes", f"xp.swapaxes({{0}}, {d1}, {d2})", a)


def gathers(g: Generator) -> None:
    a = g.pick(lambda v: v.ndim >= 1 and v.size > 0)
    if a is None:
        return
    shape = g.env[a].shape
    n = shape[0]
    form = int(g.rng.integers(5))
    if form == 0:      # x[idx], idx an integer input (maybe 2-D)
        idx = _index_input(g, g.choice([(4,), (2, 3), (1,)]), n)
        g.emit("gather_input", "{0}[{1}]", a, idx)
    elif form == 1:    # x[constant list]
        constant = [int(i) for i in g.rng.integers(-n, n, int(g.rng.integers(1, 5)))]
        g.emit("gather_constant", f"{{0}}[{constant!r}]", a)
    elif form == 2 and len(shape) >= 2:   # the cross-entropy idiom x[arange(n), labels]
        labels = _index_input(g, (n,), shape[1])
        g.emit("gather_labels", f"{{0}}[xp.arange({n}), {{1}}]", a, labels)
    elif form == 3 and len(shape) >= 2:   # take_along_axis
        axis = int(g.rng.integers(-len(shape), len(shape)))
        idx_shape = list(shape)
        idx_shape[axis] = int(g.rng.integers(1, 4))
        if g.rng.random() < 0.3:   # broadcast an other axis
            other = (axis + 1) % len(shape)
            idx_shape[other] = 1
        idx = _index_input(g, tuple(idx_shape), shape[axis])
        g.emit("take_along_axis", f"xp.take_along_axis({{0}}, {{1}}, {axis})", a, idx)
    elif g.env[a].dtype.kind == "f":      # functional updates
        mode = g.choice(["set", "add"])
        if mode == "add" or g.rng.random() < 0.5:
            index = g.choice([f"{int(g.rng.integers(-n, n))}", "slice(1, None)", "slice(None, None, 2)"])
            if mode == "add" and g.rng.random() < 0.5:   # repeated indices add twice
                index = repr([int(i) for i in g.rng.integers(-n, n, 3)])
        else:
            index = repr(sorted({int(i) for i in g.rng.integers(0, n, 2)}))
        target = np.zeros(shape)[eval(index)].shape
        value = _float_of_shape(g, target[1:] if target and g.rng.random() < 0.4 else target)
        g.emit(f"at_{mode}", f"xp.at_{mode}({{0}}, {index}, {{1}})", a, value)


def scans(g: Generator) -> None:
    a = g.pick(lambda v: v.dtype.kind == "f" and v.ndim >= 1)
    if a is None:
        return
    shape, ndim = g.env[a].shape, g.env[a].ndim
    axis = int(g.rng.integers(-ndim, ndim))
    form = int(g.rng.integers(7))
    if form == 0:
        g.emit("cumsum", f"xp.cumsum({{0}}, axis={g.choice([axis, None])!r})", a)
    elif form in (1, 2) and shape[axis] <= 6:
        # cumprod and prod of tanh: small factors, and exact zeros where x is 0
        op = "cumprod" if form == 1 else "prod"
        zeros = g.rng.random() < 0.5
        source = g.emit("relu", "xp.relu({0})", a) if zeros else a
        g.emit(op, f"xp.{op}(xp.tanh({{0}}), axis={axis})", source)
    elif form == 3 and np.prod(shape) <= 8:
        g.emit("prod_all", "xp.prod(xp.tanh({0}))", a)
    elif form == 4:
        ax = g.choice([axis, None])
        value = g.env[a]
        if np.std(value, axis=ax).min(initial=1) > 1e-3:
            g.emit("std", f"xp.std({{0}}, axis={ax!r})", a)
    elif form == 5:
        ax = g.choice([axis, None]) if ndim <= 2 else axis
        if np.linalg.norm(g.env[a], axis=ax).min(initial=1) > 1e-3:
            g.emit("norm", f"xp.norm({{0}}, axis={ax!r})", a)
    else:
        m = g.pick(lambda v: v.dtype == np.bool_ and v.ndim >= 1)
        if m is not None:
            op = g.choice(["any", "all"])
            g.emit(op, f"xp.{op}({{0}}, axis={int(g.rng.integers(g.env[m].ndim))})", m)


def builders(g: Generator) -> None:
    a = g.pick(lambda v: v.dtype.kind == "f" and v.ndim >= 1)
    if a is None:
        return
    shape, ndim = g.env[a].shape, g.env[a].ndim
    axis = int(g.rng.integers(-ndim, ndim))
    form = int(g.rng.integers(10))
    if form == 0:
        b = g.pick(lambda v: v.dtype == g.env[a].dtype and v.ndim == ndim and all(
            s == t for d, (s, t) in enumerate(zip(v.shape, shape)) if d != axis % ndim))
        ax = g.choice([axis, axis, None])
        g.emit("concatenate", f"xp.concatenate([{{0}}, {{1}}, {{0}}], axis={ax!r})", a, b)
    elif form == 1:
        b = _float_of_shape(g, shape)
        g.emit("stack", f"xp.stack([{{0}}, {{1}}], axis={int(g.rng.integers(-ndim - 1, ndim + 1))})", a, b)
    elif form == 2 and shape[axis] >= 2:
        n = shape[axis]
        sections = g.choice([s for s in (2, 3, 1) if n % s == 0] + [[1], [0, n - 1], [1, n]])
        k = int(g.rng.integers(len(sections) + 1 if isinstance(sections, list) else sections))
        g.emit("split", f"xp.split({{0}}, {sections!r}, axis={axis})[{k}]", a)
    elif form == 3:
        g.emit("flip", f"xp.flip({{0}}, axis={g.choice([axis, None])!r})", a)
    elif form == 4:
        g.emit("repeat", f"xp.repeat({{0}}, {int(g.rng.integers(1, 3))}, axis={g.choice([axis, None])!r})", a)
    elif form == 5:
        reps = tuple(int(r) for r in g.rng.integers(1, 3, int(g.rng.integers(1, ndim + 2))))
        g.emit("tile", f"xp.tile({{0}}, {reps!r})", a)
    elif form == 6:
        width = tuple((int(l), int(r)) for l, r in g.rng.integers(0, 3, (ndim, 2)))
        g.emit("pad", f"xp.pad({{0}}, {width!r})", a)
    elif form == 7 and ndim >= 2:
        op = g.choice(["tril", "triu"])
        g.emit(op, f"xp.{op}({{0}}, {int(g.rng.integers(-2, 3))})", a)
    elif form == 8:
        b = g.pick(lambda v: v.dtype.kind == "f" and v.ndim == 1)
        if ndim == 1 and b is not None:
            g.emit("outer", "xp.outer({0}, {1})", a, b)
    elif ndim <= 2:
        k = int(g.rng.integers(-1, 2))
        if ndim == 2 and g.rng.random() < 0.4:
            g.emit("trace", "xp.trace({0})", a)
        else:
            g.emit("diag", f"xp.diag({{0}}, {k})", a)


ELEMENTWISE11 = [("log1p", "xp.log1p({0} * {0})"), ("log1p_sigmoid", "xp.log1p(-xp.sigmoid({0}))"),
                 ("expm1", "xp.expm1(xp.tanh({0}))"), ("erf", "xp.erf({0})"),
                 ("gelu", "xp.gelu({0})"), ("gelu_tanh", "xp.gelu_tanh({0})"),
                 ("float_mod", "{0} % 0.75"), ("float_floordiv", "xp.floor_divide({0}, 0.5) + {0}")]


def elementwise11(g: Generator) -> None:
    form = int(g.rng.integers(4))
    if form <= 1:
        op, template = g.choice(ELEMENTWISE11)
        g.emit(op, template, g.pick(g.is_float))
    elif form == 2:
        a = g.pick(lambda v: v.dtype.kind == "f" and v.ndim >= 1)
        if a is not None:
            axis = int(g.rng.integers(-g.env[a].ndim, g.env[a].ndim))
            g.emit("log_softmax", f"xp.log_softmax({{0}}, axis={axis})", a)
    else:
        i = g.pick(lambda v: v.dtype.kind in "iu" and np.abs(v).max(initial=0) <= INT_LIMIT)
        m = g.pick(lambda v: v.dtype == np.bool_)
        if m is not None and g.rng.random() < 0.5:
            n = g.broadcastable(m, lambda v: v.dtype == np.bool_)
            op, template = g.choice([("and_op", "({0} & {1})"), ("or_op", "({0} | {1})"),
                                     ("not_op", "(~{0} | {1})")])
            g.emit(op, template, m, n)
        elif i is not None:
            j = g.broadcastable(i, lambda v: v.dtype.kind in "iu" and np.abs(v).max(initial=0) <= INT_LIMIT
                                and v.dtype == g.env[i].dtype)
            op, template = g.choice([("int_mod", "{0} % 3"), ("int_floordiv", "{0} // 2"),
                                     ("int_mod_array", "{0} % (xp.abs({1}) + 1)"),
                                     ("int_floordiv_array", "{0} // (xp.abs({1}) + 1)"),
                                     ("neg_mod", "{0} % -3")])
            g.emit(op, template, i, j if "{1}" in template else i)


ISSUE11_FAMILIES = {"batched_matmul": (1, batched_matmul), "axes_moves": (0.7, axes_moves),
                    "gathers": (1.5, gathers), "scans": (1.2, scans), "builders": (1.5, builders),
                    "elementwise11": (1.5, elementwise11)}
FAMILIES.update(ISSUE11_FAMILIES)

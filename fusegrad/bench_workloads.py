"""The benchmark workloads W1..W5 (the README's benchmarks) and their hand-written baselines.

Each loss is written once, against a namespace `fg` that provides `tanh`, `exp`, `sin`,
`sqrt`, `abs` and `logsumexp(x, axis)`: fusegrad itself, or torch, jax.numpy or
autograd.numpy, so every traced system (and the test oracle) runs the same source.

The "numpy" baselines are written the way a person writes forward and backward by hand:
one temporary per operation, no fusion. The "numba-1pass" kernels compute the value and
every gradient in one pass over memory, the practical ceiling for a Numba backend.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numba
import numpy as np
from numba import njit, prange

Arrays = tuple[np.ndarray, ...]
ValueAndGrads = tuple[float, Arrays]

SEED = 0
MLP_FEATURES, MLP_HIDDEN, MLP_OUTPUTS = 256, 256, 16
CLASSES = 1024
LAYERNORM_WIDTH = 1024
LAYERNORM_EPS = 1e-5


@dataclass(frozen=True)
class Workload:
    key: str
    name: str
    loss: Callable[[Any], Callable]   # namespace -> loss function of the arrays
    wrt: tuple[int, ...]              # positions of the differentiated arguments
    sizes: tuple[int, ...]            # N for W1/W2, the number of rows otherwise
    quick_sizes: tuple[int, ...]
    make_inputs: Callable[[int], Arrays]
    numpy_grad: Callable[..., ValueAndGrads]
    numba_grad: Callable[..., ValueAndGrads] | None = None

    def minimal_bytes(self, inputs: Arrays) -> int:
        """Each input read once and each gradient written once: the memory-traffic floor."""
        return sum(a.nbytes for a in inputs) + sum(inputs[i].nbytes for i in self.wrt)


def _rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


# --- W1 seed-poly: sum(x**2 + 3*y**2) ---------------------------------------------------

def seed_poly_loss(fg: Any) -> Callable:
    def w1(x, y):
        return (x**2 + 3 * y**2).sum()
    return w1


def seed_poly_inputs(n: int) -> Arrays:
    rng = _rng()
    return rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)


def seed_poly_numpy(x: np.ndarray, y: np.ndarray) -> ValueAndGrads:
    x2 = x**2
    y2 = y**2
    y2_3 = 3 * y2
    total = x2 + y2_3
    value = total.sum()
    return float(value), (2 * x, 6 * y)


@njit(parallel=True)
def _seed_poly_kernel(x, y, gx, gy):
    # float32 constants keep the arithmetic in float32, as the other systems do.
    two, six, three = np.float32(2), np.float32(6), np.float32(3)
    value = 0.0
    for i in prange(x.size):
        xi, yi = x[i], y[i]
        value += xi * xi + three * yi * yi
        gx[i] = two * xi
        gy[i] = six * yi
    return value


def seed_poly_numba(x: np.ndarray, y: np.ndarray) -> ValueAndGrads:
    gx, gy = np.empty_like(x), np.empty_like(y)
    value = _seed_poly_kernel(x, y, gx, gy)
    return float(value), (gx, gy)


# --- W2 chain: sum(x**2*exp(x) + sin(x)*y - tanh(x*y) + sqrt(abs(y)+1)) -------------------

def chain_loss(fg: Any) -> Callable:
    def w2(x, y):
        return (x**2 * fg.exp(x) + fg.sin(x) * y - fg.tanh(x * y) + fg.sqrt(fg.abs(y) + 1)).sum()
    return w2


def chain_inputs(n: int) -> Arrays:
    rng = _rng()
    x = (rng.random(n, dtype=np.float32) * 4 - 2).astype(np.float32)
    return x, rng.standard_normal(n, dtype=np.float32)


def chain_numpy(x: np.ndarray, y: np.ndarray) -> ValueAndGrads:
    x2 = x**2
    ex = np.exp(x)
    a = x2 * ex
    sx = np.sin(x)
    b = sx * y
    xy = x * y
    t = np.tanh(xy)
    ay = np.abs(y)
    ay1 = ay + 1
    s = np.sqrt(ay1)
    total = a + b - t + s
    value = total.sum()
    # d tanh(u) = 1 - tanh(u)**2; d sqrt(|y| + 1) = sign(y) / (2 sqrt(|y| + 1)).
    dt = 1 - t**2
    gx = 2 * x * ex + a + np.cos(x) * y - dt * y
    gy = sx - dt * x + np.sign(y) / (2 * s)
    return float(value), (gx, gy)


@njit(parallel=True)
def _chain_kernel(x, y, gx, gy):
    one, two = np.float32(1), np.float32(2)
    value = 0.0
    for i in prange(x.size):
        xi, yi = x[i], y[i]
        ex = math.exp(xi)
        sx = math.sin(xi)
        t = math.tanh(xi * yi)
        s = math.sqrt(abs(yi) + one)
        value += xi * xi * ex + sx * yi - t + s
        dt = one - t * t
        gx[i] = (two * xi + xi * xi) * ex + math.cos(xi) * yi - dt * yi
        gy[i] = sx - dt * xi + np.sign(yi) / (two * s)
    return value


def chain_numba(x: np.ndarray, y: np.ndarray) -> ValueAndGrads:
    gx, gy = np.empty_like(x), np.empty_like(y)
    value = _chain_kernel(x, y, gx, gy)
    return float(value), (gx, gy)


# --- W3 mlp: mean((tanh(X@W1 + b1) @ W2 + b2 - Y)**2) --------------------------------------

def mlp_loss(fg: Any) -> Callable:
    def w3(X, W1, b1, W2, b2, Y):
        return ((fg.tanh(X @ W1 + b1) @ W2 + b2 - Y) ** 2).mean()
    return w3


def mlp_inputs(batch: int) -> Arrays:
    rng = _rng()

    def normal(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)

    # Weights scaled by 1/sqrt(fan-in) so tanh works in its linear range, not saturated.
    return (normal(batch, MLP_FEATURES),
            normal(MLP_FEATURES, MLP_HIDDEN, scale=MLP_FEATURES ** -0.5),
            normal(MLP_HIDDEN, scale=0.1),
            normal(MLP_HIDDEN, MLP_OUTPUTS, scale=MLP_HIDDEN ** -0.5),
            normal(MLP_OUTPUTS, scale=0.1),
            normal(batch, MLP_OUTPUTS))


def mlp_numpy(X, W1, b1, W2, b2, Y) -> ValueAndGrads:
    z = X @ W1
    z1 = z + b1
    h = np.tanh(z1)
    p = h @ W2
    p2 = p + b2
    r = p2 - Y
    r2 = r**2
    value = r2.mean()
    dp = r * np.float32(2 / r.size)
    gW2 = h.T @ dp
    gb2 = dp.sum(axis=0)
    dh = dp @ W2.T
    dz = dh * (1 - h**2)
    gW1 = X.T @ dz
    gb1 = dz.sum(axis=0)
    gX = dz @ W1.T
    return float(value), (gX, gW1, gb1, gW2, gb2)


# --- W4 softmax cross-entropy: mean(logsumexp(L, 1) - sum(L*T, 1)) ---------------------------

def cross_entropy_loss(fg: Any) -> Callable:
    def w4(L, T):
        return (fg.logsumexp(L, 1) - (L * T).sum(axis=1)).mean()
    return w4


def cross_entropy_inputs(rows: int) -> Arrays:
    rng = _rng()
    logits = rng.standard_normal((rows, CLASSES), dtype=np.float32)
    targets = np.zeros((rows, CLASSES), dtype=np.float32)
    targets[np.arange(rows), rng.integers(0, CLASSES, rows)] = 1
    return logits, targets


def cross_entropy_numpy(L: np.ndarray, T: np.ndarray) -> ValueAndGrads:
    # Subtracting the row max keeps exp from overflowing; it cancels in the result.
    m = L.max(axis=1, keepdims=True)
    shifted = L - m
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    lse = np.log(s) + m
    picked = (L * T).sum(axis=1, keepdims=True)
    value = (lse - picked).mean()
    softmax = e / s
    gL = (softmax - T) / np.float32(L.shape[0])
    return float(value), (gL,)


# --- W5 layernorm: y = (x - mean(x,1)) / sqrt(var(x,1) + eps) * g + b; sum(y*y*c) -----------

def layernorm_loss(fg: Any) -> Callable:
    def w5(x, g, b, c):
        centred = x - x.mean(axis=1, keepdims=True)
        var = (centred * centred).mean(axis=1, keepdims=True)
        y = centred / fg.sqrt(var + LAYERNORM_EPS) * g + b
        return (y * y * c).sum()
    return w5


def layernorm_inputs(rows: int) -> Arrays:
    rng = _rng()
    x = rng.standard_normal((rows, LAYERNORM_WIDTH), dtype=np.float32) + np.float32(0.5)
    g = (1 + 0.1 * rng.standard_normal(LAYERNORM_WIDTH)).astype(np.float32)
    b = (0.1 * rng.standard_normal(LAYERNORM_WIDTH)).astype(np.float32)
    c = rng.standard_normal((rows, LAYERNORM_WIDTH), dtype=np.float32)
    return x, g, b, c


def layernorm_numpy(x, g, b, c) -> ValueAndGrads:
    mu = x.mean(axis=1, keepdims=True)
    xc = x - mu
    var = (xc**2).mean(axis=1, keepdims=True)
    r = 1 / np.sqrt(var + np.float32(LAYERNORM_EPS))
    xh = xc * r
    y = xh * g + b
    value = (y * y * c).sum()
    dy = 2 * y * c
    gb = dy.sum(axis=0)
    gg = (dy * xh).sum(axis=0)
    dxh = dy * g
    # The standard layernorm backward: project out the mean and the xh direction.
    dx = r * (dxh - dxh.mean(axis=1, keepdims=True) - xh * (dxh * xh).mean(axis=1, keepdims=True))
    return float(value), (dx, gg, gb)


@njit(parallel=True)
def _layernorm_kernel(x, g, b, c, dx, partial_gg, partial_gb, partial_value):
    # One block of rows per thread. Each row is read from memory once and then stays in
    # cache for its four passes; the column sums for g and b go into the block's own row of
    # the partial buffers, so no two threads ever write the same element.
    rows, width = x.shape
    blocks = partial_gg.shape[0]
    two = np.float32(2)
    for block in prange(blocks):
        xh = np.empty(width, dtype=np.float32)
        dxh = np.empty(width, dtype=np.float32)
        for i in range(block * rows // blocks, (block + 1) * rows // blocks):
            total = 0.0
            for j in range(width):
                total += x[i, j]
            mu = np.float32(total / width)
            total = 0.0
            for j in range(width):
                d = x[i, j] - mu
                total += d * d
            r = np.float32(1 / math.sqrt(total / width + LAYERNORM_EPS))
            row_value, mean_dxh, mean_dxh_xh = 0.0, 0.0, 0.0
            for j in range(width):
                xh[j] = (x[i, j] - mu) * r
                y = xh[j] * g[j] + b[j]
                row_value += y * y * c[i, j]
                dy = two * y * c[i, j]
                partial_gb[block, j] += dy
                partial_gg[block, j] += dy * xh[j]
                dxh[j] = dy * g[j]
                mean_dxh += dxh[j]
                mean_dxh_xh += dxh[j] * xh[j]
            mean_dxh = np.float32(mean_dxh / width)
            mean_dxh_xh = np.float32(mean_dxh_xh / width)
            for j in range(width):
                dx[i, j] = r * (dxh[j] - mean_dxh - xh[j] * mean_dxh_xh)
            partial_value[block] += row_value


def layernorm_numba(x, g, b, c) -> ValueAndGrads:
    blocks = numba.get_num_threads()
    dx = np.empty_like(x)
    partial_gg = np.zeros((blocks, x.shape[1]), dtype=np.float32)
    partial_gb = np.zeros((blocks, x.shape[1]), dtype=np.float32)
    partial_value = np.zeros(blocks)
    _layernorm_kernel(x, g, b, c, dx, partial_gg, partial_gb, partial_value)
    return float(partial_value.sum()), (dx, partial_gg.sum(axis=0), partial_gb.sum(axis=0))


WORKLOADS: tuple[Workload, ...] = (
    Workload("W1", "seed-poly", seed_poly_loss, (0, 1), (10**3, 10**5, 10**7), (10**4, 10**6),
             seed_poly_inputs, seed_poly_numpy, seed_poly_numba),
    Workload("W2", "chain", chain_loss, (0, 1), (10**3, 10**5, 10**7), (10**4, 10**6),
             chain_inputs, chain_numpy, chain_numba),
    Workload("W3", "mlp", mlp_loss, (0, 1, 2, 3, 4), (4096,), (256,),
             mlp_inputs, mlp_numpy),
    Workload("W4", "softmax-xent", cross_entropy_loss, (0,), (4096,), (256,),
             cross_entropy_inputs, cross_entropy_numpy),
    Workload("W5", "layernorm", layernorm_loss, (0, 1, 2), (4096,), (256,),
             layernorm_inputs, layernorm_numpy, layernorm_numba),
)


def find_workload(name: str) -> Workload:
    """Look a workload up by key (`W3`, any case) or name (`mlp`)."""
    for workload in WORKLOADS:
        if name.lower() in (workload.key.lower(), workload.name.lower()):
            return workload
    known = ", ".join(f"{w.key} ({w.name})" for w in WORKLOADS)
    raise ValueError(f"unknown workload {name!r}; known: {known}")

"""A transformer block, trained with compile_grad on a toy sequence-classification task.

Everything a sequence model needs, traced once, differentiated symbolically and fused:
batched multi-head attention (`q @ k.swapaxes(-1, -2)` on (batch, heads, T, d)
arrays, `transpose(0, 2, 1, 3)`), a causal mask, layer normalisation, a GELU MLP,
residual connections, and cross-entropy against integer labels
(`log_softmax(logits)[np.arange(B), labels]`, a gather whose backward is a
scatter-add). The parameters are a dict (a pytree): their gradients come back as a
dict with the same keys. With `has_aux=True` the accuracy comes back beside the loss,
computed by the same kernels.

    python examples/transformer_block.py
"""
from __future__ import annotations

import time

import numpy as np

import fusegrad as fg

B, T, D, HEADS, CLASSES = 64, 16, 32, 4, 4
HEAD = D // HEADS
CAUSAL = np.tril(np.ones((T, T), dtype=bool))   # position t attends to 0..t


def layer_norm(x, gain, bias):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / fg.sqrt(var + 1e-5) * gain + bias


def heads(x):
    """(B, T, D) -> (B, HEADS, T, HEAD)."""
    b, t, _ = x.shape
    return x.reshape(b, t, HEADS, HEAD).transpose(0, 2, 1, 3)


def attention(x, p):
    b, t, _ = x.shape
    q, k, v = heads(x @ p["wq"]), heads(x @ p["wk"]), heads(x @ p["wv"])
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(HEAD)          # (B, HEADS, T, T)
    scores = fg.where(CAUSAL, scores, -1e9)
    mixed = fg.softmax(scores, axis=-1) @ v                  # (B, HEADS, T, HEAD)
    return mixed.transpose(0, 2, 1, 3).reshape(b, t, D) @ p["wo"]


def block(x, p):
    x = x + attention(layer_norm(x, p["ln1_g"], p["ln1_b"]), p)
    hidden = fg.gelu(layer_norm(x, p["ln2_g"], p["ln2_b"]) @ p["w1"] + p["c1"])
    return x + hidden @ p["w2"] + p["c2"]


def cross_entropy(p, x, labels):
    logits = block(x, p)[:, -1, :] @ p["head"]               # the last position: (B, CLASSES)
    logp = fg.log_softmax(logits, axis=-1)
    loss = -logp[np.arange(x.shape[0]), labels].mean()
    return loss, logits


@fg.compile_grad(wrt="p", has_aux=True)
def step(p, x, labels):
    loss, logits = cross_entropy(p, x, labels)
    accuracy = (logits.argmax(axis=-1) == labels).astype(np.float32).mean()
    return loss, accuracy


def init(rng, dtype=np.float32) -> dict:
    def dense(m, n):
        return (rng.standard_normal((m, n)) / np.sqrt(m)).astype(dtype)
    return {"wq": dense(D, D), "wk": dense(D, D), "wv": dense(D, D), "wo": dense(D, D),
            "ln1_g": np.ones(D, dtype), "ln1_b": np.zeros(D, dtype),
            "ln2_g": np.ones(D, dtype), "ln2_b": np.zeros(D, dtype),
            "w1": dense(D, 4 * D), "c1": np.zeros(4 * D, dtype),
            "w2": dense(4 * D, D), "c2": np.zeros(D, dtype),
            "head": dense(D, CLASSES)}


def batch(rng, dtype=np.float32):
    """Sequences of noise with a class prototype added at one random earlier step:
    the label is which prototype, so the last position must attend back to find it."""
    prototypes = np.eye(CLASSES, D) * 3
    x = rng.standard_normal((B, T, D))
    labels = rng.integers(0, CLASSES, B)
    x[np.arange(B), rng.integers(0, T, B)] += prototypes[labels]
    return x.astype(dtype), labels


def check_gradients(unfused: bool = True) -> None:
    """The compiled gradients against central differences (float64), and fused
    against unfused (one kernel per primitive: slow to compile, skipped by the test)."""
    rng = np.random.default_rng(1)
    p, (x, labels) = init(rng, np.float64), batch(rng, np.float64)

    def loss_only(head, p, x, labels):
        return cross_entropy({**p, "head": head}, x, labels)[0]

    fg.gradcheck(loss_only, p["head"], p, x[:4], labels[:4])
    print("gradcheck (float64, finite differences): ok")
    if unfused:
        (fused, _), g_fused = step(p, x, labels)
        (plain, _), g_plain = fg.compile_grad(step.fn, wrt="p", has_aux=True, fuse=False)(
            p, x, labels)
        worst = max(float(np.max(np.abs(g_fused[k] - g_plain[k]))) for k in p)
        print(f"fused vs unfused: losses {abs(float(fused) - float(plain)):.1e} apart, "
              f"gradients at most {worst:.1e}")


def main(steps: int = 300, lr: float = 1e-2, unfused: bool = True) -> None:
    check_gradients(unfused)
    rng = np.random.default_rng(0)
    p = init(rng)
    # Adam: plain SGD barely moves a transformer in a few hundred steps.
    m = {k: np.zeros_like(v) for k, v in p.items()}
    s = {k: np.zeros_like(v) for k, v in p.items()}
    began = time.perf_counter()
    for i in range(1, steps + 1):
        x, labels = batch(rng)
        (loss, accuracy), grads = step(p, x, labels)
        if i == 1:
            first = time.perf_counter() - began
            began = time.perf_counter()
        if i % 50 == 0 or i == 1:
            print(f"step {i:4d}  loss {float(loss):.4f}  accuracy {float(accuracy):.2f}")
        for k, g in grads.items():
            m[k] = 0.9 * m[k] + 0.1 * g
            s[k] = 0.999 * s[k] + 0.001 * g * g
            p[k] = p[k] - lr * (m[k] / (1 - 0.9 ** i)) / (np.sqrt(s[k] / (1 - 0.999 ** i)) + 1e-8)
    per_step = (time.perf_counter() - began) / (steps - 1)
    print(f"first call (trace, differentiate, compile) {first:.2f} s; "
          f"then {per_step * 1e3:.2f} ms per step (B={B}, T={T}, D={D}, {HEADS} heads)")


if __name__ == "__main__":
    main()

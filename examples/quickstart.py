"""Trace, differentiate and compile a small two-layer network; print what was built."""
import numpy as np

import fusegrad as fg


@fg.compile_grad
def loss(x, w1, b1, w2, y):
    h = fg.tanh(x @ w1 + b1)
    return ((h @ w2 - y) ** 2).mean()


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32), dtype=np.float32)
    w1 = rng.standard_normal((32, 16), dtype=np.float32) / 32 ** 0.5
    b1 = np.zeros(16, dtype=np.float32)
    w2 = rng.standard_normal((16, 4), dtype=np.float32) / 4.0
    y = rng.standard_normal((64, 4), dtype=np.float32)

    value, grads = loss(x, w1, b1, w2, y)
    print(f"loss = {float(value):.6f}")
    for name, grad in zip(["x", "w1", "b1", "w2", "y"], grads):
        print(f"  |d loss / d {name:2}| = {np.linalg.norm(grad):.6f}   shape {grad.shape}")
    print()
    print(loss.dump(x, w1, b1, w2, y))


if __name__ == "__main__":
    main()

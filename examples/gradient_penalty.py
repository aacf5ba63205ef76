"""Second derivatives: a gradient-penalty loss and a Hessian-vector product.

`fg.grad` inside a function that `compile_grad` compiles traces the gradient onto
the same graph; compile_grad then differentiates through it (the backward of the
backward), and the whole thing is fused and compiled like any other graph. Each
result is printed beside central finite differences.
"""
import numpy as np

import fusegrad as fg


def critic(x, w1, w2):
    """A small critic network: one score per sample, summed."""
    return (fg.tanh(x @ w1) @ w2).sum()


@fg.compile_grad(wrt=(1, 2))
def penalised(x, w1, w2, lam):
    # WGAN-GP: the critic's score plus lam * (|d score / d x| - 1)^2 per sample.
    gx = fg.grad(critic)(x, w1, w2)
    norms = fg.sqrt((gx * gx).sum(axis=1) + 1e-12)
    return critic(x, w1, w2).mean() + lam * ((norms - 1.0) ** 2).mean()


def rosenbrock(x):
    return (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()


# Hessian-vector product: forward-over-reverse, never forming the Hessian.
def hvp(x, v):
    return fg.jvp(fg.grad(rosenbrock), (x,), (v,))[1]


def central_differences(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for k in range(x.size):
        e = np.zeros_like(x)
        e.flat[k] = eps
        grad.flat[k] = (f(x + e) - f(x - e)) / (2 * eps)
    return grad


def main() -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3))
    w1 = rng.standard_normal((3, 5)) / 3 ** 0.5
    w2 = rng.standard_normal(5) / 5 ** 0.5
    lam = 10.0

    value, (gw1, gw2) = penalised(x, w1, w2, lam)
    fd = central_differences(lambda w: penalised(x, w, w2, lam)[0], w1)
    error_penalty = float(np.max(np.abs(gw1 - fd)))
    print(f"gradient penalty loss = {float(value):.6f}")
    print(f"  d loss / d w1: max |compiled - finite differences| = {error_penalty:.2e}")

    z = np.array([-1.2, 1.0, 0.5, 0.8])
    v = np.array([1.0, -0.5, 0.25, 2.0])
    product = hvp(z, v)
    grad = fg.grad(rosenbrock)
    fd = (grad(z + 1e-6 * v) - grad(z - 1e-6 * v)) / 2e-6
    error_hvp = float(np.max(np.abs(product - fd)))
    print(f"Hessian-vector product of Rosenbrock = {np.array2string(product, precision=4)}")
    print(f"  max |H v - finite differences of the gradient| = {error_hvp:.2e}")
    hessian = fg.hessian(rosenbrock)(z)
    print(f"  max |H v - fg.hessian(f)(x) @ v| = {np.max(np.abs(product - hessian @ v)):.2e}")
    return {"penalty": error_penalty, "hvp": error_hvp, "hessian": float(np.max(np.abs(product - hessian @ v)))}


if __name__ == "__main__":
    main()

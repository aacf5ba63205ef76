"""A tour of fusegrad's eager autograd API, through five classic PyTorch tutorials.

Each section is one tutorial's code, translated to Python 3, with
``import fusegrad as torch``: the same programs print the same numbers as PyTorch
(random values aside: fusegrad seeds NumPy's generator, not PyTorch's). Behind the
PyTorch surface, every operation is recorded as fusegrad IR, ``backward()``
differentiates the recorded graph with the same symbolic pass as
``fg.compile_grad``, and the backward graph runs on the NumPy interpreter (small
tensors, as here) or as compiled, fused Numba kernels (large ones).

    python examples/autograd_tour.py
"""
import numpy as np

import fusegrad as torch
from fusegrad.autograd import Variable


def section(title):
    print(f"\n======== {title} ========")


def seed0_variables_and_backward():
    section("1. Scalars, vectors, matrices (Variable, backward)")
    # z = x^2 + 3y^2, dz/dx = 2x, dz/dy = 6y
    x = Variable(torch.ones(1) * 3, requires_grad=True)
    y = Variable(torch.ones(1) * 4, requires_grad=True)
    z = x.pow(2) + 3 * y.pow(2)
    z.backward()            # a one-element result needs no gradient argument
    print(x.grad)           # x = 3: dz/dx = 6
    print(y.grad)           # y = 4: dz/dy = 24

    # A vector result: backward takes the vector in a vector-Jacobian product.
    x = Variable(torch.ones(2) * 3, requires_grad=True)
    y = Variable(torch.ones(2) * 4, requires_grad=True)
    z = x.pow(2) + 3 * y.pow(2)
    z.backward(torch.ones(2))
    print(x.grad)
    print(y.grad)

    x = Variable(torch.Tensor([1, 2, 3]), requires_grad=True)
    y = Variable(torch.Tensor([4, 5, 6]), requires_grad=True)
    z = x.pow(2) + 3 * y.pow(2)
    z.backward(torch.ones(3))
    print(x.grad)
    print(y.grad)

    # Matrix products.
    x = Variable(torch.Tensor([[1, 2, 3], [4, 5, 6]]), requires_grad=True)
    y = Variable(torch.Tensor([[1, 2, 3], [4, 5, 6]]), requires_grad=True)
    z = x.mm(y.t())
    z.backward(torch.ones(2, 2))
    print(x.grad)
    print(y.grad)

    x = Variable(torch.Tensor([[1, 2, 3], [4, 5, 6]]), requires_grad=True)
    y = Variable(torch.Tensor([1, 3, 5]), requires_grad=True)   # a vector, as mv needs
    z = x.mv(y)
    z.backward(torch.ones(2))
    print(x.grad)
    print(y.grad)

    if not torch.cuda.is_available():
        print("(CUDA is not available here: the tutorial's .cuda() example is skipped)")
        return
    x = Variable((torch.ones(1) * 3).cuda(), requires_grad=True)
    y = Variable((torch.ones(1) * 4).cuda(), requires_grad=True)
    z = x.pow(2) + 3 * y.pow(2)
    z.backward()
    print(f"x.grad: {x.grad}\ny.grad: {y.grad}\nz: {z}")
    x = Variable(torch.Tensor([[1, 2, 3], [4, 5, 6]]).cuda(), requires_grad=True)
    y = Variable(torch.Tensor([[1, 2, 3], [4, 5, 6]]).cuda(), requires_grad=True)
    z = x.mm(y.t())
    z.backward(torch.ones(2, 2).cuda(0, non_blocking=True))
    print(f"x.grad: {x.grad}\ny.grad: {y.grad}\nz: {z}")


def seed1_getting_started():
    section("2. Tensors, NumPy, and the gradient of 2x^2 + b")
    x = torch.rand(5, 3)
    print(x)
    print(x.size())
    y = torch.rand(5, 3)
    print(x + y)              # the same as torch.add(x, y)
    print(torch.add(x, y))

    a = torch.ones(5)
    print(a)
    b = a.numpy()             # shares memory with a
    print(repr(b))
    a = np.ones(5)
    b = torch.from_numpy(a)   # shares memory with a, keeps float64
    print(b)

    x = torch.randn(3, 4, requires_grad=True)
    print(x)
    b = torch.randn(3, 4, requires_grad=True)
    t = 2 * x * x + b
    y = t.sum()
    print(y)
    y.backward()
    print((x.requires_grad, b.requires_grad, t.requires_grad))
    print(x.grad)             # dy/dx = 4x
    print(bool((x.grad == 4 * x).all()))


def seed2_autograd_basics():
    section("3. requires_grad, grad_fn, backward(v), no_grad")
    x = torch.ones(2, 2, requires_grad=True)
    print(x)
    x.detach_()
    print(x.requires_grad)

    x = torch.ones(2, 2, requires_grad=True)
    y = x + 2
    print(y)
    print(y.grad_fn)
    z = y * y * 3
    out = z.mean()
    print(z, out)

    a = torch.randn(2, 2)
    a = (a * 3) / (a - 1)
    print(a.requires_grad)
    b = (a * a).sum()
    print(b.grad_fn)
    a.requires_grad_(True)
    print(a.requires_grad)
    b = (a * a).sum()
    print(b.grad_fn)

    out.backward()            # d(out)/dx_i = 3/2 (x_i + 2) = 4.5
    print(x.grad)

    # backward(v) scales by v: a vector-Jacobian product (here v is a 0-d tensor).
    x = torch.ones(2, 2, requires_grad=True)
    out = ((x + 2) * (x + 2) * 3).mean()
    v = torch.tensor(2, dtype=torch.float)
    out.backward(v)
    print(x.grad)

    print(x.requires_grad)
    print((x ** 2).requires_grad)
    with torch.no_grad():
        print((x ** 2).requires_grad)


def seed3_variables_and_graphs():
    section("4. Accumulating gradients, leaves, autograd.grad")
    x = Variable(torch.ones(2, 2), requires_grad=True)
    print(x)
    y = x.sum()
    print(y)
    print(y.grad_fn)
    for _ in range(3):        # gradients accumulate: 1, 2, 3
        y.backward()
        print(x.grad)
    x.grad.data.zero_()
    print(x)

    x = Variable(torch.ones(4, 5))
    y = torch.cos(x)
    x_tensor_cos = torch.cos(x.data)
    for value in (x, y, x.data, x_tensor_cos):
        print(value)

    a = Variable(torch.ones(3, 4), requires_grad=True)
    b = Variable(torch.zeros(3, 4))
    c = a + b                 # the same as a.add(b)
    print(a)
    print(b)
    print(c)

    def f(x):                 # y = x^2 e^x
        return x ** 2 * torch.exp(x)

    def gradf(x):             # dy/dx = 2x e^x + x^2 e^x, derived by hand
        return 2 * x * torch.exp(x) + x ** 2 * torch.exp(x)

    x = Variable(torch.randn(3, 4), requires_grad=True)
    y = f(x)
    dx = gradf(x)
    print(y)
    print(dx)
    y.backward(torch.ones(3, 4))
    print(x.grad)             # autograd agrees with the hand-derived gradient
    print(bool(torch.abs(x.grad - dx.detach()).max() < 1e-5))

    x = Variable(torch.ones(1))
    w = Variable(torch.randn(1), requires_grad=True)
    b = Variable(torch.randn(1), requires_grad=True)
    y = w * x                 # the same as w.mul(x)
    z = y + b
    print((x.requires_grad, w.requires_grad, b.requires_grad))
    print((x.is_leaf, w.is_leaf, b.is_leaf))
    print((y.requires_grad, z.requires_grad))
    print((y.is_leaf, z.is_leaf))
    print(z.grad_fn)
    print(z.grad_fn.next_functions)

    x = Variable(torch.ones(1), requires_grad=True)
    w = Variable(torch.rand(1), requires_grad=True)
    y = w * x
    z = y.sum()
    print((x.requires_grad, y.requires_grad, w.requires_grad, x, y, w))
    print((x.grad, w.grad))
    z.backward()              # non-leaf y keeps grad None
    print((x.grad, y.grad, w.grad))

    x = Variable(torch.rand(3), requires_grad=True)
    w = Variable(torch.rand(3), requires_grad=True)
    y = w * x
    z = y.sum()
    print(x, w)
    print(torch.autograd.grad(z, y))   # dz/dy
    print(torch.autograd.grad(z, x))   # dz/dx = w


def seed4_variable_in_depth():
    section("5. Variable: data, grad, grad_fn; backward(a); NumPy round trips")
    a = torch.autograd.Variable()
    print(a)
    b = torch.autograd.Variable(torch.Tensor([[1, 2], [3, 4], [5, 6], [7, 8]]))
    print(b)
    print(b.data)
    print(b.grad)
    print(b.grad_fn)

    def variables():
        x = Variable(torch.Tensor([2]), requires_grad=True)
        w = Variable(torch.Tensor([3]), requires_grad=True)
        b = Variable(torch.Tensor([4]), requires_grad=True)
        return x, w, b

    x, w, b = variables()
    print(x)
    print(w)
    print(b)
    y1 = w * x + b            # 3 * 2 + 4 = 10
    print(y1)
    y2 = w * x + b * x        # 3 * 2 + 4 * 2 = 14
    print(y2)
    y1.backward()             # dx = w = 3, dw = x = 2, db = 1
    print(x.grad, w.grad, b.grad)

    x, w, b = variables()     # the tutorial's second program: y2 alone
    y2 = w * x + b * x
    y2.backward()             # dx = w + b = 7, dw = x = 2, db = x = 2
    print(x.grad, w.grad, b.grad)

    x, w, b = variables()     # the third: y2.backward(a) scales by a = 5
    y2 = w * x + b * x
    a = Variable(torch.Tensor([5]), requires_grad=True)
    y2.backward(a)
    print(x.grad, w.grad, b.grad)

    c = torch.randn(3)
    print(c)
    c = Variable(c, requires_grad=True)
    print(c)
    y3 = c * 2
    print(y3)
    y3.backward(torch.FloatTensor([1, 0.1, 0.01]))
    print(c.grad)
    if torch.cuda.is_available():
        d = c.cuda()
        print(d)

    e = Variable(torch.Tensor([4]), requires_grad=True)
    try:
        e.numpy()
    except RuntimeError as error:
        print(error)
    f = e.detach().numpy()
    print(f)
    g = torch.from_numpy(f)
    print(g)
    g = Variable(g, requires_grad=True)
    print(g)


def main():
    torch.manual_seed(0)
    seed0_variables_and_backward()
    seed1_getting_started()
    seed2_autograd_basics()
    seed3_variables_and_graphs()
    seed4_variable_in_depth()


if __name__ == "__main__":
    main()

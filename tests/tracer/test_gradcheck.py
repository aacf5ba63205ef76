"""fg.gradcheck: compiled gradients against float64 central differences."""
import numpy as np
import pytest

import fusegrad as fg


def mlp(x, w):
    return (fg.tanh(x @ w) ** 2).mean()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_agrees_on_a_smooth_function(dtype):
    rng = np.random.default_rng(0)
    x, w = rng.random((3, 4)).astype(dtype), rng.random((4, 2)).astype(dtype)
    assert fg.gradcheck(mlp, x, w)


def test_names_argument_element_and_both_values():
    # |x| has a kink at 0: just right of it the step of the differences straddles it.
    x = np.array([1.0, 1e-7, -2.0])
    with pytest.raises(fg.GradcheckError) as caught:
        fg.gradcheck(lambda x: fg.abs(x).sum(), x)
    message = str(caught.value)
    assert "argument 0 (x)" in message and "element (1,)" in message
    assert "compiled 1," in message and "finite differences 0.1 " in message


def test_accepts_a_compiled_function_and_respects_wrt():
    compiled = fg.compile_grad(mlp, wrt=1)
    rng = np.random.default_rng(1)
    assert fg.gradcheck(compiled, rng.random((3, 4)), rng.random((4, 2)))

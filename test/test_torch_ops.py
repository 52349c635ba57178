"""The differentiable forward pass (``core/torch_ops.py``) that training distils through:
gradients are right (gradcheck in float64), inputs of the wrong shape are refused."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the torch ops need torch")

from lutfuse_ros.core import torch_ops  # noqa: E402
from lutfuse_ros.core.context_layout import ContextNetConfig, context_state_shapes  # noqa: E402
from lutfuse_ros.core.context_net import ContextNet  # noqa: E402


def inputs(shape=(1, 1, 3, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    # away from the table's nodes (multiples of 1/16): the lookup is piecewise linear
    return [(torch.rand(shape, generator=g, dtype=torch.float64) * 0.8 + 0.05)
            .requires_grad_() for _ in range(4)]


def test_quadrilinear_lookup_gradients_in_the_table_and_the_inputs():
    lut = torch.rand(4, 4, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lut.requires_grad_()
    assert torch.autograd.gradcheck(torch_ops.quadrilinear_lookup, (lut, *inputs()))


def test_the_table_gradient_is_the_same_bit_for_bit_on_every_run():
    """Training resumes bit for bit only if the table's gradient (many pixels hitting one
    node) is summed in a fixed order; large batches use the parallel paths."""
    g = torch.Generator().manual_seed(2)
    lut = torch.rand(16, 16, 16, 16, generator=g).requires_grad_()
    coords = [torch.rand(4, 1, 96, 96, generator=g) for _ in range(4)]
    weights = torch.rand(4, 1, 96, 96, generator=g)
    grads = []
    for _ in range(3):
        lut.grad = None
        (torch_ops.quadrilinear_lookup(lut, *coords) * weights).sum().backward()
        grads.append(lut.grad.clone())
    assert all(torch.equal(grads[0], other) for other in grads[1:])


def test_identity_like_table_returns_the_luma_between_nodes():
    n = 16
    v = torch.arange(n, dtype=torch.float64) / torch_ops.LUT_SCALE
    lut = v[:, None, None, None].expand(n, n, n, n)
    luma, gradient, context, ir = (t.detach() for t in inputs((2, 1, 5, 5)))
    out = torch_ops.quadrilinear_lookup(lut, luma, gradient, context, ir)
    torch.testing.assert_close(out, luma)


def test_sobel_gradcheck_with_eps_and_value_on_an_edge():
    y = torch.rand(1, 1, 6, 6, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: torch_ops.sobel_magnitude(t, eps=1e-6), (y,))
    step = torch.zeros(1, 1, 4, 6)
    step[..., 3:] = 1.0
    assert torch_ops.sobel_magnitude(step)[0, 0, 1].tolist() == [0.0, 0.0, 4.0, 4.0, 0.0, 4.0]


def test_colour_round_trip():
    rgb = torch.rand(2, 3, 4, 5)
    torch.testing.assert_close(torch_ops.ycbcr_to_rgb(torch_ops.rgb_to_ycbcr(rgb)), rgb,
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("call, match", [
    (lambda: torch_ops.rgb_to_ycbcr(torch.rand(1, 4, 8, 8)), r"rgb must be a \(B, 3, H, W\)"),
    (lambda: torch_ops.rgb_to_ycbcr(torch.rand(3, 8, 8)), "got \\(3, 8, 8\\)"),
    (lambda: torch_ops.sobel_magnitude(torch.rand(1, 3, 8, 8)), r"y must be a \(B, 1, H, W\)"),
    (lambda: torch_ops.quadrilinear_lookup(torch.rand(16, 16, 16), *inputs()), "lut must be"),
    (lambda: torch_ops.quadrilinear_lookup(torch.rand(4, 4, 4, 4), *inputs()[:3],
                                           torch.rand(1, 1, 3, 5)), "one shape"),
    (lambda: torch_ops.fuse_luma(torch.rand(16, 16, 16, 16), ContextNet(),
                                 torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 32)),
     "differ in size"),
])
def test_wrong_shapes_are_refused_with_the_reason(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_context_net_state_dict_is_the_declared_layout():
    for cfg in (ContextNetConfig(), ContextNetConfig(width=8, num_blocks=2)):
        shapes = {k: tuple(v.shape) for k, v in ContextNet(cfg).state_dict().items()}
        assert shapes == context_state_shapes(cfg)

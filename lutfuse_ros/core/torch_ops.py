"""The MM-LUT forward pass on torch tensors (CPU or CUDA), differentiable for training.

Every function works on batches; values follow the authors' conventions (see
``lutfuse_ros.core.model.INPUT_SCALING``). This is both the *torch backend* of the runtime
and the forward pass the training code distils through, so both see the same maths.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .model import LUT_SCALE
from .resample import bilinear_taps, context_size, context_stride

GRAD_EPS = 1e-8


def _check_bchw(t: torch.Tensor, channels: int, name: str) -> None:
    """Raise ValueError unless ``t`` is a :math:`(B, channels, H, W)` tensor."""
    if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] != channels:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a (B, {channels}, H, W) tensor, got {shape}")

def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 full-range RGB -> YCbCr.

    Shape: :math:`(B, 3, H, W)` in [0, 1] -> :math:`(B, 3, H, W)`, Cb and Cr centred on 0.5.
    """
    _check_bchw(rgb, 3, "rgb")
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    y = r * 0.299 + g * 0.587 + b * 0.114
    cb = 0.5 - r * 0.168736 - g * 0.331264 + b * 0.5
    cr = 0.5 + r * 0.5 - g * 0.418688 - b * 0.081312
    return torch.stack((y, cb, cr), dim=1)


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`. Shape: :math:`(B, 3, H, W)` -> :math:`(B, 3, H, W)`."""
    _check_bchw(ycbcr, 3, "ycbcr")
    y, cb, cr = ycbcr[:, 0], ycbcr[:, 1] - 0.5, ycbcr[:, 2] - 0.5
    return torch.stack((y + cr * 1.402, y - cb * 0.344136 - cr * 0.714136, y + cb * 1.772), dim=1)


def sobel_magnitude(y: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Sobel gradient magnitude with zero padding, ``sqrt(gx^2 + gy^2 + eps)``.

    The runtime uses ``eps = 0``; losses pass a small ``eps`` so that the derivative stays
    finite on flat regions (sqrt'(0) is infinite: NaN losses).

    Shape: :math:`(B, 1, H, W)` -> :math:`(B, 1, H, W)`, non-negative.

    Example:
        >>> y = torch.zeros(1, 1, 4, 4); y[..., 2:] = 1.0
        >>> sobel_magnitude(y)[0, 0, 1]
        tensor([0., 4., 4., 4.])
    """
    _check_bchw(y, 1, "y")
    kx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]],
                      dtype=y.dtype, device=y.device)
    k = torch.stack((kx, kx.t())).unsqueeze(1)  # (2, 1, 3, 3): d/dx and d/dy
    g = F.conv2d(y, k, padding=1)
    if eps:
        return torch.sqrt(g[:, :1] ** 2 + g[:, 1:] ** 2 + eps)
    return torch.sqrt(g[:, :1] ** 2 + g[:, 1:] ** 2)


def minmax_normalise(g: torch.Tensor) -> torch.Tensor:
    """Per-image min-max normalisation to [0, 1] (the authors' gradient normaliser).

    Shape: :math:`(B, 1, H, W)` -> :math:`(B, 1, H, W)`.
    """
    lo = g.amin(dim=(-2, -1), keepdim=True)
    hi = g.amax(dim=(-2, -1), keepdim=True)
    return (g - lo) / (hi - lo + GRAD_EPS)


def quadrilinear_lookup(lut: torch.Tensor, luma: torch.Tensor, gradient: torch.Tensor,
                        context: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Quadrilinear interpolation in the 4-D table, differentiable in ``lut`` and the inputs.

    Args:
        lut: :math:`(N, N, N, N)` table, axes ``[luma, gradient, context, ir]``.
        luma, gradient, context, ir: same-shape tensors (any shape) of values in [0, 1].

    Returns:
        Tensor of the inputs' shape. Coordinates are ``v * 255 / 16``; the upper neighbour
        index is clamped to ``N - 1`` as in the authors' code (the table is flat above 240).
    """
    if lut.ndim != 4 or len(set(lut.shape)) != 1:
        raise ValueError(f"lut must be (N, N, N, N), got {tuple(lut.shape)}")
    if not luma.shape == gradient.shape == context.shape == ir.shape:
        raise ValueError("luma, gradient, context and ir must have one shape, got "
                         f"{[tuple(t.shape) for t in (luma, gradient, context, ir)]}")
    n = lut.shape[0]
    coords = [t * LUT_SCALE for t in (luma, gradient, context, ir)]
    lo = [torch.floor(c).clamp(0, n - 1) for c in coords]
    frac = [c - f for c, f in zip(coords, lo)]
    lo_i = [f.long() for f in lo]
    hi_i = [(f + 1).clamp(max=n - 1) for f in lo_i]
    strides = (n ** 3, n ** 2, n, 1)
    flat = lut.reshape(-1)
    out = torch.zeros_like(coords[0])
    for corner in range(16):
        index = torch.zeros_like(lo_i[0])
        weight = torch.ones_like(coords[0])
        for axis in range(4):
            upper = (corner >> (3 - axis)) & 1
            index = index + (hi_i[axis] if upper else lo_i[axis]) * strides[axis]
            weight = weight * (frac[axis] if upper else 1.0 - frac[axis])
        out = out + weight * flat[index]
    return out


def context_input(rgb255: torch.Tensor, ir255: torch.Tensor, stride: int) -> torch.Tensor:
    """The context network's input, box-averaged over ``stride x stride`` pixels.

    Shape: :math:`(B, 3, H, W)` and :math:`(B, 1, H, W)` in [0, 255] ->
    :math:`(B, 4, H // k, W // k)`.
    """
    x = torch.cat((rgb255, ir255), dim=1)
    return F.avg_pool2d(x, stride) if stride > 1 else x


def upsample_context(s: torch.Tensor, size: tuple[int, int], stride: int) -> torch.Tensor:
    """Bilinear up-sampling of a context map to the frame size (see ``resample``).

    Shape: :math:`(B, 1, h, w)` -> :math:`(B, 1, H, W)`.
    """
    if stride == 1 and tuple(s.shape[-2:]) == tuple(size):
        return s
    taps = [[torch.from_numpy(t).to(s.device) for t in bilinear_taps(n_out, n_in, stride)]
            for n_out, n_in in zip(size, s.shape[-2:])]
    (r0, r1, rw), (c0, c1, cw) = taps
    rows = s[..., r0, :] * (1 - rw[:, None]) + s[..., r1, :] * rw[:, None]
    return rows[..., c0] * (1 - cw) + rows[..., c1] * cw


def fuse_luma(lut: torch.Tensor, context_net: torch.nn.Module, rgb: torch.Tensor, ir: torch.Tensor,
              context_scale: float = 1.0, gradient_range: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The MM-LUT forward pass up to the fused luma.

    Args:
        lut: :math:`(16, 16, 16, 16)` table.
        context_net: network mapping :math:`(B, 4, h, w)` in [0, 255] to :math:`(B, 1, h, w)`.
        rgb: :math:`(B, 3, H, W)` visible image in [0, 1], RGB order.
        ir: :math:`(B, 1, H, W)` infrared image in [0, 1].
        context_scale: resolution factor of the context network, 1/k (1 = the authors'
            forward pass).
        gradient_range: :math:`(B, 2)` ``(g_min, g_max)`` per image to normalise the Sobel
            magnitude with (training crops use their whole frame's range, as the runtime
            sees it); ``None``: each image's own min and max.

    Returns:
        ``(fused_y, ycbcr)``: :math:`(B, 1, H, W)` fused luma (not clamped) and the visible
        image's :math:`(B, 3, H, W)` YCbCr.
    """
    _check_bchw(ir, 1, "ir")
    if ir.shape[-2:] != rgb.shape[-2:]:
        raise ValueError(f"ir {tuple(ir.shape)} and rgb {tuple(rgb.shape)} differ in size")
    ycbcr = rgb_to_ycbcr(rgb)
    y = ycbcr[:, :1]
    g = sobel_magnitude(y)
    if gradient_range is None:
        g = minmax_normalise(g)
    else:
        lo, hi = gradient_range[:, 0, None, None, None], gradient_range[:, 1, None, None, None]
        g = ((g - lo) / (hi - lo + GRAD_EPS)).clamp(0.0, 1.0)
    stride = context_stride(context_scale)
    context_size(y.shape[-2], y.shape[-1], stride)  # raises for frames too small
    s = context_net(context_input(rgb * 255.0, ir * 255.0, stride))
    s = upsample_context(s, y.shape[-2:], stride)
    return quadrilinear_lookup(lut, y, g, s, ir), ycbcr


def fuse_rgb(lut: torch.Tensor, context_net: torch.nn.Module, rgb: torch.Tensor, ir: torch.Tensor,
             context_scale: float = 1.0, gradient_range: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Fused RGB image in [0, 1] (clamped): fused luma with the visible image's chroma.

    Shape: :math:`(B, 3, H, W)` and :math:`(B, 1, H, W)` in [0, 1] -> :math:`(B, 3, H, W)`.
    """
    fused_y, ycbcr = fuse_luma(lut, context_net, rgb, ir, context_scale, gradient_range)
    return ycbcr_to_rgb(torch.cat((fused_y, ycbcr[:, 1:]), dim=1)).clamp(0.0, 1.0)

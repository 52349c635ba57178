"""The MM-LUT forward pass on torch tensors (CPU or CUDA): the one torch implementation.

Every function works on batches; values follow the authors' conventions (see
``lutfuse_ros.core.model.INPUT_SCALING``). Training distils through :func:`fuse_luma`
(differentiable in the table, the network and the inputs); the torch backend of the runtime
runs :func:`fuse_u8` (uint8 in and out), eagerly or captured as a CUDA graph
(:mod:`.torch_backend`). Both go through :func:`fused_luma`, so they see the same maths.

Nothing here creates a tensor from host data on each call (the Sobel kernel and the table
strides are cached per device), so the whole pass can be captured as a CUDA graph.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .model import LUT_SCALE
from .resample import context_shape, context_stride

GRAD_EPS = 1e-8
_KR, _KG, _KB = 0.299, 0.587, 0.114  # BT.601 luma
_constants: dict[tuple, torch.Tensor] = {}


def _constant(name: str, values: list, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A small constant tensor, made once per device and dtype (a host-to-device copy each
    call would cost a sync on CUDA and cannot be captured in a CUDA graph)."""
    key = (name, str(device), dtype)
    t = _constants.get(key)
    if t is None:
        t = _constants[key] = torch.tensor(values, dtype=dtype, device=device)
    return t


def _check_bchw(t: torch.Tensor, channels: int, name: str) -> None:
    """Raise ValueError unless ``t`` is a :math:`(B, channels, H, W)` tensor."""
    if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] != channels:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a (B, {channels}, H, W) tensor, got {shape}")


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma. Shape: :math:`(B, 3, H, W)` in [0, 1] -> :math:`(B, 1, H, W)`."""
    _check_bchw(rgb, 3, "rgb")
    return (rgb[:, 0] * _KR + rgb[:, 1] * _KG + rgb[:, 2] * _KB)[:, None]


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 full-range RGB -> YCbCr.

    Shape: :math:`(B, 3, H, W)` in [0, 1] -> :math:`(B, 3, H, W)`, Cb and Cr centred on 0.5.
    """
    y = luma(rgb)[:, 0]
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
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
    kx = [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]
    ky = [list(row) for row in zip(*kx)]
    k = _constant("sobel", [[kx], [ky]], y.device, y.dtype)  # (2, 1, 3, 3): d/dx and d/dy
    g = F.conv2d(y, k, padding=1)
    if eps:
        return torch.sqrt(g[:, :1] ** 2 + g[:, 1:] ** 2 + eps)
    return torch.sqrt(g[:, :1] ** 2 + g[:, 1:] ** 2)


def normalise_gradient(g: torch.Tensor, gradient_range: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """Sobel magnitude -> [0, 1].

    ``gradient_range`` :math:`(B, 2)` ``(g_min, g_max)`` per image (a stream's
    :class:`~lutfuse_ros.core.preprocess.GradientNormaliser`, or a training crop's whole
    frame), values outside clamped; ``None``: each image's own min and max (the authors').

    Shape: :math:`(B, 1, H, W)` -> :math:`(B, 1, H, W)` in [0, 1].
    """
    if gradient_range is None:
        lo, hi = g.flatten(1).aminmax(dim=1)
        lo, hi = lo[:, None, None, None], hi[:, None, None, None]
        return (g - lo) / (hi - lo + GRAD_EPS)
    lo, hi = gradient_range[:, 0, None, None, None], gradient_range[:, 1, None, None, None]
    return ((g - lo) / (hi - lo + GRAD_EPS)).clamp(0.0, 1.0)


def quadrilinear_lookup(lut: torch.Tensor, luma: torch.Tensor, gradient: torch.Tensor,
                        context: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Quadrilinear interpolation in the 4-D table, differentiable in ``lut`` and the inputs.

    The 16 corners' flat indices are built by doubling along each axis and gathered at once;
    the authors' nesting of the lerps is kept (IR innermost, then context, gradient, luma).
    About 20 tensor ops whatever the table size (the per-corner loop it replaces took ~300).

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
    coords = torch.stack((luma, gradient, context, ir)) * LUT_SCALE   # (4, *S)
    lower = torch.floor(coords).clamp(0, n - 1)
    frac = coords - lower
    lower = lower.long()
    strides = _constant(f"strides{n}", [n ** 3, n ** 2, n, 1], lut.device, torch.long)
    strides = strides.view(4, *([1] * luma.ndim))
    step = (lower < n - 1) * strides         # to the upper neighbour; 0 at the last node
    index = (lower * strides).sum(0)
    for axis in range(4):                   # (2, 2, 2, 2, *S): (ir, context, gradient, luma)
        index = torch.stack((index, index + step[axis]))
    # index_select: its gradient (index_add) sums in a fixed order on the CPU, so training
    # runs repeat bit for bit; plain indexing's (index_put) does not, and is 3x slower
    v = lut.reshape(-1).index_select(0, index.reshape(-1)).view(index.shape)
    for axis in (3, 2, 1, 0):               # IR first, luma last
        v = torch.lerp(v[0], v[1], frac[axis])
    return v


def context_input(rgb255: torch.Tensor, ir255: torch.Tensor, stride: int) -> torch.Tensor:
    """The context network's input, box-averaged over ``stride x stride`` pixels.

    Shape: :math:`(B, 3, H, W)` and :math:`(B, 1, H, W)` in [0, 255] ->
    :math:`(B, 4, H // k, W // k)`.
    """
    x = torch.cat((rgb255, ir255), dim=1)
    return F.avg_pool2d(x, stride) if stride > 1 else x


def upsample_context(s: torch.Tensor, shape: tuple[int, int], stride: int) -> torch.Tensor:
    """Bilinear up-sampling of a context map to the frame size, half-pixel centres.

    Pixel ``p`` reads cell coordinate ``(p + 0.5) / k - 0.5``, clamped to the first and last
    cell (:func:`~lutfuse_ros.core.resample.bilinear_taps`, which the numba backend uses):
    ``interpolate`` by ``k``, then the rows and columns past ``h k`` / ``w k`` repeat the last.

    Shape: :math:`(B, 1, h, w)` -> :math:`(B, 1, H, W)`, ``shape`` = (H, W).
    """
    if stride == 1 and tuple(s.shape[-2:]) == tuple(shape):
        return s
    up = F.interpolate(s, scale_factor=float(stride), mode="bilinear", align_corners=False)
    pad_h, pad_w = shape[0] - up.shape[-2], shape[1] - up.shape[-1]
    return F.pad(up, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else up


def fused_luma(lut: torch.Tensor, context_net: torch.nn.Module, rgb: torch.Tensor,
               ir: torch.Tensor, y: torch.Tensor, stride: int,
               gradient_range: torch.Tensor | None = None, half: bool = False) -> torch.Tensor:
    """The fused luma: gradient, context network at 1/``stride``, lookup.

    Args:
        rgb: :math:`(B, 3, H, W)` visible image in [0, 1], RGB order; ``y`` its luma
            :math:`(B, 1, H, W)`.
        ir: :math:`(B, 1, H, W)` infrared image in [0, 1].
        stride: the context network runs on ``stride x stride`` box averages (1: exact).
        gradient_range: see :func:`normalise_gradient`.
        half: run the context network in fp16 (its weights must be half too).

    Returns:
        :math:`(B, 1, H, W)` fused luma, not clamped.
    """
    g = normalise_gradient(sobel_magnitude(y), gradient_range)
    context_shape(y.shape[-2], y.shape[-1], stride)  # raises for frames too small
    x = context_input(rgb * 255.0, ir * 255.0, stride)
    s = context_net(x.half()).float() if half else context_net(x)
    s = upsample_context(s, y.shape[-2:], stride)
    return quadrilinear_lookup(lut, y, g, s, ir)


def fuse_luma(lut: torch.Tensor, context_net: torch.nn.Module, rgb: torch.Tensor, ir: torch.Tensor,
              context_scale: float = 1.0, gradient_range: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The MM-LUT forward pass up to the fused luma (what training distils through).

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
    fy = fused_luma(lut, context_net, rgb, ir, ycbcr[:, :1], context_stride(context_scale),
                    gradient_range)
    return fy, ycbcr


def fuse_rgb(lut: torch.Tensor, context_net: torch.nn.Module, rgb: torch.Tensor, ir: torch.Tensor,
             context_scale: float = 1.0, gradient_range: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Fused RGB image in [0, 1] (clamped): fused luma with the visible image's chroma.

    Shape: :math:`(B, 3, H, W)` and :math:`(B, 1, H, W)` in [0, 1] -> :math:`(B, 3, H, W)`.
    """
    fused_y, ycbcr = fuse_luma(lut, context_net, rgb, ir, context_scale, gradient_range)
    return ycbcr_to_rgb(torch.cat((fused_y, ycbcr[:, 1:]), dim=1)).clamp(0.0, 1.0)


# -- the runtime's pass: uint8 frames in and out ---------------------------------------------
def rgb_from_u8(vis: torch.Tensor, r_ch: int = 0, b_ch: int = 2) -> torch.Tensor:
    """uint8 frames -> RGB in [0, 1].

    Shape: :math:`(B, H, W, C)` (C >= 3; ``r_ch``/``b_ch`` say where red and blue are) or
    :math:`(B, H, W)` grey uint8 -> :math:`(B, 3, H, W)` float32.
    """
    if vis.ndim == 4:
        rgb = torch.stack((vis[..., r_ch], vis[..., 1], vis[..., b_ch]), dim=1)
    else:
        rgb = vis[:, None].expand(-1, 3, -1, -1)
    return rgb.float() * (1.0 / 255.0)


def gradient_rows(vis: torch.Tensor, r_ch: int = 0, b_ch: int = 2
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's min and max of the visible luma's Sobel magnitude, what a stream's
    :class:`~lutfuse_ros.core.preprocess.GradientNormaliser` is updated with.

    Shape: uint8 frames as :func:`rgb_from_u8` -> two :math:`(B, H)` float32.
    """
    g = sobel_magnitude(luma(rgb_from_u8(vis, r_ch, b_ch)))[:, 0]
    lo, hi = g.aminmax(dim=-1)
    return lo, hi


def fuse_u8(lut: torch.Tensor, context_net: torch.nn.Module, vis: torch.Tensor,
            ir: torch.Tensor, stride: int, r_ch: int = 0, b_ch: int = 2,
            gradient_range: torch.Tensor | None = None, half: bool = False) -> torch.Tensor:
    """The runtime's forward pass: uint8 frames in, uint8 fused frames out.

    The fused luma replaces the visible luma; in BT.601 that is the luma change added to each
    of R, G and B, so the output keeps the input's channel order (and the numba backend's
    arithmetic: the two agree to 1 grey level).

    Args:
        vis: :math:`(B, H, W, C)` uint8 colour (C >= 3, alpha ignored) or :math:`(B, H, W)`
            uint8 grey.
        ir: :math:`(B, H, W)` uint8 infrared.
        stride, gradient_range, half: see :func:`fused_luma`.

    Returns:
        :math:`(B, H, W, 3)` uint8 in the channel order of ``vis``, or :math:`(B, H, W)`.

    Example:
        >>> from lutfuse_ros.core.context_net import ContextNet
        >>> vis = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
        >>> ir = torch.randint(0, 256, (2, 64, 64), dtype=torch.uint8)
        >>> fuse_u8(torch.rand(16, 16, 16, 16), ContextNet().eval(), vis, ir, 16).shape
        torch.Size([2, 64, 64, 3])
    """
    rgb = rgb_from_u8(vis, r_ch, b_ch)
    y = luma(rgb)
    fy = fused_luma(lut, context_net, rgb, ir[:, None].float() * (1.0 / 255.0), y, stride,
                    gradient_range, half)
    if vis.ndim == 3:
        return (fy[:, 0].clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
    delta = torch.floor((fy[:, 0] - y[:, 0]) * 255.0 + 0.5).to(torch.int16)
    return (vis[..., :3].to(torch.int16) + delta[..., None]).clamp(0, 255).to(torch.uint8)

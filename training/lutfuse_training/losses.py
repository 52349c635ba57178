"""Losses: unsupervised fusion terms for the teacher, distillation terms and LUT
regularisers for the student. Images are luma in [0, 1], :math:`(B, 1, H, W)`.

Why these terms (teacher, no ground truth exists for fusion):
- intensity, L1 to ``max(IR, Y)``: hot targets from the IR and bright visible content both
  survive; the brighter source is the more salient one in IR/visible pairs.
- gradient, L1 of Sobel magnitudes to ``max(|grad IR|, |grad Y|)``: keeps the stronger edge
  of either source, i.e. the texture of the visible image and the outlines of IR targets.
- SSIM to both sources: keeps local structure and contrast, and stops the first two terms
  from producing halos (they are per-pixel and blind to structure).

With ``base_sigma`` > 0 (the default model's config), gradient-domain fusion instead: the
intensity term compares only the blurred images (the fused *base* follows the brighter
source), and a ``contrast`` term asks the fused image's signed Sobel gradients to be the
stronger source's, so the visible texture (its polarity too) is carried onto a brighter
thermal base rather than replaced by it; the per-pixel max ignores visible lane marks on
warm asphalt, this does not.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lutfuse_ros.core.torch_ops import sobel_magnitude

GRADIENT_EPS = 1e-6  # under the Sobel root: finite derivatives on flat regions


def _gaussian(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (11x11 Gaussian window, sigma 1.5, data range 1) of (B, 1, H, W) images."""
    w = _gaussian(device=a.device).to(a.dtype)
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    saa = F.conv2d(a * a, w) - mu_a ** 2
    sbb = F.conv2d(b * b, w) - mu_b ** 2
    sab = F.conv2d(a * b, w) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / \
        ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return s.mean()


def sobel_xy(y: torch.Tensor) -> torch.Tensor:
    """Signed Sobel derivatives (zero padding): :math:`(B, 1, H, W)` -> :math:`(B, 2, H, W)`."""
    kx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]],
                      dtype=y.dtype, device=y.device)
    return F.conv2d(y, torch.stack((kx, kx.T))[:, None], padding=1)


def contrast_loss(fused: torch.Tensor, y: torch.Tensor, ir: torch.Tensor,
                  g_y: torch.Tensor | None = None, g_i: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """L1 between the fused image's signed Sobel gradients and the stronger source's (by
    magnitude, per pixel): the visible contrast carried onto a brighter thermal base.
    ``g_y``, ``g_i``: the sources' Sobel magnitudes, where the caller has them already."""
    g_y = sobel_magnitude(y) if g_y is None else g_y
    g_i = sobel_magnitude(ir) if g_i is None else g_i
    target = torch.where(g_y >= g_i, sobel_xy(y), sobel_xy(ir))
    return (sobel_xy(fused) - target).abs().mean()


def teacher_losses(fused: torch.Tensor, y: torch.Tensor, ir: torch.Tensor,
                   base_sigma: float = 0.0) -> dict[str, torch.Tensor]:
    """Unsupervised fusion terms (unweighted); ``base_sigma`` > 0: gradient-domain fusion
    (intensity on the blurred images, and the ``contrast`` term)."""
    g_f = sobel_magnitude(fused, eps=GRADIENT_EPS)
    g_y, g_i = sobel_magnitude(y), sobel_magnitude(ir)
    t = {"gradient": (g_f - torch.maximum(g_y, g_i)).abs().mean(),
         "ssim": 1.0 - 0.5 * (ssim(fused, y) + ssim(fused, ir))}
    if base_sigma > 0:
        from .teacher import gaussian_blur

        blur = lambda x: gaussian_blur(x, base_sigma)  # noqa: E731
        t["intensity"] = (blur(fused) - torch.maximum(blur(y), blur(ir))).abs().mean()
        t["contrast"] = contrast_loss(fused, y, ir, g_y, g_i)
    else:
        t["intensity"] = (fused - torch.maximum(y, ir)).abs().mean()
    return t


def lut_monotonicity(lut: torch.Tensor, axes: tuple[int, ...] = (0, 3)) -> torch.Tensor:
    """Mean decrease along the given axes (0 = visible luma, 3 = IR): 0 when the fused luma
    never gets darker as a source gets brighter."""
    terms = [F.relu(lut.narrow(a, 0, lut.shape[a] - 1) - lut.narrow(a, 1, lut.shape[a] - 1)).mean()
             for a in axes]
    return sum(terms) / len(terms)


def lut_smoothness(lut: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring table entries along every axis."""
    return sum((lut.diff(dim=a) ** 2).mean() for a in range(lut.ndim)) / lut.ndim

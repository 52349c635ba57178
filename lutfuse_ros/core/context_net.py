"""The MM-LUT's context network: a small CNN that maps RGB+IR to a scene-context map.

Architecture as released by the LUT-Fuse authors (7,825 parameters with the defaults)::

    stem:   conv3x3(4->16) -> LeakyReLU(0.2) -> InstanceNorm(16, affine)
    blocks: 3 x [conv3x3(16->16) -> LeakyReLU(0.2) -> InstanceNorm(16, affine)]
    x = stem(x); x = x + blocks(x)
    (state-dict names and shapes: :func:`~.context_layout.context_state_shapes`)
    head:   Dropout(0.5) -> conv3x3(16->1) -> sigmoid

Module names keep the index layout of the authors' ``nn.Sequential`` blocks so that their
state dict maps onto ours by a prefix rename (see :func:`lutfuse_ros.core.model.convert_official`).
"""
from __future__ import annotations

import torch
from torch import nn

from .context_layout import ContextNetConfig  # torch-free: the model file holds it


def _conv_act_norm(cin: int, cout: int, slope: float) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(slope),
            nn.InstanceNorm2d(cout, affine=True)]


class ContextNet(nn.Module):
    """Scene-context CNN of the MM-LUT.

    Args:
        config: architecture hyper-parameters.

    Shape:
        - Input: :math:`(B, 4, H, W)` float, channels (R, G, B, IR), raw values in [0, 255].
        - Output: :math:`(B, 1, H, W)` float in (0, 1).

    Example:
        >>> net = ContextNet().eval()
        >>> net(torch.rand(1, 4, 32, 32) * 255).shape
        torch.Size([1, 1, 32, 32])
    """

    def __init__(self, config: ContextNetConfig = ContextNetConfig()) -> None:
        super().__init__()
        self.config = config
        w, slope = config.width, config.negative_slope
        self.stem = nn.Sequential(*_conv_act_norm(config.in_channels, w, slope))
        self.blocks = nn.Sequential(
            *[m for _ in range(config.num_blocks) for m in _conv_act_norm(w, w, slope)])
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Conv2d(w, 1, 3, padding=1))

    def forward(self, rgb_ir: torch.Tensor) -> torch.Tensor:
        if rgb_ir.ndim != 4 or rgb_ir.shape[1] != self.config.in_channels:
            raise ValueError(f"ContextNet expects (B, {self.config.in_channels}, H, W), got "
                             f"{tuple(rgb_ir.shape)}")
        x = self.stem(rgb_ir)
        x = x + self.blocks(x)
        return torch.sigmoid(self.head(x))

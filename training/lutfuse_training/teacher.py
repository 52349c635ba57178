"""MM-Net, the teacher: an encoder-decoder over four scales with cross-modal attention.

After the paper's overview figure (the network was not released): one encoder per modality
(IR, visible luma), four scales (1, 1/2, 1/4, 1/8); at each scale a fusion block on the skip
path merges the two modalities; at the bottleneck each modality attends to the other
(multi-head cross-attention, so a hot target in IR can pull in the visible context around it
and vice versa); a decoder up-samples and merges the skips back to full resolution.
Output: fused luma (clamp to [0, 1] for an image). Trained without ground truth
(``losses.teacher_losses``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lutfuse_ros.core.model import ModelFormatError

from .config import TEACHER_CHANNELS, TEACHER_HEADS

TEACHER_FORMAT = "lutfuse-teacher-v1"


@dataclass(frozen=True)
class TeacherConfig:
    """MM-Net architecture: encoder ``channels`` at four scales, attention ``heads``."""

    channels: tuple[int, ...] = TEACHER_CHANNELS
    heads: int = TEACHER_HEADS
    # A second head: a per-pixel gain of the visible detail (Y minus its blur) added on top
    # of the blend, so the fused image can carry visible texture on a brighter thermal base
    # (a convex blend of the two cannot: it never exceeds the brighter source).
    detail: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))  # a list from a file


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect"),
                         nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, padding_mode="reflect"),
                         nn.LeakyReLU(0.2, inplace=True))


class Encoder(nn.Module):
    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        cin = 1
        for i, c in enumerate(channels):
            down = [] if i == 0 else [nn.Conv2d(cin, c, 3, stride=2, padding=1),
                                      nn.LeakyReLU(0.2, inplace=True)]
            self.stages.append(nn.Sequential(*down, _block(c if i else cin, c)))
            cin = c

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class CrossAttention(nn.Module):
    """Tokens of one modality attend to the other's (pre-norm, residual)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        b, c, h, w = q.shape
        qt, kt = q.flatten(2).transpose(1, 2), kv.flatten(2).transpose(1, 2)
        k = self.norm_kv(kt)
        out, _ = self.attn(self.norm_q(qt), k, k, need_weights=False)
        return q + out.transpose(1, 2).reshape(b, c, h, w)


class MMNet(nn.Module):
    """Shape: IR and visible luma :math:`(B, 1, H, W)` in [0, 1] -> fused :math:`(B, 1, H, W)`
    in [0, 1] (a per-pixel blend of the two). Any H, W (padded internally to a multiple
    of 8)."""

    def __init__(self, config: TeacherConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else TeacherConfig()
        ch = config.channels
        self.enc_ir, self.enc_vis = Encoder(ch), Encoder(ch)
        self.fuse = nn.ModuleList(nn.Sequential(nn.Conv2d(2 * c, c, 1), nn.LeakyReLU(0.2, True),
                                                _block(c, c)) for c in ch)
        self.ir_to_vis = CrossAttention(ch[3], config.heads)
        self.vis_to_ir = CrossAttention(ch[3], config.heads)
        self.dec = nn.ModuleList(_block(ch[i + 1] + ch[i], ch[i]) for i in range(3))
        self.head = nn.Conv2d(ch[0], 1, 3, padding=1, padding_mode="reflect")
        nn.init.zeros_(self.head.weight)  # start exactly at the brighter source
        nn.init.zeros_(self.head.bias)
        if config.detail:
            self.detail_head = nn.Conv2d(ch[0], 1, 3, padding=1, padding_mode="reflect")
            nn.init.zeros_(self.detail_head.weight)  # no detail added at the start
            nn.init.zeros_(self.detail_head.bias)

    def forward(self, ir: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h, w = ir.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        if ph or pw:
            ir = F.pad(ir, (0, pw, 0, ph), mode="reflect")
            y = F.pad(y, (0, pw, 0, ph), mode="reflect")
        fi, fv = self.enc_ir(ir), self.enc_vis(y)
        fi[3], fv[3] = self.vis_to_ir(fi[3], fv[3]), self.ir_to_vis(fv[3], fi[3])
        skips = [f(torch.cat((a, b), 1)) for f, a, b in zip(self.fuse, fi, fv)]
        x = skips[3]
        for i in (2, 1, 0):
            x = F.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            x = self.dec[i](torch.cat((x, skips[i]), 1))
        # The network predicts where to take each source from: a per-pixel weight of IR
        # against visible luma. Zero-initialised, the weight starts as a soft "brighter
        # source" rule (sharpness 20 per unit of intensity difference); training moves it
        # where the losses ask for the other source's texture or contrast. (A free residual
        # output stayed at the max rule, and a sigmoid output saturated in a GPU run.)
        w_ir = torch.sigmoid(self.head(x) + 20.0 * (ir - y))
        out = w_ir * ir + (1.0 - w_ir) * y
        if self.config.detail:
            gain = self.detail_head(x).clamp(-0.5, 2.0)
            out = out + gain * (y - gaussian_blur(y, DETAIL_SIGMA))
        return out[..., :h, :w]


DETAIL_SIGMA = 2.0  # px: the visible detail layer is Y minus its Gaussian blur of this sigma


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (reflect padding) of :math:`(B, 1, H, W)`."""
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def save_teacher(net: MMNet, path) -> None:
    """``torch.save`` of a plain dict: format tag, architecture, state dict (no pickled code)."""
    torch.save({"format": TEACHER_FORMAT, "config": asdict(net.config),
                "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}, path)


def load_teacher(path, device: str = "cpu") -> MMNet:
    """Load with ``weights_only=True``; errors name the file."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: no such teacher file") from None
    except Exception as exc:  # noqa: BLE001 - unpickling errors of many kinds
        raise ModelFormatError(
            f"{path}: not a teacher file ({type(exc).__name__}: {exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != TEACHER_FORMAT:
        raise ModelFormatError(f"{path}: not a {TEACHER_FORMAT} file")
    net = MMNet(TeacherConfig(**blob["config"]))
    try:
        net.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise ModelFormatError(f"{path}: weights do not fit the architecture: {exc}") from None
    return net.to(device).eval()

"""The two training stages: the MM-Net teacher, and its distillation into an MM-LUT."""
from __future__ import annotations

import dataclasses
import datetime
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lutfuse_ros.core import FusionModel, save_model
from lutfuse_ros.core.context_layout import ContextNetConfig
from lutfuse_ros.core.context_net import ContextNet
from lutfuse_ros.core.metrics import (
    DETAIL,
    TABLE_METRICS,
    detail_kept,
    evaluate,
    markdown_table,
    to_gray,
)
from lutfuse_ros.core.model import LUT_NODES, LUT_SCALE
from lutfuse_ros.core.onnx_context import with_onnx
from lutfuse_ros.core.torch_ops import fuse_luma, rgb_to_ycbcr, ycbcr_to_rgb

from .config import TrainConfig
from .data import TRAINING_AGC, Pair
from .losses import contrast_loss, lut_monotonicity, lut_smoothness, ssim, teacher_losses
from .teacher import MMNet, TeacherConfig, save_teacher


def pair_tensors(pair: Pair, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB :math:`(1, 3, H, W)` and IR :math:`(1, 1, H, W)` float in [0, 1] on ``device``."""
    rgb = torch.from_numpy(pair.rgb).to(device).permute(2, 0, 1)[None].float() / 255.0
    ir = torch.from_numpy(pair.ir).to(device)[None, None].float() / 255.0
    return rgb, ir


def to_u8(rgb: torch.Tensor) -> np.ndarray:
    """:math:`(1, 3, H, W)` float in [0, 1] -> :math:`(H, W, 3)` uint8."""
    return (rgb[0].clamp(0, 1).permute(1, 2, 0) * 255 + 0.5).byte().cpu().numpy()


def _score(pairs: list[Pair], fuse) -> tuple[dict[str, float], list[list[np.ndarray]]]:
    """Mean metrics of ``fuse(pair) -> RGB uint8`` over pairs, and mosaic rows of the first 4."""
    scores, rows = [], []
    for n, p in enumerate(pairs):
        fused = fuse(p)
        f, a, b = to_gray(fused), p.ir.astype(np.float32), to_gray(p.rgb)
        m = evaluate(f, a, b)
        scores.append({**{k: m[k] for k in TABLE_METRICS}, DETAIL: detail_kept(f, a, b)})
        if n < 4:
            rows.append([p.ir, p.rgb, fused])
    with warnings.catch_warnings():  # Detail is NaN for pairs without a thermal-bright region
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: float(np.nanmean([s[k] for s in scores]))
                for k in TABLE_METRICS + (DETAIL,)}, rows


def teacher_fuse_rgb(net: MMNet, rgb: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Teacher luma with the visible chroma, as the LUT recombines colour."""
    ycbcr = rgb_to_ycbcr(rgb)
    y = net(ir, ycbcr[:, :1]).clamp(0, 1)
    return ycbcr_to_rgb(torch.cat((y, ycbcr[:, 1:]), 1)).clamp(0, 1)


class TeacherStage:
    name = "teacher"

    def __init__(self, config: TrainConfig, device: str) -> None:
        torch.manual_seed(config.seed)
        self.config, self.device = config, device
        self.net = MMNet(TeacherConfig(list(config.teacher_channels), config.teacher_heads,
                                       config.teacher_detail))
        self.net.to(device)
        self.forward = self.net  # what the loss runs through (DDP's wrapper across processes)

    def modules(self):
        return {"teacher": self.net}

    def trained(self) -> torch.nn.Module:
        """The module DDP wraps: every trained parameter, one forward call per step."""
        return self.net

    def param_groups(self):
        return [{"params": self.net.parameters(), "lr": self.config.lr}]

    def losses(self, batch):
        c = self.config
        y = rgb_to_ycbcr(batch["rgb"])[:, :1]
        fused = self.forward(batch["ir"], y)
        t = teacher_losses(fused, y, batch["ir"], c.base_sigma)
        t["range"] = (F.relu(-fused) + F.relu(fused - 1)).mean()  # stay inside [0, 1]
        t["total"] = c.w_intensity * t["intensity"] + c.w_gradient * t["gradient"] + \
            c.w_ssim * t["ssim"] + t["range"] + c.w_contrast * t.get("contrast", 0.0)
        return t

    def validate(self, pairs):
        return _score(pairs, lambda p: to_u8(teacher_fuse_rgb(self.net,
                                                              *pair_tensors(p, self.device))))

    def finish(self, run_dir: Path, summary: dict) -> None:
        save_teacher(self.net, run_dir / "teacher.pt")
        (run_dir / "teacher_summary.json").write_text(json.dumps(summary, indent=1))


class LutTable(torch.nn.Module):
    """The trainable 4-D table as a module (so the loop checkpoints it like the network).

    Shape: ``lut`` :math:`(N, N, N, N)`, axes ``[y, gradient, context, ir]``.
    """

    def __init__(self, lut: torch.Tensor) -> None:
        super().__init__()
        self.lut = torch.nn.Parameter(lut)


def initial_lut(kind: str, n: int = LUT_NODES) -> torch.Tensor:
    """A starting table over node values ``v = q / LUT_SCALE``: ``max`` of the two sources
    (a sensible fusion before any training) or their ``mean``."""
    v = torch.arange(n, dtype=torch.float32) / LUT_SCALE
    y, i = v[:, None, None, None], v[None, None, None, :]
    lut = torch.maximum(y, i) if kind == "max" else 0.5 * (y + i)
    return lut.expand(n, n, n, n).contiguous()


class Student(torch.nn.Module):
    """The table and the context network as one module: the runtime's differentiable forward
    pass (``fuse_luma``), so that DDP sees one forward call over every trained parameter."""

    def __init__(self, lut: LutTable, context: ContextNet, context_scale: float) -> None:
        super().__init__()
        self.lut_module, self.context, self.context_scale = lut, context, context_scale

    def forward(self, rgb, ir, grad_range=None):
        return fuse_luma(self.lut_module.lut, self.context, rgb, ir, self.context_scale,
                         grad_range)


class DistillStage:
    """The MM-LUT and its context network trained against the frozen teacher, through the
    runtime's own differentiable forward pass (``core.torch_ops.fuse_luma``) at the runtime's
    ``context_scale`` and gradient normaliser."""

    name = "distill"

    def __init__(self, config: TrainConfig, device: str, teacher: MMNet,
                 data_names: list[str], data_info: dict | None = None) -> None:
        torch.manual_seed(config.seed)
        self.config, self.device, self.data_names = config, device, data_names
        self.data_info = data_info or {}
        self.teacher = teacher.to(device).eval().requires_grad_(False)
        self.lut_module = LutTable(initial_lut(config.lut_init).to(device))
        self.lut = self.lut_module.lut
        self.context_config = ContextNetConfig()
        self.context = ContextNet(self.context_config).to(device)
        self.student = Student(self.lut_module, self.context, config.context_scale)
        self.forward = self.student  # DDP's wrapper across processes

    def modules(self):
        return {"lut": self.lut_module, "context": self.context}

    def trained(self) -> torch.nn.Module:
        return self.student

    def param_groups(self):
        c = self.config
        return [{"params": [self.lut], "lr": c.lr},
                {"params": self.context.parameters(), "lr": c.lr * c.context_lr_ratio}]

    def losses(self, batch):
        c = self.config
        rgb, ir = batch["rgb"], batch["ir"]
        fy, ycbcr = self.forward(rgb, ir, batch["grad_range"])
        y = ycbcr[:, :1]
        with torch.no_grad():
            target = self.teacher(ir, y).clamp(0, 1)
        fyc = fy.clamp(0, 1)  # what the runtime outputs
        t = {"teacher_l1": (fy - target).abs().mean(),
             "ssim_sources": 1.0 - 0.5 * (ssim(fyc, y) + ssim(fyc, ir)),
             "monotone": lut_monotonicity(self.lut),
             "smooth": lut_smoothness(self.lut)}
        t["total"] = c.w_teacher * t["teacher_l1"] + c.w_ssim_sources * t["ssim_sources"] + \
            c.w_monotone * t["monotone"] + c.w_tv * t["smooth"]
        if c.w_student_contrast > 0:  # the sources' contrast, straight to the student
            t["contrast"] = contrast_loss(fy, y, ir)
            t["total"] = t["total"] + c.w_student_contrast * t["contrast"]
        return t

    def fuse_pair(self, p: Pair) -> np.ndarray:
        rgb, ir = pair_tensors(p, self.device)
        fy, ycbcr = self.student(rgb, ir)
        return to_u8(ycbcr_to_rgb(torch.cat((fy, ycbcr[:, 1:]), 1)))

    def validate(self, pairs):
        return _score(pairs, self.fuse_pair)

    def model(self, summary: dict | None = None) -> FusionModel:
        state = {k: v.detach().cpu().numpy().astype(np.float32)
                 for k, v in self.context.state_dict().items()}
        meta = {"name": "lutfuse_ros distilled MM-LUT",
                "licence": "Apache-2.0 (lutfuse_ros); trained on MSRS and RoadScene pairs",
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"),
                "training": {"data": self.data_names, "data_info": self.data_info,
                             "config": self.config.to_dict(),
                             "agc": dataclasses.asdict(TRAINING_AGC), **(summary or {})}}
        return FusionModel(lut=self.lut.detach().cpu().numpy().astype(np.float32),
                           context_state=state, context_config=self.context_config.to_dict(),
                           metadata=meta)

    def finish(self, run_dir: Path, summary: dict) -> None:
        # With its ONNX context network, so that robots run it without torch.
        model = with_onnx(self.model(summary))
        save_model(model, run_dir / "model.npz")
        (run_dir / "distill_summary.json").write_text(json.dumps(summary, indent=1))
        write_model_card(run_dir / "MODEL_CARD.md", model, summary)


def _data_lines(training: dict) -> list[str]:
    info = training.get("data_info") or {}
    if info.get("kind") != "shards":
        return [f"- {info['pairs']} pairs read into memory", ""] if info.get("pairs") else []
    return [f"- shard sets: {', '.join(info['sets'])}",
            f"- {info['shards']} shards, {info['pairs']} pairs, {info['hours']} h of recording "
            f"from {len(info['sources'])} recording(s): {', '.join(info['sources'][:20])}"
            + (" ..." if len(info["sources"]) > 20 else ""), ""]


def write_model_card(path: Path, model: FusionModel, summary: dict) -> None:
    t = model.metadata["training"]
    c = t["config"]
    val = summary.get("validation", {})
    lines = [f"# Model card: {model.model_id}", "",
             "An MM-LUT (16^4 table + context CNN) distilled from an MM-Net teacher by "
             "`lutfuse-train distill`.", "",
             "## Data", "", *[f"- {d}" for d in t["data"]], "", *_data_lines(t),
             f"- validation: {c['val_pairs']} pairs held out (every k-th pair of folders and "
             "bags; the first of a shard set's last shard)", "",
             f"- 16-bit thermal frames mapped by AGC `{t['agc']['mode']}` ("
             + ", ".join(f"{k} {v}" for k, v in t["agc"].items() if k != "mode")
             + "); 8-bit IR as it is. A node with another `agc.mode` warns.", "",
             "## Training", "",
             f"- steps: {summary['steps']} of {summary['planned_steps']}"
             f"{' (stopped by the time limit)' if summary['stopped_early'] else ''}, "
             f"batch {c['batch_size']} crops of {c['crop']} px, Adam lr {c['lr']} cosine to "
             f"x{c['lr_final_ratio']}, seed {c['seed']}",
             f"- device: {summary['device']}, {summary['train_seconds']} s, world size "
             f"{summary.get('world_size', 1)} ({summary.get('backend', 'none')}; batch "
             f"{c['batch_size']} is the global batch)",
             f"- context_scale: {c['context_scale']} (the runtime's), gradient range of the "
             "whole frame (the runtime's normaliser), LUT initialised as "
             f"`{c['lut_init']}`", "",
             "## Losses", "",
             f"- {c['w_teacher']} x L1(student luma, teacher luma)",
             f"- {c['w_ssim_sources']} x (1 - mean SSIM(student, visible luma; student, IR))",
             f"- {c['w_monotone']} x monotonicity (mean decrease along the visible-luma and IR "
             "axes)",
             f"- {c['w_tv']} x smoothness (mean squared neighbour difference)", "",
             "Final: " + ", ".join(f"{k} {v:.4g}" for k, v in summary["final_losses"].items()), "",
             "## Validation (held-out pairs, fast mode as trained)", "",
             markdown_table({"held-out pairs": val}, TABLE_METRICS + (DETAIL,), digits=3)]
    path.write_text("\n".join(lines))

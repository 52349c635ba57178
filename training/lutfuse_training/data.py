"""Training pairs from image folders (``<dir>/ir/<name>.<ext>`` + ``<dir>/vis/<name>.<ext>``)
and from rosbag2 recordings (paired and preprocessed as the node does, ``stream.bagio``).

Pairs are read once into memory. Each step's batch is drawn from a generator seeded by
``(seed, step)``, so a run resumed at step n sees exactly the batches an uninterrupted run
sees. 16-bit IR goes through the runtime's :class:`ThermalAGC`; each image's gradient range
is the runtime's :class:`GradientNormaliser` range of the whole frame (what the node sees),
so crops are normalised as their frame would be.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lutfuse_ros.core.errors import InputError, LutfuseError
from lutfuse_ros.core.imageio import match_pairs, read_thermal, read_visible
from lutfuse_ros.core.preprocess import AGCConfig, GradientNormaliser, ThermalAGC
from lutfuse_ros.stream.bagio import is_bag

# 16-bit thermal frames (folders and bags) go through the node's default AGC; the model
# records it (metadata training.agc) so a node with another AGC warns.
TRAINING_AGC = AGCConfig()


class DataError(LutfuseError):
    """A data folder is missing, empty or holds unreadable images."""


@dataclass
class Pair:
    name: str
    rgb: np.ndarray        # (H, W, 3) uint8 RGB
    ir: np.ndarray         # (H, W) uint8
    grad_range: tuple[float, float]


def frame_gradient_range(rgb: np.ndarray) -> tuple[float, float]:
    """The runtime's gradient range of a whole frame (a fresh normaliser = per-image)."""
    from lutfuse_ros.core.torch_ops import gradient_rows

    with torch.no_grad():
        lo, hi = gradient_rows(torch.from_numpy(np.ascontiguousarray(rgb))[None])
    return GradientNormaliser("stable").update(lo[0].numpy(), hi[0].numpy())


def make_pair(name: str, rgb: np.ndarray, ir: np.ndarray, min_side: int = 0) -> Pair:
    """A training pair; frames smaller than ``min_side`` are reflect-padded (the gradient
    range is then taken over the padded frame)."""
    h, w = ir.shape
    if min(h, w) < min_side:
        pad = ((0, max(0, min_side - h)), (0, max(0, min_side - w)))
        rgb = np.pad(rgb, pad + ((0, 0),), mode="reflect")
        ir = np.pad(ir, pad, mode="reflect")
    return Pair(name, rgb, ir, frame_gradient_range(rgb))


def load_pairs(dirs: list[str | Path], min_side: int = 0, progress: bool = True,
               bag_topics: tuple[str, str] = ("/thermal/image", "/rgb/image")) -> list[Pair]:
    """Every pair of every folder; frames smaller than ``min_side`` are reflect-padded."""
    pairs: list[Pair] = []
    listed = []
    for d in dirs:
        d = Path(d)
        if is_bag(d):
            pairs += pairs_from_bag(d, min_side, thermal_topic=bag_topics[0],
                                    rgb_topic=bag_topics[1])
            continue
        if not (d / "ir").is_dir() or not (d / "vis").is_dir():
            raise DataError(f"{d}: expected {d}/ir and {d}/vis folders of paired images")
        listing = match_pairs(d / "ir", d / "vis")
        if not listing.pairs:
            raise DataError(f"{d}: no pairs (files in ir/ and vis/ pair by name)")
        listed += [(d.name, p) for p in listing.pairs]
    for set_name, (stem, ir_path, vis_path) in tqdm(listed, desc="loading pairs", unit="pair",
                                                     disable=not progress):
        try:
            rgb = read_visible(vis_path)
            # as the node maps 16-bit frames (its default AGC; the model records it), each
            # file its own frame
            ir = read_thermal(ir_path, ThermalAGC.from_config(replace(TRAINING_AGC,
                                                                      smoothing=1.0)))
        except InputError as exc:
            raise DataError(str(exc)) from None
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        if ir.shape != rgb.shape[:2]:
            raise DataError(f"{ir_path} and {vis_path} differ in size: training needs "
                            "registered pairs")
        pairs.append(make_pair(f"{set_name}/{stem}", rgb, ir, min_side))
    return pairs


def pairs_from_bag(bag: Path, min_side: int = 0, **kwargs) -> list[Pair]:
    """Pairs of a rosbag2 through the node's sync and preprocessing (``stream.bagio``)."""
    from lutfuse_ros.stream.bagio import BagReport, read_pairs

    report = BagReport()
    pairs = []
    for stamp, ir, rgb in read_pairs(bag, report=report, **kwargs):
        pairs.append(make_pair(f"{bag.name}/{stamp}", rgb, ir, min_side))
    if not pairs:
        raise DataError(f"{bag}: no pairs ({report.summary()})")
    if report.undecodable or report.read_error:
        print(f"{bag}: {report.summary()}", flush=True)
    return pairs


def split_validation(pairs: list[Pair], count: int) -> tuple[list[Pair], list[Pair]]:
    """Hold out ``count`` pairs spread evenly over the list: (train, validation)."""
    if count <= 0 or len(pairs) < 2:
        return pairs, []
    step = max(2, len(pairs) // count)
    val_idx = set(range(step // 2, len(pairs), step)[:count])
    return ([p for i, p in enumerate(pairs) if i not in val_idx],
            [p for i, p in enumerate(pairs) if i in val_idx])


class CropSampler:
    """Random paired crops with flips, a pure function of ``(seed, step)``.

    :meth:`batch` returns ``rgb`` :math:`(B, 3, c, c)` and ``ir`` :math:`(B, 1, c, c)` in
    [0, 1] and ``grad_range`` :math:`(B, 2)`, on ``device``.
    """

    def __init__(self, pairs: list[Pair], crop: int, batch_size: int, seed: int) -> None:
        if not pairs:
            raise DataError("no training pairs")
        self.pairs, self.crop, self.batch_size, self.seed = pairs, crop, batch_size, seed

    def batch(self, step: int, device: str = "cpu") -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        c = self.crop
        rgb = np.empty((self.batch_size, c, c, 3), np.uint8)
        ir = np.empty((self.batch_size, c, c), np.uint8)
        ranges = np.empty((self.batch_size, 2), np.float32)
        for b in range(self.batch_size):
            p = self.pairs[rng.integers(len(self.pairs))]
            h, w = p.ir.shape
            y0, x0 = rng.integers(0, h - c + 1), rng.integers(0, w - c + 1)
            v, t = p.rgb[y0:y0 + c, x0:x0 + c], p.ir[y0:y0 + c, x0:x0 + c]
            if rng.random() < 0.5:
                v, t = v[:, ::-1], t[:, ::-1]
            if rng.random() < 0.5:
                v, t = v[::-1], t[::-1]
            rgb[b], ir[b], ranges[b] = v, t, p.grad_range
        to = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        return {"rgb": to(rgb).permute(0, 3, 1, 2).float() / 255.0,
                "ir": to(ir)[:, None].float() / 255.0,
                "grad_range": to(ranges)}

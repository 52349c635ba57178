"""Training pairs from image folders (``<dir>/ir/<name>.<ext>`` + ``<dir>/vis/<name>.<ext>``)
and from rosbag2 recordings (paired and preprocessed as the node does, ``stream.bagio``).

Folders and bags (small jobs) are read once into memory: each step's global batch is drawn
from a generator seeded by ``(seed, step)`` and each of torchrun's processes takes its slice
of it, so a run resumed at step n (on any number of processes) sees exactly the batches an
uninterrupted run sees. Shard sets (``lutfuse shards``; a fleet's recordings) stream
instead (:class:`ShardCrops`): each rank, and each of its loader workers, reads its own
shards front to back and mixes crops in a bounded shuffle buffer, so memory does not grow
with the data. 16-bit IR goes through the runtime's :class:`ThermalAGC`; each image's gradient range
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
from lutfuse_ros.stream.shards import expand_bags

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
        if is_bag(d) or (d.is_dir() and not (d / "ir").is_dir() and
                         any(is_bag(q) for q in d.iterdir())):
            for bag in expand_bags([d]):  # a bag, or the recorder's split pieces in order
                pairs += pairs_from_bag(bag, min_side, thermal_topic=bag_topics[0],
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


def random_crop(pair: Pair, crop: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """A random ``crop`` x ``crop`` window of a pair, flipped at random: ``(rgb, ir,
    grad_range)``."""
    h, w = pair.ir.shape
    y0, x0 = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    v, t = pair.rgb[y0:y0 + crop, x0:x0 + crop], pair.ir[y0:y0 + crop, x0:x0 + crop]
    if rng.random() < 0.5:
        v, t = v[:, ::-1], t[:, ::-1]
    if rng.random() < 0.5:
        v, t = v[::-1], t[::-1]
    return v, t, pair.grad_range


def to_batch(rgb: np.ndarray, ir: np.ndarray, ranges: np.ndarray, device: str
             ) -> dict[str, torch.Tensor]:
    """uint8 crops ``(B, c, c, 3)``, ``(B, c, c)`` and ranges ``(B, 2)`` -> the batch dict."""
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    return {"rgb": to(rgb).permute(0, 3, 1, 2).float() / 255.0,
            "ir": to(ir)[:, None].float() / 255.0,
            "grad_range": to(ranges.astype(np.float32))}


class CropSampler:
    """Random paired crops with flips, a pure function of ``(seed, step)``.

    :meth:`batch` returns ``rgb`` :math:`(B, 3, c, c)` and ``ir`` :math:`(B, 1, c, c)` in
    [0, 1] and ``grad_range`` :math:`(B, 2)`, on ``device``: the ``rank``-th of ``world``
    equal slices of the step's global batch of ``batch_size`` (so the global batches do not
    depend on the number of processes).
    """

    def __init__(self, pairs: list[Pair], crop: int, batch_size: int, seed: int,
                 rank: int = 0, world: int = 1) -> None:
        if not pairs:
            raise DataError("no training pairs")
        self.pairs, self.crop, self.batch_size, self.seed = pairs, crop, batch_size, seed
        self.rank, self.world = rank, world

    def batch(self, step: int, device: str = "cpu") -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        c, share = self.crop, self.batch_size // self.world
        rgb = np.empty((share, c, c, 3), np.uint8)
        ir = np.empty((share, c, c), np.uint8)
        ranges = np.empty((share, 2), np.float32)
        mine = range(self.rank * share, (self.rank + 1) * share)
        for b in range(self.batch_size):  # every crop drawn, this rank's kept
            crop = random_crop(self.pairs[rng.integers(len(self.pairs))], c, rng)
            if b in mine:
                k = b - mine.start
                rgb[k], ir[k], ranges[k] = crop
        return to_batch(rgb, ir, ranges, device)


def shard_pair(item, min_side: int = 0) -> Pair:
    """A streamed shard pair as a training :class:`Pair` (grey visible made RGB)."""
    rgb = item.rgb if item.rgb.ndim == 3 else np.repeat(item.rgb[:, :, None], 3, axis=2)
    return make_pair(item.key, rgb, item.ir, min_side)


class ShardCrops(torch.utils.data.IterableDataset):
    """An endless stream of random crops from a rank's share of a shard set.

    The rank takes every ``world``-th shard from ``rank``; each DataLoader worker of the
    rank every ``workers``-th of those. Shards are read front to back (one pair decoded at a
    time), ``crops_per_pair`` crops cut from each pair, and crops mixed in a shuffle buffer
    of ``buffer`` items: what a worker holds is the buffer plus one pair, whatever the size
    of the data. The order is a function of ``(seed, rank, worker, start_step, epoch)``. A
    shard that cannot be read is reported by name (once) and skipped; a rank left without
    readable data stops with an error.

    Items: ``(rgb (c, c, 3) uint8, ir (c, c) uint8, grad_range (2,) float32)``.
    """

    def __init__(self, shards: list[Path], crop: int, seed: int, rank: int = 0, world: int = 1,
                 buffer: int = 512, crops_per_pair: int = 4, start_step: int = 0) -> None:
        super().__init__()
        self.shards = list(shards)[rank::world]
        if not self.shards:
            raise DataError(f"rank {rank} of {world} has no shard: {len(shards)} shard(s) for "
                            f"{world} processes (write smaller shards: lutfuse shards "
                            "--pairs-per-shard)")
        self.crop, self.seed, self.rank = crop, seed, rank
        self.buffer, self.crops_per_pair, self.start_step = buffer, crops_per_pair, start_step
        self.peak_held = 0  # most crops held at once (in this process)

    def _mine(self) -> tuple[list[Path], int]:
        info = torch.utils.data.get_worker_info()
        if info is None:
            return self.shards, 0
        return self.shards[info.id::info.num_workers], info.id

    def _crops(self, shards: list[Path], rng: np.random.Generator):
        from lutfuse_ros.stream.shards import ShardError, read_shard

        for path in (shards[i] for i in rng.permutation(len(shards))):
            if path in self._bad:
                continue
            try:
                for item in read_shard(path):
                    pair = shard_pair(item, self.crop)
                    for _ in range(self.crops_per_pair):
                        yield random_crop(pair, self.crop, rng)
            except ShardError as exc:
                self._bad.add(path)
                print(f"skipping shard: {exc}", flush=True)

    def __iter__(self):
        shards, worker = self._mine()
        self._bad: set[Path] = set()
        if not shards:  # more workers than shards: this worker has nothing to add
            return
        held: list = []
        epoch = 0
        while True:
            rng = np.random.default_rng([self.seed, self.rank, worker, self.start_step, epoch])
            produced = 0
            for crop in self._crops(shards, rng):
                produced += 1
                if len(held) < self.buffer:
                    held.append(crop)
                    self.peak_held = max(self.peak_held, len(held))
                    continue
                k = rng.integers(len(held))
                yield held[k]
                held[k] = crop
            if produced == 0:
                raise DataError(f"rank {self.rank}: none of its {len(shards)} shard(s) could "
                                "be read (see the messages above)")
            epoch += 1


def _collate(items) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rgb, ir, ranges = zip(*items)
    return np.stack(rgb), np.stack(ir), np.asarray(ranges, np.float32)


class StreamSampler:
    """Batches of a :class:`ShardCrops` stream behind the :class:`CropSampler` interface
    (``batch(step, device)``); ``batch_size`` here is this rank's share."""

    def __init__(self, dataset: ShardCrops, batch_size: int, workers: int = 0) -> None:
        self.dataset = dataset
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                             collate_fn=_collate,
                                             persistent_workers=workers > 0)
        self._batches = iter(loader)

    def batch(self, step: int, device: str = "cpu") -> dict[str, torch.Tensor]:
        return to_batch(*next(self._batches), device)


def shard_validation(shards: list[Path], count: int, min_side: int = 0
                     ) -> tuple[list[Path], list[Pair]]:
    """Hold out the last shard for validation (its first ``count`` pairs) when there are
    two or more and ``count`` > 0: ``(training shards, validation pairs)``."""
    from lutfuse_ros.stream.shards import read_shard

    if count <= 0 or len(shards) < 2:
        return list(shards), []
    pairs = []
    for item in read_shard(shards[-1]):
        pairs.append(shard_pair(item, min_side))
        if len(pairs) >= count:
            break
    return list(shards[:-1]), pairs

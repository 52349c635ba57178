"""Shards: recordings' preprocessed pairs as fixed-size tar files that training streams.

A shard set is a folder of WebDataset-style tar files (the convention of ``webdataset`` and
``torchdata``; readable by ``tar``, Python's ``tarfile`` or any language without this
package) and one small JSON manifest per source recording::

    DIR/<source>-000000.tar      <key>.ir.png   thermal, uint8, registered into the RGB frame
                                 <key>.vis.png  visible, 8-bit RGB (or grey) PNG
                                 <key>.json     {"stamp_ns", "source", "shard", ...}
    DIR/<source>.manifest.json   the source's shards (pairs, first/last stamp), its bag, the
                                 preprocessing (sync, AGC, registration); written last, so its
                                 presence says the source is complete
    DIR/manifest.json            every complete source's manifest together (a summary)

Why tar + PNG: pairs stay bit-exact (lossless), a shard is read front to back with one open
file (streaming, bounded memory, no index), a partly written shard is never mistaken for a
whole one (written as ``.tar.part`` and renamed), and a truncated one fails at its end with
the pairs before it intact.

Writing uses the node's preprocessing (``stream.bagio.read_pairs``: sync, AGC, registration),
so training sees what the node fuses. Bags convert in parallel processes (:func:`convert`),
re-running skips sources already complete, and a damaged bag is reported by name while the
rest go on.
"""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..core.errors import InputError, LutfuseError
from ..core.preprocess import PreprocessConfig, Preprocessor
from .bagio import DEFAULT_RGB_TOPIC, DEFAULT_THERMAL_TOPIC, BagError, BagReport, is_bag
from .sync import SyncConfig

FORMAT = "lutfuse-shards/1"
PAIRS_PER_SHARD = 256  # ~150 MB of 640x480 PNG pairs: a few seconds of reading each


class ShardError(LutfuseError):
    """A shard or shard set cannot be read (missing, truncated, not a shard)."""


@dataclass(frozen=True)
class ShardPair:
    """One pair read back: ``ir`` (H, W) uint8, ``rgb`` (H, W, 3) uint8 RGB (or (H, W))."""

    key: str
    ir: np.ndarray
    rgb: np.ndarray
    meta: dict


@dataclass
class SourceResult:
    """What converting one recording gave: its manifest, or why it failed."""

    source: str
    bag: str
    manifest: dict | None = None
    skipped: bool = False          # complete already (a re-run)
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def source_name(bag: str | Path) -> str:
    """A file-name-safe name for a recording: its folder (or file) name."""
    name = Path(bag).name
    name = name[:-len(Path(name).suffix)] if Path(name).suffix in (".mcap", ".db3") else name
    return re.sub(r"[^A-Za-z0-9_+-]", "_", name) or "bag"


def expand_bags(paths: list[str | Path]) -> list[Path]:
    """Bags as given, a folder of bags (the recorder's split pieces) as its bags in name
    order. Raises :class:`BagError` for a path that is neither."""
    bags: list[Path] = []
    for p in map(Path, paths):
        if is_bag(p):
            bags.append(p)
        elif p.is_dir() and (inner := sorted(q for q in p.iterdir() if is_bag(q))):
            bags += inner
        else:
            raise BagError(f"{p}: not a rosbag2 (folder with metadata.yaml, .mcap or .db3) "
                           "nor a folder of them")
    names = [source_name(b) for b in bags]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise BagError(f"recordings with the same name would write the same shards: {clash} "
                       "(rename one, or convert them into separate folders)")
    return bags


def _png(img: np.ndarray, order: str = "rgb") -> bytes:
    out = img[:, :, ::-1] if img.ndim == 3 and order == "rgb" else img
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(out), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise InputError("PNG encoding failed")
    return buf.tobytes()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))


class ShardWriter:
    """Pairs into ``<prefix>-000000.tar``, ``-000001.tar``, ... of ``pairs_per_shard`` each;
    each shard appears under its name only once complete."""

    def __init__(self, folder: Path, prefix: str, pairs_per_shard: int = PAIRS_PER_SHARD) -> None:
        if pairs_per_shard < 1:
            raise InputError(f"pairs per shard must be >= 1, got {pairs_per_shard}")
        self.folder, self.prefix, self.pairs_per_shard = Path(folder), prefix, pairs_per_shard
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shards: list[dict] = []
        self._tar: tarfile.TarFile | None = None
        self._part: Path | None = None

    def add(self, key: str, ir: np.ndarray, rgb: np.ndarray, meta: dict) -> None:
        if self._tar is None:
            name = f"{self.prefix}-{len(self.shards):06d}.tar"
            self._part = self.folder / (name + ".part")
            self._tar = tarfile.open(self._part, "w", format=tarfile.PAX_FORMAT)
            self.shards.append({"file": name, "pairs": 0, "first_stamp_ns": meta["stamp_ns"]})
        info = self.shards[-1]
        _add(self._tar, f"{key}.ir.png", _png(ir, "gray"))
        _add(self._tar, f"{key}.vis.png", _png(rgb))
        _add(self._tar, f"{key}.json", json.dumps({**meta, "shard": info["file"]}).encode())
        info["pairs"] += 1
        info["last_stamp_ns"] = meta["stamp_ns"]
        if info["pairs"] >= self.pairs_per_shard:
            self._finish()

    def _finish(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._part.rename(self._part.with_suffix(""))  # .tar.part -> .tar
            self._tar = self._part = None

    def close(self) -> list[dict]:
        self._finish()
        return self.shards


def write_source(bag: str | Path, out: str | Path, preprocess: PreprocessConfig,
                 sync: SyncConfig = SyncConfig(), thermal_topic: str = DEFAULT_THERMAL_TOPIC,
                 rgb_topic: str = DEFAULT_RGB_TOPIC, pairs_per_shard: int = PAIRS_PER_SHARD,
                 ) -> SourceResult:
    """One recording into shards (the node's sync and preprocessing), then its manifest.
    Never raises for a bad bag: the result says what went wrong."""
    from .bagio import read_pairs

    bag, out = Path(bag), Path(out)
    source = source_name(bag)
    result = SourceResult(source, str(bag))
    manifest_path = out / f"{source}.manifest.json"
    if manifest_path.exists():
        result.skipped, result.manifest = True, json.loads(manifest_path.read_text())
        return result
    for stale in out.glob(f"{source}-*.tar*"):  # an interrupted earlier run
        stale.unlink()
    report = BagReport()
    writer = ShardWriter(out, source, pairs_per_shard)
    started = time.monotonic()
    try:
        for stamp, ir, rgb in read_pairs(bag, thermal_topic, rgb_topic, sync.slop,
                                         sync.thermal_offset, Preprocessor.from_config(preprocess),
                                         report):
            writer.add(f"{source}-{stamp:019d}", ir, rgb,
                       {"stamp_ns": int(stamp), "source": source})
        shards = writer.close()
    except (LutfuseError, OSError) as exc:
        writer.close()
        for partial in out.glob(f"{source}-*.tar*"):
            partial.unlink()
        result.error = str(exc)
        return result
    if report.read_error or report.undecodable:
        result.notes.append(report.summary())
    if not shards:
        result.error = f"{bag}: no pairs ({report.summary()})"
        return result
    pairs = sum(s["pairs"] for s in shards)
    result.manifest = {
        "format": FORMAT, "source": source, "bag": str(bag.resolve()),
        "pairs": pairs, "shards": shards,
        "first_stamp_ns": shards[0]["first_stamp_ns"], "last_stamp_ns": shards[-1]["last_stamp_ns"],
        "topics": {"thermal": thermal_topic, "rgb": rgb_topic},
        "preprocess": asdict(preprocess), "sync": asdict(sync),
        "report": report.summary(),
        "seconds": round(time.monotonic() - started, 2)}
    tmp = manifest_path.with_suffix(".part")
    tmp.write_text(json.dumps(result.manifest, indent=1, default=list))
    tmp.rename(manifest_path)
    return result


def _write_source_job(job: tuple) -> SourceResult:
    return write_source(*job)


def convert(bags: list[str | Path], out: str | Path, preprocess: PreprocessConfig,
            sync: SyncConfig = SyncConfig(), thermal_topic: str = DEFAULT_THERMAL_TOPIC,
            rgb_topic: str = DEFAULT_RGB_TOPIC, pairs_per_shard: int = PAIRS_PER_SHARD,
            workers: int = 1, progress: bool = True) -> list[SourceResult]:
    """Every recording of ``bags`` into shards under ``out``, ``workers`` processes at a time;
    then ``out/manifest.json`` of every complete source there. Results in ``bags`` order."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(b, out, preprocess, sync, thermal_topic, rgb_topic, pairs_per_shard) for b in bags]
    bar = tqdm(total=len(jobs), desc="shards", unit="bag", disable=not progress)
    results: list[SourceResult] = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(_write_source_job(job))
            bar.update(1)
    else:
        with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
            for result in pool.map(_write_source_job, jobs):
                results.append(result)
                bar.update(1)
    bar.close()
    write_summary(out)
    return results


def write_summary(folder: str | Path) -> dict:
    """``folder/manifest.json``: the complete sources' manifests and their totals."""
    folder = Path(folder)
    sources = [json.loads(p.read_text()) for p in sorted(folder.glob("*.manifest.json"))]
    summary = {"format": FORMAT, "sources": sources,
               "pairs": sum(s["pairs"] for s in sources),
               "shards": sum(len(s["shards"]) for s in sources),
               "hours": round(sum(s["last_stamp_ns"] - s["first_stamp_ns"] for s in sources)
                              / 3.6e12, 4)}
    tmp = folder / "manifest.json.part"
    tmp.write_text(json.dumps(summary, indent=1, default=list))
    tmp.rename(folder / "manifest.json")
    return summary


def is_shard_set(path: str | Path) -> bool:
    return Path(path).is_dir() and any(Path(path).glob("*.manifest.json"))


@dataclass(frozen=True)
class ShardSet:
    """The complete shards of a folder (from the per-source manifests), in name order."""

    folder: Path
    shards: tuple[Path, ...]
    pairs: int
    hours: float
    sources: tuple[str, ...]
    pairs_per_shard: tuple[int, ...]

    @classmethod
    def open(cls, folder: str | Path) -> "ShardSet":
        folder = Path(folder)
        manifests = sorted(folder.glob("*.manifest.json"))
        if not manifests:
            raise ShardError(f"{folder}: no shard set (no <source>.manifest.json; write one "
                             "with `lutfuse shards BAG ... --out DIR`)")
        shards, counts, sources, hours = [], [], [], 0.0
        for m in manifests:
            try:
                info = json.loads(m.read_text())
                if info.get("format") != FORMAT:
                    raise ValueError(f"format {info.get('format')!r}, expected {FORMAT!r}")
                for s in info["shards"]:
                    shards.append(folder / s["file"])
                    counts.append(int(s["pairs"]))
                sources.append(info["source"])
                hours += (info["last_stamp_ns"] - info["first_stamp_ns"]) / 3.6e12
            except (ValueError, KeyError, TypeError) as exc:
                raise ShardError(f"{m}: not a shard manifest ({exc})") from None
        return cls(folder, tuple(shards), sum(counts), hours, tuple(sources), tuple(counts))


def read_shard(path: str | Path) -> Iterator[ShardPair]:
    """The pairs of one shard, front to back, one member in memory at a time.

    Raises:
        ShardError: the file is missing, not a tar, truncated or holds a broken pair (the
            pairs before the damage have been yielded).
    """
    path = Path(path)
    pending: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(path, "r|") as tar:  # a stream: no seeking, no index
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.partition(".")
                data = tar.extractfile(member).read()
                parts = pending.setdefault(key, {})
                parts[ext] = data
                if len(parts) == 3:
                    yield _decode(path, key, pending.pop(key))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ShardError(f"{path}: unreadable or truncated shard ({type(exc).__name__}: "
                         f"{exc})") from None
    if pending:
        raise ShardError(f"{path}: truncated shard (pair {sorted(pending)[0]} incomplete)")


def _decode(path: Path, key: str, parts: dict[str, bytes]) -> ShardPair:
    try:
        ir = cv2.imdecode(np.frombuffer(parts["ir.png"], np.uint8), cv2.IMREAD_UNCHANGED)
        vis = cv2.imdecode(np.frombuffer(parts["vis.png"], np.uint8), cv2.IMREAD_UNCHANGED)
        meta = json.loads(parts["json"])
    except (KeyError, ValueError) as exc:
        raise ShardError(f"{path}: pair {key} is broken ({exc})") from None
    if ir is None or vis is None or ir.ndim != 2 or ir.dtype != np.uint8:
        raise ShardError(f"{path}: pair {key} has an undecodable image")
    rgb = vis[:, :, ::-1] if vis.ndim == 3 else vis
    return ShardPair(key, ir, np.ascontiguousarray(rgb), meta)


def rank_share(items: list, rank: int, world_size: int) -> list:
    """The items one of ``world_size`` processes takes: every ``world_size``-th from
    ``rank`` (torchrun's RANK and WORLD_SIZE)."""
    return list(items[rank::world_size])


def distributed_rank() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` as torchrun sets them, ``(0, 1)`` without it."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))

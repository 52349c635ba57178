"""Image files: pairs of IR/visible images matched by name, reading, writing, mosaics."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class PairListing:
    """Files of an IR folder and a visible folder matched by file stem."""

    pairs: list[tuple[str, Path, Path]]  # (stem, ir path, visible path), sorted by stem
    ir_only: list[Path]
    vis_only: list[Path]


def _images(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def match_pairs(ir_dir: str | Path, vis_dir: str | Path) -> PairListing:
    """Match ``ir_dir/<name>.*`` with ``vis_dir/<name>.*``; report files without a partner."""
    ir, vis = _images(Path(ir_dir)), _images(Path(vis_dir))
    common = sorted(set(ir) & set(vis))
    return PairListing(pairs=[(s, ir[s], vis[s]) for s in common],
                       ir_only=[ir[s] for s in sorted(set(ir) - set(vis))],
                       vis_only=[vis[s] for s in sorted(set(vis) - set(ir))])


def why_no_pairs(ir_dir: str | Path, vis_dir: str | Path) -> str:
    """What two folders hold when :func:`match_pairs` finds no pair, in words: image counts
    at their top level, sub-folders that hold images, names that do not match.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for sub in ("ir/thermal16", "vis"):
        ...     (root / sub).mkdir(parents=True)
        >>> _ = (root / "ir/thermal16/a.png").write_bytes(b"")
        >>> print(why_no_pairs(root / "ir", root / "vis"))
        ir: 0 image(s), sub-folder(s) with images: thermal16/ (point the option at it); vis: ...
    """
    parts = []
    for folder in (Path(ir_dir), Path(vis_dir)):
        found = _images(folder)
        text = f"{folder.name}: {len(found)} image(s)"
        subs = [d.name + "/" for d in sorted(folder.iterdir()) if d.is_dir() and _images(d)]
        if subs:
            text += f", sub-folder(s) with images: {', '.join(subs)} (point the option at it)"
        parts.append(text)
    ir, vis = _images(Path(ir_dir)), _images(Path(vis_dir))
    if ir and vis:
        parts.append(f"no name in common (e.g. {sorted(ir)[0]!r} and {sorted(vis)[0]!r}): "
                     "pairs are matched by file name")
    return "; ".join(parts)


def read_ir(path: str | Path) -> np.ndarray:
    """Read an 8-bit IR image as (H, W) uint8 (colour files are converted to grey); 16-bit
    files are refused (:func:`read_thermal` maps them)."""
    return read_thermal(path, agc=None)


def read_thermal(path: str | Path,
                 agc: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """Read a thermal image as (H, W) uint8: 8-bit files as they are, 16-bit files as raw
    counts (:func:`~.thermal.to_counts`) through ``agc`` (for single images, a fresh
    :class:`~.preprocess.ThermalAGC` with ``smoothing=1.0``: each file its own frame; ``None``
    refuses them). Colour files are converted to grey."""
    from .thermal import to_counts

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path}: not a readable image")
    if img.dtype != np.uint8 and (agc is None or img.dtype != np.uint16):
        if agc is None:
            raise InputError(f"{path}: IR must be 8-bit, got {img.dtype} (map 16-bit data "
                             "with lutfuse_ros.core.preprocess.thermal_to_8bit first)")
        raise InputError(f"{path}: thermal must be 8- or 16-bit, got {img.dtype}")
    if img.ndim == 3:
        if img.dtype == np.uint16:
            raise InputError(f"{path}: 16-bit colour image: thermal counts must be one channel "
                             "(save the camera's raw frame, not a colourised one)")
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2GRAY)
    return agc(to_counts(img)) if img.dtype == np.uint16 else img


def read_visible(path: str | Path) -> np.ndarray:
    """Read a visible image: (H, W, 3) uint8 **RGB**, or (H, W) uint8 for grey files."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path}: not a readable image")
    if img.dtype != np.uint8:
        raise InputError(f"{path}: visible image must be 8-bit, got {img.dtype}")
    if img.ndim == 3:
        return np.ascontiguousarray(img[:, :, 2::-1])  # BGR(A) -> RGB
    return img


def write_image(path: str | Path, img: np.ndarray, order: str = "rgb") -> None:
    """Write a uint8 gray or colour image (``order`` of its channels) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = img[:, :, ::-1] if (img.ndim == 3 and order == "rgb") else img
    if not cv2.imwrite(str(path), np.ascontiguousarray(out)):
        raise OSError(f"{path}: could not write image")


def _label(tile: np.ndarray, text: str, origin: tuple[int, int] = (6, 20)) -> None:
    """Yellow text with a black outline. The outline is the same thin text drawn around it
    one pixel off in each direction: a thicker stroke is laid out wider by OpenCV 5 and
    showed a second, shifted outline beside the letters."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.6
    x, y = origin
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            if dx or dy:
                cv2.putText(tile, text, (x + dx, y + dy), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(tile, text, (x, y), font, scale, (255, 255, 0), 1, cv2.LINE_AA)


def mosaic(rows: list[list[np.ndarray]], labels: list[str] | None = None,
           height: int = 240) -> np.ndarray:
    """Tile RGB/gray uint8 images into one RGB image; each row scaled to ``height`` pixels.

    Args:
        rows: images per row (e.g. ``[[ir, vis, fused], ...]``).
        labels: optional column titles drawn on the first row.
    """
    def rgb(img: np.ndarray) -> np.ndarray:
        img = img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2)
        scale = height / img.shape[0]
        return cv2.resize(img[:, :, :3], (max(1, round(img.shape[1] * scale)), height),
                          interpolation=cv2.INTER_AREA)

    strips = []
    for r, row in enumerate(rows):
        tiles = [rgb(img) for img in row]
        if labels and r == 0:
            for tile, text in zip(tiles, labels):
                _label(tile, text)
        strips.append(np.concatenate(tiles, axis=1))
    width = max(s.shape[1] for s in strips)
    strips = [np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0))) for s in strips]
    return np.concatenate(strips, axis=0)

"""Evaluation of fused images against their sources: CSV, JSON of means, markdown, mosaics."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .core.imageio import match_pairs, mosaic, read_ir, read_visible, write_image
from .core.metrics import METRICS, TABLE_METRICS, evaluate, markdown_table, read_gray

__all__ = ["TABLE_METRICS", "evaluate_folder", "markdown_table"]


def evaluate_folder(ir_dir: str | Path, vis_dir: str | Path, fused_dir: str | Path,
                    out_dir: str | Path | None = None, mosaics: bool = True,
                    progress: bool = True) -> dict:
    """Metrics of every fused image that has both sources.

    Returns ``{"per_image": [{"image": name, metric: value, ...}], "mean": {...},
    "missing": [names without a fused image]}``; writes ``metrics.csv``, ``metrics.json``,
    ``metrics.md`` and ``mosaics/<name>.png`` (IR | visible | fused) under ``out_dir``.
    """
    listing = match_pairs(ir_dir, vis_dir)
    fused = {p.stem: p for p in Path(fused_dir).iterdir() if p.is_file()}
    rows, missing = [], []
    out = Path(out_dir) if out_dir is not None else None
    for name, ir_path, vis_path in tqdm(listing.pairs, desc="eval", disable=not progress,
                                        unit="img"):
        if name not in fused:
            missing.append(name)
            continue
        row = {"image": name}
        row.update(evaluate(read_gray(fused[name]), read_gray(ir_path), read_gray(vis_path)))
        rows.append(row)
        if out is not None and mosaics:
            tiles = [read_ir(ir_path), read_visible(vis_path), read_visible(fused[name])]
            write_image(out / "mosaics" / f"{name}.png",
                        mosaic([tiles], ["IR", "visible", "fused"]))
    mean = {m: float(np.nanmean([r[m] for r in rows])) for m in METRICS} if rows else {}
    result = {"per_image": rows, "mean": mean, "missing": missing, "count": len(rows)}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "metrics.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["image", *METRICS])
            writer.writeheader()
            writer.writerows(rows)
        (out / "metrics.json").write_text(json.dumps(
            {"mean": mean, "count": len(rows), "missing": missing}, indent=1))
        (out / "metrics.md").write_text(markdown_table({str(fused_dir): mean}))
    return result

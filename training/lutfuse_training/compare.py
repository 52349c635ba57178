"""Metrics table and mosaics: teacher, a trained LUT (exact and fast), the authors' weights,
and the Max and Average rules, on test folders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lutfuse_ros.core import Fuser, FusionConfig, load_model
from lutfuse_ros.core.imageio import mosaic, write_image
from lutfuse_ros.core.metrics import (
    DETAIL,
    TABLE_METRICS,
    detail_kept,
    evaluate,
    markdown_table,
    to_gray,
)
from lutfuse_ros.core.model import official_model_path

from .data import load_pairs
from .stages import pair_tensors, teacher_fuse_rgb, to_u8
from .teacher import load_teacher

GOAL = ("Qabf", "VIF", "MI", "SSIM", "SCD", "EN")


def methods(model_path: Path, teacher_path: Path | None, device: str):
    ours, official = load_model(model_path), load_model(official_model_path())
    out = {}
    if teacher_path is not None:
        teacher = load_teacher(teacher_path, device)

        def run_teacher(p):
            with torch.no_grad():
                return to_u8(teacher_fuse_rgb(teacher, *pair_tensors(p, device)))
        out["teacher (MM-Net)"] = run_teacher
    for label, model in (("ours", ours), ("authors'", official)):
        for mode, cfg in (("exact", FusionConfig(exact=True)), ("fast 1/16", FusionConfig())):
            fuser = Fuser(model, cfg)
            out[f"{label} {mode}"] = (lambda f: lambda p: f.fuse(p.ir, p.rgb))(fuser)
    out["Max"] = lambda p: np.maximum(p.ir, to_gray(p.rgb).round().astype(np.uint8))
    out["Average"] = lambda p: ((p.ir.astype(np.float32) + to_gray(p.rgb)) / 2).round() \
        .astype(np.uint8)
    return out


def compare(data_dirs: list[str], out_dir: Path, model_path: Path, teacher_path: Path | None,
            device: str = "cpu", limit: int = 0) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = methods(model_path, teacher_path, device)
    results: dict[str, dict[str, dict[str, float]]] = {}
    lines = [f"# Model comparison: {load_model(model_path).model_id} vs the authors' weights", ""]
    for d in data_dirs:
        name = Path(d).name
        pairs = load_pairs([d], progress=False)
        pairs = pairs[:limit] if limit else pairs
        scores = {m: [] for m in runs}
        shots = []
        for n, p in enumerate(tqdm(pairs, desc=f"compare {name}", unit="pair")):
            row = [p.ir, p.rgb]
            a, b = p.ir.astype(np.float32), to_gray(p.rgb)
            for m, fuse in runs.items():
                f = fuse(p)
                g = to_gray(f) if f.ndim == 3 else f.astype(np.float32)
                scores[m].append({**evaluate(g, a, b), DETAIL: detail_kept(g, a, b)})
                if m in ("teacher (MM-Net)", "ours fast 1/16", "authors' fast 1/16", "Max"):
                    row.append(f)
            if n in (0, len(pairs) // 3, 2 * len(pairs) // 3):
                shots.append(row)
        columns = TABLE_METRICS + (DETAIL,)
        means = {m: {k: float(np.nanmean([s[k] for s in v])) for k in columns}
                 for m, v in scores.items()}
        results[name] = means
        wins = [k for k in GOAL if means["ours fast 1/16"][k] > means["authors' fast 1/16"][k]]
        lines += [f"## {name} ({len(pairs)} pairs)", "",
                  markdown_table(means, columns, digits=3).rstrip("\n")]
        lines += ["", f"Ours (fast) above the authors' (fast) on {len(wins)} of {len(GOAL)} goal "
                  f"metrics: {', '.join(wins) or 'none'}.", ""]
        labels = ["IR", "visible"] + [m for m in runs if m in ("teacher (MM-Net)", "ours fast 1/16",
                                                               "authors' fast 1/16", "Max")]
        write_image(out_dir / f"{name}_mosaic.png", mosaic(shots, labels=labels))
    (out_dir / "comparison.md").write_text("\n".join(lines) + "\n")
    (out_dir / "comparison.json").write_text(json.dumps(results, indent=1))
    print("\n".join(lines))
    return results

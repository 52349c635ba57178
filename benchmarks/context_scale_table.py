"""What ``context_scale`` costs in quality and time, on the shared test sets.

For each test set: fuse every pair in exact mode and in fast mode at each scale, report the
literature's metrics (means), the PSNR of each fast output against exact mode, and the
median time per frame; the Max and Average rules are listed beside them as the guide asks.
Writes a markdown table (and JSON) and a mosaic of one frame per setting.

    python benchmarks/context_scale_table.py --data ../shared/data/ivif --out out/context_scale
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lutfuse_ros.core import Fuser, FusionConfig, load_model
from lutfuse_ros.core.imageio import match_pairs, mosaic, read_ir, read_visible, write_image
from lutfuse_ros.core.metrics import evaluate, to_gray
from lutfuse_ros.evaluation import TABLE_METRICS, markdown_table

SCALES = (0.5, 0.25, 0.125, 0.0625)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ivif"))
    ap.add_argument("--sets", nargs="+", default=["MSRS_test", "RoadScene_test"])
    ap.add_argument("--out", type=Path, default=Path("out/context_scale"))
    args = ap.parse_args()
    model = load_model()
    settings = {"exact": FusionConfig(exact=True)}
    settings.update({f"fast 1/{round(1 / s)}": FusionConfig(context_scale=s) for s in SCALES})
    fusers = {name: Fuser(model, cfg) for name, cfg in settings.items()}
    report = {}
    for dataset in args.sets:
        listing = match_pairs(args.data / dataset / "ir", args.data / dataset / "vis")
        rows: dict[str, list[dict]] = {k: [] for k in [*settings, "Max", "Average"]}
        tiles = []
        for i, (name, ir_p, vis_p) in enumerate(tqdm(listing.pairs, desc=dataset)):
            ir, vis = read_ir(ir_p), read_visible(vis_p)
            a, b = ir.astype(np.float32), to_gray(vis)
            outs = {}
            for key, fuser in fusers.items():
                fuser.fuse(ir, vis)  # warm (buffers for this size)
                t0 = time.perf_counter()
                outs[key] = fuser.fuse(ir, vis)
                ms = (time.perf_counter() - t0) * 1e3
                row = evaluate(to_gray(outs[key]), a, b)
                diff = outs[key].astype(np.float64) - outs["exact"]
                mse = float((diff ** 2).mean())
                row["PSNR_vs_exact"] = 10 * np.log10(255 ** 2 / mse) if mse else float("inf")
                row["ms"] = ms
                rows[key].append(row)
            rows["Max"].append(evaluate(np.maximum(a, b), a, b))
            rows["Average"].append(evaluate(np.round((a + b) / 2), a, b))
            if i in (0, len(listing.pairs) // 2):
                tiles.append([ir, vis] + [outs[k] for k in settings])
        means = {k: {m: float(np.nanmean([r[m] for r in v])) for m in v[0]}
                 for k, v in rows.items()}
        report[dataset] = means
        write_image(args.out / f"{dataset}_mosaic.png",
                    mosaic(tiles, ["IR", "visible", *settings]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "context_scale.json").write_text(json.dumps(report, indent=1))
    metrics = (*TABLE_METRICS, "PSNR_vs_exact", "ms")
    text = "".join(f"\n### {ds}\n\n" + markdown_table(means, metrics)
                   for ds, means in report.items())
    (args.out / "context_scale.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

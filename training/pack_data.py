"""Copy pair folders into a compact transfer copy: IR kept as PNG (lossless), visible as
JPEG quality 95. Used to send MSRS_train + RoadScene_train (94 MB of PNG) to a GPU machine
whose transfer limit is 64 MiB; the model card records it.

    python training/pack_data.py ../shared/data/ivif/MSRS_train \
        ../shared/data/ivif/RoadScene_train --out .gpu_data
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quality", type=int, default=95)
    args = ap.parse_args()
    for d in args.dirs:
        (args.out / d.name / "ir").mkdir(parents=True, exist_ok=True)
        (args.out / d.name / "vis").mkdir(parents=True, exist_ok=True)
        for p in sorted((d / "ir").iterdir()):
            shutil.copy(p, args.out / d.name / "ir" / p.name)
        for p in sorted((d / "vis").iterdir()):
            img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(args.out / d.name / "vis" / (p.stem + ".jpg")), img,
                        [cv2.IMWRITE_JPEG_QUALITY, args.quality])
    print(f"packed {len(args.dirs)} folders into {args.out}")

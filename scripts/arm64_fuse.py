"""Fuse a fixed set of pairs with the light (torch-free) runtime and save the outputs, or
compare two such runs. scripts/arm64_check.sh runs ``fuse`` natively and under ARM64
emulation, then ``compare``.

    python scripts/arm64_fuse.py fuse --out DIR [--full] [--shared ../shared]
    python scripts/arm64_fuse.py compare DIR_X86 DIR_ARM64
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.modules["torch"] = None  # the light runtime: importing torch must not be needed

import numpy as np  # noqa: E402

from lutfuse_ros.core import Fuser, FusionConfig  # noqa: E402
from lutfuse_ros.core.imageio import match_pairs, read_ir, read_visible  # noqa: E402
from lutfuse_ros.core.synthetic import synthetic_pair  # noqa: E402

ENGINES = ("onnxruntime", "opencv")


def pairs(full: bool, shared: Path | None):
    """(name, ir, vis): synthetic pairs, then real test pairs when the data is there."""
    for seed, shape in ((0, (120, 160)), (1, (120, 160)), (2, (480, 640))):
        ir, vis = synthetic_pair(seed=seed, shape=shape)
        yield f"synthetic{seed}", ir, vis
    for name in ("MSRS_test", "RoadScene_test"):
        root = shared / "data" / "ivif" / name if shared else None
        if root is None or not root.exists():
            continue
        listing = match_pairs(root / "ir", root / "vis").pairs
        for stem, ir_p, vis_p in listing if full else listing[:1]:
            yield f"{name}_{stem}", read_ir(ir_p), read_visible(vis_p)


def fuse(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fusers = {}
    for engine in ENGINES:
        fusers[f"fast_{engine}"] = Fuser(config=FusionConfig(context_engine=engine))
        fusers[f"exact_{engine}"] = Fuser(config=FusionConfig(context_engine=engine, exact=True))
    report = {"machine": platform.machine(), "python": platform.python_version(),
              "engines": {k: str(f.engine) for k, f in fusers.items()},
              "setup_s": round(time.perf_counter() - t0, 1), "pairs": {}}
    print(f"{platform.machine()}: fusers ready in {report['setup_s']} s", flush=True)
    results = {}
    exact_left = 4 if args.full else 1  # exact mode is slow under emulation
    for i, (name, ir, vis) in enumerate(pairs(args.full, args.shared)):
        times = {}
        for key, fuser in fusers.items():
            if key.startswith("exact") and exact_left <= 0:
                continue
            t = time.perf_counter()
            results[f"{name}/{key}"] = fuser.fuse(ir, vis)
            times[key] = round(time.perf_counter() - t, 3)
        if any(k.startswith("exact") for k in times):
            exact_left -= 1
        report["pairs"][name] = times
        print(f"[{i + 1}] {name} {ir.shape[1]}x{ir.shape[0]}: " +
              ", ".join(f"{k} {v:.2f} s" for k, v in times.items()), flush=True)
    np.savez_compressed(out / "fused.npz", **results)
    report["total_s"] = round(time.perf_counter() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"{len(results)} outputs in {out} ({report['total_s']} s)", flush=True)


def compare(args) -> int:
    a, b = (np.load(Path(d) / "fused.npz") for d in (args.a, args.b))
    ra, rb = (json.loads((Path(d) / "report.json").read_text()) for d in (args.a, args.b))
    missing = sorted(set(a.files) ^ set(b.files))
    worst, differing, values = 0, 0, 0
    for key in sorted(set(a.files) & set(b.files)):
        d = np.abs(a[key].astype(np.int16) - b[key].astype(np.int16))
        worst, differing, values = max(worst, int(d.max())), differing + int((d > 0).sum()), \
            values + d.size
    print(f"{ra['machine']} vs {rb['machine']}: {len(a.files)} outputs, largest difference "
          f"{worst} grey level(s), {100 * differing / max(values, 1):.4f} % of values differ"
          + (f"; missing on one side: {missing}" if missing else ""))
    ok = worst <= 1 and not missing and len(a.files) > 0
    print("ARM64 check " + ("passed" if ok else "FAILED") + " (tolerance: 1 grey level)")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fuse")
    p.add_argument("--out", required=True)
    p.add_argument("--full", action="store_true", help="every test pair, exact mode on four")
    p.add_argument("--shared", type=Path, default=None, help="the shared data folder")
    p.set_defaults(func=fuse)
    p = sub.add_parser("compare")
    p.add_argument("a")
    p.add_argument("b")
    p.set_defaults(func=compare)
    args = parser.parse_args()
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())

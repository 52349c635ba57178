"""Digest of every output the runtime computes, to check that a refactor changed nothing.

Fuses the shared IVIF test sets (MSRS_test, RoadScene_test) with every backend and context
engine, fast and exact, both shipped models, a stateful stream (stable gradient range), and
synthetic 16-bit frames through the frame pipeline (decode, AGC, every registration mode),
then prints one SHA-256 per case and writes them as JSON. Run it before and after a change
and compare the two files::

    python scripts/output_digest.py --out /tmp/before.json   # on the old commit
    python scripts/output_digest.py --out /tmp/after.json    # on the new one
    diff /tmp/before.json /tmp/after.json                    # nothing: bit-identical
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lutfuse_ros.core import Fuser, FusionConfig, load_model
from lutfuse_ros.core.imageio import match_pairs, read_ir, read_visible
from lutfuse_ros.core.model import official_model_path
from lutfuse_ros.core.preprocess import GradientNormaliser, Preprocessor, Registration, ThermalAGC
from lutfuse_ros.core.synthetic import synthetic_pair

try:  # the stream layer moved out of ros/ (issue 13); this script runs on both layouts
    from lutfuse_ros.stream.codec import numpy_to_image
    from lutfuse_ros.stream.pipeline import FramePipeline
except ImportError:
    from lutfuse_ros.stream.codec import numpy_to_image
    from lutfuse_ros.stream.pipeline import FramePipeline

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ivif"
CASES = {  # name: (model, FusionConfig keywords)
    "onnxruntime_fast": ("default", dict(context_engine="onnxruntime")),
    "opencv_fast": ("default", dict(context_engine="opencv")),
    "numpy_torch_fast": ("default", dict(context_engine="torch", threads=1)),
    # One thread for torch on the CPU: its multi-threaded kernels differ by 1 LSB run to run.
    "torch_fast": ("default", dict(backend="torch", threads=1)),
    "onnxruntime_exact": ("default", dict(exact=True, context_engine="onnxruntime")),
    "torch_exact": ("default", dict(exact=True, backend="torch", threads=1)),
    "official_fast": ("official", dict(context_engine="onnxruntime")),
    "official_exact": ("official", dict(exact=True, context_engine="onnxruntime")),
    "onnxruntime_fast_1_4": ("default", dict(context_scale=0.25)),
}


def digest(h: "hashlib._Hash", *arrays: np.ndarray) -> None:
    for a in arrays:
        h.update(str((a.dtype, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())


def image_cases(models: dict, pairs: list) -> dict[str, str]:
    out = {}
    for case, (model, kwargs) in tqdm(CASES.items(), desc="fusion cases"):
        fuser = Fuser(models[model], FusionConfig(**kwargs))
        h = hashlib.sha256()
        for ir, vis in pairs:
            digest(h, fuser.fuse(ir, vis))
        out[case] = h.hexdigest()
    # A stream: one GradientNormaliser across all frames, BGR in and out, gray visible too.
    fuser, norm, h = Fuser(models["default"]), GradientNormaliser("stable"), hashlib.sha256()
    for ir, vis in pairs:
        digest(h, fuser.fuse(ir, vis[:, :, ::-1], vis_order="bgr", gradient=norm),
               fuser.fuse(ir, vis[:, :, 1], gradient=norm))
    out["stream_stable_bgr_gray"] = h.hexdigest()
    return out


def pipeline_cases(models: dict) -> dict[str, str]:
    registrations = {
        "resize": Registration("resize"),
        "crop_resize": Registration("crop_resize", crop=(10, 8, 130, 100)),
        "homography": Registration("homography", homography=np.array(
            [[1.2, 0.01, -8.0], [0.0, 1.21, -5.0], [0.0, 0.0, 1.0]])),
    }
    out = {}
    for name, reg in registrations.items():
        for agc in ("percentile", "fixed", "equalize"):
            pre = Preprocessor(agc=ThermalAGC(agc, low=20000, high=30000), registration=reg,
                               gradient=GradientNormaliser("stable"))
            for enc in ("", "mono8", "rgb8"):
                pipe = FramePipeline(Fuser(models["default"]), pre, enc)
                h = hashlib.sha256()
                for seed in range(6):
                    ir8, rgb = synthetic_pair(seed=seed, shape=(240, 320))
                    noise = np.random.default_rng(seed).integers(0, 30, ir8.shape)
                    ir16 = (ir8.astype(np.uint16) * 40 + 18000 + noise).astype(np.uint16)
                    ir16 = ir16[::2, ::2].copy() if name != "resize" else ir16[:192, :256].copy()
                    frame = pipe(numpy_to_image(ir16, "mono16"),
                                 numpy_to_image(rgb[:, :, ::-1].copy(), "bgr8"))
                    digest(h, frame.image, frame.thermal_8bit)
                    h.update(frame.encoding.encode())
                out[f"pipeline_{name}_{agc}_{enc or 'follow'}"] = h.hexdigest()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=0, help="pairs per set (0: all)")
    args = ap.parse_args()
    models = {"default": load_model(), "official": load_model(official_model_path())}
    result = {}
    for set_name in ("MSRS_test", "RoadScene_test"):
        listing = match_pairs(SHARED / set_name / "ir", SHARED / set_name / "vis")
        names = listing.pairs[:args.limit] if args.limit else listing.pairs
        pairs = [(read_ir(i), read_visible(v)) for _, i, v in names]
        for k, v in image_cases(models, pairs).items():
            result[f"{set_name}/{k}"] = v
    result.update(pipeline_cases(models))
    for k, v in result.items():
        print(f"{v[:16]}  {k}")
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

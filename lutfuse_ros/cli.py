"""The ``lutfuse`` command: fuse folders, evaluate, convert the authors' weights, benchmark,
and a demo on embedded (procedural) pairs. Thin: all work is done in ``lutfuse_ros.core``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .bench import DEFAULT_SIZES
from .core.config import FusionConfig
from .core.errors import ConfigError, InputError, LutfuseError
from .core.geometry import Size, parse_size
from .core.onnx_context import CONTEXT_ENGINES
from .core.preprocess import AGCConfig
from .core.thermal import AGC_MODES
from .stream.bagio import DEFAULT_RGB_TOPIC, DEFAULT_THERMAL_TOPIC
from .stream.sync import SyncConfig

EXIT_OK, EXIT_SKIPPED, EXIT_ERROR = 0, 1, 2
ALIGNMENT_CHECKS = 3  # pairs lutfuse fuse scores for alignment (~40 ms each at 640x480)


def _fusion_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=None,
                   help="model file (.npz); default: the model shipped in the package")
    p.add_argument("--exact", action="store_true",
                   help="the authors' forward pass (context network at full resolution)")
    p.add_argument("--context-scale", type=float, default=None,
                   help="resolution of the context network in fast mode, 1/k "
                        "(default: the FusionConfig default)")
    p.add_argument("--device", default=FusionConfig.device,
                   help="cpu (compiled kernels) or cuda (selects the torch backend)")
    p.add_argument("--threads", type=int, default=FusionConfig.threads,
                   help="CPU threads (0 = all cores)")
    p.add_argument("--context-engine", default=FusionConfig.context_engine,
                   choices=CONTEXT_ENGINES,
                   help="what runs the context network on the CPU (default: auto = ONNX "
                        "Runtime, else OpenCV, when the model carries ONNX; else torch)")


def _file_settings(args):
    """The node's settings for files: from ``--params`` (a robot's parameter file), then the
    command line's (model, fusion options, --calibration, --agc, --slop, --thermal-offset)."""
    from .ros.params import NodeSettings, read_params_file

    settings = NodeSettings()
    if args.params is not None:
        settings = NodeSettings.from_values(read_params_file(args.params))
    changes: dict = {}
    if getattr(args, "model", None) is not None:
        changes["model_path"] = str(args.model)
    if args.calibration is not None:
        changes["registration.calibration_file"] = str(args.calibration)
    if args.agc is not None:
        changes["agc.mode"] = args.agc
    if hasattr(args, "exact"):  # commands that fuse
        fusion = {k: v for k, v in _fusion_changes(args).items()
                  if v != getattr(FusionConfig, k)}  # options left at default keep --params'
        changes.update({f"fusion.{k}": v for k, v in fusion.items()})
    for name in ("slop", "thermal_offset"):
        if getattr(args, name, None) is not None:
            changes[f"sync.{name}"] = getattr(args, name)
    return settings.with_values(changes)


def _file_pipeline(args, settings):
    """The node's frame pipeline built from ``settings`` (``--independent``: no AGC
    smoothing from one pair to the next)."""
    import dataclasses

    from .stream.pipeline import FramePipeline

    config = settings.pipeline
    if args.independent:  # each pair alone: the first-frame AGC and the pair's own range
        pre = config.preprocess
        config = dataclasses.replace(config, preprocess=dataclasses.replace(
            pre, agc=dataclasses.replace(pre.agc, smoothing=1.0)))
    return FramePipeline.from_config(config)


def _fusion_changes(args) -> dict:
    kw = {"exact": args.exact, "threads": args.threads, "context_engine": args.context_engine}
    if args.context_scale is not None:
        kw["context_scale"] = args.context_scale
    if args.device != "cpu":
        kw.update(backend="torch", device=args.device)
    return kw


def _fuse_bag(args, settings, pipeline) -> int:
    """A recording's synchronised pairs through the node's pipeline (its sync policy, AGC,
    registration, stream state): what the node would publish, as PNGs named by RGB stamp,
    and a contact sheet (thermal | visible | fused) of a few frames."""
    from tqdm import tqdm

    from .core.imageio import mosaic, write_image
    from .stream.bagio import BagReport, read_pairs

    out, report, sheet = Path(args.out), BagReport(), []
    sync = settings.sync
    done = 0
    # AGC only (register=False): the pipeline registers, as the node does after its AGC
    pairs = read_pairs(args.bag, args.thermal_topic, args.rgb_topic, sync.slop,
                       sync.thermal_offset, pre=pipeline.pre, report=report, register=False)
    for stamp, ir8, rgb in tqdm(pairs, desc="fuse", unit="pair"):
        frame = pipeline.fuse_arrays(ir8, rgb, "rgb" if rgb.ndim == 3 else "gray")
        write_image(out / f"{stamp}.png", frame.image)
        if args.sheet is not None and done % args.sheet_every == 0 and len(sheet) < 4:
            sheet.append([frame.thermal_8bit, rgb, frame.image])
        done += 1
    print(f"{args.bag}: {report.summary()}")
    if args.sheet is not None and sheet:
        write_image(args.sheet, mosaic(sheet, labels=["thermal (registered)", "visible",
                                                      "fused"]))
        print(f"contact sheet: {args.sheet}")
    print(f"fused {done} pair(s) into {out} with model {pipeline.fuser.model_id} "
          f"({pipeline.fuser.engine}; the node's pipeline on the recording)")
    lost = report.undecodable or report.read_error
    return EXIT_SKIPPED if lost or done == 0 else EXIT_OK


def cmd_fuse(args) -> int:
    """Pairs of files (8-bit or raw 16-bit thermal, any sizes) through the node's pipeline:
    AGC, registration, fusion with the stream's gradient range. A folder is one camera
    stream in file-name order unless --independent."""
    from tqdm import tqdm

    from .core import check_pair
    from .core.calibration import MIN_SCORE, alignment_score
    from .core.imageio import match_pairs, read_thermal, read_visible, why_no_pairs, write_image

    settings = _file_settings(args)
    pipeline = _file_pipeline(args, settings)
    if args.bag is not None:
        return _fuse_bag(args, settings, pipeline)
    if args.ir is None or args.vis is None:
        raise ConfigError("give --ir and --vis (folders of pairs), or --bag (a recording)")
    listing = match_pairs(args.ir, args.vis)
    problems = [f"no visible image for {p}" for p in listing.ir_only]
    problems += [f"no IR image for {p}" for p in listing.vis_only]
    if not listing.pairs:
        problems.append(f"no pairs ({why_no_pairs(args.ir, args.vis)})")
    batch = args.batch or (8 if args.independent and args.device != "cpu" else 1)
    if batch > 1 and not args.independent:
        raise ConfigError("--batch fuses unrelated pairs together: it needs --independent")
    done, scores, chunk = 0, [], []

    def write(name: str, image: np.ndarray, ir8: np.ndarray, vis: np.ndarray) -> None:
        nonlocal done
        write_image(Path(args.out) / f"{name}.png", image)
        done += 1
        if len(scores) < ALIGNMENT_CHECKS:  # the node's registration health score
            scores.append((alignment_score(ir8, vis), name))

    def flush() -> None:
        """Independent pairs, preprocessed one by one, fused ``batch`` at a time (per-image
        gradient ranges, as the node's first frame of a stream)."""
        fused = pipeline.fuser.fuse_batch([c[1] for c in chunk], [c[2] for c in chunk],
                                          batch_size=batch)
        for (name, ir8, vis), image in zip(chunk, fused):
            write(name, image, ir8, vis)
        chunk.clear()

    for name, ir_path, vis_path in tqdm(listing.pairs, desc="fuse", unit="pair"):
        try:
            raw = read_thermal(ir_path, agc=lambda counts: counts)  # counts: the node's AGC next
            vis = read_visible(vis_path)
            if args.independent:
                pipeline.pre.reset()
            if batch > 1:
                ir8 = pipeline.pre.thermal(raw, Size.of(vis))
                chunk.append((name, *check_pair(ir8, vis)))
                if len(chunk) == batch:
                    flush()
                continue
            frame = pipeline.fuse_arrays(raw, vis, "rgb" if vis.ndim == 3 else "gray")
        except (LutfuseError, OSError) as exc:
            problems.append(f"{name}: {exc}")
            continue
        write(name, frame.image, frame.thermal_8bit, vis)
    if chunk:
        flush()
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    if scores and min(scores)[0] < MIN_SCORE:
        score, name = min(scores)
        print(f"warning: thermal and visible images do not line up ({name}: alignment score "
              f"{score:.2f}, registered pairs score above {MIN_SCORE}); the fused images show "
              "double edges. Estimate the rig's registration with `lutfuse calibrate --ir "
              f"{args.ir} --vis {args.vis} --out rig.yaml` and fuse with --calibration "
              "rig.yaml", file=sys.stderr)
    mode = "independent pairs" if args.independent else "one stream in file-name order"
    print(f"fused {done} pair(s) into {args.out} with model {pipeline.fuser.model_id} "
          f"({pipeline.fuser.engine}; {mode}); {len(problems)} skipped")
    return EXIT_SKIPPED if problems or done == 0 else EXIT_OK


def cmd_eval(args) -> int:
    from .evaluation import TABLE_METRICS, evaluate_folder

    res = evaluate_folder(args.ir, args.vis, args.fused, args.out)
    for name in res["missing"]:
        print(f"skipped: no fused image for {name}", file=sys.stderr)
    print(f"{res['count']} image(s); means:")
    for m in TABLE_METRICS:
        print(f"  {m:5s} {res['mean'].get(m, float('nan')):.4f}")
    if args.out:
        print(f"wrote {args.out}/metrics.csv, metrics.json, metrics.md, mosaics/")
    return EXIT_OK if res["count"] and not res["missing"] else EXIT_SKIPPED


def cmd_convert(args) -> int:
    from .core import convert_official, save_model

    model = convert_official(args.lut, args.context)
    save_model(model, args.out)
    print(f"wrote {args.out} (model id {model.model_id})")
    return EXIT_OK


def cmd_export_onnx(args) -> int:
    from .core import load_model, save_model
    from .core.onnx_context import OPSET, with_onnx

    model = with_onnx(load_model(args.model))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_bytes(model.context_onnx)
        print(f"wrote {args.out}: context network of {model.model_id} (ONNX opset {OPSET}, "
              "input rgb_ir (1, 4, H, W) float32 in [0, 255], output context (1, 1, H, W))")
    if args.embed:
        save_model(model, args.model)
        print(f"embedded the ONNX context network in {args.model} (model id unchanged: "
              f"{model.model_id})")
    return EXIT_OK


def cmd_bench(args) -> int:
    from .bench import run_benchmark

    res = run_benchmark(sizes=tuple(args.sizes), runs=args.runs, context_scale=args.context_scale,
                        threads=args.threads, device=args.device,
                        backends=tuple(args.backends), ratio_rounds=args.ratio_rounds,
                        batch=args.batch, exact_runs=args.exact_runs)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
        print(f"wrote {args.json}")
    return EXIT_OK


def cmd_demo(args) -> int:
    from .core import Fuser, FusionConfig
    from .core.imageio import mosaic, write_image
    from .core.synthetic import demo_pairs

    fuser = Fuser(config=FusionConfig(context_engine=args.context_engine))
    rows = [[ir, vis, fuser.fuse(ir, vis)] for _, ir, vis in demo_pairs(args.count)]
    write_image(args.out, mosaic(rows, ["IR", "visible", "fused"]))
    print(f"fused {len(rows)} embedded pairs with model {fuser.model_id} ({fuser.engine}); "
          f"mosaic: {args.out}")
    return EXIT_OK


def cmd_bag_export(args) -> int:
    from .core.preprocess import Preprocessor, ThermalAGC
    from .stream.bagio import export_pairs

    pre = Preprocessor(agc=ThermalAGC(args.agc))
    report = export_pairs(args.bag, args.out, thermal_topic=args.thermal_topic,
                          rgb_topic=args.rgb_topic, slop=args.slop,
                          thermal_offset=args.thermal_offset, pre=pre)
    print(f"{args.bag}: {report.summary()}\nwrote {args.out}/ir and {args.out}/vis")
    lost = report.undecodable or report.read_error
    return EXIT_SKIPPED if lost else EXIT_OK


def cmd_shards(args) -> int:
    """Recordings -> shards for streaming training, with the node's preprocessing."""
    from .stream.shards import convert, distributed_rank, expand_bags, rank_share

    settings = _file_settings(args)
    bags = expand_bags(args.bags)
    rank, world = distributed_rank()
    if world > 1:  # under torchrun: this process's share of the recordings
        bags = rank_share(bags, rank, world)
        print(f"rank {rank} of {world}: {len(bags)} recording(s)")
    t0 = time.monotonic()
    results = convert(bags, args.out, settings.pipeline.preprocess, settings.sync,
                      args.thermal_topic, args.rgb_topic, args.pairs_per_shard, args.workers)
    written = [r for r in results if r.manifest and not r.skipped]
    pairs = sum(r.manifest["pairs"] for r in written)
    seconds = time.monotonic() - t0
    for r in results:
        if r.error:
            print(f"{r.bag}: FAILED: {r.error}")
        elif r.skipped:
            print(f"{r.bag}: complete already ({r.manifest['pairs']} pairs), skipped")
        for note in r.notes:
            print(f"{r.bag}: {note}")
    print(f"{len(written)} recording(s) -> {pairs} pairs in "
          f"{sum(len(r.manifest['shards']) for r in written)} shard(s) under {args.out} in "
          f"{seconds:.1f} s ({pairs / max(seconds, 1e-9):.1f} pairs/s, {args.workers} "
          f"process(es)); manifest: {Path(args.out) / 'manifest.json'}")
    failed = [r for r in results if r.error]
    return EXIT_SKIPPED if failed else EXIT_OK


def cmd_thermal(args) -> int:
    from tqdm import tqdm

    from .core.imageio import mosaic, write_image
    from .core.preprocess import ThermalAGC
    from .core.thermal import read_raw_thermal

    paths = sorted(p for p in args.input.iterdir()
                   if p.suffix.lower() in (".png", ".tif", ".tiff")) \
        if args.input.is_dir() else []
    if not paths:
        print(f"lutfuse thermal: error: no .png/.tif frames in {args.input}", file=sys.stderr)
        return EXIT_ERROR
    agc = ThermalAGC(args.agc, low=args.low, high=args.high, plateau=args.plateau,
                     max_gain=args.max_gain, smoothing=args.smoothing)
    args.out.mkdir(parents=True, exist_ok=True)
    shown, size = [], None
    picks = set(np.linspace(0, len(paths) - 1, min(4, len(paths))).round().astype(int))
    for k, path in enumerate(tqdm(paths, desc="thermal", unit="frame")):
        raw = read_raw_thermal(path, bits=args.bits, byte_order=args.byte_order)
        if size is not None and raw.shape != size:
            raise InputError(f"{path.name}: {raw.shape[1]}x{raw.shape[0]} frame in a stream of "
                             f"{size[1]}x{size[0]} (one folder is one camera)")
        size = raw.shape
        out = agc(raw)  # one stream: the mapping carries over, as in the node
        write_image(args.out / (path.stem + ".png"), out)
        if k in picks:
            lo, hi = float(raw.min()), float(raw.max())
            plain = ((raw.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1.0))).astype(np.uint8)
            shown.append([plain, out])
    mapping = "8-bit input, passed through"
    if agc.levels is not None:
        mapping = (f"last mapping: counts {agc.range[0]:.0f}..{agc.range[1]:.0f} -> grey levels "
                   f"{agc.levels[0]}..{agc.levels[1]}")
    print(f"wrote {len(paths)} 8-bit frames to {args.out} (agc {args.agc}; {mapping}; "
          f"{agc.frozen_frames} frozen)")
    if args.mosaic is not None:
        write_image(args.mosaic, mosaic(shown, labels=["raw min..max", f"agc {args.agc}"],
                                        height=min(size[0], 360)))
        print(f"mosaic: {args.mosaic}")
    return EXIT_OK


def _size(text: str) -> Size:
    """The one size parser of the command line: "WxH" -> Size (an argparse type)."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_calibrate(args) -> int:
    from tqdm import tqdm

    from . import calibrate as cal
    from .core.calibration import estimate_homography, write_calibration

    pairs: list = []
    if args.bag is not None:
        pairs = cal.bag_pairs(args.bag, args.thermal_topic, args.rgb_topic, args.every,
                              args.max_pairs)
    elif args.ir is not None:
        pairs, skipped = cal.folder_pairs(args.ir, args.vis, args.max_pairs)
        for name in skipped:
            print(f"skipped (no partner): {name}", file=sys.stderr)
    if args.points is not None:
        th = args.thermal_size or (Size.of(pairs[0][0]) if pairs else None)
        rgb = args.rgb_size or (Size.of(pairs[0][1]) if pairs else None)
        if th is None or rgb is None:
            print("lutfuse calibrate: error: --points needs --thermal-size and --rgb-size "
                  "(or --ir/--vis pairs to take them from)", file=sys.stderr)
            return EXIT_ERROR
        result = cal.from_points(args.points, th, rgb, pairs)
    else:
        if not pairs:
            if args.ir is not None:
                from .core.imageio import why_no_pairs

                found = why_no_pairs(args.ir, args.vis)
                print(f"lutfuse calibrate: error: no image pairs in --ir/--vis ({found})",
                      file=sys.stderr)
            else:
                print("lutfuse calibrate: error: no image pairs (give --ir and --vis, --bag, "
                      "or --points)", file=sys.stderr)
            return EXIT_ERROR
        with tqdm(desc="calibrate", unit="step") as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)
            result = estimate_homography(pairs, progress)
    print(cal.report(result))
    if args.overlay is not None and pairs:
        cal.write_overlay(pairs, result, args.overlay)
        print(f"overlay: {args.overlay}")
    if not result.confident:
        print(f"not written: {args.out} (the result is not confident)", file=sys.stderr)
        return EXIT_SKIPPED
    write_calibration(result, args.out)
    print(f"wrote {args.out}: use it with -p registration.calibration_file:={args.out}")
    return EXIT_OK


def _add_fuse_parser(sub) -> None:
    p = sub.add_parser("fuse", help="fuse pairs of files (matched by name) or a recording "
                       "through the node's pipeline")
    p.add_argument("--ir", type=Path, default=None,
                   help="folder of thermal images (8-bit, or raw 16-bit counts)")
    p.add_argument("--vis", type=Path, default=None, help="folder of RGB or grey images")
    p.add_argument("--bag", type=Path, default=None,
                   help="a rosbag2 recording instead of --ir/--vis (folder, .mcap or .db3)")
    p.add_argument("--thermal-topic", default=DEFAULT_THERMAL_TOPIC, help="--bag: thermal topic")
    p.add_argument("--rgb-topic", default=DEFAULT_RGB_TOPIC, help="--bag: RGB topic")
    p.add_argument("--slop", type=float, default=None,
                   help="--bag: largest stamp difference of a pair (s; default the node's)")
    p.add_argument("--thermal-offset", type=float, default=None,
                   help="--bag: seconds added to thermal stamps (default the node's)")
    p.add_argument("--sheet", type=Path, default=None,
                   help="--bag: also write a contact sheet (thermal | visible | fused) here")
    p.add_argument("--sheet-every", type=int, default=30,
                   help="--bag: frames between the contact sheet's rows")
    p.add_argument("--out", type=Path, required=True, help="output folder (PNG)")
    _fusion_args(p)
    p.add_argument("--calibration", type=Path, default=None,
                   help="rig.yaml from lutfuse calibrate: registers the thermal images as "
                        "the node does (default: resize to the visible size)")
    p.add_argument("--agc", default=None, choices=AGC_MODES,
                   help="16-bit thermal to 8 bit, as the node's agc.mode (default: plateau)")
    p.add_argument("--params", type=Path, default=None,
                   help="a robot's parameter file (config/fusion.yaml): every setting of the "
                        "node; the options above override it")
    p.add_argument("--independent", action="store_true",
                   help="each pair alone (datasets of unrelated pairs): no AGC smoothing or "
                        "gradient range carried from one pair to the next")
    p.add_argument("--batch", type=int, default=0,
                   help="with --independent: pairs fused together (default: 8 with --device "
                        "cuda, else 1)")
    p.set_defaults(func=cmd_fuse)


def _add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="fusion metrics of a folder of fused images")
    p.add_argument("--ir", type=Path, required=True, help="folder of the 8-bit IR images")
    p.add_argument("--vis", type=Path, required=True, help="folder of the visible images")
    p.add_argument("--fused", type=Path, required=True,
                   help="folder of fused images, named as the pairs")
    p.add_argument("--out", type=Path, default=None,
                   help="write metrics.csv/json/md and mosaics here")
    p.set_defaults(func=cmd_eval)


def _add_convert_official_parser(sub) -> None:
    p = sub.add_parser("convert-official", help="convert the LUT-Fuse authors' release")
    p.add_argument("--lut", type=Path, required=True, help="fine_tuned_lut.npy")
    p.add_argument("--context", type=Path, required=True, help="generator_context.pth")
    p.add_argument("--out", type=Path, required=True, help="model file to write (.npz)")
    p.set_defaults(func=cmd_convert)


def _add_export_onnx_parser(sub) -> None:
    p = sub.add_parser("export-onnx", help="export the context network to ONNX (TensorRT, "
                       "ONNX Runtime, OpenCV DNN); needs torch and onnx")
    p.add_argument("model", type=Path, help="model file (.npz)")
    p.add_argument("--out", type=Path, default=None, help="write the graph to this .onnx file")
    p.add_argument("--embed", action="store_true",
                   help="also store it in the model file, for the torch-free runtime")
    p.set_defaults(func=cmd_export_onnx)


def _add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="time the forward pass stage by stage")
    p.add_argument("--sizes", nargs="+", type=_size, default=list(DEFAULT_SIZES), help="WxH")
    p.add_argument("--runs", type=int, default=30, help="timed frames per case (median, p90)")
    p.add_argument("--context-scale", type=float, default=None,
                   help="context_scale of fast mode (default: the FusionConfig default)")
    p.add_argument("--threads", type=int, default=FusionConfig.threads,
                   help="CPU threads (0 = all cores)")
    p.add_argument("--device", default=FusionConfig.device, help="device of the torch backend")
    p.add_argument("--backends", nargs="+", default=["numba", "torch"],
                   help="numba (context engine auto), numba:onnxruntime, numba:opencv, "
                        "numba:torch, torch (on a GPU: CUDA graphs and the fused kernels), "
                        "torch:eager, torch:ops (torch ops, not the fused kernels), "
                        "torch:ops-eager; outputs are compared with the first")
    p.add_argument("--exact-runs", type=int, default=None,
                   help="timed frames of exact mode (default: --runs)")
    p.add_argument("--batch", type=int, default=0,
                   help="also time fuse_batch on this many frames (frames/s)")
    p.add_argument("--ratio-rounds", type=int, default=10,
                   help="rounds alternating the fast pass and the authors' (numpy and torch "
                        "backends): the speed-up a noisy machine cannot skew; 0 skips them")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.set_defaults(func=cmd_bench)


def _add_bag_export_parser(sub) -> None:
    p = sub.add_parser("bag-export", help="write the thermal+RGB pairs of a rosbag2 as an "
                       "image-folder dataset (out/ir, out/vis)")
    p.add_argument("bag", type=Path, help="rosbag2 folder, .mcap or .db3")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--thermal-topic", default=DEFAULT_THERMAL_TOPIC, help="thermal image topic")
    p.add_argument("--rgb-topic", default=DEFAULT_RGB_TOPIC, help="RGB image topic")
    p.add_argument("--slop", type=float, default=SyncConfig.slop,
                   help="largest stamp difference (s)")
    p.add_argument("--thermal-offset", type=float, default=SyncConfig.thermal_offset,
                   help="seconds added to thermal stamps before pairing")
    p.add_argument("--agc", default=AGCConfig.mode, choices=AGC_MODES,
                   help="16-bit thermal to 8 bit, as the node (fixed uses the full range)")
    p.set_defaults(func=cmd_bag_export)


def _add_shards_parser(sub) -> None:
    from .stream.shards import PAIRS_PER_SHARD

    p = sub.add_parser("shards", help="write recordings as shards (tar files of preprocessed "
                       "pairs + manifests) that lutfuse-train streams; parallel, resumable")
    p.add_argument("bags", nargs="+", type=Path,
                   help="rosbag2 recordings (folder, .mcap, .db3) or folders of them (the "
                        "recorder's split pieces)")
    p.add_argument("--out", type=Path, required=True, help="shard folder (created; a re-run "
                   "skips recordings already complete there)")
    p.add_argument("--pairs-per-shard", type=int, default=PAIRS_PER_SHARD,
                   help="pairs in each tar file")
    p.add_argument("--workers", type=int, default=1, help="recordings converted at once "
                   "(processes); under torchrun each rank converts its share")
    p.add_argument("--params", type=Path, default=None,
                   help="a robot's parameter file (config/fusion.yaml): its agc.*, "
                        "registration.* and sync.* settings")
    p.add_argument("--calibration", type=Path, default=None,
                   help="rig calibration (lutfuse calibrate) to register thermal into RGB")
    p.add_argument("--agc", default=None, choices=AGC_MODES,
                   help="16-bit thermal to 8 bit (default: the node's, or --params')")
    p.add_argument("--thermal-topic", default=DEFAULT_THERMAL_TOPIC, help="thermal image topic")
    p.add_argument("--rgb-topic", default=DEFAULT_RGB_TOPIC, help="RGB image topic")
    p.add_argument("--slop", type=float, default=None, help="largest stamp difference (s)")
    p.add_argument("--thermal-offset", type=float, default=None,
                   help="seconds added to thermal stamps before pairing")
    p.set_defaults(func=cmd_shards)


def _add_calibrate_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="thermal -> RGB homography of a camera rig from "
                       "recorded pairs (targetless) or corresponding points; writes the node's "
                       "calibration file (exit 0 only when confident)")
    src = p.add_argument_group("pairs (one source)")
    src.add_argument("--ir", type=Path, default=None, help="folder of thermal images (8-bit, "
                     "or 16-bit counts: mapped by the node's default AGC)")
    src.add_argument("--vis", type=Path, default=None, help="folder of RGB images (same names)")
    src.add_argument("--bag", type=Path, default=None, help="rosbag2 (folder, .mcap or .db3)")
    src.add_argument("--thermal-topic", default=DEFAULT_THERMAL_TOPIC, help="bag: thermal topic")
    src.add_argument("--rgb-topic", default=DEFAULT_RGB_TOPIC, help="bag: RGB topic")
    src.add_argument("--every", type=int, default=30, help="bag: use every N-th pair")
    src.add_argument("--max-pairs", type=int, default=6,
                     help="pairs to use at most (spread over the input)")
    p.add_argument("--points", type=Path, default=None,
                   help="corresponding points instead of the search: lines of 'x_thermal "
                        "y_thermal x_rgb y_rgb' (e.g. clicked, or a heated checkerboard)")
    p.add_argument("--thermal-size", type=_size, default=None, help="WxH (with --points)")
    p.add_argument("--rgb-size", type=_size, default=None, help="WxH (with --points)")
    p.add_argument("--out", type=Path, required=True, help="calibration file to write (.yaml)")
    p.add_argument("--overlay", type=Path, default=None,
                   help="picture to check the fit: before | after per pair (PNG)")
    p.set_defaults(func=cmd_calibrate)


def _add_thermal_parser(sub) -> None:
    p = sub.add_parser("thermal", help="raw 16-bit thermal frames to 8 bit with the node's AGC "
                       "(a folder, in file-name order, is one stream)")
    p.add_argument("--in", dest="input", type=Path, required=True,
                   help="folder of 16-bit PNG/TIFF frames (8-bit ones pass through)")
    p.add_argument("--out", type=Path, required=True, help="folder for the 8-bit PNGs")
    agc = AGCConfig()
    p.add_argument("--agc", default=agc.mode, choices=AGC_MODES,
                   help="mapping of the counts (as the node's agc.mode)")
    p.add_argument("--plateau", type=float, default=agc.plateau,
                   help="plateau mode: bin clip, in mean occupied bins")
    p.add_argument("--max-gain", type=float, default=agc.max_gain,
                   help="grey levels per count at most (plateau, percentile)")
    p.add_argument("--smoothing", type=float, default=agc.smoothing,
                   help="weight of each new frame in the running mapping (1: none)")
    p.add_argument("--low", type=float, default=agc.low, help="fixed mode")
    p.add_argument("--high", type=float, default=agc.high, help="fixed mode")
    p.add_argument("--bits", type=int, default=None, choices=(14, 16),
                   help="sensor bits (default: 14-bit high-aligned words are detected)")
    p.add_argument("--byte-order", default="auto", choices=("auto", "native", "swapped"),
                   help="16-bit word byte order (auto: detected)")
    p.add_argument("--mosaic", type=Path, default=None,
                   help="before (raw min..max) | after picture of a few frames")
    p.set_defaults(func=cmd_thermal)


def _add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="fuse the embedded procedural pairs into a mosaic PNG")
    p.add_argument("--out", type=Path, default=Path("out/demo_mosaic.png"),
                   help="mosaic to write (PNG)")
    p.add_argument("--count", type=int, default=4, help="procedural pairs to fuse")
    p.add_argument("--context-engine", default=FusionConfig.context_engine,
                   choices=CONTEXT_ENGINES,
                   help="what runs the context network (auto: ONNX Runtime, else OpenCV)")
    p.set_defaults(func=cmd_demo)


# one function per command, in the order of `lutfuse --help`
COMMANDS = (_add_fuse_parser,
            _add_eval_parser,
            _add_convert_official_parser,
            _add_export_onnx_parser,
            _add_bench_parser,
            _add_bag_export_parser,
            _add_shards_parser,
            _add_calibrate_parser,
            _add_thermal_parser,
            _add_demo_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lutfuse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.command == "calibrate" and args.ir is not None and args.vis is None:
        print("lutfuse calibrate: error: --ir needs --vis", file=sys.stderr)
        return EXIT_ERROR

    try:
        return args.func(args)
    except (LutfuseError, FileNotFoundError) as exc:  # what a user can cause; bugs go on up
        print(f"lutfuse {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

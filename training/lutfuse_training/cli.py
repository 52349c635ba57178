"""``lutfuse-train``: train an MM-Net teacher, distil it into an MM-LUT, compare models.

    lutfuse-train teacher --config training/configs/default.yaml --data DIR [DIR ...] --out RUN
    lutfuse-train distill --config ... --teacher RUN/teacher.pt --data DIR [DIR ...] --out RUN
    lutfuse-train compare --model RUN/model.npz --teacher RUN/teacher.pt --data TEST_DIR ...
        --out DIR

Options come from the YAML config; ``--set name=value`` (repeatable) and the dedicated flags
override it. Exit codes: 0 done, 2 bad input (message on stderr, no traceback).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lutfuse_ros.core.errors import ConfigError, LutfuseError

from .config import load_config


def _overrides(args) -> dict:
    out = {}
    for item in args.set or []:
        if "=" not in item:
            raise ConfigError(f"--set expects name=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    for name in ("steps", "batch_size", "device", "seed"):
        if getattr(args, name, None) is not None:
            out[name] = getattr(args, name)
    return out


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML of options (training/configs/*.yaml)")
    p.add_argument("--data", nargs="+", required=True, help="folders with ir/ and vis/")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="override an option")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--device")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue from RUN/<stage>_checkpoint.pt")
    p.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # interruption, for tests


def _prepare(args):
    from .data import load_pairs, split_validation

    config = load_config(args.config, _overrides(args))
    device = config.resolved_device()
    pairs = load_pairs(args.data, min_side=config.crop,
                       bag_topics=(config.thermal_topic, config.rgb_topic))
    train_pairs, val_pairs = split_validation(pairs, config.val_pairs)
    print(f"{len(train_pairs)} training pairs, {len(val_pairs)} held out, device {device}",
          flush=True)
    return config, device, train_pairs, val_pairs


def cmd_teacher(args) -> None:
    from .data import CropSampler
    from .loop import train
    from .stages import TeacherStage

    config, device, train_pairs, val_pairs = _prepare(args)
    stage = TeacherStage(config, device)
    sampler = CropSampler(train_pairs, config.crop, config.batch_size, config.seed)
    summary = train(stage, config, sampler, val_pairs, args.out, device, args.resume,
                    args.stop_after)
    print(f"teacher: {summary}", flush=True)


def cmd_distill(args) -> None:
    from .data import CropSampler
    from .loop import train
    from .stages import DistillStage
    from .teacher import load_teacher

    config, device, train_pairs, val_pairs = _prepare(args)
    teacher = load_teacher(args.teacher, device)
    names = [f"{Path(d).resolve().name}" for d in args.data]
    stage = DistillStage(config, device, teacher, names)
    sampler = CropSampler(train_pairs, config.crop, config.batch_size, config.seed + 1)
    summary = train(stage, config, sampler, val_pairs, args.out, device, args.resume,
                    args.stop_after)
    print(f"distill: {summary}", flush=True)


def cmd_compare(args) -> None:
    from .compare import compare

    compare(args.data, args.out, args.model, args.teacher, args.device or "cpu",
            limit=args.limit)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lutfuse-train", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("teacher", help="train the MM-Net teacher (no ground truth)")
    _common(p)
    p.set_defaults(func=cmd_teacher)
    p = sub.add_parser("distill", help="distil a teacher into an MM-LUT model file")
    _common(p)
    p.add_argument("--teacher", type=Path, required=True, help="RUN/teacher.pt")
    p.set_defaults(func=cmd_distill)
    p = sub.add_parser("compare", help="metrics table + mosaics: teacher, our LUT, authors', "
                       "Max, Average")
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--teacher", type=Path)
    p.add_argument("--device")
    p.add_argument("--limit", type=int, default=0, help="pairs per set (0: all)")
    p.set_defaults(func=cmd_compare)
    args = ap.parse_args(argv)
    try:
        args.func(args)
    except (LutfuseError, FileNotFoundError) as exc:  # what a user can cause; bugs go on up
        print(f"lutfuse-train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``lutfuse-train``: train an MM-Net teacher, distil it into an MM-LUT, compare models.

    lutfuse-train teacher --config training/configs/default.yaml --data DIR [DIR ...] --out RUN
    lutfuse-train distill --config ... --teacher RUN/teacher.pt --data DIR [DIR ...] --out RUN
    lutfuse-train compare --model RUN/model.npz --teacher RUN/teacher.pt --data TEST_DIR ...
        --out DIR

``--data`` takes image folders, rosbag2 recordings (read into memory: small jobs) or shard
sets (``lutfuse shards``: streamed, for a fleet's data). Across processes and machines, start
either stage with torchrun (torch DDP):

    torchrun --standalone --nproc_per_node=N -m lutfuse_training.cli teacher ...

Options come from the YAML config; ``--set name=value`` (repeatable) and the dedicated flags
override it. Exit codes: 0 done, 2 bad input (message on stderr, no traceback).
"""
from __future__ import annotations

import argparse
import os
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
    p.add_argument("--data", nargs="+", required=True,
                   help="folders with ir/ and vis/, rosbag2 recordings, or shard sets "
                        "(lutfuse shards; streamed)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="override an option")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--device")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue from RUN/<stage>_checkpoint.pt")
    p.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # interruption, for tests


class _Data:
    """A stage's data: the sampler of this rank's batches, validation pairs, and what the
    model card says about it."""

    def __init__(self, args, config, world, seed: int) -> None:
        from lutfuse_ros.stream.shards import ShardSet, is_shard_set

        from .data import (
            CropSampler,
            ShardCrops,
            StreamSampler,
            load_pairs,
            shard_validation,
            split_validation,
        )

        share = world.share(config.batch_size)
        sets = [d for d in args.data if is_shard_set(d)]
        if sets and len(sets) != len(args.data):
            raise ConfigError("--data: give shard sets alone, or folders and bags alone "
                              f"(shard sets: {', '.join(map(str, sets))})")
        if sets:
            opened = [ShardSet.open(d) for d in sets]
            shards = [p for s in opened for p in s.shards]
            train_shards, self.val_pairs = shard_validation(shards, config.val_pairs,
                                                            config.crop)
            dataset = ShardCrops(train_shards, config.crop, seed, world.rank, world.size,
                                 config.shuffle_buffer, config.crops_per_pair,
                                 start_step=self._resume_step(args))
            self.sampler = StreamSampler(dataset, share, config.loader_workers)
            self.info = {"kind": "shards", "sets": [str(s.folder) for s in opened],
                         "shards": len(shards), "pairs": sum(s.pairs for s in opened),
                         "hours": round(sum(s.hours for s in opened), 3),
                         "sources": sorted({x for s in opened for x in s.sources})}
            mine = len(dataset.shards)
            self.line = (f"{len(train_shards)} training shard(s) of {self.info['pairs']} pairs "
                         f"({self.info['hours']} h from {len(self.info['sources'])} "
                         f"recording(s)), {mine} on rank {world.rank}; {len(self.val_pairs)} "
                         "validation pairs (the last shard)")
        else:
            pairs = load_pairs(args.data, min_side=config.crop, progress=world.main,
                               bag_topics=(config.thermal_topic, config.rgb_topic))
            train_pairs, self.val_pairs = split_validation(pairs, config.val_pairs)
            self.sampler = CropSampler(train_pairs, config.crop, config.batch_size, seed,
                                       world.rank, world.size)
            self.info = {"kind": "pairs in memory", "pairs": len(pairs)}
            self.line = f"{len(train_pairs)} training pairs, {len(self.val_pairs)} held out"
        self.line += f"; batch {config.batch_size} = {share} per process"
        self.names = [Path(d).resolve().name for d in args.data]

    @staticmethod
    def _resume_step(args) -> int:
        """The step a resumed run continues from (seeds the stream's order)."""
        import torch

        stage = args.func.__name__.removeprefix("cmd_")
        ckpt = Path(args.out) / f"{stage}_checkpoint.pt"
        if not args.resume or not ckpt.exists():
            return 0
        return int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"])


def _prepare(args, seed_offset: int = 0):
    from .distributed import any_rank, join, restarted

    config = load_config(args.config, _overrides(args))
    world, device = join(config.resolved_device())
    if restarted():  # torchrun --max-restarts after a failure: go on from the checkpoint
        stage = args.func.__name__.removeprefix("cmd_")
        found = world.main and (Path(args.out) / f"{stage}_checkpoint.pt").exists()
        args.resume = any_rank(found, world, device)  # rank 0's answer, on every rank
        if world.main:
            print(f"torchrun restart {os.environ['TORCHELASTIC_RESTART_COUNT']}: "
                  + (f"resuming from {args.out}" if args.resume else "no checkpoint yet, "
                     "starting over"), flush=True)
    data = _Data(args, config, world, config.seed + seed_offset)
    if world.main:
        print(f"{world.describe()}, device {device}; {data.line}", flush=True)
    return config, device, world, data


def cmd_teacher(args) -> None:
    from .distributed import leave
    from .loop import train
    from .stages import TeacherStage

    config, device, world, data = _prepare(args)
    stage = TeacherStage(config, device)
    summary = train(stage, config, data.sampler, data.val_pairs, args.out, device,
                    args.resume, args.stop_after, world=world)
    if world.main:
        print(f"teacher: {summary}", flush=True)
    leave(world)


def cmd_distill(args) -> None:
    from .distributed import leave
    from .loop import train
    from .stages import DistillStage
    from .teacher import load_teacher

    config, device, world, data = _prepare(args, seed_offset=1)
    teacher = load_teacher(args.teacher, device)
    stage = DistillStage(config, device, teacher, data.names, data.info)
    summary = train(stage, config, data.sampler, data.val_pairs, args.out, device,
                    args.resume, args.stop_after, world=world)
    if world.main:
        print(f"distill: {summary}", flush=True)
    leave(world)


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

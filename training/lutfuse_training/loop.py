"""The training loop shared by both stages: steps, checkpoints, resume, logs, validation.

A stage (teacher or distillation) supplies its modules, parameter groups, a loss per batch,
a validation pass and its final outputs; this loop owns everything else. Every step reseeds
torch from ``(seed, rank, step)`` and draws its batch from ``sampler.batch(step)``, so a run
resumed from a checkpoint takes exactly the steps an uninterrupted run takes (for in-memory
data; a shard stream restarts its order from the resumed step).

Under torchrun (:mod:`.distributed`) the stage's trained module runs wrapped in
``DistributedDataParallel``; the losses logged are the mean over ranks, every decision
(a skipped spike, the time limit) is taken on those shared numbers, and rank 0 alone writes.
A checkpoint holds no trace of the world size: it resumes on any number of processes
(rank 0 reads it and sends it to the others, so machines need not share a disk).
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from lutfuse_ros.core.errors import ConfigError
from lutfuse_ros.core.imageio import mosaic, write_image

from .config import TrainConfig, save_config
from .data import Pair
from .distributed import World, any_rank, mean_over_ranks
from .plot import line_plot

CHECKPOINT = "{stage}_checkpoint.pt"

LOG_BOOKKEEPING = ("step", "lr", "elapsed_s", "skipped")  # log columns that are not losses


class Stage(Protocol):
    name: str
    forward: torch.nn.Module  # what losses() runs: trained(), or DDP's wrapper of it

    def modules(self) -> dict[str, torch.nn.Module]: ...

    def trained(self) -> torch.nn.Module: ...

    def param_groups(self) -> list[dict]: ...

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def validate(self, pairs: list[Pair]) -> tuple[dict[str, float], list[list[np.ndarray]]]: ...

    def finish(self, run_dir: Path, summary: dict) -> None: ...


def _seed(seed: int, step: int, rank: int = 0) -> None:
    key = [seed, step, 7] if rank == 0 else [seed, step, 7, rank]
    torch.manual_seed(int(np.random.default_rng(key).integers(2 ** 62)))


def _write_rows(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    for r in rows[1:]:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


class _Run:
    """One stage's run: its optimiser, schedule, logs and checkpoint file (what a resume
    restores)."""

    def __init__(self, stage: Stage, config: TrainConfig, val_pairs: list[Pair],
                 run_dir: Path, world: World = World(), device: str = "cpu") -> None:
        self.stage, self.config, self.val_pairs, self.run_dir = stage, config, val_pairs, run_dir
        self.world, self.device = world, device
        self.opt = torch.optim.Adam(stage.param_groups())
        ratio = config.lr_final_ratio
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: ratio + (1 - ratio) * 0.5 * (
                1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
        self.start, self.log, self.val_log, self.elapsed0 = 0, [], [], 0.0
        self.ckpt_path = run_dir / CHECKPOINT.format(stage=stage.name)

    def restore(self) -> None:
        """Continue from the stage's checkpoint in ``run_dir`` (read by rank 0, sent to the
        other ranks)."""
        ckpt = None
        if self.world.main:
            if not self.ckpt_path.exists():
                raise FileNotFoundError(f"--resume: no {self.ckpt_path.name} in {self.run_dir}")
            ckpt = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        if self.world.distributed:
            box = [ckpt]
            torch.distributed.broadcast_object_list(box, src=0)
            ckpt = box[0]
        if ckpt.get("stage") != self.stage.name:
            raise ConfigError(f"{self.ckpt_path} is a {ckpt.get('stage')} checkpoint, not "
                              f"{self.stage.name}")
        for name, module in self.stage.modules().items():
            module.load_state_dict(ckpt["modules"][name])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.start, self.log, self.val_log = ckpt["step"], ckpt["log"], ckpt["val_log"]
        self.elapsed0 = ckpt["elapsed_s"]

    def step(self, step: int, batch: dict[str, torch.Tensor], t0: float) -> dict:
        """One optimiser step on ``batch``; returns its log row (``t0``: the run's start on
        ``time.monotonic``)."""
        terms = self.stage.losses(batch)
        self.opt.zero_grad(set_to_none=True)
        # Every rank logs and decides on the mean over ranks (the global batch's losses).
        names = list(terms)
        shared = mean_over_ranks(torch.stack([terms[k].detach().float() for k in names]),
                                 self.world).tolist()
        values = dict(zip(names, shared))
        # A loss far above the recent median is a spike (a run on the GPU diverged from one
        # within four steps): skip that update rather than follow it.
        recent = [r["total"] for r in self.log[-50:]]
        spike = len(recent) >= 20 and values["total"] > 5 * float(np.median(recent))
        if not spike:
            terms["total"].backward()
            if self.config.grad_clip > 0:  # one bad batch must not wreck a run
                torch.nn.utils.clip_grad_norm_(
                    [q for g in self.opt.param_groups for q in g["params"]], self.config.grad_clip)
            self.opt.step()
        self.sched.step()
        row = {"step": step + 1, "lr": self.opt.param_groups[0]["lr"], "skipped": int(spike),
               **values,
               "elapsed_s": round(time.monotonic() - t0, 2)}
        self.log.append(row)
        if not math.isfinite(row["total"]):
            raise FloatingPointError(f"{self.stage.name}: loss became {row['total']} at step "
                                     f"{step + 1}")
        return row

    def checkpoint(self, step: int, elapsed: float) -> None:
        """Checkpoint, logs (CSV) and the loss curve (PNG)."""
        # Written aside and renamed: a process killed mid-write (a dying rank, torchrun's
        # SIGTERM to the others) leaves the previous checkpoint whole.
        part = self.ckpt_path.with_name(self.ckpt_path.name + ".tmp")
        torch.save({"stage": self.stage.name, "step": step, "elapsed_s": elapsed,
                    "modules": {n: m.state_dict() for n, m in self.stage.modules().items()},
                    "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                    "log": self.log, "val_log": self.val_log}, part)
        part.replace(self.ckpt_path)
        name, log = self.stage.name, self.log
        _write_rows(self.run_dir / f"{name}_log.csv", log)
        _write_rows(self.run_dir / f"{name}_val.csv", self.val_log)
        terms = [k for k in (log[0] if log else {}) if k not in LOG_BOOKKEEPING]
        line_plot({k: ([r["step"] for r in log], [r[k] for r in log]) for k in terms},
                  self.run_dir / f"{name}_loss_curve.png", f"{name}: training losses")

    def validate(self, step: int) -> None:
        """Validation metrics into the log and a mosaic (PNG)."""
        if not self.val_pairs:
            return
        modules = self.stage.modules().values()
        for m in modules:
            m.eval()
        with torch.no_grad():
            metrics, rows = self.stage.validate(self.val_pairs)
        for m in modules:
            m.train()
        self.val_log.append({"step": step, **metrics})
        write_image(self.run_dir / f"{self.stage.name}_val_mosaic.png",
                    mosaic(rows, labels=["IR", "visible", f"{self.stage.name} (step {step})"]))

    def summary(self, device: str, stopped_early: bool, seconds: float) -> dict:
        last = self.log[-1] if self.log else {}
        return {"steps": last.get("step", self.start), "planned_steps": self.config.steps,
                "stopped_early": stopped_early, "train_seconds": round(seconds, 1),
                "skipped_steps": sum(r.get("skipped", 0) for r in self.log), "device": device,
                "world_size": self.world.size, "backend": self.world.backend or "none",
                "final_losses": {k: v for k, v in last.items() if k not in LOG_BOOKKEEPING},
                "validation": self.val_log[-1] if self.val_log else {}}


def train(stage: Stage, config: TrainConfig, sampler, val_pairs: list[Pair],
          run_dir: Path, device: str, resume: bool = False, stop_after: int | None = None,
          progress: bool = True, world: World = World()) -> dict:
    """Run (or resume) ``stage`` for ``config.steps`` steps; returns a summary dict.

    ``sampler``: anything with ``batch(step, device)`` (:class:`~.data.CropSampler`,
    :class:`~.data.StreamSampler`), giving this rank's share of the step's batch.
    ``stop_after`` ends the run after that many steps with a checkpoint, as an interruption
    would (tests use it to check that resuming gives the uninterrupted result).
    """
    from torch.nn.parallel import DistributedDataParallel

    main = world.main
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / f"{stage.name}_config.yaml")
    run = _Run(stage, config, val_pairs, run_dir, world, device)
    if resume:
        run.restore()
    if world.distributed:  # after restore: DDP starts every rank from rank 0's parameters
        ids = [torch.device(device).index] if device.startswith("cuda") else None
        stage.forward = DistributedDataParallel(stage.trained(), device_ids=ids)
    t0 = time.monotonic() - run.elapsed0
    stopped_early = False
    for m in stage.modules().values():
        m.train()
    bar = tqdm(range(run.start, config.steps), initial=run.start, total=config.steps,
               desc=stage.name, unit="step", disable=not (progress and main))
    for step in bar:
        _seed(config.seed, step, world.rank)
        row = run.step(step, sampler.batch(step, device), t0)
        bar.set_postfix(loss=f"{row['total']:.4f}")
        done, elapsed = row["step"], time.monotonic() - t0
        over_time = any_rank(bool(config.time_limit_min and elapsed > 60 * config.time_limit_min),
                             world, device)
        if main and (done % config.val_every == 0 or done == config.steps or over_time):
            run.validate(done)
            run.checkpoint(done, time.monotonic() - t0)
        if over_time:
            stopped_early = True
            break
        if stop_after is not None and done >= stop_after:
            if main:
                run.checkpoint(done, time.monotonic() - t0)
            return {"stopped_at": done}
    bar.close()
    summary = run.summary(device, stopped_early, time.monotonic() - t0)
    if main:
        stage.finish(run_dir, summary)
    return summary

"""The training loop shared by both stages: steps, checkpoints, resume, logs, validation.

A stage (teacher or distillation) supplies its modules, parameter groups, a loss per batch,
a validation pass and its final outputs; this loop owns everything else. Every step reseeds
torch from ``(seed, step)`` and draws its batch from ``CropSampler.batch(step)``, so a run
resumed from a checkpoint takes exactly the steps an uninterrupted run takes.
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
from .data import CropSampler, Pair
from .plot import line_plot

CHECKPOINT = "{stage}_checkpoint.pt"

LOG_BOOKKEEPING = ("step", "lr", "elapsed_s", "skipped")  # log columns that are not losses


class Stage(Protocol):
    name: str

    def modules(self) -> dict[str, torch.nn.Module]: ...

    def param_groups(self) -> list[dict]: ...

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def validate(self, pairs: list[Pair]) -> tuple[dict[str, float], list[list[np.ndarray]]]: ...

    def finish(self, run_dir: Path, summary: dict) -> None: ...


def _seed(seed: int, step: int) -> None:
    torch.manual_seed(int(np.random.default_rng([seed, step, 7]).integers(2 ** 62)))


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


def train(stage: Stage, config: TrainConfig, sampler: CropSampler, val_pairs: list[Pair],
          run_dir: Path, device: str, resume: bool = False, stop_after: int | None = None,
          progress: bool = True) -> dict:
    """Run (or resume) ``stage`` for ``config.steps`` steps; returns a summary dict.

    ``stop_after`` ends the run after that many steps with a checkpoint, as an interruption
    would (tests use it to check that resuming gives the uninterrupted result).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / f"{stage.name}_config.yaml")
    opt = torch.optim.Adam(stage.param_groups())
    ratio = config.lr_final_ratio
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * min(s, config.steps)
                                                                  / config.steps)))
    start, log, val_log, elapsed0 = 0, [], [], 0.0
    ckpt_path = run_dir / CHECKPOINT.format(stage=stage.name)
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"--resume: no {ckpt_path.name} in {run_dir}")
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt.get("stage") != stage.name:
            raise ConfigError(f"{ckpt_path} is a {ckpt.get('stage')} checkpoint, not {stage.name}")
        for name, module in stage.modules().items():
            module.load_state_dict(ckpt["modules"][name])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start, log, val_log = ckpt["step"], ckpt["log"], ckpt["val_log"]
        elapsed0 = ckpt["elapsed_s"]

    def checkpoint(step: int, elapsed: float) -> None:
        torch.save({"stage": stage.name, "step": step, "elapsed_s": elapsed,
                    "modules": {n: m.state_dict() for n, m in stage.modules().items()},
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "log": log, "val_log": val_log}, ckpt_path)
        _write_rows(run_dir / f"{stage.name}_log.csv", log)
        _write_rows(run_dir / f"{stage.name}_val.csv", val_log)
        terms = [k for k in (log[0] if log else {}) if k not in LOG_BOOKKEEPING]
        line_plot({k: ([r["step"] for r in log], [r[k] for r in log]) for k in terms},
                  run_dir / f"{stage.name}_loss_curve.png", f"{stage.name}: training losses")

    def validate(step: int) -> None:
        if not val_pairs:
            return
        for m in stage.modules().values():
            m.eval()
        with torch.no_grad():
            metrics, rows = stage.validate(val_pairs)
        for m in stage.modules().values():
            m.train()
        val_log.append({"step": step, **metrics})
        write_image(run_dir / f"{stage.name}_val_mosaic.png",
                    mosaic(rows, labels=["IR", "visible", f"{stage.name} (step {step})"]))

    t0 = time.monotonic() - elapsed0
    stopped_early = False
    for m in stage.modules().values():
        m.train()
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc=stage.name,
               unit="step", disable=not progress)
    for step in bar:
        _seed(config.seed, step)
        batch = sampler.batch(step, device)
        terms = stage.losses(batch)
        opt.zero_grad(set_to_none=True)
        # A loss far above the recent median is a spike (a run on the GPU diverged from one
        # within four steps): skip that update rather than follow it.
        recent = [r["total"] for r in log[-50:]]
        spike = len(recent) >= 20 and \
            float(terms["total"].detach()) > 5 * float(np.median(recent))
        if not spike:
            terms["total"].backward()
            if config.grad_clip > 0:  # one bad batch must not wreck a run
                torch.nn.utils.clip_grad_norm_(
                    [q for g in opt.param_groups for q in g["params"]], config.grad_clip)
            opt.step()
        sched.step()
        done = step + 1
        row = {"step": done, "lr": opt.param_groups[0]["lr"], "skipped": int(spike),
               **{k: float(v.detach()) for k, v in terms.items()},
               "elapsed_s": round(time.monotonic() - t0, 2)}
        log.append(row)
        bar.set_postfix(loss=f"{row['total']:.4f}")
        if not math.isfinite(row["total"]):
            raise FloatingPointError(f"{stage.name}: loss became {row['total']} at step {done}")
        over_time = config.time_limit_min and (time.monotonic() - t0) > 60 * config.time_limit_min
        if done % config.val_every == 0 or done == config.steps or over_time:
            validate(done)
            checkpoint(done, time.monotonic() - t0)
        if over_time:
            stopped_early = True
            break
        if stop_after is not None and done >= stop_after:
            checkpoint(done, time.monotonic() - t0)
            return {"stopped_at": done}
    bar.close()
    final_step = log[-1]["step"] if log else start
    summary = {"steps": final_step, "planned_steps": config.steps,
               "stopped_early": stopped_early, "train_seconds": round(time.monotonic() - t0, 1),
               "skipped_steps": sum(r.get("skipped", 0) for r in log),
               "device": device, "final_losses": {k: v for k, v in (log[-1] if log else {}).items()
                                                  if k not in LOG_BOOKKEEPING},
               "validation": val_log[-1] if val_log else {}}
    stage.finish(run_dir, summary)
    return summary

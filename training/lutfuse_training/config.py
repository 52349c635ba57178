"""One declared set of training options, read from a YAML file and overridden by flags."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lutfuse_ros.core.config import FusionConfig
from lutfuse_ros.core.errors import ConfigError  # a config file or override: unknown, bad value
from lutfuse_ros.stream.bagio import DEFAULT_RGB_TOPIC, DEFAULT_THERMAL_TOPIC

TEACHER_CHANNELS = (16, 32, 64, 128)  # MM-Net encoder widths at the four scales
TEACHER_HEADS = 4


@dataclass
class TrainConfig:
    """Options of a teacher or distillation run (each stage reads the fields it needs).

    Common:
        seed: every random choice (crops, flips, dropout, init) derives from it and the step.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        steps: optimiser steps; batch_size: crops per step; crop: crop side in pixels.
        lr: Adam learning rate, cosine-decayed to ``lr * lr_final_ratio``.
        grad_clip: largest gradient norm per step (0: no clipping).
        val_every: steps between validations (an "epoch"); also the checkpoint interval.
        val_pairs: pairs held out from the training folders for validation (every k-th).
        time_limit_min: stop early (and save) when a run takes longer; 0 = no limit.
        thermal_topic, rgb_topic: image topics of rosbag2 data (a recorder bag names its own).
    Shard sets (``--data SHARD_DIR``, streamed; ``batch_size`` is the global batch, split
    evenly over torchrun's processes):
        shuffle_buffer: crops each loader process holds to mix (its memory: this many crops).
        crops_per_pair: crops cut from each pair as it streams past.
        loader_workers: DataLoader worker processes per rank (0: read in the training process).
    Teacher (MM-Net):
        teacher_channels: encoder widths at the four scales; teacher_heads: attention heads.
        w_intensity, w_gradient, w_ssim: weights of the unsupervised fusion losses.
        teacher_detail: the teacher's second head (visible detail gain on top of the blend).
        base_sigma: > 0: gradient-domain fusion (intensity of the blurred images at this
            sigma, px; plus ``w_contrast`` x the signed-gradient term); 0: per-pixel max.
    Distillation (MM-LUT):
        context_scale: the runtime's context resolution the LUT is trained with.
        lut_init: ``max`` (fused = brighter source) or ``mean`` starting table.
        w_teacher, w_ssim_sources, w_monotone, w_tv: distillation loss weights.
        context_lr_ratio: learning rate of the context network relative to the LUT's.
        w_student_contrast: weight of the sources' signed-gradient term on the student
            (``losses.contrast_loss``), beside L1 to the teacher.
    """

    seed: int = 0
    device: str = "auto"
    steps: int = 4000
    batch_size: int = 8
    crop: int = 256
    lr: float = 2e-4
    lr_final_ratio: float = 0.1
    grad_clip: float = 1.0
    val_every: int = 500
    val_pairs: int = 8
    time_limit_min: float = 0.0
    thermal_topic: str = DEFAULT_THERMAL_TOPIC
    rgb_topic: str = DEFAULT_RGB_TOPIC
    shuffle_buffer: int = 512
    crops_per_pair: int = 4
    loader_workers: int = 0
    teacher_channels: list[int] = field(default_factory=lambda: list(TEACHER_CHANNELS))
    teacher_heads: int = TEACHER_HEADS
    w_intensity: float = 1.0
    w_gradient: float = 10.0
    w_ssim: float = 1.0
    teacher_detail: bool = False
    base_sigma: float = 0.0
    w_contrast: float = 0.0
    context_scale: float = FusionConfig.context_scale  # the runtime's
    lut_init: str = "max"
    w_teacher: float = 1.0
    w_ssim_sources: float = 0.1
    w_monotone: float = 10.0
    w_tv: float = 1e-4
    context_lr_ratio: float = 0.1
    w_student_contrast: float = 0.0

    def __post_init__(self) -> None:
        checks = [(self.steps >= 1, "steps must be >= 1"),
                  (self.batch_size >= 1, "batch_size must be >= 1"),
                  (self.crop >= 32, "crop must be >= 32 pixels"),
                  (self.lr > 0, "lr must be > 0"),
                  (self.val_every >= 1, "val_every must be >= 1"),
                  (self.shuffle_buffer >= 1 and self.crops_per_pair >= 1
                   and self.loader_workers >= 0,
                   "shuffle_buffer and crops_per_pair must be >= 1, loader_workers >= 0"),
                  (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
                   f"device must be auto, cpu or cuda[:N], got {self.device!r}"),
                  (self.lut_init in ("max", "mean"), "lut_init must be max or mean"),
                  (len(self.teacher_channels) == 4, "teacher_channels needs 4 widths")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} asked for but torch sees no CUDA device")
        return self.device


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _coerce(name: str, value: Any) -> Any:
    default = FIELDS[name].default_factory() if FIELDS[name].default_factory \
        is not dataclasses.MISSING else FIELDS[name].default
    try:
        if isinstance(default, bool):
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if isinstance(default, list):
            items = value if isinstance(value, list) else str(value).split(",")
            return [int(v) for v in items]
        return type(default)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"option {name}: cannot read {value!r} as {type(default).__name__}") \
            from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None
                ) -> TrainConfig:
    """Defaults <- YAML file <- overrides (``{option: value}``, e.g. from ``--set k=v``)."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config {path} must be a mapping of options")
        values.update(data)
    values.update(overrides or {})
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; known: {sorted(FIELDS)}")
    return TrainConfig(**{k: _coerce(k, v) for k, v in values.items()})


def save_config(config: TrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

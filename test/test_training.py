"""The training subpackage on tiny configs (seconds on a CPU): losses go down, the LUT stays
monotone, resuming equals not stopping, the model file runs in the core, bad data is named."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lutfuse_ros.core import Fuser, FusionConfig, load_model
from lutfuse_ros.core.imageio import write_image
from lutfuse_ros.core.synthetic import synthetic_pair
from lutfuse_training.cli import main as train_main
from lutfuse_training.config import ConfigError, load_config
from lutfuse_training.data import CropSampler, DataError, load_pairs
from lutfuse_training.loop import train
from lutfuse_training.losses import lut_monotonicity
from lutfuse_training.stages import DistillStage, TeacherStage
from lutfuse_training.teacher import MMNet, TeacherConfig, load_teacher, save_teacher

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "training" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Four procedural pairs in the ``<dir>/{ir,vis}/<name>.png`` layout."""
    root = tmp_path_factory.mktemp("pairs")
    for i in range(4):
        ir, vis = synthetic_pair(seed=i, shape=(96, 128), night=bool(i % 2))
        write_image(root / "ir" / f"p{i}.png", ir)
        write_image(root / "vis" / f"p{i}.png", vis)
    return root


class FixedBatch:
    """The same batch every step: a loss that does not fall on it is not being optimised."""

    def __init__(self, data_dir: Path, crop: int = 64) -> None:
        self.inner = CropSampler(load_pairs([data_dir], progress=False), crop, 4, seed=0)

    def batch(self, step, device="cpu"):
        return self.inner.batch(0, device)


def run_losses(stage, config, sampler, tmp_path) -> list[float]:
    train(stage, config, sampler, [], tmp_path, "cpu", progress=False)
    import csv

    with open(tmp_path / f"{stage.name}_log.csv") as f:
        return [float(r["total"]) for r in csv.DictReader(f)]


def test_teacher_losses_go_down(data_dir, tmp_path):
    config = load_config(TINY, {"steps": 40, "lr": 5e-3, "val_every": 40})
    losses = run_losses(TeacherStage(config, "cpu"), config, FixedBatch(data_dir), tmp_path)
    assert np.mean(losses[-5:]) < 0.97 * np.mean(losses[:5])


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> MMNet:
    torch.manual_seed(0)
    net = MMNet(TeacherConfig([4, 8, 8, 8], 2))
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_teacher(net, path)
    return load_teacher(path)


def test_distillation_losses_go_down(data_dir, tiny_teacher, tmp_path):
    config = load_config(TINY, {"steps": 30, "lr": 5e-3, "val_every": 30})
    stage = DistillStage(config, "cpu", tiny_teacher, ["synthetic"])
    losses = run_losses(stage, config, FixedBatch(data_dir, crop=96), tmp_path)
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])


def test_monotonicity_penalty_makes_the_table_monotone():
    lut = torch.nn.Parameter(torch.rand(16, 16, 16, 16).sort(dim=3, descending=True).values)
    opt = torch.optim.Adam([lut], lr=0.02)
    start = float(lut_monotonicity(lut.detach()))
    for _ in range(100):
        opt.zero_grad()
        lut_monotonicity(lut).backward()
        opt.step()
    assert start > 0.01 and float(lut_monotonicity(lut.detach())) < 0.05 * start


def test_shipped_default_model_is_monotone_where_the_penalty_asks():
    """Brighter IR or brighter visible luma never darkens the fused luma (beyond 1e-3)."""
    lut = torch.from_numpy(load_model().lut)
    for axis in (0, 3):
        drops = (lut.narrow(axis, 0, 15) - lut.narrow(axis, 1, 15)).clamp(min=0)
        assert float(drops.max()) < 0.02 and float(drops.mean()) < 1e-4


def test_resumed_run_equals_uninterrupted_run(data_dir, tiny_teacher, tmp_path):
    args = ["distill", "--config", str(TINY), "--teacher", "unused", "--data", str(data_dir)]
    teacher_path = tmp_path / "teacher.pt"
    save_teacher(tiny_teacher, teacher_path)
    args[4] = str(teacher_path)
    assert train_main(args + ["--out", str(tmp_path / "straight")]) == 0
    assert train_main(args + ["--out", str(tmp_path / "resumed"), "--stop-after", "3"]) == 0
    assert not (tmp_path / "resumed" / "model.npz").exists()  # interrupted: no model yet
    assert train_main(args + ["--out", str(tmp_path / "resumed"), "--resume"]) == 0
    a, b = load_model(tmp_path / "straight" / "model.npz"), load_model(tmp_path / "resumed" /
                                                                         "model.npz")
    np.testing.assert_array_equal(a.lut, b.lut)
    for k in a.context_state:
        np.testing.assert_array_equal(a.context_state[k], b.context_state[k])
    straight = (tmp_path / "straight" / "distill_log.csv").read_text().splitlines()
    resumed = (tmp_path / "resumed" / "distill_log.csv").read_text().splitlines()
    strip = lambda rows: [r.rsplit(",", 1)[0] for r in rows]  # noqa: E731 - drop elapsed_s
    assert strip(straight) == strip(resumed)


def test_commands_write_a_model_the_core_runs(data_dir, tmp_path):
    run = tmp_path / "run"
    base = ["--config", str(TINY), "--data", str(data_dir), "--out", str(run)]
    assert train_main(["teacher", *base]) == 0
    assert train_main(["distill", *base, "--teacher", str(run / "teacher.pt")]) == 0
    for name in ("teacher.pt", "model.npz", "MODEL_CARD.md", "distill_log.csv",
                 "distill_loss_curve.png", "distill_val_mosaic.png", "teacher_val.csv"):
        assert (run / name).is_file(), name
    model = load_model(run / "model.npz")
    assert model.metadata["training"]["steps"] == 6
    # the AGC its 16-bit frames would go through is recorded: a node with another one warns
    from lutfuse_ros.core.preprocess import AGCConfig
    from lutfuse_ros.stream.pipeline import agc_mismatch

    assert model.metadata["training"]["agc"]["mode"] == AGCConfig().mode
    assert "AGC `plateau`" in (run / "MODEL_CARD.md").read_text()
    assert agc_mismatch(model.metadata, AGCConfig()) is None
    assert "trained with agc.mode 'plateau'" in agc_mismatch(model.metadata,
                                                              AGCConfig(mode="percentile"))
    ir, vis = synthetic_pair(seed=9, shape=(96, 128))
    for config in (FusionConfig(), FusionConfig(exact=True)):
        out = Fuser(model, config).fuse(ir, vis)
        assert out.shape == (96, 128, 3) and out.dtype == np.uint8
    # it carries its ONNX context network: robots run it without torch, to 1 LSB of torch
    assert model.context_onnx is not None
    onnx = Fuser(model, FusionConfig(context_engine="onnxruntime")).fuse(ir, vis)
    with_torch = Fuser(model, FusionConfig(context_engine="torch")).fuse(ir, vis)
    assert np.abs(onnx.astype(int) - with_torch).max() <= 1


def test_bad_data_and_files_give_clear_errors(data_dir, tmp_path, capsys):
    with pytest.raises(DataError, match="expected .*/ir and .*/vis"):
        load_pairs([tmp_path / "missing"])
    (tmp_path / "empty" / "ir").mkdir(parents=True)
    (tmp_path / "empty" / "vis").mkdir()
    with pytest.raises(DataError, match="no pairs"):
        load_pairs([tmp_path / "empty"])
    bad = tmp_path / "bad"
    (bad / "ir").mkdir(parents=True)
    (bad / "vis").mkdir()
    (bad / "ir" / "a.png").write_bytes(b"not a png")
    (bad / "vis" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="a.png: not a readable image"):
        load_pairs([bad], progress=False)
    assert train_main(["teacher", "--config", str(TINY), "--data", str(tmp_path / "missing"),
                       "--out", str(tmp_path / "r")]) == 2
    assert "expected" in capsys.readouterr().err
    (tmp_path / "t.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="t.pt: not a teacher file"):
        load_teacher(tmp_path / "t.pt")
    with pytest.raises(ConfigError, match="unknown option"):
        load_config(None, {"stepz": 3})


def test_runtime_never_imports_training_and_no_top_level_training_module():
    code = ("import sys, importlib.util, lutfuse_ros.cli, lutfuse_ros.core, "
            "lutfuse_ros.stream.pipeline; "
            "assert not [m for m in sys.modules if m.startswith('lutfuse_training')]; "
            "assert importlib.util.find_spec('training') is None")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


# -- streaming shards and torchrun (DDP, gloo on the CPU) -----------------------------------
def torchrun_command(nproc: int, *args: str, torchrun_args: tuple[str, ...] = ()
                     ) -> tuple[list[str], dict]:
    """``torchrun --standalone --nproc_per_node=N [torchrun_args] lutfuse-train ...`` and its
    environment: gloo on loopback, one thread a process."""
    import os

    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", *torchrun_args, "-m", "lutfuse_training.cli", *args]
    return cmd, env


def torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    cmd, env = torchrun_command(nproc, *args)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def logged(run: Path, stage: str, column: str = "total") -> list[float]:
    import csv

    with open(run / f"{stage}_log.csv") as f:
        return [float(r[column]) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> Path:
    """Three recordings (bags as ros2 bag record writes them) as a shard set."""
    from test_bags import write_bag

    from lutfuse_ros.cli import main as lutfuse

    root = tmp_path_factory.mktemp("fleet")
    for k in range(3):
        write_bag(root / "bags" / f"robot{k}", frames=8)
    assert lutfuse(["shards", str(root / "bags"), "--out", str(root / "shards"),
                    "--pairs-per-shard", "4"]) == 0
    return root / "shards"


def test_two_processes_follow_the_one_process_loss_curve(data_dir, tmp_path):
    """The same global batch split over two DDP processes: the same training, to float
    rounding (in-memory data: each process takes its half of the step's batch)."""
    import os

    args = ["teacher", "--config", str(TINY), "--data", str(data_dir), "--set", "batch_size=4",
            "--steps", "8", "--set", "val_every=8"]
    torch.set_num_threads(1)  # as torchrun's processes (OMP_NUM_THREADS=1)
    try:
        assert train_main([*args, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    result = torchrun(2, *args, "--out", str(tmp_path / "two"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size 2, backend gloo" in result.stdout
    assert "batch 4 = 2 per process" in result.stdout
    one, two = logged(tmp_path / "one", "teacher"), logged(tmp_path / "two", "teacher")
    assert len(one) == len(two) == 8
    np.testing.assert_allclose(two, one, rtol=1e-3)
    assert not (tmp_path / "two" / "teacher_checkpoint.pt.tmp").exists()


def test_both_stages_from_shards_on_two_processes_then_resumed_on_one(shard_dir, tmp_path):
    run = tmp_path / "run"
    common = ["--config", str(TINY), "--data", str(shard_dir), "--out", str(run),
              "--set", "batch_size=4"]
    result = torchrun(2, "teacher", *common)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size 2, backend gloo" in result.stdout
    assert "5 training shard(s) of 24 pairs" in result.stdout  # 6 shards, the last held out
    result = torchrun(2, "distill", *common, "--teacher", str(run / "teacher.pt"),
                      "--stop-after", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(logged(run, "distill")) == 3
    # The two-process checkpoint goes on in one process.
    assert train_main(["distill", *common, "--teacher", str(run / "teacher.pt"),
                       "--resume"]) == 0
    assert len(logged(run, "distill")) == 6
    model = load_model(run / "model.npz")
    assert model.metadata["training"]["data_info"]["pairs"] == 24
    card = (run / "MODEL_CARD.md").read_text()
    assert "6 shards, 24 pairs" in card and "robot0, robot1, robot2" in card
    ir, vis = synthetic_pair(seed=5, shape=(96, 128))
    assert Fuser(model).fuse(ir, vis).shape == vis.shape


def test_the_stream_holds_at_most_its_buffer_and_skips_a_truncated_shard(shard_dir, tmp_path,
                                                                          capsys):
    import shutil

    from lutfuse_ros.stream.shards import ShardSet
    from lutfuse_training.data import ShardCrops

    copy = tmp_path / "shards"
    shutil.copytree(shard_dir, copy)
    shards = list(ShardSet.open(copy).shards)
    cut = shards[1].read_bytes()
    shards[1].write_bytes(cut[: len(cut) // 2])
    stream = ShardCrops(shards, crop=64, seed=0, buffer=5, crops_per_pair=2)
    crops = [c for _, c in zip(range(80), iter(stream))]  # > one pass over the 24 pairs
    assert len(crops) == 80 and crops[0][0].shape == (64, 64, 3) and crops[0][1].shape == (64, 64)
    assert stream.peak_held == 5
    assert capsys.readouterr().out.count(f"skipping shard: {shards[1]}") == 1
    with pytest.raises(DataError, match="rank 3 of 8 has no shard"):
        ShardCrops(shards[:3], crop=64, seed=0, rank=3, world=8)


def test_a_rank_that_dies_stops_the_run_and_a_restart_resumes(data_dir, tmp_path):
    """One of two workers killed (as by the OOM killer) after the first checkpoint: without
    restarts torchrun stops the run naming the failure; with --max-restarts the workers
    start again and go on from the checkpoint to the end."""
    import os
    import re
    import signal
    import time

    def run(run_dir: Path, *torchrun_args: str) -> tuple[int, str]:
        cmd, env = torchrun_command(
            2, "teacher", "--config", str(TINY), "--data", str(data_dir), "--out", str(run_dir),
            "--set", "batch_size=2", "--steps", "120", "--set", "val_every=10",
            torchrun_args=torchrun_args)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env, start_new_session=True)
        ckpt = run_dir / "teacher_checkpoint.pt"
        deadline = time.monotonic() + 120
        while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert ckpt.exists(), "no checkpoint written"
        workers = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_worker(p, run_dir)]
        assert len(workers) == 2, workers
        os.kill(max(workers), signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
        return proc.returncode, out

    code, out = run(tmp_path / "stops")
    assert code != 0 and "FAILED" in out and "Signal 9 (SIGKILL)" in out
    # Up to 3 restarts: on a loaded machine a restarted gloo group can fail to connect its
    # mesh once (torchrun's rendezvous, "Connection refused"); the next restart goes on.
    code, out = run(tmp_path / "restarts", "--max-restarts=3")
    assert code == 0, out[-3000:]
    assert re.search(r"torchrun restart \d: resuming from", out), out[-3000:]
    assert logged(tmp_path / "restarts", "teacher")[-1] > 0
    assert len(logged(tmp_path / "restarts", "teacher")) == 120


def _is_worker(pid: str, run_dir: Path) -> bool:
    """A training worker of this run (not torchrun itself)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (str(run_dir).encode() in cmd and b"lutfuse_training.cli" in cmd
            and b"torch.distributed.run" not in cmd)


def test_gradient_domain_teacher_objective_prefers_visible_contrast_on_a_warm_base():
    """Issue 28's objective: on warm asphalt (IR brighter) with visible lane dashes, the
    per-pixel max scores worse than the thermal base carrying the visible contrast. The old
    teacher could not produce that (a convex blend never exceeds the brighter source); the
    detail head can, and starts at zero: a new teacher begins as the old one."""
    from lutfuse_training.losses import teacher_losses

    y = torch.full((1, 1, 48, 64), 0.15)
    y[..., 16:32, 8:56:16] = 0.5  # dashes
    ir = torch.full_like(y, 0.7)
    max_rule, carried = torch.maximum(y, ir), ir + (y - y.mean())

    def score(fused, sigma):
        t = teacher_losses(fused, y, ir, base_sigma=sigma)
        return t["intensity"] + 2 * t["gradient"] + 2 * t.get("contrast", 0.0)
    assert score(carried, 2.0) < score(max_rule, 2.0)
    torch.manual_seed(0)
    plain = MMNet(TeacherConfig((4, 8, 8, 8), 2))
    torch.manual_seed(0)
    with_detail = MMNet(TeacherConfig((4, 8, 8, 8), 2, detail=True))
    rgb_y, t_ir = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(with_detail(t_ir, rgb_y), plain(t_ir, rgb_y))
    with torch.no_grad():
        plain.head.bias.fill_(-3.0)  # any blend: never above the brighter source
        assert (plain(t_ir, rgb_y) <= torch.maximum(t_ir, rgb_y) + 1e-6).all()
        with_detail.detail_head.bias.fill_(1.0)  # the detail head goes above it
        assert (with_detail(ir, y) > torch.maximum(ir, y) + 0.1).any()

"""The ``lutfuse`` command as a user runs it: fuse folders, eval, demo, bad inputs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lutfuse_ros.core.imageio import write_image
from lutfuse_ros.core.synthetic import synthetic_pair
from lutfuse_ros.core.thermal import read_raw_thermal

from conftest import SHARED, needs_torch


def lutfuse(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lutfuse_ros.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def make_folders(root, n=2):
    for i in range(n):
        ir, vis = synthetic_pair(seed=i, shape=(64, 96))
        write_image(root / "ir" / f"p{i}.png", ir)
        write_image(root / "vis" / f"p{i}.png", vis)
    return root / "ir", root / "vis"


def test_fuse_then_eval(tmp_path):
    ir, vis = make_folders(tmp_path)
    res = lutfuse("fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "fused")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "fused").iterdir()) == ["p0.png", "p1.png"]
    res = lutfuse("eval", "--ir", ir, "--vis", vis, "--fused", tmp_path / "fused",
                  "--out", tmp_path / "eval")
    assert res.returncode == 0, res.stderr
    means = json.loads((tmp_path / "eval" / "metrics.json").read_text())["mean"]
    assert 0 < means["Qabf"] < 1 and means["EN"] > 0
    assert (tmp_path / "eval" / "metrics.csv").read_text().count("\n") == 3
    assert (tmp_path / "eval" / "mosaics" / "p0.png").is_file()
    assert "| method |" in (tmp_path / "eval" / "metrics.md").read_text()


def test_fuse_reports_unmatched_and_unreadable_files(tmp_path):
    ir, vis = make_folders(tmp_path)
    write_image(ir / "lonely.png", np.zeros((8, 8), np.uint8))
    (vis / "broken.png").write_bytes(b"not a png")
    (ir / "broken.png").write_bytes(b"not a png either")
    res = lutfuse("fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "fused")
    assert res.returncode == 1
    assert "lonely" in res.stderr and "broken" in res.stderr
    assert len(list((tmp_path / "fused").iterdir())) == 2


def test_bad_model_file_is_a_clear_error(tmp_path):
    ir, vis = make_folders(tmp_path, n=1)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    res = lutfuse("fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "o", "--model", bad)
    assert res.returncode == 2 and "bad.npz" in res.stderr and "Traceback" not in res.stderr
    bad.write_text("model_path: /data/site1.npz\n")  # a text file given by mistake
    res = lutfuse("fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "o", "--model", bad)
    assert res.returncode == 2 and "not a model file" in res.stderr
    assert "pickle" not in res.stderr  # never invite unsafe loading


def test_a_bad_setting_is_one_line_and_a_bug_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    """The CLI catches what a user can cause (LutfuseError: here a ConfigError) and nothing
    broader."""
    ir, vis = make_folders(tmp_path, n=1)
    res = lutfuse("fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "o",
                  "--context-scale", "0.3")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == ("lutfuse fuse: error: context_scale must be 1/k for an "
                                  "integer k (1, 0.5, 0.25, 0.125, ...), got 0.3")
    from lutfuse_ros import cli

    def broken(args):
        raise ValueError("an internal bug, not a user's mistake")

    monkeypatch.setattr(cli, "cmd_demo", broken)
    with pytest.raises(ValueError, match="internal bug"):
        cli.main(["demo", "--out", str(tmp_path / "m.png")])


def test_calibrate_says_what_the_folders_hold_and_prints_no_nan(tmp_path):
    ir, vis = make_folders(tmp_path / "rig")
    for folder in (ir, vis):  # the images one level down, as some datasets ship them
        (folder / "cam").mkdir()
        for f in folder.glob("*.png"):
            f.rename(folder / "cam" / f.name)
    res = lutfuse("calibrate", "--ir", ir, "--vis", vis, "--out", tmp_path / "rig.yaml")
    assert res.returncode == 2
    assert "ir: 0 image(s), sub-folder(s) with images: cam/" in res.stderr, res.stderr

    import numpy as np

    from lutfuse_ros.calibrate import report
    from lutfuse_ros.core.calibration import CalibrationResult
    from lutfuse_ros.core.geometry import Size
    refused = CalibrationResult(np.eye(3), Size(160, 120), Size(640, 480), 1, 0.2, 0.2, 0.1,
                                float("inf"), float("nan"), 0, confident=False,
                                reason="too few patches")
    text = report(refused)
    assert "nan" not in text and "inf" not in text and "residual n/a" in text


def test_demo_writes_a_mosaic(tmp_path):
    res = lutfuse("demo", "--out", tmp_path / "demo.png", "--count", 2)
    assert res.returncode == 0, res.stderr
    import cv2
    assert cv2.imread(str(tmp_path / "demo.png")).shape[0] == 2 * 240


def test_every_command_and_option_has_help():
    import argparse

    from lutfuse_ros.cli import build_parser

    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction)).choices
    for name, parser in commands.items():
        bare = [a.dest for a in parser._actions if not a.help]
        assert not bare, f"lutfuse {name}: options without help: {bare}"
    res = lutfuse("fuse", "--help")
    assert res.returncode == 0 and "usage" in res.stdout


def test_bench_json_has_fast_and_exact_per_resolution(tmp_path):
    res = lutfuse("bench", "--sizes", "128x96", "--runs", "3", "--backends", "numba",
                  "--json", tmp_path / "b.json")
    assert res.returncode == 0, res.stderr
    figures = json.loads((tmp_path / "b.json").read_text())
    assert figures["128x96"]["fast_ms"] > 0 and figures["128x96"]["exact_ms"] > 0
    assert "lookup+to_rgb" in figures["128x96"]["modes"]["fast_numba"]["stages_median_ms"]


@needs_torch
def test_bench_measures_the_speed_up_over_the_authors_pass_in_alternating_rounds(tmp_path):
    res = lutfuse("bench", "--sizes", "96x64", "--runs", "2", "--backends", "numba", "torch",
                  "--ratio-rounds", "3", "--json", tmp_path / "b.json")
    assert res.returncode == 0, res.stderr
    ratio = json.loads((tmp_path / "b.json").read_text())["96x64"][
        "speedup_fast_vs_authors_interleaved"]
    assert ratio["rounds"] == 3
    assert 0 < ratio["ratio_min"] <= ratio["ratio_median"] <= ratio["ratio_max"]
    assert ratio["fast_ms_median"] > 0 and ratio["slow_ms_median"] > 0
    assert "interleaved, 3 rounds" in res.stdout


# -- lutfuse thermal ------------------------------------------------------------------------
def write_raw_stream(folder: Path, frames: int = 4) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    base = cv2.resize(rng.uniform(0, 1, (6, 8)).astype(np.float32), (160, 120),
                      interpolation=cv2.INTER_CUBIC)
    for k in range(frames):  # 14-bit counts, high-aligned in 16-bit words
        counts = (3500 + 600 * base + rng.normal(0, 4, base.shape)).astype(np.uint16)
        cv2.imwrite(str(folder / f"{k:03d}.png"), counts << 2)


def test_thermal_command_converts_a_folder_as_one_stream(tmp_path):
    write_raw_stream(tmp_path / "raw")
    res = lutfuse("thermal", "--in", tmp_path / "raw", "--out", tmp_path / "ir8",
                  "--mosaic", tmp_path / "agc.png")
    assert res.returncode == 0, res.stderr
    assert "agc plateau" in res.stdout  # the node's default
    out = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((tmp_path / "ir8").iterdir())]
    assert len(out) == 4 and all(o.dtype == np.uint8 and o.shape == (120, 160) for o in out)
    assert np.ptp(out[-1]) > 150
    assert cv2.imread(str(tmp_path / "agc.png")) is not None


def test_thermal_command_names_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    res = lutfuse("thermal", "--in", tmp_path / "empty", "--out", tmp_path / "o")
    assert res.returncode == 2 and "no .png/.tif frames" in res.stderr
    write_raw_stream(tmp_path / "raw", frames=2)
    cv2.imwrite(str(tmp_path / "raw" / "009.png"), np.zeros((60, 80), np.uint16) + 3000)
    res = lutfuse("thermal", "--in", tmp_path / "raw", "--out", tmp_path / "o")
    assert res.returncode == 2 and "80x60 frame in a stream of 160x120" in res.stderr
    (tmp_path / "raw" / "009.png").write_bytes(b"not a png")
    res = lutfuse("thermal", "--in", tmp_path / "raw", "--out", tmp_path / "o")
    assert res.returncode == 2 and "cannot read" in res.stderr


@pytest.mark.skipif(not (SHARED / "data" / "thermal16" / "thermitage").is_dir(),
                    reason="needs ../shared/data/thermal16 (real raw thermal frames)")
@pytest.mark.parametrize("name", ["thermitage", "flirone/thermal16", "arcticseals/thermal16"])
def test_real_raw_frames_run_through_the_thermal_command(name, tmp_path):
    src = SHARED / "data" / "thermal16" / name
    res = lutfuse("thermal", "--in", src, "--out", tmp_path / "ir8")
    assert res.returncode == 0, res.stderr
    frames = sorted(src.glob("*.png"))
    outs = [cv2.imread(str(tmp_path / "ir8" / p.name), cv2.IMREAD_UNCHANGED) for p in frames]
    assert all(o is not None and o.dtype == np.uint8 for o in outs)
    crushed = np.mean([np.mean((o <= 2) | (o >= 253)) for o in outs])
    # not crushed to black/white, not flat (the gain limit may leave part of the range unused
    # on a narrow scene: flirone's 80x60 frames span ~145 levels)
    assert crushed < 0.02 and np.mean([np.ptp(o) for o in outs]) > 100
    # the summary names the counts the mapping spreads over, inside what the frames hold
    counts = np.stack([read_raw_thermal(p) for p in frames])
    low, high = (int(v) for v in res.stdout.split("last mapping: counts ")[1].split(" ")[0]
                 .split(".."))
    assert counts.min() <= low < high <= counts.max(), res.stdout


# -- a real rig's files through the node's pipeline ------------------------------------------
def rig_folders(root, frames=3, rgb=(160, 120), thermal=(80, 64)):
    """Raw 16-bit thermal frames of a camera looking at part of the visible view, the
    visible frames, and the rig's calibration file (its true homography)."""
    import yaml

    from lutfuse_ros.core.geometry import Size
    from lutfuse_ros.core.synthetic import random_thermal_view, reimage_thermal

    rng = np.random.default_rng(4)
    h = random_thermal_view(Size(*rgb), Size(*thermal), rng)
    for i in range(frames):
        ir, vis = synthetic_pair(seed=10 + i, shape=rgb[::-1])
        counts = reimage_thermal(ir, h, Size(*thermal), counts16=True, rng=rng)
        (root / "thermal").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "thermal" / f"f{i:02d}.png"), counts)
        write_image(root / "visible" / f"f{i:02d}.png", vis)
    calibration = root / "rig.yaml"
    calibration.write_text(yaml.safe_dump({"mode": "homography",
                                           "homography": [float(v) for v in h.ravel()],
                                           "thermal_size": list(thermal), "rgb_size": list(rgb)}))
    return root / "thermal", root / "visible", calibration


def test_a_calibrated_16_bit_rig_fuses_as_the_node_publishes(tmp_path):
    """lutfuse fuse on files = the node's frame pipeline on the same frames as messages, one
    stream in file-name order (AGC smoothing, stable gradient range)."""
    from lutfuse_ros.ros.params import NodeSettings
    from lutfuse_ros.stream.codec import numpy_to_image
    from lutfuse_ros.stream.pipeline import FramePipeline

    thermal, visible, calibration = rig_folders(tmp_path)
    res = lutfuse("fuse", "--ir", thermal, "--vis", visible, "--out", tmp_path / "fused",
                  "--calibration", calibration)
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr  # registered: no alignment warning
    settings = NodeSettings.from_values({"registration.calibration_file": str(calibration)})
    node = FramePipeline.from_config(settings.pipeline)
    for name in sorted(p.stem for p in thermal.glob("*.png")):
        counts = cv2.imread(str(thermal / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        vis = cv2.imread(str(visible / f"{name}.png"))[:, :, ::-1].copy()
        want = node(numpy_to_image(counts, "mono16"), numpy_to_image(vis, "rgb8")).image
        got = cv2.imread(str(tmp_path / "fused" / f"{name}.png"))[:, :, ::-1]
        assert np.abs(got.astype(int) - want).max() <= 1


def test_fuse_warns_about_unregistered_pairs_and_names_the_fix(tmp_path):
    thermal, visible, calibration = rig_folders(tmp_path, frames=2)
    res = lutfuse("fuse", "--ir", thermal, "--vis", visible, "--out", tmp_path / "fused")
    assert res.returncode == 0, res.stderr  # resized, fused, but warned
    assert "do not line up" in res.stderr and "lutfuse calibrate" in res.stderr
    assert "--calibration rig.yaml" in res.stderr


def test_fuse_names_bad_rig_input(tmp_path):
    thermal, visible, calibration = rig_folders(tmp_path, frames=1)
    other = tmp_path / "other.yaml"  # a calibration made for another thermal resolution
    other.write_text(calibration.read_text().replace("- 80\n- 64", "- 160\n- 128"))
    res = lutfuse("fuse", "--ir", thermal, "--vis", visible, "--out", tmp_path / "o",
                  "--calibration", other)
    assert res.returncode == 1 and "calibrated for 160x128" in res.stderr
    assert "run lutfuse calibrate for this rig" in res.stderr
    cv2.imwrite(str(thermal / "f00.png"), np.zeros((64, 80, 3), np.uint16))  # 16-bit colour
    res = lutfuse("fuse", "--ir", thermal, "--vis", visible, "--out", tmp_path / "o")
    assert res.returncode == 1 and "16-bit colour image" in res.stderr
    res = lutfuse("fuse", "--ir", thermal, "--vis", visible, "--out", tmp_path / "o",
                  "--batch", "4")
    assert res.returncode == 2 and "needs --independent" in res.stderr


def test_fuse_takes_a_robots_parameter_file_and_independent_pairs(tmp_path):
    from lutfuse_ros.resources import config_file

    ir, vis = make_folders(tmp_path, n=3)
    stream = lutfuse("fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "stream",
                     "--params", config_file("fusion.yaml"))
    alone = lutfuse("fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "alone",
                    "--independent", "--batch", "2")
    assert stream.returncode == 0 and alone.returncode == 0, stream.stderr + alone.stderr
    assert "one stream" in stream.stdout and "independent pairs" in alone.stdout
    # each independent pair equals fusing it alone with the core (per-image gradient range)
    from lutfuse_ros.core import Fuser
    from lutfuse_ros.core.imageio import read_ir, read_visible
    fuser = Fuser()
    for i in range(3):
        want = fuser.fuse(read_ir(ir / f"p{i}.png"), read_visible(vis / f"p{i}.png"))
        got = cv2.imread(str(tmp_path / "alone" / f"p{i}.png"))[:, :, ::-1]
        assert np.abs(got.astype(int) - want).max() <= 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("just: text\n")
    res = lutfuse("fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "o", "--params", bad)
    assert res.returncode == 2 and "not a ROS 2 parameter file" in res.stderr

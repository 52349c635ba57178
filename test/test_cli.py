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

from conftest import SHARED


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

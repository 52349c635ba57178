"""Shards: recordings -> tar files of preprocessed pairs that training streams. The pairs
come out exactly as the node's bag reader gives them; conversion runs in parallel, skips
what is done, names a damaged bag or shard and goes on."""
from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="needs the rosbags library")

from test_bags import write_bag  # noqa: E402

from lutfuse_ros.cli import main as lutfuse  # noqa: E402
from lutfuse_ros.core.preprocess import PreprocessConfig  # noqa: E402
from lutfuse_ros.stream.bagio import read_pairs  # noqa: E402
from lutfuse_ros.stream.shards import (  # noqa: E402
    ShardError,
    ShardSet,
    convert,
    expand_bags,
    rank_share,
    read_shard,
)


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    for k in range(3):
        write_bag(root / f"robot{k}", frames=7)
    return root


def test_shards_round_trip_the_pairs_bit_exact(bags, tmp_path):
    results = convert(sorted(bags.iterdir()), tmp_path, PreprocessConfig(), pairs_per_shard=3,
                      workers=2, progress=False)
    assert [r.error for r in results] == [None] * 3
    shard_set = ShardSet.open(tmp_path)
    assert shard_set.pairs == 21 and len(shard_set.shards) == 9  # 3 + 3 + 1 per recording
    assert shard_set.sources == ("robot0", "robot1", "robot2")
    out = {p.meta["stamp_ns"]: p for s in shard_set.shards if "robot1" in s.name
           for p in read_shard(s)}
    expected = list(read_pairs(bags / "robot1"))
    assert sorted(out) == [stamp for stamp, _, _ in expected]
    for stamp, ir, rgb in expected:
        np.testing.assert_array_equal(out[stamp].ir, ir)
        np.testing.assert_array_equal(out[stamp].rgb, rgb)
    # Readable without this package: a plain tar of PNG + JSON per pair key.
    with tarfile.open(shard_set.shards[0]) as tar:
        names = tar.getnames()
    assert names[:3] == [f"robot0-{10**9:019d}.ir.png", f"robot0-{10**9:019d}.vis.png",
                         f"robot0-{10**9:019d}.json"]
    summary = json.loads((tmp_path / "manifest.json").read_text())
    assert summary["pairs"] == 21 and summary["shards"] == 9 and summary["hours"] > 0


def test_a_rerun_skips_complete_recordings_and_a_damaged_bag_is_named(bags, tmp_path, capsys):
    out_dir = tmp_path / "shards"
    assert lutfuse(["shards", str(bags / "robot0"), "--out", str(out_dir)]) == 0
    damaged = tmp_path / "damaged.mcap"
    damaged.write_bytes(b"not a bag at all")
    code = lutfuse(["shards", str(bags / "robot0"), str(bags / "robot1"), str(damaged),
                    "--out", str(out_dir), "--workers", "2"])
    out = capsys.readouterr().out
    assert code == 1  # the damaged one failed, the others are there
    assert "robot0: complete already (7 pairs), skipped" in out
    assert f"{damaged}: FAILED" in out and "cannot open as a rosbag2" in out
    assert ShardSet.open(out_dir).sources == ("robot0", "robot1")
    assert not list(out_dir.glob("*.part")) and not list(out_dir.glob("damaged*"))


def test_a_truncated_shard_is_named_after_its_whole_pairs(bags, tmp_path):
    convert([bags / "robot2"], tmp_path, PreprocessConfig(), pairs_per_shard=7, progress=False)
    shard = ShardSet.open(tmp_path).shards[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) * 2 // 3])  # a copy cut short
    read = []
    with pytest.raises(ShardError, match=shard.name):
        for pair in read_shard(shard):
            read.append(pair)
    assert 2 <= len(read) < 7


def test_a_folder_of_recordings_is_its_bags_in_order_and_ranks_share_them(bags):
    assert [b.name for b in expand_bags([bags])] == ["robot0", "robot1", "robot2"]
    assert rank_share(list(range(7)), 1, 3) == [1, 4]
    with pytest.raises(Exception, match="not a rosbag2"):
        expand_bags([bags / "robot0" / "metadata.yaml"])

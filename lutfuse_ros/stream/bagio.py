"""Thermal + RGB pairs from rosbag2 files (sqlite3 or MCAP), without a ROS install.

Messages are read with the ``rosbags`` library (pure Python), paired by header stamp with the
node's :class:`ApproximateTimePolicy`, and preprocessed with the node's :class:`Preprocessor`
(16-bit AGC, registration into the RGB frame): a LUT trained from a bag sees what the node
would have fed it. Raw ``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` topics are
read, so bags of a plain ``ros2 bag record`` work. A truncated or partly corrupt bag yields
every readable pair; :class:`BagReport` says what was lost.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..core.errors import InputError, LutfuseError
from ..core.preprocess import Preprocessor
from .codec import THERMAL_ENCODINGS, VISIBLE_ENCODINGS, ImageDecodeError, image_to_numpy
from .sync import RGB, THERMAL, ApproximateTimePolicy, SyncConfig, stamp_to_ns

DEFAULT_THERMAL_TOPIC = "/thermal/image"  # the node's input topics, unremapped
DEFAULT_RGB_TOPIC = "/rgb/image"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"


class BagError(LutfuseError):
    """A bag cannot be opened, or lacks the topics asked for."""


@dataclass
class BagReport:
    messages: int = 0
    undecodable: int = 0
    pairs: int = 0
    unmatched: int = 0
    problems: list[str] = field(default_factory=list)  # first few reasons, for the report
    read_error: str | None = None  # the bag ended early (truncated, corrupt)

    def note(self, problem: str) -> None:
        if len(self.problems) < 10:
            self.problems.append(problem)

    def summary(self) -> str:
        text = (f"{self.pairs} pairs from {self.messages} messages; {self.undecodable} "
                f"undecodable, {self.unmatched} without a partner")
        if self.read_error:
            text += f"; reading stopped early: {self.read_error}"
        return text + "".join(f"\n  - {p}" for p in self.problems)


def lutfuse_typestore():
    """A ``rosbags`` typestore (Humble's messages) that also knows this package's messages,
    registered from the ``msg/`` text, so bags with ``fused/status`` read without a build."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from ..resources import share_dir

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    types = {}
    for path in sorted((share_dir() / "msg").glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"lutfuse_ros/msg/{path.stem}"))
    typestore.register(types)
    return typestore


def is_bag(path: str | Path) -> bool:
    path = Path(path)
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or \
        path.suffix in (".mcap", ".db3")


def _visible_rgb(msg, compressed: bool) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an Image or CompressedImage."""
    if compressed:
        img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ImageDecodeError(f"compressed visible image ({msg.format!r}) does not decode")
        return np.ascontiguousarray(img[:, :, ::-1])
    arr = image_to_numpy(msg, VISIBLE_ENCODINGS)
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    rgb = arr[:, :, :3] if msg.encoding.startswith("rgb") else arr[:, :, 2::-1]
    return np.ascontiguousarray(rgb)


def _thermal(msg, compressed: bool) -> np.ndarray:
    """(H, W) uint8 or uint16 from an Image or CompressedImage (e.g. 16-bit PNG)."""
    if compressed:
        img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ImageDecodeError(f"compressed thermal image ({msg.format!r}) does not decode")
        return img if img.ndim == 2 else cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(image_to_numpy(msg, THERMAL_ENCODINGS))


def _mcap_file(bag: Path) -> Path | None:
    if bag.suffix == ".mcap":
        return bag
    found = sorted(bag.glob("*.mcap")) if bag.is_dir() else []
    return found[0] if found else None


def scan_mcap(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """``(topic, msgtype, cdr bytes)`` of every complete message record of an MCAP file, read
    front to back: a file cut short (no footer, half a chunk) still gives what it holds.
    Compressed chunks are skipped (they cannot be read in part)."""
    import struct

    data = path.read_bytes()
    if not data.startswith(b"\x89MCAP0\r\n"):
        raise BagError(f"{path}: not an MCAP file")
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}

    def string(buf: bytes, at: int) -> tuple[str, int]:
        n = struct.unpack_from("<I", buf, at)[0]
        return buf[at + 4:at + 4 + n].decode(), at + 4 + n

    def records(buf: bytes, at: int, end: int) -> Iterator[tuple[int, bytes]]:
        while at + 9 <= end:
            op, n = buf[at], struct.unpack_from("<Q", buf, at + 1)[0]
            body = buf[at + 9:at + 9 + n]
            if len(body) < n:  # truncated record: the chunk's own records may still parse
                if op == 0x06:
                    yield op, body
                return
            yield op, body
            at += 9 + n

    def handle(op: int, body: bytes) -> Iterator[tuple[str, str, bytes]]:
        if op == 0x03:  # schema
            sid = struct.unpack_from("<H", body)[0]
            schemas[sid], _ = string(body, 2)
        elif op == 0x04:  # channel
            cid, sid = struct.unpack_from("<HH", body)
            topic, _ = string(body, 4)
            channels[cid] = (topic, schemas.get(sid, ""))
        elif op == 0x05 and len(body) >= 22:  # message
            cid = struct.unpack_from("<H", body)[0]
            if cid in channels:
                yield (*channels[cid], body[22:])
        elif op == 0x06:  # chunk: 8+8+8+4 bytes, compression, records
            compression, at = string(body, 28)
            if compression:
                return
            n = struct.unpack_from("<Q", body, at)[0]
            inner = body[at + 8:at + 8 + n]
            for iop, ibody in records(inner, 0, len(inner)):
                yield from handle(iop, ibody)

    for op, body in records(data, 8, len(data)):
        yield from handle(op, body)


def read_pairs(bag: str | Path, thermal_topic: str = DEFAULT_THERMAL_TOPIC,
               rgb_topic: str = DEFAULT_RGB_TOPIC, slop: float = SyncConfig.slop,
               thermal_offset: float = SyncConfig.thermal_offset,
               pre: Preprocessor | None = None, report: BagReport | None = None,
               register: bool = True
               ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(rgb_stamp_ns, ir (H, W) uint8, rgb (H, W, 3) uint8)`` per synchronised pair,
    the IR registered into the RGB frame (``register=False``: AGC only, at the thermal size).

    Raises:
        BagError: the bag does not open, or a topic is missing or not an image topic.
    """
    from rosbags.rosbag2 import Reader

    report = report if report is not None else BagReport()
    pre = pre or Preprocessor()
    typestore = lutfuse_typestore()
    bag = Path(bag)
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several kinds
        problem = f"{type(exc).__name__}: {exc}"
        mcap = _mcap_file(bag)
        if mcap is None or not mcap.read_bytes()[:8] == b"\x89MCAP0\r\n":
            raise BagError(f"{bag}: cannot open as a rosbag2 ({problem})") from None
        report.read_error = f"damaged bag ({problem}); read front to back"
        yield from _pairs_from_scan(mcap, thermal_topic, rgb_topic, slop, thermal_offset, pre,
                                    report, typestore, register)
        return
    try:
        recorded = _recording_config(reader, typestore)
        present = {c.topic for c in reader.connections}
        if recorded and thermal_topic not in present and rgb_topic not in present:
            # A recorder bag: its own note says which topics hold the pair.
            thermal_topic = recorded.get("thermal_topic", thermal_topic)
            rgb_topic = recorded.get("rgb_topic", rgb_topic)
        conns = {}
        for role, topic in ((THERMAL, thermal_topic), (RGB, rgb_topic)):
            found = [c for c in reader.connections if c.topic == topic]
            if not found:
                topics = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
                raise BagError(f"{bag}: no topic {topic}; it has: {', '.join(topics) or 'none'}")
            if found[0].msgtype not in (IMAGE, COMPRESSED):
                raise BagError(f"{bag}: {topic} is {found[0].msgtype}, not an image topic")
            for c in found:
                conns[c.id] = (role, c.msgtype == COMPRESSED, c.msgtype)
        messages = reader.messages(connections=[c for c in reader.connections if c.id in conns])

        def stream():
            while True:
                try:
                    conn, _, raw = next(messages)
                except StopIteration:
                    return
                except Exception as exc:  # noqa: BLE001 - truncated/corrupt storage
                    report.read_error = f"{type(exc).__name__}: {exc}"
                    return
                role, compressed, msgtype = conns[conn.id]
                yield conn.topic, role, compressed, msgtype, raw

        yield from _pair(stream(), slop, thermal_offset, pre, report, typestore, register)
    finally:
        reader.close()


def _recording_config(reader, typestore) -> dict:
    """The recorder's JSON note (``/lutfuse/recording_config``), or ``{}``."""
    import json

    conns = [c for c in reader.connections if c.topic == "/lutfuse/recording_config"]
    if not conns:
        return {}
    try:
        for conn, _, raw in reader.messages(connections=conns):
            return json.loads(typestore.deserialize_cdr(raw, conn.msgtype).data)
    except Exception:  # noqa: BLE001 - a damaged note is not worth failing for
        return {}
    return {}


def _pairs_from_scan(mcap, thermal_topic, rgb_topic, slop, thermal_offset, pre, report,
                     typestore, register):
    roles = {thermal_topic: THERMAL, rgb_topic: RGB}

    def stream():
        try:
            for topic, msgtype, raw in scan_mcap(mcap):
                if topic in roles and msgtype in (IMAGE, COMPRESSED):
                    yield topic, roles[topic], msgtype == COMPRESSED, msgtype, raw
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001 - garbage inside a record
            report.read_error = (report.read_error or "") + f"; scan stopped: {exc}"

    yield from _pair(stream(), slop, thermal_offset, pre, report, typestore, register)


def _pair(stream, slop, thermal_offset, pre, report, typestore, register=True):
    """Deserialise, decode, synchronise and preprocess a stream of raw messages."""
    sync = ApproximateTimePolicy(queue_size=30, slop=slop, thermal_offset=thermal_offset,
                                 reset_jump=3600.0)
    for topic, role, compressed, msgtype, raw in stream:
        report.messages += 1
        try:
            msg = typestore.deserialize_cdr(raw, msgtype)
            image = (_thermal if role == THERMAL else _visible_rgb)(msg, compressed)
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop export
            report.undecodable += 1
            report.note(f"{topic}: {exc}")
            continue
        pair = sync.add(role, stamp_to_ns(msg.header.stamp), image)
        if pair is None:
            continue
        rgb = pair.rgb
        try:
            ir = pre.thermal(pair.thermal, (rgb.shape[1], rgb.shape[0])) if register \
                else pre.agc(pair.thermal)
        except InputError as exc:
            report.undecodable += 1
            report.note(f"pair at {pair.rgb_stamp_ns}: {exc}")
            continue
        report.pairs += 1
        # Own, writable arrays: the decoded ones may view read-only message buffers.
        yield pair.rgb_stamp_ns, np.array(ir), np.array(rgb)
    report.unmatched = sync.stats.unmatched + sync.stats.late + sync.pending()


def export_pairs(bag: str | Path, out: str | Path, progress: bool = True, **kwargs) -> BagReport:
    """Write every pair of ``bag`` as ``out/ir/<stamp>.png`` + ``out/vis/<stamp>.png``."""
    from tqdm import tqdm

    from ..core.imageio import write_image

    out = Path(out)
    report = BagReport()
    with tqdm(desc="bag-export", unit="pair", disable=not progress) as bar:
        for stamp, ir, rgb in read_pairs(bag, report=report, **kwargs):
            name = f"{stamp:019d}.png"
            write_image(out / "ir" / name, ir)
            write_image(out / "vis" / name, rgb)
            bar.update(1)
    return report

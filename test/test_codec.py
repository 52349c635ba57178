"""sensor_msgs/Image <-> numpy without cv_bridge: every encoding, padded rows, byte order."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from lutfuse_ros.stream.codec import ENCODINGS, ImageDecodeError, image_to_numpy

rng = np.random.default_rng(0)


def raw_msg(arr: np.ndarray, encoding: str, pad: int = 0, big: bool = False):
    """An Image-like message built by hand (independent of the encoder under test)."""
    h, w = arr.shape[:2]
    a = arr.astype(arr.dtype.newbyteorder(">" if big else "<"))
    rows = a.reshape(h, -1).view(np.uint8).reshape(h, -1)
    rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=int(big),
                           step=rows.shape[1], data=rows.tobytes())


def sample(encoding: str, h: int = 5, w: int = 7) -> np.ndarray:
    c, dt = ENCODINGS[encoding]
    hi = 65535 if dt == np.uint16 else 255
    shape = (h, w) if c == 1 else (h, w, c)
    return rng.integers(0, hi + 1, shape).astype(dt)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("pad", [0, 3])
def test_decodes_every_encoding_with_row_padding(encoding, pad):
    arr = sample(encoding)
    np.testing.assert_array_equal(image_to_numpy(raw_msg(arr, encoding, pad)), arr)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_big_endian_16_bit_is_swapped_to_native(encoding):
    arr = sample(encoding)
    out = image_to_numpy(raw_msg(arr, encoding, pad=2, big=True))
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_native_data_is_a_view_of_the_message_buffer():
    arr = sample("bgr8")
    msg = raw_msg(arr, "bgr8", pad=4)
    msg.data = bytearray(msg.data)
    out = image_to_numpy(msg)
    msg.data[0] = (int(arr[0, 0, 0]) + 1) % 256
    assert out[0, 0, 0] == msg.data[0]


@pytest.mark.parametrize("change, match", [
    (dict(encoding="yuv422"), "unsupported encoding 'yuv422'"),
    (dict(encoding="32FC1"), "unsupported encoding"),
    (dict(step=6), "step 6 is shorter than a row"),
    (dict(height=0), "empty image"),
    (dict(data=b"\0" * 10), "data holds 10 bytes, expected .*truncated"),
    (dict(data=b"\0" * 500), "data holds 500 bytes"),
])
def test_bad_messages_are_refused_with_the_reason(change, match):
    msg = raw_msg(sample("rgb8"), "rgb8")
    for k, v in change.items():
        setattr(msg, k, v)
    with pytest.raises(ImageDecodeError, match=match):
        image_to_numpy(msg)


def test_allowed_encodings_restrict_a_topic():
    with pytest.raises(ImageDecodeError, match="expected one of mono8, mono16"):
        image_to_numpy(raw_msg(sample("rgb8"), "rgb8"), allowed=("mono8", "mono16"))


def test_encoder_round_trip_through_real_messages():
    ros = pytest.importorskip("sensor_msgs.msg", reason="needs ROS 2 sensor_msgs (rclpy wheels)")
    from std_msgs.msg import Header

    from lutfuse_ros.stream.codec import numpy_to_image

    header = Header(frame_id="rgb_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    for encoding in ENCODINGS:
        arr = sample(encoding)
        msg = numpy_to_image(arr, encoding, header)
        assert isinstance(msg, ros.Image) and msg.header.frame_id == "rgb_optical_frame"
        assert msg.step == arr.shape[1] * arr.itemsize * (1 if arr.ndim == 2 else arr.shape[2])
        np.testing.assert_array_equal(image_to_numpy(msg), arr)
    with pytest.raises(ValueError, match="bgr8 needs uint8 with 3 channel"):
        numpy_to_image(np.zeros((4, 4), np.uint8), "bgr8")


def test_same_arrays_as_cv_bridge():
    cv_bridge = pytest.importorskip(
        "cv_bridge", reason="cv_bridge is not installable here (a robot with ROS 2 has it)")
    bridge = cv_bridge.CvBridge()
    for encoding in ("rgb8", "bgr8", "mono8", "mono16"):
        arr = sample(encoding)
        msg = bridge.cv2_to_imgmsg(arr, encoding=encoding)
        np.testing.assert_array_equal(image_to_numpy(msg), bridge.imgmsg_to_cv2(msg))


# -- serialized messages (what the node takes and publishes) --------------------------------
def test_serialized_images_read_and_write_as_rclpy_does():
    """image_from_cdr reads what rclpy serializes, image_to_cdr writes what rclpy reads back:
    every encoding, frame ids of every length (string alignment), padded rows."""
    pytest.importorskip("sensor_msgs.msg", reason="needs ROS 2 sensor_msgs (rclpy wheels)")
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from lutfuse_ros.stream.cdr import image_from_cdr, image_to_cdr

    for frame_id in ("", "a", "ab", "abc", "rgb_optical_frame"):
        for encoding in ENCODINGS:
            arr = sample(encoding)
            hand = raw_msg(arr, encoding, pad=3)
            msg = Image(height=hand.height, width=hand.width, encoding=encoding,
                        is_bigendian=0, step=hand.step, data=hand.data)
            msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec = frame_id, -2, 9
            read = image_from_cdr(serialize_message(msg))
            assert (read.header.frame_id, read.header.stamp.sec, read.header.stamp.nanosec) == \
                (frame_id, -2, 9)
            np.testing.assert_array_equal(image_to_numpy(read), arr)
            back = deserialize_message(image_to_cdr(arr, encoding, msg.header), Image)
            assert back.header == msg.header and back.encoding == encoding
            np.testing.assert_array_equal(image_to_numpy(back), arr)


def test_big_endian_cdr_is_read():
    import struct

    from lutfuse_ros.stream.cdr import image_from_cdr

    body = (struct.pack(">iI", 7, 8) + struct.pack(">I", 2) + b"f\x00" + b"\x00\x00"
            + struct.pack(">II", 1, 2) + struct.pack(">I", 7) + b"mono16\x00" + b"\x01"
            + struct.pack(">II", 4, 4) + bytes([1, 2, 3, 4]))
    msg = image_from_cdr(b"\x00\x00\x00\x00" + body)
    assert (msg.header.stamp.sec, msg.header.frame_id, msg.encoding) == (7, "f", "mono16")
    np.testing.assert_array_equal(image_to_numpy(msg), [[0x0102, 0x0304]])


@pytest.mark.parametrize("cut, match", [(2, "too short"), (10, "header fields"),
                                        (20, "string field"), (-5, "truncated: data says")])
def test_truncated_or_foreign_serialized_images_are_refused(cut, match):
    from lutfuse_ros.stream.cdr import CdrHeader, Stamp, image_from_cdr, image_to_cdr

    good = image_to_cdr(sample("mono8"), "mono8", CdrHeader(Stamp(1, 2), "thermal_frame"))
    with pytest.raises(ImageDecodeError, match=match):
        image_from_cdr(good[:cut])
    with pytest.raises(ImageDecodeError, match="encapsulation 0007"):
        image_from_cdr(b"\x00\x07" + good[2:])  # XCDR2: not what ROS 2 middlewares send

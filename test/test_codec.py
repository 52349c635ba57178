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

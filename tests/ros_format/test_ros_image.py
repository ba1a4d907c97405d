"""perception.ros_format.image: the cv_bridge / rosbags-image test cases, re-done for our API.

Each test names the peer test it mirrors (shared/research/cv_bridge_tests.md). Messages are
plain namespaces with the ``sensor_msgs`` field names, which is exactly what the converters read;
the rclpy and rosbags message classes are covered by tests/ros2_nodes/test_convert.py.
"""
from __future__ import annotations

import array
import struct
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from perception.errors import InputError
from perception.ros_format import (
    compressed_from_msg,
    decode_compressed,
    image_from_msg,
    image_to_compressed_fields,
    image_to_fields,
    parse_encoding,
    to_bgr8,
    to_display_bgr8,
)

BDD = "yolop_bdd100k/inference/images/3c0e7240-96e390d2.jpg"  # 1280x720
REAL_COLOR = [
    BDD,
    "mmseg_cityscapes/demo/demo.png",  # 1024x512 Cityscapes
    "segnet_camvid/CamVid/test/0001TP_008550.png",  # 480x360 CamVid
    "kitti_object_vis/data/object/training/image_2/000001.png",  # 1242x375 KITTI
    "monodepth2_testimage/assets/test_image.jpg",  # odd width 638
]
INSTANCE_IDS = (
    "mmseg_cityscapes/tests/data/pseudo_cityscapes_dataset/gtFine/val/frankfurt/"
    "frankfurt_000000_000294_gtFine_instanceIds.png"  # 16-bit
)
LABEL_MASK = "bdd100k_toolkit_labels/tests/label/testcases/semseg_mask.png"  # mono8 1280x720

DEPTHS = {"8U": np.uint8, "8S": np.int8, "16U": np.uint16, "16S": np.int16, "32S": np.int32, "32F": np.float32, "64F": np.float64}
COLOR_ENCODINGS = [f"{o}{b}" for b in (8, 16) for o in ("bgr", "rgb", "bgra", "rgba", "mono")]
BAYER_ENCODINGS = [f"bayer_{p}{b}" for p in ("rggb", "bggr", "gbrg", "grbg") for b in (8, 16)]
YUV_ENCODINGS = ["yuv422", "yuv422_yuy2", "uyvy", "yuyv"]
GENERIC_ENCODINGS = [f"{d}C{c}" for d in DEPTHS for c in (1, 2, 3, 4)]
ALL_ENCODINGS = COLOR_ENCODINGS + GENERIC_ENCODINGS + YUV_ENCODINGS + BAYER_ENCODINGS
HOST_BIG = sys.byteorder == "big"


def msg_of(fields: dict) -> SimpleNamespace:
    return SimpleNamespace(**fields)


@pytest.fixture(scope="module")
def frame(real_data: Path) -> np.ndarray:
    """A real 1280x720 BDD100K camera frame, BGR."""
    image = cv2.imread(str(real_data / BDD), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (720, 1280, 3)
    return image


@pytest.fixture(scope="module")
def crop(frame: np.ndarray) -> np.ndarray:
    """An odd-sized 37x54 patch of the real frame (textured road/car area) for exhaustive loops."""
    return np.ascontiguousarray(frame[400:437, 600:654])


def values_for(crop: np.ndarray, dtype: type, channels: int | None) -> np.ndarray:
    """Real pixel data spread over the range of ``dtype``, with ``channels`` channels (None: 2-D)."""
    base = crop.astype(np.float64)
    n = 1 if channels is None else channels
    planes = [np.roll(base[:, :, c % 3], c // 3, axis=1) for c in range(n)]
    v = np.stack(planes, axis=-1)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        v = info.min + v / 255.0 * (float(info.max) - info.min)
        out = np.clip(np.round(v), info.min, info.max).astype(dtype)
    else:
        out = (v / 255.0 * 200.0 - 100.0).astype(dtype)  # e.g. depth in metres, negatives too
    return out[:, :, 0] if channels is None else out


def mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """Sample a BGR image through a Bayer colour filter; ``pattern`` names the 2x2 block at (0, 0)."""
    channel = {"b": 0, "g": 1, "r": 2}
    out = np.empty(bgr.shape[:2], bgr.dtype)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[dy::2, dx::2] = bgr[dy::2, dx::2, channel[pattern[k]]]
    return out


def sample_for(encoding: str, crop: np.ndarray) -> np.ndarray:
    """A real-data array that is valid for ``encoding``."""
    enc = parse_encoding(encoding)
    crop = crop[:, : crop.shape[1] // 2 * 2]  # even width for YUV pairs
    if enc.kind == "yuv422":
        code = cv2.COLOR_BGR2YUV_UYVY if enc.order == "uyvy" else cv2.COLOR_BGR2YUV_YUY2
        return cv2.cvtColor(crop, code)
    if enc.kind == "bayer":
        m = mosaic(crop, enc.order)
        return m if enc.dtype == np.uint8 else m.astype(np.uint16) * 257
    if enc.kind == "mono":
        gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        return gray if enc.dtype == np.uint8 else gray.astype(np.uint16) * 257 + 3
    if enc.kind == "color":
        bgr = crop if enc.channels == 3 else np.dstack([crop, 255 - crop[:, :, 1]])
        return bgr if enc.dtype == np.uint8 else bgr.astype(np.uint16) * 257 + 7
    return values_for(crop, enc.dtype.type, None if enc.channels == 1 else enc.channels)


# --- cv_bridge conversions.py: test_encode_decode_cv2 / utest2 round trips -------------------


@pytest.mark.parametrize("depth", list(DEPTHS))
@pytest.mark.parametrize("channels", [None, 1, 2, 3, 4, 5])
def test_passthrough_roundtrip_keeps_dtype_shape_bytes(crop, depth, channels):
    arr = values_for(crop, DEPTHS[depth], channels)
    fields = image_to_fields(arr)
    assert fields["encoding"] == f"{depth}C{channels or 1}"
    assert fields["step"] * fields["height"] == len(fields["data"]) == arr.nbytes
    out = image_from_msg(msg_of(fields))
    assert out.dtype == arr.dtype
    assert out.shape == (arr.shape[:2] if channels in (None, 1) else arr.shape)  # (h,w,1) -> (h,w)
    assert out.tobytes() == arr.tobytes()


@pytest.mark.parametrize("big", [False, True], ids=["little", "big"])
@pytest.mark.parametrize("encoding", ALL_ENCODINGS)
def test_named_roundtrip_exact_in_both_byte_orders(crop, encoding, big):
    arr = sample_for(encoding, crop)
    wire = arr.astype(arr.dtype.newbyteorder(">" if big else "<"))
    fields = image_to_fields(wire, encoding)
    assert fields["encoding"] == encoding
    assert fields["is_bigendian"] == int(big and arr.dtype.itemsize > 1)
    out = image_from_msg(msg_of(fields))
    assert out.dtype == arr.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_passthrough_8uc3_has_no_colour_but_rgb8_has(crop):
    """cv_bridge test_mono16_cv2: 8UC3 carries no colour; the same pixels sent as rgb8 do."""
    fields = image_to_fields(crop)
    assert fields["encoding"] == "8UC3"
    with pytest.raises(InputError, match="no colour information"):
        to_bgr8(image_from_msg(msg_of(fields)), fields["encoding"])
    as_rgb = image_from_msg(msg_of(image_to_fields(crop, "rgb8")))
    np.testing.assert_array_equal(to_bgr8(as_rgb, "rgb8"), crop[:, :, ::-1])


def test_mono8_decodes_2d():
    """cv_bridge python_bindings: a 100x100 mono8 image comes back (100, 100), not (100, 100, 1)."""
    arr = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    assert image_from_msg(msg_of(image_to_fields(arr[:, :, None], "mono8"))).shape == (100, 100)


# --- endianness (conversions.py test_endianness, test_endian.cpp) -----------------------------


def test_big_endian_int32_sets_flag_and_roundtrips(crop):
    arr = values_for(crop[:30, :40], np.int32, None).astype(">i4")
    fields = image_to_fields(arr)
    assert fields["is_bigendian"] == 1 and fields["encoding"] == "32SC1"
    np.testing.assert_array_equal(image_from_msg(msg_of(fields)), arr)


def test_opposite_endian_32sc2_decodes_and_copies():
    order = "<" if HOST_BIG else ">"
    data = bytearray(np.array([1, 2], dtype=f"{order}i4").tobytes())
    msg = SimpleNamespace(height=1, width=1, encoding="32SC2", is_bigendian=int(not HOST_BIG), step=8, data=data)
    out = image_from_msg(msg, copy=False)  # a byte swap must copy even when zero-copy is allowed
    assert out.tolist() == [[[1, 2]]]
    assert not np.shares_memory(out, np.frombuffer(data, np.uint8))


@pytest.mark.parametrize("big", [False, True], ids=["little", "big"])
def test_16uc1_depth_payload_endianness(real_data, big):
    ids = cv2.imread(str(real_data / INSTANCE_IDS), cv2.IMREAD_UNCHANGED)
    assert ids.dtype == np.uint16
    data = ids.astype(">u2" if big else "<u2").tobytes()
    for enc in ("16UC1", "mono16"):
        msg = SimpleNamespace(height=ids.shape[0], width=ids.shape[1], encoding=enc, is_bigendian=int(big),
                              step=ids.shape[1] * 2, data=data)
        np.testing.assert_array_equal(image_from_msg(msg), ids)


# --- step / padding / validation (utest.cpp imageMessageStep, initialization) ----------------


def test_row_padding_removed():
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 256, (220, 208), dtype=np.uint8)
    msg = SimpleNamespace(height=220, width=200, encoding="mono8", is_bigendian=0, step=208, data=rows.tobytes())
    out = image_from_msg(msg)
    assert out.shape == (220, 200) and out.strides == (200, 1)
    np.testing.assert_array_equal(out, rows[:, :200])


@pytest.mark.parametrize("encoding,pad", [("bgr8", 13), ("16UC1", 1), ("32FC1", 6), ("yuv422", 4)])
def test_row_padding_on_real_frame(crop, encoding, pad):
    arr = sample_for(encoding, crop)
    fields = image_to_fields(arr, encoding)
    step = fields["step"] + pad  # padding not a multiple of the element size for 16UC1/32FC1
    rows = np.frombuffer(fields["data"], np.uint8).reshape(fields["height"], -1)
    padded = np.pad(rows, ((0, 0), (0, pad)), constant_values=0xAB)
    msg = msg_of({**fields, "step": step, "data": padded.tobytes()})
    np.testing.assert_array_equal(image_from_msg(msg), arr)


def test_step_smaller_than_row_is_rejected():
    data = bytes(200 * 220)
    msg = SimpleNamespace(height=220, width=200, encoding="mono8", is_bigendian=0, step=199, data=data)
    with pytest.raises(InputError, match=r"step.*200.*given step=199"):
        image_from_msg(msg)
    image_from_msg(SimpleNamespace(**{**vars(msg), "step": 200}))  # the right step works


def test_empty_data_is_rejected_then_valid_data_works(crop):
    """utest.cpp initialization: bgr8 200x200 with empty data must raise cleanly (no crash)."""
    msg = SimpleNamespace(height=200, width=200, encoding="bgr8", is_bigendian=0, step=600, data=b"")
    with pytest.raises(InputError, match=r"empty.*120000 bytes, given 0"):
        image_from_msg(msg)
    arr = np.ascontiguousarray(np.resize(crop, (200, 200, 3)))
    ok = msg_of(image_to_fields(arr, "rgb8"))
    assert to_bgr8(image_from_msg(ok), ok.encoding).shape == (200, 200, 3)


@pytest.mark.parametrize("size,match", [(599, "truncated"), (601, "too long")])
def test_wrong_data_length_is_rejected(size, match):
    msg = SimpleNamespace(height=1, width=200, encoding="bgr8", is_bigendian=0, step=600, data=bytes(size))
    with pytest.raises(InputError, match=rf"{match}.*expected step \* height = 600 \* 1 = 600 bytes, given {size}"):
        image_from_msg(msg)


@pytest.mark.parametrize("height,width", [(0, 10), (10, 0), (0, 0)])
def test_zero_size_is_rejected(height, width):
    msg = SimpleNamespace(height=height, width=width, encoding="mono8", is_bigendian=0, step=width, data=b"")
    with pytest.raises(InputError, match=rf"zero size: height={height}, width={width}"):
        image_from_msg(msg)


@pytest.mark.parametrize("encoding", ["bayer", "rgb9", "8UC0", "8UC513", "BGR8", "", "16FC1"])
def test_unknown_encoding_is_rejected_by_name(encoding):
    """rosbags-image test_badencoding: the error names the encoding and lists the valid ones."""
    msg = SimpleNamespace(height=1, width=1, encoding=encoding, is_bigendian=0, step=3, data=bytes(3))
    with pytest.raises(InputError, match=rf"unknown image encoding {encoding!r}.*known encodings: bayer_bggr16"):
        image_from_msg(msg)


def test_odd_width_yuv_is_rejected():
    msg = SimpleNamespace(height=1, width=3, encoding="yuv422", is_bigendian=0, step=6, data=bytes(6))
    with pytest.raises(InputError, match="width must be even"):
        image_from_msg(msg)


# --- enumerants.py / test_numpy_types ----------------------------------------------------------


def test_handmade_rgba8_message_decodes_into_a_fresh_array():
    data = array.array("B", b"1234" * (640 * 480))  # what rclpy stores in msg.data
    msg = SimpleNamespace(height=480, width=640, encoding="rgba8", is_bigendian=0, step=2560, data=data)
    out = image_from_msg(msg)
    assert out.shape == (480, 640, 4) and out[0, 0].tolist() == [49, 50, 51, 52]
    assert out.flags.writeable and not np.shares_memory(out, np.frombuffer(data, np.uint8))
    assert to_bgr8(out, "rgba8")[0, 0].tolist() == [51, 50, 49]


def test_zero_copy_view_is_read_only(frame):
    fields = image_to_fields(frame, "bgr8")
    data = np.frombuffer(fields["data"], np.uint8).copy()  # rosbags: a writable uint8 ndarray
    view = image_from_msg(msg_of({**fields, "data": data}), copy=False)
    assert np.shares_memory(view, data) and not view.flags.writeable
    np.testing.assert_array_equal(view, frame)


@pytest.mark.parametrize("container", [bytes, bytearray, lambda b: array.array("B", b), lambda b: np.frombuffer(b, np.uint8), list, memoryview])
def test_data_field_containers(crop, container):
    """bytes (hand-built), array.array (rclpy), uint8 ndarray (rosbags), list, memoryview."""
    fields = image_to_fields(crop, "bgr8")
    out = image_from_msg(msg_of({**fields, "data": container(fields["data"])}))
    np.testing.assert_array_equal(out, crop)


def test_array_must_match_encoding(crop):
    with pytest.raises(InputError, match=r"'rgba8' needs a \[H, W, 4\] uint8 array, given shape \(37, 54, 3\)"):
        image_to_fields(crop, "rgba8")
    for ok in ("rgb8", "bgr8", "8UC3"):
        assert image_to_fields(crop, ok)["encoding"] == ok
    with pytest.raises(InputError, match="'bgr8' needs"):
        image_to_fields(crop.astype(np.uint16), "bgr8")
    with pytest.raises(InputError, match="'mono8' needs"):
        image_to_fields(crop, "mono8")
    with pytest.raises(InputError, match="has no ROS encoding"):
        image_to_fields(crop.astype(np.int64))
    with pytest.raises(InputError, match="empty array"):
        image_to_fields(np.zeros((0, 5, 3), np.uint8))


def test_non_array_raises_type_error():
    with pytest.raises(TypeError, match="numpy array"):
        image_to_fields(1, "rgba8")


def test_parse_encoding_types():
    """enumerants.py getCvType: 32FC4 != 8UC4, 8UC1 == 8U, 32FC10 has ten channels."""
    assert (parse_encoding("32FC4").dtype, parse_encoding("32FC4").channels) == (np.float32, 4)
    assert (parse_encoding("8UC1").dtype, parse_encoding("8UC1").channels) == (parse_encoding("8U").dtype, 1)
    assert parse_encoding("32FC10").channels == 10
    assert parse_encoding("yuv422").bytes_per_pixel == 2 and parse_encoding("bayer_rggb16").dtype == np.uint16


@pytest.mark.parametrize("encoding", ["32FC1", "32FC10"])
def test_multichannel_float_decodes(crop, encoding):
    """utest.cpp imageMessageConversion: 32FC1 and 32FC10 keep rows, cols and channels."""
    arr = values_for(crop, np.float32, parse_encoding(encoding).channels)
    out = image_from_msg(msg_of(image_to_fields(arr, encoding)))
    assert out.shape[:2] == crop.shape[:2] and (out.ndim == 2 or out.shape[2] == 10)
    np.testing.assert_array_equal(out, arr[:, :, 0] if out.ndim == 2 else arr)


def test_non_contiguous_array_is_packed():
    """utest.cpp NonContinuous: eye(8) 16U column range 2:5 -> height 8, width 3, step 6."""
    view = np.eye(8, dtype=np.uint16)[:, 2:5]
    fields = image_to_fields(view, "16UC1")
    assert (fields["height"], fields["width"], fields["step"]) == (8, 3, 6)
    np.testing.assert_array_equal(image_from_msg(msg_of(fields)), view)


# --- colour conversion to bgr8 (utest2, rosbags-image test_convert_bgr8) -----------------------


@pytest.mark.parametrize("big", [False, True], ids=["little", "big"])
@pytest.mark.parametrize("encoding", COLOR_ENCODINGS)
def test_to_bgr8_colour_and_mono(crop, encoding, big):
    arr = sample_for(encoding, crop)
    fields = image_to_fields(arr.astype(arr.dtype.newbyteorder(">" if big else "<")), encoding)
    bgr = to_bgr8(image_from_msg(msg_of(fields)), encoding)
    assert bgr.shape == crop.shape and bgr.dtype == np.uint8
    src = arr if arr.ndim == 3 else np.dstack([arr] * 3)
    src = src[:, :, :3]
    if encoding.startswith("rgb"):
        src = src[:, :, ::-1]
    expected = np.rint(src.astype(np.float64) * 255.0 / 65535.0) if arr.dtype == np.uint16 else src
    np.testing.assert_array_equal(bgr, expected.astype(np.uint8))


def test_mono16_to_bgr8_scales_linearly():
    """utest.cpp ChannelOrder: mono16 filled with 1000 -> every channel round(1000*255/65535) = 4."""
    out = to_bgr8(np.full((200, 200), 1000, np.uint16), "mono16")
    assert out.dtype == np.uint8 and out.shape == (200, 200, 3) and (out == 4).all()


@pytest.mark.parametrize("encoding", ["8UC1", "8UC3", "16UC1", "32FC1", "64FC3", "8SC4"])
def test_to_bgr8_refuses_non_colour(crop, encoding):
    arr = sample_for(encoding, crop)
    with pytest.raises(InputError, match=rf"{encoding!r} carries no colour information"):
        to_bgr8(arr, encoding)


def test_to_bgr8_checks_the_array(crop):
    with pytest.raises(InputError, match="'rgba8' needs"):
        to_bgr8(crop, "rgba8")


@pytest.mark.parametrize("encoding", YUV_ENCODINGS)
def test_yuv422_to_bgr8(crop, encoding):
    """A real frame packed as UYVY/YUY2 comes back close to the frame; the other layout does not."""
    bgr = crop[:, : crop.shape[1] // 2 * 2]
    packed = sample_for(encoding, crop)
    assert packed.shape == (*bgr.shape[:2], 2)
    decoded = to_bgr8(image_from_msg(msg_of(image_to_fields(packed, encoding))), encoding)
    err = np.abs(decoded.astype(int) - bgr).mean()
    wrong = "yuv422_yuy2" if parse_encoding(encoding).order == "uyvy" else "yuv422"
    err_wrong = np.abs(to_bgr8(packed, wrong).astype(int) - bgr).mean()
    assert err < 6.0 < err_wrong  # 4:2:2 chroma subsampling costs a little colour accuracy


@pytest.mark.parametrize("encoding", BAYER_ENCODINGS)
def test_bayer_demosaic_recovers_the_frame(frame, encoding):
    """Mosaic a real frame with the pattern, demosaic: close to the frame, and the right pattern wins."""
    region = frame[300:460, 400:640]
    raw = sample_for(encoding, region)
    decoded = to_bgr8(image_from_msg(msg_of(image_to_fields(raw, encoding))), encoding)
    err = {}
    for pattern in ("rggb", "bggr", "gbrg", "grbg"):
        other = encoding.replace(parse_encoding(encoding).order, pattern)
        err[pattern] = np.abs(to_bgr8(raw, other)[4:-4, 4:-4].astype(int) - region[4:-4, 4:-4]).mean()
    mine = parse_encoding(encoding).order
    assert np.abs(decoded[4:-4, 4:-4].astype(int) - region[4:-4, 4:-4]).mean() == err[mine]
    assert err[mine] < 8.0
    assert min(v for k, v in err.items() if k != mine) > 1.5 * err[mine]


def test_bayer16_keeps_precision_until_scaling(frame):
    region = frame[300:364, 400:464]
    raw8 = mosaic(region, "rggb")
    np.testing.assert_allclose(
        to_bgr8(raw8.astype(np.uint16) * 257, "bayer_rggb16").astype(int), to_bgr8(raw8, "bayer_rggb8"), atol=1
    )


# --- display of non-colour images (test_dynamic_scaling.cpp, cvtColorForDisplay) ---------------


def test_depth_display_ignores_inf_and_nan():
    row = np.array([[50, 100, 150, -np.inf, np.inf, np.nan]], np.float32)
    out = to_display_bgr8(row, "32FC1")
    assert out.shape == (1, 6, 3)
    assert out[0, :, 0].tolist() == [0, 128, 255, 0, 0, 0] and (out[..., 0] == out[..., 2]).all()


def test_label_display_uses_full_range_and_one_colour_per_id():
    labels = (np.arange(3)[:, None] * 4 + np.arange(4)[None, :]).astype(np.int32)  # ids 0..11
    image = np.kron(labels, np.ones((160, 160), np.int32))  # 480x640, 3x4 grid
    out = to_display_bgr8(image, "32SC1")
    assert out.dtype == np.uint8 and out.shape == (480, 640, 3)
    assert out.min() == 0 and out.max() == 255
    colours = {tuple(out[r * 160 + 5, c * 160 + 5]) for r in range(3) for c in range(4)}
    assert len(colours) == 12
    assert (out[:160, :160] == out[0, 0]).all()


def test_display_of_colour_is_to_bgr8(crop):
    np.testing.assert_array_equal(to_display_bgr8(crop[:, :, ::-1].copy(), "rgb8"), crop)


# --- compressed (conversions.py compressed, test_compression.cpp, rosbags-image) --------------


@pytest.mark.parametrize("fmt", ["jpg", "jpeg", "jpe", "png", "bmp", "dib", "sr", "ras", "tif", "tiff"])
@pytest.mark.parametrize("channels", [None, 1, 3])
def test_compressed_roundtrip_keeps_shape_and_dtype(crop, fmt, channels):
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    arr = crop if channels == 3 else (gray if channels is None else gray[:, :, None])
    fields = image_to_compressed_fields(arr, fmt)
    out = compressed_from_msg(msg_of(fields))
    assert out.dtype == np.uint8 and out.shape == (arr.shape[:2] if channels != 3 else arr.shape)
    # Lossless codecs keep values. OpenCV 5.0.0 decodes 8-bit grey Sun raster (sr/ras) as zeros,
    # so for those only shape/dtype are compared, as cv_bridge's test does for every codec.
    if fmt not in ("jpg", "jpeg", "jpe") and (channels == 3 or fmt not in ("sr", "ras")):
        np.testing.assert_array_equal(out, arr.reshape(out.shape))


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "bgra8", "rgba8", "mono8", "bgr16", "rgba16", "mono16", "16UC1"])
def test_png_is_exact_and_alpha_kept(crop, encoding):
    arr = sample_for(encoding, crop)
    fields = image_to_compressed_fields(arr, "png", encoding=encoding)
    out, out_encoding = decode_compressed(fields["data"], fields["format"])
    expected = arr
    if encoding.startswith("rgb"):
        expected = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]  # OpenCV order after decoding
    np.testing.assert_array_equal(out, expected)
    assert fields["format"].startswith(f"{encoding}; png compressed ")
    assert out_encoding == {3: "bgr", 4: "bgra"}.get(arr.shape[2] if arr.ndim == 3 else 1, "mono") + str(8 * arr.itemsize)


@pytest.mark.parametrize(
    "encoding,expected_format",
    [("bgr8", "bgr8; jpeg compressed bgr8"), ("rgb8", "rgb8; jpeg compressed bgr8"),
     ("mono8", "mono8; jpeg compressed mono8"), ("bgra8", "bgra8; jpeg compressed bgr8"),
     ("mono16", "mono16; jpeg compressed mono8")],
)
def test_jpeg_format_strings_match_image_transport(crop, encoding, expected_format):
    arr = sample_for(encoding, crop)
    fields = image_to_compressed_fields(arr, "jpeg", encoding=encoding)
    assert fields["format"] == expected_format
    out = compressed_from_msg(msg_of(fields))
    assert out.dtype == np.uint8 and out.shape[:2] == arr.shape[:2]
    if encoding in ("bgr8", "rgb8", "bgra8"):
        assert np.abs(out.astype(int) - crop).mean() < 4.0  # BGR order whatever was sent


@pytest.mark.parametrize("fmt", ["jpeg", "png", "bgr8; jpeg compressed bgr8", "rgb8; jpeg compressed bgr8", "rgba8; png compressed bgra8", "", "JPEG"])
def test_accepted_format_fields(crop, fmt):
    codec = "png" if "png" in fmt else "jpeg"
    data = image_to_compressed_fields(crop, codec)["data"]
    assert decode_compressed(data, fmt)[0].shape == crop.shape


def test_one_pixel_png():
    """rosbags-image test_compressed_png: a 1x1 green PNG decodes to [[[0, 255, 0]]]."""
    ok, png = cv2.imencode(".png", np.array([[[0, 255, 0]]], np.uint8))
    assert ok
    assert compressed_from_msg(SimpleNamespace(format="png", data=png.tobytes())).tolist() == [[[0, 255, 0]]]


def test_one_channel_jpeg_decodes_2d(frame):
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    out = compressed_from_msg(msg_of(image_to_compressed_fields(gray, "jpeg")))
    assert out.shape == gray.shape and out.dtype == np.uint8


def test_real_720p_jpeg_quality(frame):
    fields = image_to_compressed_fields(frame, "jpeg", quality=90)
    out = compressed_from_msg(msg_of({**fields, "data": np.frombuffer(fields["data"], np.uint8)}))
    assert out.shape == frame.shape
    assert cv2.PSNR(out, frame) > 35.0
    assert len(fields["data"]) < frame.nbytes / 10


@pytest.mark.parametrize(
    "data,fmt,match",
    [(b"", "jpeg", "empty"), (b"\x00" * 100, "jpeg", "could not be decoded"), (b"\xff\xd8", "gif", "unknown compressed image format"),
     (b"\x00" * 5, "16UC1; compressedDepth png", "truncated"), (b"\x00" * 50, "32FC1; compressedDepth rvl", "RVL")],
)
def test_bad_compressed_data_is_rejected(data, fmt, match):
    with pytest.raises(InputError, match=match):
        compressed_from_msg(SimpleNamespace(format=fmt, data=data))


def test_bad_compression_requests_are_rejected(crop):
    with pytest.raises(InputError, match="unknown compressed format 'gif'"):
        image_to_compressed_fields(crop, "gif")
    with pytest.raises(InputError, match="quality must be in 1..100"):
        image_to_compressed_fields(crop, "jpeg", quality=0)
    with pytest.raises(InputError, match="cannot compress encoding '32FC1'"):
        image_to_compressed_fields(crop[:, :, 0].astype(np.float32), "jpeg", encoding="32FC1")
    with pytest.raises(InputError, match="cannot compress encoding 'bayer_rggb8'"):
        image_to_compressed_fields(crop[:, :, 0].copy(), "png", encoding="bayer_rggb8")


def _compressed_depth(payload_png: bytes, quant_a: float = 0.0, quant_b: float = 0.0) -> bytes:
    # compressed_depth_image_transport: ConfigHeader {int32 format; float depthParam[2]} + PNG
    return struct.pack("<iff", 1, quant_a, quant_b) + payload_png


def test_compressed_depth_16uc1(real_data):
    ids = cv2.imread(str(real_data / INSTANCE_IDS), cv2.IMREAD_UNCHANGED)
    data = _compressed_depth(cv2.imencode(".png", ids)[1].tobytes())
    out, enc = decode_compressed(data, "16UC1; compressedDepth png")
    assert enc == "16UC1"
    np.testing.assert_array_equal(out, ids)


def test_compressed_depth_32fc1_inverse_quantisation():
    q, max_depth = 100.0, 10.0
    quant_a = q * (q + 1.0)
    quant_b = 1.0 - quant_a / max_depth
    depth = np.linspace(0.5, 9.5, 64, dtype=np.float32).reshape(8, 8)
    depth[0, 0] = np.nan  # invalid pixels are stored as 0
    inv = np.where(np.isfinite(depth), quant_a / np.nan_to_num(depth, nan=1.0) + quant_b, 0).round().astype(np.uint16)
    data = _compressed_depth(cv2.imencode(".png", inv)[1].tobytes(), quant_a, quant_b)
    out, enc = decode_compressed(data, "32FC1; compressedDepth png")
    assert enc == "32FC1" and out.dtype == np.float32 and np.isnan(out[0, 0])
    np.testing.assert_allclose(out[1:], depth[1:], rtol=0.01)


# --- the real data set (suggested check 8) ----------------------------------------------------


@pytest.mark.parametrize("relpath", REAL_COLOR)
def test_real_frames_roundtrip(real_data, relpath):
    bgr = cv2.imread(str(real_data / relpath), cv2.IMREAD_COLOR)
    assert bgr is not None
    h, w = bgr.shape[:2]
    for encoding, arr in (("bgr8", bgr), ("rgb8", np.ascontiguousarray(bgr[:, :, ::-1]))):
        fields = image_to_fields(arr, encoding)
        assert (fields["height"], fields["width"], fields["step"]) == (h, w, 3 * w)
        np.testing.assert_array_equal(to_bgr8(image_from_msg(msg_of(fields)), encoding), bgr)
    # 4-byte aligned rows, as some drivers publish (odd widths such as 638 get padding)
    step = (3 * w + 3) // 4 * 4 + 4
    rows = np.zeros((h, step), np.uint8)
    rows[:, : 3 * w] = bgr.reshape(h, -1)
    padded = SimpleNamespace(height=h, width=w, encoding="bgr8", is_bigendian=0, step=step, data=rows.tobytes())
    np.testing.assert_array_equal(image_from_msg(padded), bgr)
    png = image_to_compressed_fields(bgr, "png", png_level=1)
    np.testing.assert_array_equal(compressed_from_msg(msg_of(png)), bgr)
    assert compressed_from_msg(msg_of(image_to_compressed_fields(bgr))).shape == bgr.shape


def test_real_label_mask_mono8(real_data):
    mask = cv2.imread(str(real_data / LABEL_MASK), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (720, 1280) and mask.dtype == np.uint8
    out = image_from_msg(msg_of(image_to_fields(mask, "mono8")))
    np.testing.assert_array_equal(out, mask)
    bgr = to_bgr8(out, "mono8")
    assert (bgr[:, :, 0] == mask).all() and (bgr[:, :, 2] == mask).all()


def test_real_16bit_instance_ids_as_mono16(real_data):
    ids = cv2.imread(str(real_data / INSTANCE_IDS), cv2.IMREAD_UNCHANGED)
    out = image_from_msg(msg_of(image_to_fields(ids, "mono16")))
    np.testing.assert_array_equal(out, ids)
    np.testing.assert_array_equal(to_bgr8(out, "mono16")[:, :, 1], np.rint(ids * (255 / 65535)).astype(np.uint8))

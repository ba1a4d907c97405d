"""ROS ``sensor_msgs/Image`` and ``CompressedImage`` <-> numpy, by message fields only.

The functions read and write the message *fields* (``height``, ``width``, ``encoding``,
``is_bigendian``, ``step``, ``data``; ``format`` and ``data`` for compressed images), never the
message classes, so the same code decodes rclpy messages in the node and rosbags-deserialized
messages in replay. Nothing here imports rclpy (``ros2_nodes/convert.py`` builds the messages).

Encodings follow ROS ``sensor_msgs/image_encodings`` and ``cv_bridge``:

* colour/mono: ``mono8 mono16 bgr8 rgb8 bgra8 rgba8 bgr16 rgb16 bgra16 rgba16``
* generic OpenCV types: ``{8U,8S,16U,16S,32S,32F,64F}C<n>`` (n = 1..512) and the bare depth
  (``8U`` = ``8UC1``)
* packed YUV 4:2:2: ``yuv422`` (= ``uyvy``, byte order U Y0 V Y1) and ``yuv422_yuy2``
  (= ``yuyv``, Y0 U Y1 V); decoded arrays are ``[H, W, 2]`` uint8
* raw Bayer mosaics: ``bayer_{rggb,bggr,gbrg,grbg}{8,16}``; decoded arrays are ``[H, W]``

Decoded arrays are in host byte order, 2-D for one channel and ``[H, W, C]`` otherwise (as
cv_bridge). Row padding (``step > width * bytes_per_pixel``) is removed.
"""
from __future__ import annotations

import re
import struct
import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from perception.errors import InputError

__all__ = [
    "ImageEncoding",
    "parse_encoding",
    "image_from_msg",
    "image_from_fields",
    "image_to_fields",
    "compressed_from_msg",
    "decode_compressed",
    "image_to_compressed_fields",
    "to_bgr8",
    "to_display_bgr8",
]

_MAX_CHANNELS = 512  # OpenCV's CV_CN_MAX, the limit cv_bridge inherits


@dataclass(frozen=True)
class ImageEncoding:
    """What a ROS encoding string means for the pixel buffer."""

    name: str
    dtype: np.dtype  # element type in host byte order
    channels: int
    kind: str  # "color", "mono", "generic", "yuv422", "bayer"
    order: str = ""  # colour order ("bgr", "rgb", "bgra", "rgba"), YUV layout or Bayer pattern

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels

    @property
    def is_color(self) -> bool:
        """True when the pixels carry colour/intensity meaning (cv_bridge's ``isColor || isMono``)."""
        return self.kind != "generic"


_U8, _U16 = np.dtype(np.uint8), np.dtype(np.uint16)

_NAMED: dict[str, ImageEncoding] = {}
for _bits, _dt in (("8", _U8), ("16", _U16)):
    _NAMED[f"mono{_bits}"] = ImageEncoding(f"mono{_bits}", _dt, 1, "mono")
    for _order in ("bgr", "rgb", "bgra", "rgba"):
        _name = f"{_order}{_bits}"
        _NAMED[_name] = ImageEncoding(_name, _dt, len(_order), "color", _order)
    for _pattern in ("rggb", "bggr", "gbrg", "grbg"):
        _name = f"bayer_{_pattern}{_bits}"
        _NAMED[_name] = ImageEncoding(_name, _dt, 1, "bayer", _pattern)
for _name, _layout in (("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"), ("yuyv", "yuyv")):
    _NAMED[_name] = ImageEncoding(_name, _U8, 2, "yuv422", _layout)

_GENERIC_DEPTHS: dict[str, np.dtype] = {
    "8U": np.dtype(np.uint8),
    "8S": np.dtype(np.int8),
    "16U": np.dtype(np.uint16),
    "16S": np.dtype(np.int16),
    "32S": np.dtype(np.int32),
    "32F": np.dtype(np.float32),
    "64F": np.dtype(np.float64),
}
_DEPTH_OF_DTYPE = {dt: name for name, dt in _GENERIC_DEPTHS.items()}
_GENERIC_RE = re.compile(r"(8U|8S|16U|16S|32S|32F|64F)(?:C(\d+))?")

# cv_bridge's mapping: OpenCV names Bayer patterns by the 2x2 block starting at pixel (1, 1),
# ROS by the one at (0, 0), so ROS rggb is OpenCV "BG". Checked by a mosaic/demosaic test.
_BAYER_TO_BGR = {
    "rggb": cv2.COLOR_BayerBG2BGR,
    "bggr": cv2.COLOR_BayerRG2BGR,
    "gbrg": cv2.COLOR_BayerGR2BGR,
    "grbg": cv2.COLOR_BayerGB2BGR,
}
_YUV_TO_BGR = {"uyvy": cv2.COLOR_YUV2BGR_UYVY, "yuyv": cv2.COLOR_YUV2BGR_YUY2}


def _known_encodings_hint() -> str:
    return (
        ", ".join(sorted(_NAMED))
        + ", and {8U,8S,16U,16S,32S,32F,64F}C<n> with n = 1.."
        + str(_MAX_CHANNELS)
    )


def parse_encoding(encoding: str) -> ImageEncoding:
    """Look up a ROS image encoding string.

    Raises:
        InputError: the encoding is not a ROS/cv_bridge encoding; the message lists the valid ones.
    """
    if not isinstance(encoding, str):
        raise InputError(f"image encoding must be a str, got {type(encoding).__name__} {encoding!r}")
    if encoding in _NAMED:
        return _NAMED[encoding]
    match = _GENERIC_RE.fullmatch(encoding)
    if match:
        channels = int(match.group(2) or 1)
        if 1 <= channels <= _MAX_CHANNELS:
            return ImageEncoding(encoding, _GENERIC_DEPTHS[match.group(1)], channels, "generic")
    raise InputError(f"unknown image encoding {encoding!r}; known encodings: {_known_encodings_hint()}")


def _as_uint8_buffer(data: Any, field: str) -> np.ndarray:
    """View ``data`` (bytes, bytearray, array.array('B'), memoryview or uint8 ndarray) as flat uint8."""
    if data is None:
        raise InputError(f"message field {field!r} is missing (None)")
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise InputError(f"message field {field!r} must hold uint8 bytes, got dtype {data.dtype}")
        return data.reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        # A plain list of ints (e.g. a hand-built message); slow but correct.
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError) as err:
            raise InputError(
                f"message field {field!r} must be bytes or a uint8 sequence, got {type(data).__name__}"
            ) from err


def _host_is_big() -> bool:
    return sys.byteorder == "big"


def image_from_fields(
    *,
    height: int,
    width: int,
    encoding: str,
    is_bigendian: int | bool,
    step: int,
    data: Any,
    copy: bool = True,
) -> np.ndarray:
    """Decode raw image fields into an array; see :func:`image_from_msg`."""
    enc = parse_encoding(encoding)
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise InputError(
            f"image has zero size: height={height}, width={width} (encoding {encoding!r}); "
            "both must be >= 1"
        )
    if enc.kind == "yuv422" and width % 2:
        raise InputError(f"encoding {encoding!r} packs pixel pairs; width must be even, got {width}")
    row_bytes = width * enc.bytes_per_pixel
    if step < row_bytes:
        raise InputError(
            f"image step is too small: expected step >= width * bytes_per_pixel = {width} * "
            f"{enc.bytes_per_pixel} = {row_bytes} for {encoding!r}, given step={step}"
        )
    buf = _as_uint8_buffer(data, "data")
    expected = step * height
    if buf.size != expected:
        what = "empty" if buf.size == 0 else ("truncated" if buf.size < expected else "too long")
        raise InputError(
            f"image data is {what}: expected step * height = {step} * {height} = {expected} bytes, "
            f"given {buf.size} bytes (encoding {encoding!r}, width {width})"
        )
    rows = buf.reshape(height, step)
    if step != row_bytes:
        rows = rows[:, :row_bytes]  # drop row padding
    packed = np.ascontiguousarray(rows)  # copies only when padded
    wire = enc.dtype.newbyteorder(">" if is_bigendian else "<")
    out = packed.view(wire)
    if enc.dtype.itemsize > 1 and bool(is_bigendian) != _host_is_big():
        out = out.astype(enc.dtype)  # byte-swap into host order (always a copy)
    else:
        out = out.view(enc.dtype)
    shape = (height, width) if enc.channels == 1 else (height, width, enc.channels)
    out = out.reshape(shape)
    if np.may_share_memory(out, buf):
        if copy:
            out = out.copy()
        else:
            out.flags.writeable = False  # a view into the message: never write through it
    return out


def image_from_msg(msg: Any, *, copy: bool = True) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` (rclpy or rosbags) into a numpy array.

    Args:
        msg: any object with ``height, width, encoding, is_bigendian, step, data`` attributes.
            ``data`` may be bytes, ``array.array('B')`` (rclpy) or a uint8 ndarray (rosbags).
        copy: when False and no row padding or byte swap forces a copy, return a read-only view
            into ``msg.data`` (zero-copy). The default returns an array that owns its memory.

    Returns:
        ``[H, W]`` for one channel, ``[H, W, C]`` otherwise, dtype from the encoding, host byte
        order, row padding removed. YUV 4:2:2 comes back as ``[H, W, 2]`` uint8 and Bayer as
        ``[H, W]``; use :func:`to_bgr8` to get colour.

    Raises:
        InputError: unknown encoding, zero size, step smaller than a row, or data length not
            ``step * height`` (empty or truncated); the message names the field, the expected
            and the given value.

    Example:
        >>> bgr = to_bgr8(image_from_msg(msg), msg.encoding)
    """
    return image_from_fields(
        height=msg.height,
        width=msg.width,
        encoding=msg.encoding,
        is_bigendian=msg.is_bigendian,
        step=msg.step,
        data=msg.data,
        copy=copy,
    )


def _check_array(array: Any, what: str) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{what} expects a numpy array, got {type(array).__name__}")
    if array.ndim not in (2, 3):
        raise InputError(f"{what} expects a [H, W] or [H, W, C] array, got shape {array.shape}")
    if array.size == 0:
        raise InputError(f"{what} got an empty array of shape {array.shape}; height and width must be >= 1")
    return array


def _passthrough_encoding(array: np.ndarray) -> str:
    depth = _DEPTH_OF_DTYPE.get(array.dtype.newbyteorder("="))
    if depth is None:
        raise InputError(
            f"array dtype {array.dtype} has no ROS encoding; use one of "
            f"{', '.join(str(d) for d in _DEPTH_OF_DTYPE)}"
        )
    channels = 1 if array.ndim == 2 else array.shape[2]
    return f"{depth}C{channels}"


def _check_matches(array: np.ndarray, enc: ImageEncoding) -> None:
    channels = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype.newbyteorder("=") != enc.dtype or channels != enc.channels:
        want = (
            f"[H, W] or [H, W, 1] {enc.dtype}"
            if enc.channels == 1
            else f"[H, W, {enc.channels}] {enc.dtype}"
        )
        raise InputError(
            f"encoding {enc.name!r} needs a {want} array, given shape {array.shape} dtype "
            f"{array.dtype}; pass encoding='passthrough' to derive the encoding from the array"
        )
    if enc.kind == "yuv422" and array.shape[1] % 2:
        raise InputError(f"encoding {enc.name!r} packs pixel pairs; width must be even, got {array.shape[1]}")


def image_to_fields(array: np.ndarray, encoding: str = "passthrough") -> dict[str, Any]:
    """Encode an array as ``sensor_msgs/Image`` fields (everything but the header).

    Args:
        array: ``[H, W]`` or ``[H, W, C]``; any memory layout (it is packed row by row).
        encoding: a ROS encoding that must match the array's dtype and channels, or
            ``"passthrough"`` for ``<depth>C<n>`` (e.g. ``8UC3``) as cv_bridge does.

    Returns:
        ``dict(height, width, encoding, is_bigendian, step, data)`` where ``data`` is ``bytes``
        (``step * height`` long, no padding). ``is_bigendian`` follows the array's byte order.
        rclpy needs ``array.array('B', ...)`` for speed (``ros2_nodes.convert`` does that); for
        rosbags messages use ``np.frombuffer(fields["data"], np.uint8)``.

    Raises:
        TypeError: ``array`` is not a numpy array.
        InputError: empty array, unsupported dtype, or an encoding that does not match.
    """
    array = _check_array(array, "image_to_fields")
    if encoding == "passthrough":
        encoding = _passthrough_encoding(array)
    enc = parse_encoding(encoding)
    _check_matches(array, enc)
    height, width = array.shape[:2]
    order = array.dtype.byteorder
    big = order == ">" or (order == "=" and _host_is_big())
    data = np.ascontiguousarray(array).tobytes()
    return {
        "height": int(height),
        "width": int(width),
        "encoding": enc.name,
        "is_bigendian": int(big),
        "step": int(width * enc.bytes_per_pixel),
        "data": data,
    }


# --- colour conversion ------------------------------------------------------------------------


def _to_u8(array: np.ndarray) -> np.ndarray:
    """16-bit -> 8-bit by value * 255 / 65535, rounded (cv_bridge's linear scaling)."""
    if array.dtype == np.uint8:
        return array
    return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _check_decoded(array: np.ndarray, enc: ImageEncoding) -> np.ndarray:
    array = _check_array(array, f"conversion from {enc.name!r}")
    if array.ndim == 3 and array.shape[2] == 1 and enc.channels == 1:
        array = array[:, :, 0]
    _check_matches(array, enc)
    return array


def to_bgr8(array: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a decoded image to ``[H, W, 3]`` uint8 BGR, the engine's input format.

    Handles mono, rgb/bgr(a), their 16-bit variants (scaled by 255/65535), YUV 4:2:2 (UYVY and
    YUY2) and the four Bayer patterns (8 and 16 bit, demosaiced bilinearly by OpenCV). A C-contiguous
    ``bgr8`` input is returned as is (not copied).

    Raises:
        InputError: unknown encoding, array not matching the encoding, or a non-colour encoding
            (``32FC1``, ``8UC3``, ...) that has no colour meaning (cv_bridge refuses these too;
            :func:`to_display_bgr8` shows them scaled).
    """
    enc = parse_encoding(encoding)
    if not enc.is_color:
        raise InputError(
            f"encoding {encoding!r} carries no colour information, so it cannot be converted to "
            "bgr8; publish a colour encoding (bgr8, rgb8, mono8, ...) or use to_display_bgr8()"
        )
    array = _check_decoded(array, enc)
    if enc.kind == "yuv422":
        return cv2.cvtColor(np.ascontiguousarray(array), _YUV_TO_BGR[enc.order])
    if enc.kind == "bayer":
        # Demosaic at full bit depth, then scale: keeps 16-bit sensors' precision until the end.
        return _to_u8(cv2.cvtColor(np.ascontiguousarray(array), _BAYER_TO_BGR[enc.order]))
    array8 = _to_u8(array)
    if enc.kind == "mono":
        return cv2.cvtColor(array8, cv2.COLOR_GRAY2BGR)
    if enc.order == "bgr":
        return np.ascontiguousarray(array8)
    code = {"rgb": cv2.COLOR_RGB2BGR, "bgra": cv2.COLOR_BGRA2BGR, "rgba": cv2.COLOR_RGBA2BGR}[enc.order]
    return cv2.cvtColor(np.ascontiguousarray(array8), code)


def _label_colors(labels: np.ndarray) -> np.ndarray:
    """Deterministic distinct colours per integer label (cv_bridge's label colormap idea)."""
    ids, inverse = np.unique(labels, return_inverse=True)
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, size=(max(int(ids.size), 2), 3), dtype=np.uint8)
    palette[0] = 0
    palette[-1] = 255  # spans the full [0, 255] range, whatever the ids
    return palette[inverse.reshape(labels.shape)]


def to_display_bgr8(array: np.ndarray, encoding: str) -> np.ndarray:
    """Like :func:`to_bgr8`, but also shows non-colour images (depth, labels) for humans.

    One-channel float/int images are scaled from their finite min/max to 0..255 grey with
    ``inf``/``nan`` shown as 0 (cv_bridge ``do_dynamic_scaling``); ``32SC1`` is treated as
    labels and coloured per id. Three/four-channel generic images are scaled per image.
    """
    enc = parse_encoding(encoding)
    if enc.is_color:
        return to_bgr8(array, encoding)
    array = _check_decoded(array, enc)
    if enc.channels == 1 and enc.dtype == np.int32:
        return _label_colors(array)
    if enc.channels not in (1, 3, 4):
        raise InputError(f"cannot display {encoding!r}: only 1, 3 or 4 channels, got {enc.channels}")
    values = array.astype(np.float64)
    finite = np.isfinite(values)
    out = np.zeros(values.shape, np.uint8)
    if finite.any():
        lo, hi = values[finite].min(), values[finite].max()
        span = hi - lo if hi > lo else np.inf
        # multiply before dividing: 50 of 100 is exactly 127.5, which rounds to 128 like cvRound
        out[finite] = np.clip(np.rint((values[finite] - lo) * 255.0 / span), 0, 255).astype(np.uint8)
    if enc.channels == 1:
        return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(out[:, :, :3])


# --- compressed images --------------------------------------------------------------------------

_JPEG_NAMES = {"jpeg", "jpg", "jpe"}
_OTHER_FORMATS = {"png", "bmp", "dib", "tif", "tiff", "webp", "sr", "ras"}
# compressed_depth_image_transport header: int32 format + float32 depthParam[2], little-endian.
_DEPTH_HEADER = struct.Struct("<iff")


def _opencv_encoding(array: np.ndarray) -> str:
    """Name the encoding of an array in OpenCV order: mono/bgr/bgra 8 or 16 bit, else generic."""
    if array.dtype.newbyteorder("=") not in (_U8, _U16):
        return _passthrough_encoding(array)
    channels = 1 if array.ndim == 2 else array.shape[2]
    bits = "16" if array.dtype.itemsize == 2 else "8"
    return {1: f"mono{bits}", 3: f"bgr{bits}", 4: f"bgra{bits}"}.get(channels, _passthrough_encoding(array))


def _decode_compressed_depth(buf: np.ndarray, fmt: str, original: str) -> tuple[np.ndarray, str]:
    if "png" not in fmt:
        raise InputError(
            f"compressed depth format {fmt!r} is not supported; only 'compressedDepth png' "
            "(16UC1 or 32FC1) is (RVL is not)"
        )
    if buf.size <= _DEPTH_HEADER.size:
        raise InputError(
            f"compressedDepth data is truncated: expected a {_DEPTH_HEADER.size}-byte header plus "
            f"a PNG, given {buf.size} bytes"
        )
    _, quant_a, quant_b = _DEPTH_HEADER.unpack(buf[: _DEPTH_HEADER.size].tobytes())
    inv = cv2.imdecode(buf[_DEPTH_HEADER.size :], cv2.IMREAD_UNCHANGED)
    if inv is None or inv.dtype != np.uint16 or inv.ndim != 2:
        raise InputError(f"compressedDepth payload of format {fmt!r} is not a 16-bit one-channel PNG")
    if original == "16UC1" or original == "mono16":
        return inv, original
    if original != "32FC1":
        raise InputError(f"compressedDepth supports 16UC1 and 32FC1 images, format says {original!r}")
    # compressed_depth_image_transport stores inverse depth: depth = A / (inv - B); inv 0 -> NaN.
    inv_f = inv.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(inv > 0, np.float32(quant_a) / (inv_f - np.float32(quant_b)), np.nan)
    return depth.astype(np.float32), "32FC1"


def decode_compressed(data: Any, fmt: str) -> tuple[np.ndarray, str]:
    """Decode ``CompressedImage`` fields; return the array and the encoding that describes it.

    ``fmt`` may be a bare codec (``"jpeg"``, ``"png"``, ...), image_transport's
    ``"<encoding>; <jpeg|png> compressed <encoding>"`` or compressed_depth_image_transport's
    ``"<16UC1|32FC1>; compressedDepth png"``. The array is in OpenCV order (``bgr8``, ``bgra8``,
    ``mono8``, ``bgr16``, ...), whatever the original encoding was (``rgb8; jpeg compressed bgr8``
    decodes to bgr8), as cv_bridge's passthrough does; depth images keep their original encoding.

    Raises:
        InputError: empty data, unknown codec, or bytes that do not decode.
    """
    if not isinstance(fmt, str):
        raise InputError(f"compressed image format must be a str, got {type(fmt).__name__}")
    buf = _as_uint8_buffer(data, "data")
    if buf.size == 0:
        raise InputError(f"compressed image data is empty (format {fmt!r}); expected encoded bytes")
    original, _, rest = fmt.partition(";") if ";" in fmt else ("", "", fmt)
    original, rest = original.strip(), rest.strip()
    if "compresseddepth" in rest.lower():
        return _decode_compressed_depth(buf, rest.lower(), original)
    codec = rest.split()[0].lower() if rest else ""
    if codec and codec not in _JPEG_NAMES | _OTHER_FORMATS:
        raise InputError(
            f"unknown compressed image format {fmt!r}; expected jpeg, png (optionally as "
            "'<encoding>; jpeg compressed bgr8') or another OpenCV codec: "
            f"{', '.join(sorted(_OTHER_FORMATS))}"
        )
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        image = None
    if image is None:
        raise InputError(
            f"compressed image data ({buf.size} bytes) could not be decoded as format {fmt!r}"
        )
    return image, _opencv_encoding(image)


def compressed_from_msg(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (rclpy or rosbags) into a numpy array.

    Returns the image in OpenCV channel order (``bgr8``/``mono8``/``bgra8``, or 16-bit for 16-bit
    PNGs); see :func:`decode_compressed` for the formats and for getting the encoding too.

    Raises:
        InputError: empty data, unknown format or undecodable bytes.
    """
    return decode_compressed(msg.data, msg.format)[0]


def image_to_compressed_fields(
    array: np.ndarray,
    fmt: str = "jpeg",
    quality: int = 90,
    *,
    encoding: str | None = None,
    png_level: int = 3,
) -> dict[str, Any]:
    """Encode an array as ``CompressedImage`` fields, format strings as image_transport writes them.

    Args:
        array: the image. Colour is taken as BGR unless ``encoding`` says otherwise.
        fmt: ``"jpeg"``/``"jpg"`` or ``"png"`` (also bmp, tiff, webp, ... as bare formats).
        quality: JPEG/WebP quality 1..100.
        encoding: the array's ROS encoding; default ``mono8/bgr8/bgra8`` (or 16-bit) from its
            shape and dtype. ``rgb8`` etc. are reordered to BGR before encoding, as
            image_transport does, and the format string keeps the original name.
        png_level: PNG compression level 0..9 (image_transport's default 3).

    Returns:
        ``dict(format=..., data=bytes)``, e.g. format ``"bgr8; jpeg compressed bgr8"`` or
        ``"rgba8; png compressed bgra8"``. JPEG drops alpha and scales 16-bit to 8-bit; PNG is
        lossless for 8/16-bit 1/3/4-channel images.

    Raises:
        InputError: unsupported format/encoding combination, or the encoder failed.
    """
    array = _check_array(array, "image_to_compressed_fields")
    codec = fmt.lower().strip()
    if codec not in _JPEG_NAMES | _OTHER_FORMATS:
        raise InputError(
            f"unknown compressed format {fmt!r}; use 'jpeg' or 'png' (or one of "
            f"{', '.join(sorted(_OTHER_FORMATS - {'png'}))})"
        )
    if not 1 <= int(quality) <= 100:
        raise InputError(f"quality must be in 1..100, given {quality!r}")
    if encoding is None:
        encoding = _opencv_encoding(array)
    enc = parse_encoding(encoding)
    array = _check_decoded(array, enc)
    is_jpeg = codec in _JPEG_NAMES
    if enc.kind in ("yuv422", "bayer") or (is_jpeg and not enc.is_color):
        raise InputError(
            f"cannot compress encoding {encoding!r} as {fmt!r}; JPEG needs a colour/mono encoding "
            "and YUV/Bayer must be converted with to_bgr8() first"
        )
    if not enc.is_color and (enc.dtype not in (_U8, _U16) or enc.channels not in (1, 3, 4)):
        raise InputError(f"cannot compress {encoding!r}: only 8/16-bit 1/3/4-channel images")
    # Reorder to what OpenCV writes (BGR[A]); keep mono/generic as is.
    if enc.kind == "color" and enc.order.startswith("rgb"):
        array = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2BGR if enc.channels == 3 else cv2.COLOR_RGBA2BGRA)
    array = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("="), copy=False)
    if is_jpeg:
        array = _to_u8(array)
        if array.ndim == 3 and array.shape[2] == 4:
            array = cv2.cvtColor(array, cv2.COLOR_BGRA2BGR)
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        name = "jpeg"
    elif codec == "png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)]
        name = "png"
    else:
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)] if codec == "webp" else []
        name = codec
    try:
        ok, encoded = cv2.imencode("." + name, array, params)
    except cv2.error as err:
        raise InputError(f"OpenCV could not encode a {array.shape} {array.dtype} image as {fmt!r}: {err}") from err
    if not ok:
        raise InputError(f"OpenCV could not encode a {array.shape} {array.dtype} image as {fmt!r}")
    if name in ("jpeg", "png"):
        out_format = f"{enc.name}; {name} compressed {_opencv_encoding(array) if enc.is_color else enc.name}"
    else:
        out_format = name
    return {"format": out_format, "data": encoded.tobytes()}

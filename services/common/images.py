"""Encoding and guarded decoding of frame images.

Decoding checks the declared dimensions in the header before any pixel is
decompressed, so a decompression bomb is refused cheaply.
"""

from __future__ import annotations

import hashlib
import struct

import cv2
import numpy as np

from services.common.errors import BadInput

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def encode_png(image: np.ndarray, level: int = 1) -> bytes:
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise ValueError(f"cv2 could not encode an image of shape {image.shape} as PNG")
    return buf.tobytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, without decoding."""
    if len(data) < 24 or not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        raise BadInput("corrupt_image", f"not a PNG image ({len(data)} bytes)")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def decode_image(
    data: bytes, encoding: str, max_pixels: int, expect: tuple[int, int, int] | None = None
) -> np.ndarray:
    """Decode to HxWxC uint8 (BGR) or HxW for mono; refuse anything over `max_pixels`."""
    if encoding == "png":
        width, height = png_size(data)
        if width * height > max_pixels:
            raise BadInput(
                "image_too_large",
                f"PNG declares {width}x{height} = {width * height} px, over the limit of {max_pixels}",
            )
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise BadInput(
                "corrupt_image", f"PNG of {width}x{height} failed to decode ({len(data)} bytes)"
            )
    elif encoding == "raw":
        if expect is None:
            raise BadInput("corrupt_image", "raw image without declared width/height/channels")
        w, h, c = expect
        if w * h > max_pixels:
            raise BadInput(
                "image_too_large", f"raw image {w}x{h} over the limit of {max_pixels} px"
            )
        if len(data) != w * h * c:
            raise BadInput("corrupt_image", f"raw image of {len(data)} bytes, expected {w}x{h}x{c}")
        image = np.frombuffer(data, np.uint8).reshape((h, w, c) if c > 1 else (h, w))
    else:
        raise BadInput("unsupported_encoding", f"image encoding {encoding!r} is not png or raw")
    if expect is not None:
        w, h, _ = expect
        if image.shape[1] != w or image.shape[0] != h:
            raise BadInput(
                "corrupt_image", f"image is {image.shape[1]}x{image.shape[0]}, message says {w}x{h}"
            )
    return image

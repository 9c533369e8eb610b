"""GenICam pixel formats to the numpy images the pipeline carries (uint8, mono or BGR)."""

from __future__ import annotations

import cv2
import numpy as np

# GenICam names the colour of the first two pixels (BayerRG8: R G / G B); so do OpenCV's
# *RGGB* style constants (its older BayerBG names are shifted by one)
_BAYER = {
    "BayerRG8": cv2.COLOR_BayerRGGB2BGR,
    "BayerGR8": cv2.COLOR_BayerGRBG2BGR,
    "BayerGB8": cv2.COLOR_BayerGBRG2BGR,
    "BayerBG8": cv2.COLOR_BayerBGGR2BGR,
}
FORMATS = ("Mono8", "Mono16", "RGB8", *_BAYER)


def to_image(
    data: bytes, width: int, height: int, pixel_format: str, mono16_bits: int = 16
) -> np.ndarray:
    """One camera buffer as an image: Mono8 HxW, Mono16 scaled to 8 bits, colour as BGR.

    `mono16_bits`: how many bits of a Mono16 pixel the sensor fills (12 for a 12-bit
    sensor that right-aligns); the top 8 of them are kept, the same shift for every frame.

    Raises ValueError when the buffer is shorter than the format needs (an incomplete
    frame) or the format is not one ingest knows.
    """
    if pixel_format not in FORMATS:
        raise ValueError(f"pixel format {pixel_format!r} not supported; use one of {FORMATS}")
    depth = {"Mono16": 2, "RGB8": 3}.get(pixel_format, 1)
    need = width * height * depth
    if len(data) < need:
        raise ValueError(f"{pixel_format} {width}x{height} needs {need} bytes, got {len(data)}")
    if pixel_format == "Mono16":
        raw = np.frombuffer(data, "<u2", width * height).reshape(height, width)
        # the pipeline's models see 8 bits: the most significant ones, a fixed shift
        return np.minimum(raw >> (mono16_bits - 8), 255).astype(np.uint8)
    raw = np.frombuffer(data, np.uint8, need)
    if pixel_format == "Mono8":
        return raw.reshape(height, width).copy()
    if pixel_format == "RGB8":
        return cv2.cvtColor(raw.reshape(height, width, 3), cv2.COLOR_RGB2BGR)
    return cv2.cvtColor(raw.reshape(height, width), _BAYER[pixel_format])

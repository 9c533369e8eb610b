"""Tiling: frames -> preprocessed tile chunks (raw float16 tensors, never re-encoded)."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from defectflow.v1 import common_pb2, frames_pb2, tiles_pb2
from kafka.consumer.fetcher import ConsumerRecord

from services.common import topics
from services.common.blobstore import LocalBlobStore
from services.common.codec import decode, stamp
from services.common.domain import TileRect
from services.common.errors import BadInput, about_frame
from services.common.images import decode_image
from services.common.logs import setup_logging
from services.common.recipes import RecipeBook, Tiling
from services.common.stage import Handled, Output, StatelessHandler, dead_letter, run_stage
from services.common.tensors import to_tensor
from services.tiling.config import TilingSettings
from services.tiling.logic import (
    chunk_ranges,
    condition,
    inside_frame,
    plan_tiles,
    preprocess,
    windows,
)


@lru_cache(maxsize=16)
def _table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Model input of every uint8 value per RGB channel, computed exactly as
    logic.preprocess computes it (same float32 operations, then float16)."""
    scale = np.float32(1.0 / 255.0) / np.asarray(std, np.float32)
    shift = np.asarray(mean, np.float32) / np.asarray(std, np.float32)
    values = np.arange(256, dtype=np.float32)
    return (values[None, :] * scale[:, None] - shift[:, None]).astype(np.float16)


def preprocess_tiles(image: np.ndarray, rects: list[TileRect], t: Tiling) -> np.ndarray:
    """logic.preprocess, bit for bit, at a fraction of the CPU: the frame is normalised once
    through a 256-entry table per channel and tiles are sliced out of it, instead of every
    (overlapping) tile being converted in float32. Tiles that need resizing, and images
    that are not 8-bit mono or BGR, take logic.preprocess itself."""
    s = t.input_size
    mono = image.ndim == 2
    if (
        image.dtype != np.uint8
        or not (mono or (image.ndim == 3 and image.shape[2] == 3))
        or any(r.width != s or r.height != s for r in rects)
    ):
        return preprocess(image, rects, s, t.mean, t.std)
    lut = _table(tuple(t.mean), tuple(t.std))
    out = np.empty((len(rects), 3, s, s), np.float16)
    if not rects:
        return out
    image, rects = inside_frame(image, rects)
    x0, y0 = min(r.x for r in rects), min(r.y for r in rects)  # only the tiles' extent
    x1, y1 = max(r.x1 for r in rects), max(r.y1 for r in rects)
    area = image[y0:y1, x0:x1]
    chw = np.empty((3, y1 - y0, x1 - x0), np.float16)
    for c in range(3):  # RGB order from BGR
        np.take(lut[c], area if mono else area[:, :, 2 - c], out=chw[c])
    for i, r in enumerate(rects):
        out[i] = chw[:, r.y - y0 : r.y1 - y0, r.x - x0 : r.x1 - x0]
    return out


class TilingHandler(StatelessHandler):
    def __init__(self, settings: TilingSettings) -> None:
        self.blobs = LocalBlobStore(settings.blob_root)
        self.recipes = RecipeBook(settings.recipes_dir)
        self.instance = settings.instance or socket.gethostname()

    def handle(self, records: Sequence[ConsumerRecord]) -> Handled:
        out = Handled(done=list(records))
        for record in records:
            try:
                out.outputs += self.tile(record)
            except BadInput as err:
                out.outputs.append(dead_letter("tiling", record, err))
        return out

    def load_image(self, ref: common_pb2.ImageRef, max_pixels: int):
        if ref.HasField("blob_uri"):
            try:
                data = self.blobs.get(ref.blob_uri)
            except (OSError, ValueError) as exc:
                raise BadInput("missing_blob", f"cannot read {ref.blob_uri}: {exc}") from exc
        else:
            data = ref.inline_data
        return decode_image(data, ref.encoding, max_pixels, (ref.width, ref.height, ref.channels))

    def tile(self, record: ConsumerRecord) -> list[Output]:
        received = time.time_ns()
        frame = decode(frames_pb2.Frame, record.value)
        ctx = frame.context
        with about_frame(ctx.frame_id):
            recipe = self.recipes.require(ctx.recipe_id)
            image = self.load_image(ctx.image, recipe.max_image_pixels)
            cond = condition(image, recipe)  # an unfitted registration is this frame's letter
        image = cond.image
        ctx.review_reasons.extend(cond.review)
        if cond.part_to_frame is not None:
            ctx.part_to_frame.extend(cond.part_to_frame.ravel().tolist())
        roi, rects = plan_tiles(recipe, image.shape[1], image.shape[0])
        t = recipe.tiling
        pixels = preprocess_tiles(image, windows(rects, t.context_px), t)
        ctx.recipe_version = recipe.version
        chunks = chunk_ranges(len(rects), pixels[0].nbytes, t.chunk_bytes)
        outputs = []
        for ci, idx in enumerate(chunks):
            msg = tiles_pb2.TileChunk(
                schema_version=topics.SCHEMA_VERSION,
                context=ctx,
                tiles_total=len(rects),
                chunk_index=ci,
                chunks_total=len(chunks),
                roi_x=roi.x,
                roi_y=roi.y,
                roi_width=roi.width,
                roi_height=roi.height,
            )
            msg.stamps.extend(frame.stamps)
            for i in idx:
                rc = rects[i]
                msg.tiles.add(
                    rect=common_pb2.TileRect(
                        index=rc.index, x=rc.x, y=rc.y, width=rc.width, height=rc.height
                    ),
                    pixels=to_tensor(pixels[i]),
                )
            stamp(msg, "tiling", received, time.time_ns(), self.instance)
            outputs.append(Output(topics.TILES, record.key, msg.SerializeToString()))
        return outputs


def main() -> None:
    settings = TilingSettings()
    setup_logging("tiling", settings.log_level)
    run_stage("tiling", topics.FRAMES, TilingHandler(settings), settings)


if __name__ == "__main__":
    main()

"""A stored frame's pixels, from the blob store or the record's inline image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from defectflow.v1 import inspections_pb2

from services.common.blobstore import BlobStore
from services.common.domain import DefectRecord
from services.common.errors import BadInput
from services.common.images import decode_image, sha256


class ImageGone(LookupError):
    """The image was removed by retention or is missing from the blob store."""


class ImageCorrupt(ValueError):
    """The stored bytes do not match the recorded checksum or do not decode."""


@dataclass(frozen=True)
class Frame:
    inspection: inspections_pb2.Inspection
    encoded: bytes  # as stored
    encoding: str


def load_frame(row, blobs: BlobStore | None) -> Frame:
    """`row` from db.image_source: payload, image_uri, image_data, image_purged."""
    msg = inspections_pb2.Inspection.FromString(row.payload)
    ref = msg.context.image
    frame_id = msg.context.frame_id
    if row.image_purged:
        raise ImageGone(f"the image of {frame_id} was removed by the retention policy")
    if row.image_data is not None:
        data = bytes(row.image_data)
    elif row.image_uri:
        if blobs is None:
            raise ImageGone(f"no blob store configured to read {row.image_uri}")
        try:
            data = blobs.get(row.image_uri)
        except FileNotFoundError as exc:
            raise ImageGone(f"the image of {frame_id} is missing: {row.image_uri}") from exc
        except ValueError as exc:
            raise ImageGone(f"the image of {frame_id} is not readable here: {exc}") from exc
    else:
        raise ImageGone(f"inspection {frame_id} has no image")
    if ref.sha256 and sha256(data) != ref.sha256:
        raise ImageCorrupt(f"the image of {frame_id} does not match its recorded SHA-256")
    return Frame(msg, data, ref.encoding or "png")


def decode_frame(frame: Frame, max_pixels: int) -> np.ndarray:
    ref = frame.inspection.context.image
    expect = (ref.width, ref.height, ref.channels or 1) if frame.encoding == "raw" else None
    try:
        return decode_image(frame.encoded, frame.encoding, max_pixels, expect)
    except BadInput as exc:
        raise ImageCorrupt(f"the image of {frame.inspection.context.frame_id}: {exc}") from exc


def defect_records(msg: inspections_pb2.Inspection) -> list[DefectRecord]:
    return [
        DefectRecord(
            defect_class=d.defect_class,
            score=d.score,
            box=(d.box.x0, d.box.y0, d.box.x1, d.box.y1),
            area_px=d.area_px,
            area_mm2=d.area_mm2,
            contour=tuple((p.x, p.y) for p in d.contour),
            source=d.source,
        )
        for d in msg.defects
    ]

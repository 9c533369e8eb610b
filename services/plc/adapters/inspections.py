"""The plc service's input edge: an inspection record read as one camera's view of a part
(the OPC UA side, verdicts out and part triggers in, is services/common/opcua.py)."""

from __future__ import annotations

from defectflow.v1 import inspections_pb2
from kafka.consumer.fetcher import ConsumerRecord

from services.common.codec import decode
from services.common.errors import BadInput
from services.plc.logic import View, verdict_from_inspection


def read_view(record: ConsumerRecord) -> tuple[str, str, View]:
    """(station, part id, the camera's view) of one inspection record. Raises BadInput."""
    msg = decode(inspections_pb2.Inspection, record.value)
    ctx = msg.context
    if not ctx.part_id:
        raise BadInput("missing_part_id", "inspection without context.part_id", ctx.frame_id)
    top = max(msg.defects, key=lambda d: d.score, default=None)
    code = top.defect_class if top is not None else ""
    view = View(ctx.source.camera, verdict_from_inspection(msg.verdict), code, ctx.frame_id)
    return ctx.source.station, ctx.part_id, view

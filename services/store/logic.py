"""Store decisions: which columns an inspection becomes, and page sizes."""

from __future__ import annotations

from defectflow.v1 import inspections_pb2


def inspection_row(
    msg: inspections_pb2.Inspection, payload: bytes, stored_ns: int
) -> tuple[dict, list[dict]]:
    ctx = msg.context
    done_ns = max(
        (s.sent_unix_ns for s in msg.stamps if s.stage == "postprocess"), default=stored_ns
    )
    row = {
        "frame_id": ctx.frame_id,
        "part_id": ctx.part_id,
        "line": ctx.source.line,
        "station": ctx.source.station,
        "camera": ctx.source.camera,
        "captured_unix_ns": ctx.captured_unix_ns,
        "stored_unix_ns": stored_ns,
        "recipe_id": ctx.recipe_id,
        "recipe_version": ctx.recipe_version,
        "model_versions": dict(msg.model_versions),
        "verdict": int(msg.verdict),
        "score": float(msg.score),
        "complete": bool(msg.complete),
        "latency_s": max(0.0, (done_ns - ctx.captured_unix_ns) / 1e9),
        "image_uri": ctx.image.blob_uri if ctx.image.HasField("blob_uri") else "",
        "payload": payload,
    }
    defects = [
        {
            "defect_class": d.defect_class,
            "score": d.score,
            "x0": d.box.x0,
            "y0": d.box.y0,
            "x1": d.box.x1,
            "y1": d.box.y1,
            "area_px": d.area_px,
            "area_mm2": d.area_mm2,
            "source": d.source,
        }
        for d in msg.defects
    ]
    return row, defects


def page_size(requested: int, maximum: int, default: int = 100) -> int:
    if requested <= 0:
        return min(default, maximum)
    return min(requested, maximum)

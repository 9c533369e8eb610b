"""The console's only data source: the store's InspectionQuery gRPC API (grpc.aio), called
with the signed-in user's own bearer token, so the store decides what each user may do."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc
from defectflow.v1 import query_pb2, query_pb2_grpc

from services.console.logic import ExportRow, iso, verdict_name

MAX_MESSAGE = 64 * 1024 * 1024  # full frames come back as PNG


class ApiError(Exception):
    """A refused or failed call, with the store's status code and message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass
class QueryApi:
    target: str
    tls_ca_file: Path | None = None
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        options = [("grpc.max_receive_message_length", MAX_MESSAGE)]
        if self.tls_ca_file is not None:
            creds = grpc.ssl_channel_credentials(self.tls_ca_file.read_bytes())
            self.channel = grpc.aio.secure_channel(self.target, creds, options)
        else:
            self.channel = grpc.aio.insecure_channel(self.target, options)
        self.stub = query_pb2_grpc.InspectionQueryStub(self.channel)

    @staticmethod
    def metadata(token: str) -> list[tuple[str, str]] | None:
        return [("authorization", f"Bearer {token}")] if token else None

    async def call(self, method: str, request, token: str, timeout_s: float | None = None):
        try:
            return await getattr(self.stub, method)(
                request, metadata=self.metadata(token), timeout=timeout_s or self.timeout_s
            )
        except grpc.aio.AioRpcError as err:
            raise ApiError(err.code(), err.details() or "") from err

    def watch(self, request: query_pb2.WatchInspectionsRequest, token: str):
        """The live stream (no deadline); iterate with `async for`, cancel to end it."""
        return self.stub.WatchInspections(request, metadata=self.metadata(token))

    async def close(self) -> None:
        await self.channel.close()


def latest_review(rec: query_pb2.InspectionRecord) -> query_pb2.Review | None:
    return rec.reviews[-1] if rec.reviews else None


def export_row(rec: query_pb2.InspectionRecord) -> ExportRow:
    ins, ctx = rec.inspection, rec.inspection.context
    done = max((s.sent_unix_ns for s in ins.stamps if s.stage == "postprocess"), default=0)
    review = latest_review(rec)
    return ExportRow(
        frame_id=ctx.frame_id,
        part_id=ctx.part_id,
        line=ctx.source.line,
        station=ctx.source.station,
        camera=ctx.source.camera,
        captured_utc=iso(ctx.captured_unix_ns),
        stored_utc=iso(rec.stored_unix_ns),
        recipe_id=ctx.recipe_id,
        recipe_version=ctx.recipe_version,
        model_versions=";".join(f"{k}={v}" for k, v in sorted(ins.model_versions.items())),
        verdict=verdict_name(ins.verdict),
        score=float(ins.score),
        complete=bool(ins.complete),
        defects=len(ins.defects),
        defect_classes=";".join(sorted({d.defect_class for d in ins.defects})),
        latency_s=max(0.0, (done - ctx.captured_unix_ns) / 1e9) if done else 0.0,
        review_disposition=verdict_name(review.disposition) if review else "",
        review_defect_class=review.defect_class if review else "",
        reviewer=review.reviewer if review else "",
        reviewed_utc=iso(review.reviewed_unix_ns) if review else "",
        review_comment=review.comment if review else "",
    )


def board_event(rec: query_pb2.InspectionRecord) -> tuple[str, str, int, str, int]:
    ctx = rec.inspection.context
    return (
        ctx.source.line,
        ctx.source.camera,
        int(rec.inspection.verdict),
        ctx.frame_id,
        ctx.captured_unix_ns,
    )


def to_json(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))

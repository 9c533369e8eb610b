"""The InspectionQuery gRPC service (MES reads it), with health checking and reflection."""

from __future__ import annotations

from concurrent import futures

import grpc
import sqlalchemy as sa
from defectflow.v1 import inspections_pb2, query_pb2, query_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.store.adapters.db import decode_cursor, encode_cursor
from services.store.adapters.schema import inspections
from services.store.logic import page_size

SERVICE_NAME = query_pb2.DESCRIPTOR.services_by_name["InspectionQuery"].full_name


def _record(row) -> query_pb2.InspectionRecord:
    msg = inspections_pb2.Inspection()
    msg.ParseFromString(row.payload)
    return query_pb2.InspectionRecord(inspection=msg, stored_unix_ns=row.stored_unix_ns)


class InspectionQueryServicer(query_pb2_grpc.InspectionQueryServicer):
    def __init__(self, engine: sa.Engine, max_page_size: int) -> None:
        self.engine = engine
        self.max_page_size = max_page_size

    def GetInspection(self, request, context):
        if not request.frame_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "frame_id is required")
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(inspections.c.payload, inspections.c.stored_unix_ns).where(
                    inspections.c.frame_id == request.frame_id
                )
            ).first()
        if row is None:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"no inspection with frame_id {request.frame_id!r}"
            )
        return _record(row)

    def ListInspections(self, request, context):
        f = request.filter
        q = sa.select(inspections.c.id, inspections.c.payload, inspections.c.stored_unix_ns)
        if f.lines:
            q = q.where(inspections.c.line.in_(list(f.lines)))
        if f.stations:
            q = q.where(inspections.c.station.in_(list(f.stations)))
        if f.cameras:
            q = q.where(inspections.c.camera.in_(list(f.cameras)))
        if f.verdicts:
            q = q.where(inspections.c.verdict.in_([int(v) for v in f.verdicts]))
        if f.recipe_id:
            q = q.where(inspections.c.recipe_id == f.recipe_id)
        if f.part_id:
            q = q.where(inspections.c.part_id == f.part_id)
        if f.captured_from_unix_ns:
            q = q.where(inspections.c.captured_unix_ns >= f.captured_from_unix_ns)
        if f.captured_to_unix_ns:
            q = q.where(inspections.c.captured_unix_ns < f.captured_to_unix_ns)
        if request.page_token:
            try:
                q = q.where(inspections.c.id > decode_cursor(request.page_token))
            except ValueError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        size = page_size(request.page_size, self.max_page_size)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(inspections.c.id).limit(size + 1)).all()
        more = len(rows) > size
        rows = rows[:size]
        token = encode_cursor(rows[-1].id) if more else ""
        return query_pb2.ListInspectionsResponse(
            records=[_record(r) for r in rows], next_page_token=token
        )


def serve(
    engine: sa.Engine, address: str, max_page_size: int, workers: int = 8
) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    query_pb2_grpc.add_InspectionQueryServicer_to_server(
        InspectionQueryServicer(engine, max_page_size), server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, reflection.SERVICE_NAME, health.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot bind the query API to {address}")
    server.start()
    return server, port

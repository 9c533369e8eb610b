"""Postprocess: collect a frame's tile predictions, stitch, threshold, decide, publish."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from defectflow.v1 import common_pb2, inspections_pb2, predictions_pb2
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from services.common import metrics, topics
from services.common.codec import decode, stamp
from services.common.decoders import Det
from services.common.domain import Decision, TileRect
from services.common.drift import DriftMonitor
from services.common.errors import BadInput, about_frame
from services.common.logs import setup_logging
from services.common.recipes import Recipe, RecipeBook
from services.common.stage import Handled, Output, dead_letter, run_stage
from services.common.tensors import from_tensor
from services.postprocess.config import PostprocessSettings
from services.postprocess.logic import assess


@dataclass
class FrameAssembly:
    context: common_pb2.FrameContext
    recipe: Recipe
    tiles_total: int
    key: bytes | None
    first_seen: float
    received_ns: int
    tiles: dict[int, tuple[TileRect, np.ndarray, float]] = field(default_factory=dict)
    records: list[ConsumerRecord] = field(default_factory=list)
    stamps: list[common_pb2.StageStamp] = field(default_factory=list)
    model_versions: dict[str, str] = field(default_factory=dict)
    detections: list[tuple[TileRect, Det]] = field(default_factory=list)


class PostprocessHandler:
    def __init__(self, settings: PostprocessSettings) -> None:
        self.recipes = RecipeBook(settings.recipes_dir)
        self.instance = settings.instance or socket.gethostname()
        self.max_pending = settings.max_pending_frames
        self.frames: dict[str, FrameAssembly] = {}
        self.drift = DriftMonitor(settings.recipes_dir)

    def handle(self, records: Sequence[ConsumerRecord]) -> Handled:
        out = Handled()
        for record in records:
            try:
                frame_id = self._add(record)
            except BadInput as err:
                out.outputs.append(dead_letter("postprocess", record, err))
                out.done.append(record)
                continue
            fa = self.frames[frame_id]
            if len(fa.tiles) >= fa.tiles_total:
                out.outputs.append(self._finish(frame_id, complete=True))
                out.done += fa.records
        return out

    def tick(self) -> Handled:
        """Frames whose tiles did not all arrive in time are recorded as incomplete (REVIEW)."""
        out = Handled()
        now = time.monotonic()
        overdue = [
            fid
            for fid, fa in self.frames.items()
            if now - fa.first_seen > fa.recipe.frame_timeout_s
        ]
        # bounded memory: past max_pending, the oldest frames are closed as incomplete too
        excess = len(self.frames) - len(overdue) - self.max_pending
        if excess > 0:
            rest = sorted(
                (fa.first_seen, fid) for fid, fa in self.frames.items() if fid not in overdue
            )
            overdue += [fid for _, fid in rest[:excess]]
        for fid in overdue:
            records = self.frames[fid].records
            out.outputs.append(self._finish(fid, complete=False))
            out.done += records
        return out

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        for fid in [
            f
            for f, fa in self.frames.items()
            if any((r.topic, r.partition) in lost for r in fa.records)
        ]:
            del self.frames[fid]  # uncommitted: the new owner of the partition redoes them

    def _add(self, record: ConsumerRecord) -> str:
        chunk = decode(predictions_pb2.PredictionChunk, record.value)
        with about_frame(chunk.context.frame_id):
            return self._add_chunk(chunk, record)

    def _add_chunk(self, chunk: predictions_pb2.PredictionChunk, record: ConsumerRecord) -> str:
        ctx = chunk.context
        fa = self.frames.get(ctx.frame_id)
        if fa is None:
            recipe = self.recipes.require(ctx.recipe_id, ctx.recipe_version)
            if chunk.tiles_total == 0:
                raise BadInput("bad_tiles", "prediction chunk says the frame has 0 tiles")
            if len(ctx.part_to_frame) not in (0, 6):
                raise BadInput(
                    "bad_context",
                    f"part_to_frame holds {len(ctx.part_to_frame)} values, a 2x3 affine has 6",
                )
            fa = FrameAssembly(
                ctx, recipe, chunk.tiles_total, record.key, time.monotonic(), time.time_ns()
            )
            fa.stamps.extend(chunk.stamps)
            self.frames[ctx.frame_id] = fa
        size = fa.recipe.tiling.model_input
        parsed = []
        for t in chunk.tiles:
            r = t.rect
            if r.index >= fa.tiles_total:
                raise BadInput("bad_tiles", f"tile index {r.index} >= tiles_total {fa.tiles_total}")
            tmap = from_tensor(t.anomaly_map, (size, size))
            rect = TileRect(r.x, r.y, r.width, r.height, r.index)
            dets = [_detection(d, fa.recipe) for d in t.detections]
            parsed.append((r.index, rect, tmap, t.score, dets))
        for index, rect, tmap, score, dets in parsed:
            if index not in fa.tiles:  # a redelivered chunk must not add its boxes twice
                fa.detections += [(rect, d) for d in dets]
            fa.tiles[index] = (rect, tmap, score)
        fa.model_versions.update(chunk.model_versions)
        fa.records.append(record)
        return ctx.frame_id

    def _finish(self, frame_id: str, complete: bool) -> Output:
        fa = self.frames.pop(frame_id)
        ctx = fa.context
        decision, _ = assess(
            fa.recipe,
            (ctx.image.width, ctx.image.height),
            [(rect, tmap) for rect, tmap, _ in fa.tiles.values()],
            fa.tiles_total,
            complete=complete,
            tile_detections=fa.detections,
            upstream=tuple(ctx.review_reasons),
            part_to_frame=np.array(ctx.part_to_frame).reshape(2, 3) if ctx.part_to_frame else None,
        )
        msg = inspection_message(ctx, decision, fa, complete)
        self._observe(fa, decision)
        stamp(msg, "postprocess", fa.received_ns, time.time_ns(), self.instance)
        return Output(topics.INSPECTIONS, fa.key, msg.SerializeToString())

    def _observe(self, fa: FrameAssembly, decision: Decision) -> None:
        """Verdict and defect counters; the image score into the line's drift window."""
        line, recipe = fa.context.source.line, fa.recipe.id
        _observe_verdict(line, recipe, decision)
        self.drift.add(line, recipe, decision.score, fa.recipe.thresholds.image)


def _detection(d: predictions_pb2.TileDetection, recipe: Recipe) -> Det:
    det = recipe.detector
    if det is None:
        raise BadInput(
            "bad_model_output", f"detector boxes for recipe {recipe.id!r}, which has none"
        )
    if d.class_index >= len(det.classes):
        raise BadInput(
            "bad_model_output",
            f"detector class index {d.class_index} >= {len(det.classes)} classes of {det.name}",
        )
    b = d.box
    return Det(b.x0, b.y0, b.x1, b.y1, d.score, d.class_index)


def _observe_verdict(line: str, recipe: str, decision: Decision) -> None:
    for name in metrics.VERDICT_LABELS.values():  # every verdict's series from the start
        metrics.VERDICTS.labels(line, recipe, name)
    verdict = metrics.VERDICT_LABELS.get(int(decision.verdict), "unknown")
    metrics.VERDICTS.labels(line, recipe, verdict).inc()
    for d in decision.defects:
        metrics.DEFECTS.labels(line, recipe, d.defect_class).inc()


def inspection_message(
    ctx, decision: Decision, fa: FrameAssembly, complete: bool
) -> inspections_pb2.Inspection:
    msg = inspections_pb2.Inspection(
        schema_version=topics.SCHEMA_VERSION,
        context=ctx,
        verdict=int(decision.verdict),
        score=decision.score if np.isfinite(decision.score) else 0.0,
        reasons=list(decision.reasons),
        complete=complete,
        tiles_expected=fa.tiles_total,
        tiles_received=len(fa.tiles),
    )
    msg.model_versions.update(fa.model_versions)
    msg.stamps.extend(fa.stamps)
    for d in decision.defects:
        pb = msg.defects.add(
            defect_class=d.defect_class,
            score=d.score,
            area_px=d.area_px,
            area_mm2=d.area_mm2,
            source=d.source,
        )
        pb.box.x0, pb.box.y0, pb.box.x1, pb.box.y1 = d.box
        for x, y in d.contour:
            pb.contour.add(x=x, y=y)
    return msg


def main() -> None:
    settings = PostprocessSettings()
    setup_logging("postprocess", settings.log_level)
    run_stage("postprocess", topics.PREDICTIONS, PostprocessHandler(settings), settings)


if __name__ == "__main__":
    main()

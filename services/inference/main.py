"""Inference: tile chunks -> predictions, batching tiles across frames and cameras.

Pipelined: each poll's chunks become one job (its tiles batched to the model's preferred
batch size, the batches sent with several requests in flight) that runs on a worker
thread, while the stage goes on polling; up to `max_jobs` jobs are at Triton at once, so
the model never waits for the stage to produce, commit and poll. Jobs hand their outputs
back in the order they were submitted, and a record's offset is committed only once its
job's outputs are acknowledged (the stage loop's rule). A job whose partitions were
revoked meanwhile is dropped; the partitions' next owner redoes it.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from defectflow.v1 import common_pb2, predictions_pb2, tiles_pb2
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from services.common import decoders, topics
from services.common.codec import decode, stamp
from services.common.errors import BadInput, Transient, about_frame
from services.common.logs import setup_logging
from services.common.recipes import RecipeBook
from services.common.stage import Handled, Output, dead_letter, run_stage
from services.common.tensors import from_tensor, resize_tiles, tile_core, to_tensor
from services.inference.adapters.triton import TritonModels
from services.inference.config import InferenceSettings
from services.inference.logic import batch_slices, check_outputs

log = logging.getLogger("defectflow.inference")


def _tp(record: ConsumerRecord) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


@dataclass
class Job:
    records: list[ConsumerRecord]
    future: Future
    epochs: dict[TopicPartition, int]  # each partition's revocation count at submission


class InferenceHandler:
    def __init__(self, settings: InferenceSettings, models: TritonModels) -> None:
        self.models = models
        self.recipes = RecipeBook(settings.recipes_dir)
        self.instance = settings.instance or socket.gethostname()
        self.max_jobs = settings.max_jobs
        self.pool = ThreadPoolExecutor(settings.max_jobs, thread_name_prefix="infer")
        self.jobs: deque[Job] = deque()
        self.revocations: dict[TopicPartition, int] = defaultdict(int)

    # --- the stage loop's side: submit, hand back in order, drop on revoke ---------------

    def handle(self, records: Sequence[ConsumerRecord]) -> Handled:
        out = Handled()
        while len(self.jobs) >= self.max_jobs:  # back-pressure: wait for the oldest job
            self.jobs[0].future.exception()
            out = _merge(out, self.tick())
        self._submit(list(records))
        return out

    def busy(self) -> bool:
        """Jobs at Triton: the stage loop polls briefly, so finished ones go out at once."""
        return bool(self.jobs)

    def tick(self) -> Handled:
        out = Handled()
        while self.jobs and self.jobs[0].future.done():
            job = self.jobs.popleft()
            # records of partitions revoked since the job started belong to their next owner
            kept = [r for r in job.records if self.revocations[_tp(r)] == job.epochs[_tp(r)]]
            exc = job.future.exception()
            if isinstance(exc, Transient):
                # the stage rewinds every partition we hold work for to its oldest record not
                # done and reads on from there: the other jobs' work would be redone anyway
                self.jobs.clear()
                raise exc
            if exc is not None:
                out = _merge(out, self._isolate(kept, exc))
                continue
            ids = {id(r) for r in kept}
            out.outputs += [output for record, output in job.future.result() if id(record) in ids]
            out.done += kept
        return out

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self.revocations[tp] += 1

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, records: list[ConsumerRecord]) -> None:
        epochs = {_tp(r): self.revocations[_tp(r)] for r in records}
        self.jobs.append(Job(records, self.pool.submit(self.infer, records), epochs))

    def _isolate(self, records: list[ConsumerRecord], exc: BaseException) -> Handled:
        """A job that failed with an error that is not transient (one no check foresaw, or
        Triton refusing a request for good): its records one by one, and a single record
        that fails is dead-lettered, so one poison chunk cannot stall us."""
        if len(records) > 1:
            log.warning("job of %d records failed (%r): one by one", len(records), exc)
            for r in records:
                self._submit([r])
            return Handled()
        if not records:
            return Handled()
        if isinstance(exc, BadInput):  # e.g. Triton refused the request for good
            log.error("record refused: dead letter: %s", exc)
            err = exc
        else:
            log.error("record failed with an unexpected error: dead letter", exc_info=exc)
            err = BadInput("processing_error", f"{type(exc).__name__}: {exc}")
        return Handled(outputs=[dead_letter("inference", records[0], err)], done=records)

    # --- one job, on a worker thread -----------------------------------------------------

    def _decode(self, record: ConsumerRecord):
        chunk = decode(tiles_pb2.TileChunk, record.value)
        with about_frame(chunk.context.frame_id):
            recipe = self.recipes.require(chunk.context.recipe_id, chunk.context.recipe_version)
            s = recipe.tiling.input_size
            pixels = [from_tensor(t.pixels, (3, s, s)) for t in chunk.tiles]
            if not pixels:
                raise BadInput("bad_tensor", "tile chunk without tiles")
            if any(p.dtype != np.float16 for p in pixels):
                raise BadInput("bad_tensor", "tiles must be float16")
        return chunk, recipe, pixels

    def infer(self, records: Sequence[ConsumerRecord]) -> list[tuple[ConsumerRecord, Output]]:
        """Every record's output: its predictions, or a dead letter."""
        received = time.time_ns()
        out: list[tuple[ConsumerRecord, Output]] = []
        # group decoded chunks by (model, version, tile size): one batch stream per model
        groups: dict[tuple[str, str, int], list] = defaultdict(list)
        for record in records:
            try:
                chunk, recipe, pixels = self._decode(record)
            except BadInput as err:
                out.append((record, dead_letter("inference", record, err)))
                continue
            m = recipe.model
            groups[(m.name, m.version, recipe.tiling.model_input)].append(
                (record, chunk, recipe, pixels)
            )
        for (model, version, size), items in groups.items():
            out += self._infer(model, version, size, items, received)
        return out

    def _infer(
        self, model: str, version: str, size: int, items: list, received: int
    ) -> list[tuple[ConsumerRecord, Output]]:
        tiles = np.stack([p for _, _, _, pixels in items for p in pixels])
        slices = batch_slices(len(tiles), self.models.max_batch(model))
        results = self.models.infer_many(model, version, [tiles[s] for s in slices])
        maps = np.concatenate([r[0] for r in results])
        scores = np.concatenate([r[1] for r in results])
        served = results[0][2] if results else version
        boxes, det_served = self._detect(items, tiles, size)
        outputs, start = [], 0
        for record, chunk, recipe, pixels in items:
            n = len(pixels)
            m, sc = maps[start : start + n], scores[start : start + n]
            tile_boxes = boxes[start : start + n] if boxes else [[] for _ in range(n)]
            start += n
            try:
                with about_frame(chunk.context.frame_id):
                    check_outputs(m, sc, n, size)
                    for dets in tile_boxes:
                        if isinstance(dets, BadInput):
                            raise dets
            except BadInput as err:
                outputs.append((record, dead_letter("inference", record, err)))
                continue
            msg = predictions_pb2.PredictionChunk(
                schema_version=topics.SCHEMA_VERSION,
                context=chunk.context,
                tiles_total=chunk.tiles_total,
                chunk_index=chunk.chunk_index,
                chunks_total=chunk.chunks_total,
                roi_x=chunk.roi_x,
                roi_y=chunk.roi_y,
                roi_width=chunk.roi_width,
                roi_height=chunk.roi_height,
            )
            msg.model_versions[model] = served
            if recipe.detector is not None and recipe.detector.name in det_served:
                msg.model_versions[recipe.detector.name] = det_served[recipe.detector.name]
            msg.stamps.extend(chunk.stamps)
            for tile, tmap, tscore, dets in zip(chunk.tiles, m, sc, tile_boxes, strict=True):
                pred = msg.tiles.add(
                    rect=tile.rect,
                    score=float(tscore[0]),
                    anomaly_map=to_tensor(tmap[0].astype(np.float16)),
                )
                # model-input pixels -> tile pixels (frame scale)
                sx, sy = tile.rect.width / size, tile.rect.height / size
                for d in dets:
                    d = decoders.scale(d, sx, sy)
                    pred.detections.add(
                        box=common_pb2.Box(x0=d.x0, y0=d.y0, x1=d.x1, y1=d.y1),
                        score=d.score,
                        class_index=d.cls,
                    )
            stamp(msg, "inference", received, time.time_ns(), self.instance)
            outputs.append(
                (record, Output(topics.PREDICTIONS, record.key, msg.SerializeToString()))
            )
        return outputs

    def _detect(self, items: list, tiles: np.ndarray, size: int):
        """Per tile, the boxes of its recipe's detector (empty where the recipe has none).
        Tiles of recipes that share a detector go to Triton in the same batches."""
        per_tile: list[list] = [[] for _ in range(len(tiles))]
        groups: dict[tuple, list[int]] = defaultdict(list)
        start = 0
        for _, _, recipe, pixels in items:
            d = recipe.detector
            if d is not None:
                key = (d.name, d.version, d.decoder, d.score_min, d.input_size or size)
                groups[key].extend(range(start, start + len(pixels)))
            start += len(pixels)
        if not groups:
            return None, {}
        served: dict[str, str] = {}
        for (name, version, decoder, score_min, det_size), index in groups.items():
            # a detector takes the tile, not its context window, at its own size
            sel = resize_tiles(tile_core(tiles[index], size), det_size)
            back = size / det_size  # boxes in the detector's pixels -> the tile map's
            slices = batch_slices(len(sel), self.models.max_batch(name))
            names = ("detections",) if decoder == "defectnet" else ("output0",)
            results = self.models.infer_outputs(name, version, [sel[s] for s in slices], names)
            found: list = []
            for (outs, v), sl in zip(results, slices, strict=True):
                n = sl.stop - sl.start
                try:
                    found += decoders.detector_boxes(outs, decoder, score_min, n)
                except BadInput as err:  # the chunks with these tiles are dead-lettered
                    found += [err] * n
                served[name] = v
            for i, boxes in zip(index, found, strict=True):
                as_is = isinstance(boxes, BadInput) or back == 1
                per_tile[i] = boxes if as_is else [decoders.scale(b, back, back) for b in boxes]
        return per_tile, served


def main() -> None:
    settings = InferenceSettings()
    setup_logging("inference", settings.log_level)
    models = TritonModels(
        settings.triton_url, settings.max_in_flight, settings.request_timeout_s, settings.retries
    )
    handler = InferenceHandler(settings, models)
    try:
        run_stage("inference", topics.TILES, handler, settings)
    finally:
        handler.close()
        models.close()


def _merge(a: Handled, b: Handled) -> Handled:
    return Handled(outputs=a.outputs + b.outputs, done=a.done + b.done)


if __name__ == "__main__":
    main()

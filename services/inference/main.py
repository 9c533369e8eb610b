"""Inference: tile chunks -> predictions, batching tiles across frames and cameras."""

from __future__ import annotations

import socket
import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from defectflow.v1 import common_pb2, predictions_pb2, tiles_pb2
from kafka.consumer.fetcher import ConsumerRecord

from services.common import decoders, topics
from services.common.codec import decode, stamp
from services.common.errors import BadInput, about_frame
from services.common.logs import setup_logging
from services.common.recipes import RecipeBook
from services.common.stage import Handled, Output, StatelessHandler, dead_letter, run_stage
from services.common.tensors import from_tensor, to_tensor
from services.inference.adapters.triton import TritonModels
from services.inference.config import InferenceSettings
from services.inference.logic import batch_slices, check_outputs


class InferenceHandler(StatelessHandler):
    def __init__(self, settings: InferenceSettings, models: TritonModels) -> None:
        self.models = models
        self.recipes = RecipeBook(settings.recipes_dir)
        self.instance = settings.instance or socket.gethostname()

    def _decode(self, record: ConsumerRecord):
        chunk = decode(tiles_pb2.TileChunk, record.value)
        with about_frame(chunk.context.frame_id):
            recipe = self.recipes.require(chunk.context.recipe_id, chunk.context.recipe_version)
            s = recipe.tiling.model_input
            pixels = [from_tensor(t.pixels, (3, s, s)) for t in chunk.tiles]
            if not pixels:
                raise BadInput("bad_tensor", "tile chunk without tiles")
            if any(p.dtype != np.float16 for p in pixels):
                raise BadInput("bad_tensor", "tiles must be float16")
        return chunk, recipe, pixels

    def handle(self, records: Sequence[ConsumerRecord]) -> Handled:
        received = time.time_ns()
        out = Handled(done=list(records))
        # group decoded chunks by (model, version, tile size): one batch stream per model
        groups: dict[tuple[str, str, int], list] = defaultdict(list)
        for record in records:
            try:
                chunk, recipe, pixels = self._decode(record)
            except BadInput as err:
                out.outputs.append(dead_letter("inference", record, err))
                continue
            m = recipe.model
            groups[(m.name, m.version, recipe.tiling.model_input)].append(
                (record, chunk, recipe, pixels)
            )
        for (model, version, size), items in groups.items():
            out.outputs += self._infer(model, version, size, items, received)
        return out

    def _infer(
        self, model: str, version: str, size: int, items: list, received: int
    ) -> list[Output]:
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
                outputs.append(dead_letter("inference", record, err))
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
            outputs.append(Output(topics.PREDICTIONS, record.key, msg.SerializeToString()))
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
                key = (d.name, d.version, d.decoder, d.score_min)
                groups[key].extend(range(start, start + len(pixels)))
            start += len(pixels)
        if not groups:
            return None, {}
        served: dict[str, str] = {}
        for (name, version, decoder, score_min), index in groups.items():
            sel = tiles[index]
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
                per_tile[i] = boxes
        return per_tile, served


def main() -> None:
    settings = InferenceSettings()
    setup_logging("inference", settings.log_level)
    models = TritonModels(
        settings.triton_url, settings.max_in_flight, settings.request_timeout_s, settings.retries
    )
    try:
        run_stage("inference", topics.TILES, InferenceHandler(settings, models), settings)
    finally:
        models.close()


if __name__ == "__main__":
    main()

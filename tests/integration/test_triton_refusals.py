"""A recipe Triton can never serve is a dead letter with the reason, not an endless retry
(real tritonserver, the inference stage's own handler)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from defectflow.v1 import common_pb2, deadletter_pb2, tiles_pb2

from services.common import topics
from services.common.errors import BadInput
from services.common.recipes import save_recipe
from services.common.stage import Handled
from services.common.tensors import to_tensor
from services.inference.adapters.triton import TritonModels
from services.inference.config import InferenceSettings
from services.inference.main import InferenceHandler
from tests.unit.test_decoders import record


def chunk(frame_id: str, recipe_id: str, size: int) -> bytes:
    msg = tiles_pb2.TileChunk(
        schema_version=1,
        context=common_pb2.FrameContext(frame_id=frame_id, recipe_id=recipe_id),
        tiles_total=1,
        chunks_total=1,
    )
    msg.tiles.add(
        rect=common_pb2.TileRect(index=0, width=size, height=size),
        pixels=to_tensor(np.zeros((3, size, size), np.float16)),
    )
    return msg.SerializeToString()


@pytest.fixture()
def models(triton):
    m = TritonModels(triton.grpc_url, max_in_flight=2, timeout_s=30, retries=3)
    yield m
    m.close()


def test_triton_tells_a_refusal_from_an_outage(prepared, models):
    with pytest.raises(BadInput) as unknown:
        models.max_batch("no_such_model")
    assert unknown.value.reason == "unknown_model"
    assert prepared.recipe.model.name in str(unknown.value)  # it names what Triton serves
    wrong = np.zeros((1, 3, 64, 64), np.float16)  # the model takes its window size
    t0 = time.monotonic()
    with pytest.raises(BadInput) as refused:
        models.infer_many(prepared.recipe.model.name, "", [wrong])
    assert refused.value.reason == "model_refused"
    assert time.monotonic() - t0 < 0.5, "a refusal is not retried with backoff"


def test_the_inference_stage_dead_letters_what_triton_refuses_and_goes_on(
    prepared, models, tmp_path
):
    good = prepared.recipe
    size = good.tiling.input_size
    save_recipe(good, tmp_path / f"{good.id}.yaml")
    unknown = good.model_copy(
        update={"id": "unknown", "model": good.model.model_copy(update={"name": "no_such_model"})}
    )
    save_recipe(unknown, tmp_path / "unknown.yaml")
    smaller = good.tiling.model_copy(update={"context": good.tiling.context - 16})
    mis_sized = good.model_copy(update={"id": "mis-sized", "tiling": smaller})
    save_recipe(mis_sized, tmp_path / "mis-sized.yaml")
    h = InferenceHandler(InferenceSettings(recipes_dir=tmp_path, max_jobs=2), models)
    try:
        records = [
            record(topics.TILES, chunk("a", "unknown", size), 0),
            record(topics.TILES, chunk("b", "mis-sized", size - 32), 1),
            record(topics.TILES, chunk("c", good.id, size), 2),
        ]
        out = h.handle(records)
        deadline = time.monotonic() + 60
        while len(out.done) < len(records) and time.monotonic() < deadline:
            part = h.tick()
            out = Handled(out.outputs + part.outputs, out.done + part.done)
            time.sleep(0.05)
    finally:
        h.close()
    assert len(out.done) == 3, "every record is done: nothing is retried forever"
    letters = {
        d.source_offset: d.reason
        for d in (
            deadletter_pb2.DeadLetter.FromString(o.value)
            for o in out.outputs
            if o.topic == topics.DEADLETTER
        )
    }
    assert letters == {0: "unknown_model", 1: "model_refused"}
    assert [o for o in out.outputs if o.topic == topics.PREDICTIONS], "the good chunk flows"

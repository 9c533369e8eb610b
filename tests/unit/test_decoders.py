"""Decoders of untrusted bytes: a clear BadInput reason, never a crash or a silent pass."""

import numpy as np
import pytest
from defectflow.v1 import common_pb2, frames_pb2, inspections_pb2, predictions_pb2, tiles_pb2
from hypothesis import given
from hypothesis import strategies as st

from services.common.codec import decode
from services.common.errors import BadInput
from services.common.images import decode_image, encode_png
from services.common.recipes import load_recipe
from services.common.tensors import from_tensor, to_tensor


def valid_frame() -> bytes:
    return frames_pb2.Frame(
        schema_version=1, context=common_pb2.FrameContext(frame_id="f1")
    ).SerializeToString()


@pytest.mark.parametrize(
    "cls",
    [
        frames_pb2.Frame,
        tiles_pb2.TileChunk,
        predictions_pb2.PredictionChunk,
        inspections_pb2.Inspection,
    ],
)
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes_decode_or_fail_with_a_reason(cls, data):
    try:
        msg = decode(cls, data)
    except BadInput as err:
        assert err.reason in {
            "empty_message",
            "undecodable_protobuf",
            "unknown_schema_version",
            "missing_frame_id",
        }
    else:
        assert msg.context.frame_id and msg.schema_version == 1


def test_truncated_frame_is_undecodable():
    with pytest.raises(BadInput) as err:
        decode(frames_pb2.Frame, valid_frame()[:-3])
    assert err.value.reason == "undecodable_protobuf"


def test_unknown_schema_version_is_refused():
    data = frames_pb2.Frame(
        schema_version=2, context=common_pb2.FrameContext(frame_id="x")
    ).SerializeToString()
    with pytest.raises(BadInput) as err:
        decode(frames_pb2.Frame, data)
    assert err.value.reason == "unknown_schema_version" and err.value.frame_id == "x"


def test_png_bomb_is_refused_before_decoding():
    png = encode_png(np.zeros((300, 300), np.uint8))
    with pytest.raises(BadInput) as err:
        decode_image(png, "png", max_pixels=200 * 200)
    assert err.value.reason == "image_too_large"


@given(st.binary(max_size=256))
def test_corrupt_png_bytes_fail_with_a_reason(data):
    with pytest.raises(BadInput):
        decode_image(b"\x89PNG\r\n\x1a\n" + data, "png", max_pixels=10**6)


def test_truncated_png_is_corrupt():
    png = encode_png(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(BadInput) as err:
        decode_image(png[: len(png) // 2], "png", 10**6)
    assert err.value.reason == "corrupt_image"


def test_tensor_round_trip_and_size_checks():
    a = np.arange(12, dtype=np.float16).reshape(3, 4)
    assert np.array_equal(from_tensor(to_tensor(a)), a)
    bad = to_tensor(a)
    bad.data = bad.data[:-2]
    with pytest.raises(BadInput, match="needs 24 bytes"):
        from_tensor(bad)
    with pytest.raises(BadInput, match="expected"):
        from_tensor(to_tensor(a), (4, 3))


# ---- every decoder under hypothesis, and every listed bad input through its stage ----

import shutil  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from defectflow.v1 import deadletter_pb2  # noqa: E402
from hypothesis import settings  # noqa: E402
from kafka.consumer.fetcher import ConsumerRecord  # noqa: E402

from services.common import topics  # noqa: E402
from services.common.images import png_size  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DECODE_REASONS = {
    "empty_message",
    "undecodable_protobuf",
    "unknown_schema_version",
    "missing_frame_id",
}
IMAGE_REASONS = {"corrupt_image", "image_too_large", "unsupported_encoding"}


@given(data=st.binary(max_size=64))
def test_png_header_reader_never_crashes(data):
    try:
        w, h = png_size(data)
    except BadInput as err:
        assert err.reason == "corrupt_image"
    else:
        assert 0 <= w < 2**32 and 0 <= h < 2**32


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=2048),
    encoding=st.sampled_from(["png", "raw", "jpeg", ""]),
    w=st.integers(0, 64),
    h=st.integers(0, 64),
    c=st.sampled_from([1, 3, 4]),
)
def test_image_decoder_refuses_with_a_reason_or_returns_the_declared_size(data, encoding, w, h, c):
    try:
        image = decode_image(data, encoding, max_pixels=32 * 32, expect=(w, h, c))
    except BadInput as err:
        assert err.reason in IMAGE_REASONS
    else:
        assert image.shape[:2] == (h, w) and w * h <= 32 * 32


@settings(max_examples=200, deadline=None)
@given(
    dtype=st.text(max_size=8) | st.sampled_from(["uint8", "float16", "float32"]),
    shape=st.lists(st.integers(-3, 40), max_size=4),
    data=st.binary(max_size=512),
)
def test_tensor_decoder_never_crashes(dtype, shape, data):
    t = common_pb2.Tensor(dtype=dtype, shape=shape, data=data)
    try:
        a = from_tensor(t)
    except BadInput as err:
        assert err.reason == "bad_tensor"
    else:
        assert a.nbytes == len(data) and list(a.shape) == shape


@given(data=st.binary(max_size=256))
def test_dead_letter_reader_of_the_cli_never_crashes(data):
    from services.cli.dlq import Letter

    try:
        msg = deadletter_pb2.DeadLetter.FromString(data)
    except Exception:  # noqa: BLE001 - the CLI shows such a record as unreadable
        return
    Letter(0, 0, msg).as_dict()


def test_bomb_with_a_forged_header_is_refused_before_any_pixel_is_decoded():
    png = encode_png(np.zeros((8, 8, 3), np.uint8))
    bomb = png[:16] + struct.pack(">II", 100_000, 100_000) + png[24:]
    with pytest.raises(BadInput) as err:
        decode_image(bomb, "png", max_pixels=64_000_000)
    assert err.value.reason == "image_too_large"
    raw = b"\0" * 12
    with pytest.raises(BadInput) as err:
        decode_image(raw, "raw", max_pixels=100, expect=(1000, 1000, 3))
    assert err.value.reason == "image_too_large"


# the shipped template's tile map and model input (the tile plus its context margin)
TEMPLATE = load_recipe(REPO / "models/recipes/brushed-metal.yaml").tiling
MAP, WINDOW = TEMPLATE.model_input, TEMPLATE.input_size


@pytest.fixture
def recipes(tmp_path):
    shutil.copy(REPO / "models/recipes/brushed-metal.yaml", tmp_path / "brushed-metal.yaml")
    return tmp_path


def record(topic: str, value: bytes, offset: int = 0) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        leader_epoch=-1,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        headers=[],
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        serialized_header_size=-1,
    )


def letters_of(handled) -> list:
    return [
        deadletter_pb2.DeadLetter.FromString(o.value)
        for o in handled.outputs
        if o.topic == topics.DEADLETTER
    ]


def frame_bytes(frame_id="f1", recipe="brushed-metal", image=None, version=1) -> bytes:
    ctx = common_pb2.FrameContext(frame_id=frame_id, recipe_id=recipe, image=image)
    return frames_pb2.Frame(schema_version=version, context=ctx).SerializeToString()


def png_ref(png: bytes, w: int, h: int) -> common_pb2.ImageRef:
    ref = common_pb2.ImageRef(encoding="png", width=w, height=h, channels=3)
    ref.inline_data = png
    return ref


def test_every_bad_frame_reaches_the_dead_letter_topic_with_its_reason(recipes, tmp_path):
    from services.tiling.config import TilingSettings
    from services.tiling.main import TilingHandler

    h = TilingHandler(TilingSettings(recipes_dir=recipes, blob_root=tmp_path / "blobs"))
    png = encode_png(np.full((64, 64, 3), 100, np.uint8))
    bomb = png[:16] + struct.pack(">II", 100_000, 100_000) + png[24:]
    blob_ref = common_pb2.ImageRef(encoding="png", width=64, height=64, channels=3)
    blob_ref.blob_uri = "file:missing.png"
    cases = [
        (b"\x08\x01garbage\xff\xff", "undecodable_protobuf"),
        (frame_bytes(image=png_ref(png, 64, 64))[:-9], "undecodable_protobuf"),
        (frame_bytes(version=2, image=png_ref(png, 64, 64)), "unknown_schema_version"),
        (frame_bytes(recipe="no-such-recipe", image=png_ref(png, 64, 64)), "unknown_recipe"),
        (frame_bytes(image=png_ref(bomb, 100_000, 100_000)), "image_too_large"),
        (frame_bytes(image=png_ref(png[: len(png) // 2], 64, 64)), "corrupt_image"),
        (frame_bytes(image=png_ref(png, 65, 64)), "corrupt_image"),  # size differs from header
        (frame_bytes(image=blob_ref), "missing_blob"),
        (frame_bytes(frame_id=""), "missing_frame_id"),
        (b"", "empty_message"),
    ]
    good = frame_bytes(frame_id="good", image=png_ref(png, 64, 64))
    records = [record(topics.FRAMES, v, i) for i, (v, _) in enumerate(cases)]
    records.append(record(topics.FRAMES, good, len(cases)))
    out = h.handle(records)
    got = [(d.source_offset, d.reason) for d in letters_of(out)]
    assert got == [(i, reason) for i, (_, reason) in enumerate(cases)]
    assert len(out.done) == len(records), "bad input is done (dead-lettered), never left pending"
    assert any(o.topic == topics.TILES for o in out.outputs), "the good frame still flows"


def tile_chunk(frame_id: str, pixels: list[np.ndarray], recipe="brushed-metal") -> bytes:
    from defectflow.v1 import tiles_pb2

    from services.common.tensors import to_tensor

    msg = tiles_pb2.TileChunk(
        schema_version=1,
        context=common_pb2.FrameContext(frame_id=frame_id, recipe_id=recipe),
        tiles_total=len(pixels),
        chunks_total=1,
    )
    for i, p in enumerate(pixels):
        msg.tiles.add(rect=common_pb2.TileRect(index=i, width=MAP, height=MAP), pixels=to_tensor(p))
    return msg.SerializeToString()


@pytest.mark.parametrize(
    "pixels, recipe, reason",
    [
        ([np.zeros((3, 64, 64), np.float16)], "brushed-metal", "bad_tensor"),  # mis-shaped
        ([np.zeros((3, WINDOW, WINDOW), np.float32)], "brushed-metal", "bad_tensor"),  # dtype
        ([], "brushed-metal", "bad_tensor"),
        ([np.zeros((3, WINDOW, WINDOW), np.float16)], "nope", "unknown_recipe"),
    ],
)
def test_bad_tile_chunks_are_refused_before_triton(recipes, pixels, recipe, reason):
    from services.inference.config import InferenceSettings
    from services.inference.main import InferenceHandler

    h = InferenceHandler(InferenceSettings(recipes_dir=recipes), models=None)  # type: ignore[arg-type]
    with pytest.raises(BadInput) as err:
        h._decode(record(topics.TILES, tile_chunk("f1", pixels, recipe)))
    assert err.value.reason == reason and err.value.frame_id == "f1"


@pytest.mark.parametrize(
    "maps, scores",
    [
        (np.full((2, 1, 8, 8), np.nan, np.float32), np.zeros((2, 1), np.float32)),
        (np.zeros((2, 1, 8, 8), np.float32), np.array([[np.inf], [0]], np.float32)),
        (np.zeros((2, 8, 8), np.float32), np.zeros((2, 1), np.float32)),
        (np.zeros((1, 1, 8, 8), np.float32), np.zeros((1, 1), np.float32)),
    ],
)
def test_nan_inf_or_mis_shaped_model_outputs_never_reach_a_verdict(maps, scores):
    from services.inference.logic import check_outputs

    with pytest.raises(BadInput) as err:
        check_outputs(maps, scores, 2, 8)
    assert err.value.reason == "bad_model_output"


def prediction_chunk(frame_id: str, index: int, total: int, size: int = MAP) -> bytes:
    from services.common.tensors import to_tensor

    msg = predictions_pb2.PredictionChunk(
        schema_version=1,
        context=common_pb2.FrameContext(
            frame_id=frame_id,
            recipe_id="brushed-metal",
            image=common_pb2.ImageRef(width=256, height=256),
        ),
        tiles_total=total,
        chunks_total=total,
        chunk_index=index,
    )
    msg.tiles.add(
        rect=common_pb2.TileRect(index=index, x=0, y=0, width=size, height=size),
        score=0.1,
        anomaly_map=to_tensor(np.zeros((size, size), np.float16)),
    )
    return msg.SerializeToString()


def test_a_frame_whose_tiles_never_all_arrive_becomes_an_incomplete_review_record(
    recipes, monkeypatch
):
    from services.postprocess.config import PostprocessSettings
    from services.postprocess.main import PostprocessHandler

    h = PostprocessHandler(PostprocessSettings(recipes_dir=recipes))
    first = record(topics.PREDICTIONS, prediction_chunk("f1", 0, 4), 0)
    out = h.handle([first])
    assert not out.outputs and not out.done, "waits for the other tiles, not committed"
    assert not h.tick().outputs
    later = time.monotonic() + 31  # the recipe's frame_timeout_s is 30
    monkeypatch.setattr(time, "monotonic", lambda: later)
    out = h.tick()
    (insp,) = [inspections_pb2.Inspection.FromString(o.value) for o in out.outputs]
    assert out.done == [first]
    assert insp.verdict == 3 and not insp.complete  # REVIEW
    assert (insp.tiles_expected, insp.tiles_received) == (4, 1)


def test_bad_prediction_chunks_are_dead_lettered(recipes):
    from services.postprocess.config import PostprocessSettings
    from services.postprocess.main import PostprocessHandler

    h = PostprocessHandler(PostprocessSettings(recipes_dir=recipes))
    wrong_map = prediction_chunk("f2", 0, 1, size=64)
    bad_index = predictions_pb2.PredictionChunk.FromString(prediction_chunk("f3", 0, 1))
    bad_index.tiles[0].rect.index = 7
    bad_affine = predictions_pb2.PredictionChunk.FromString(prediction_chunk("f4", 0, 1))
    bad_affine.context.part_to_frame.extend([1.0, 0.0, 0.0, 1.0])  # 4 of a 2x3 affine's 6
    out = h.handle(
        [
            record(topics.PREDICTIONS, wrong_map, 0),
            record(topics.PREDICTIONS, bad_index.SerializeToString(), 1),
            record(topics.PREDICTIONS, b"\xff" * 5, 2),
            record(topics.PREDICTIONS, bad_affine.SerializeToString(), 3),
        ]
    )
    assert [d.reason for d in letters_of(out)] == [
        "bad_tensor",
        "bad_tiles",
        "undecodable_protobuf",
        "bad_context",
    ]
    assert len(out.done) == 4

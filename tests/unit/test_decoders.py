"""Decoders of untrusted bytes: a clear BadInput reason, never a crash or a silent pass."""

import numpy as np
import pytest
from defectflow.v1 import common_pb2, frames_pb2, inspections_pb2, predictions_pb2, tiles_pb2
from hypothesis import given
from hypothesis import strategies as st

from services.common.codec import decode
from services.common.errors import BadInput
from services.common.images import decode_image, encode_png
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

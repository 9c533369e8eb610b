from defectflow.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TilePrediction(_message.Message):
    __slots__ = ("rect", "score", "anomaly_map", "detections")
    RECT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_MAP_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    rect: _common_pb2.TileRect
    score: float
    anomaly_map: _common_pb2.Tensor
    detections: _containers.RepeatedCompositeFieldContainer[TileDetection]
    def __init__(self, rect: _Optional[_Union[_common_pb2.TileRect, _Mapping]] = ..., score: _Optional[float] = ..., anomaly_map: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., detections: _Optional[_Iterable[_Union[TileDetection, _Mapping]]] = ...) -> None: ...

class TileDetection(_message.Message):
    __slots__ = ("box", "score", "class_index")
    BOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    box: _common_pb2.Box
    score: float
    class_index: int
    def __init__(self, box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., score: _Optional[float] = ..., class_index: _Optional[int] = ...) -> None: ...

class PredictionChunk(_message.Message):
    __slots__ = ("schema_version", "context", "tiles_total", "chunk_index", "chunks_total", "roi_x", "roi_y", "roi_width", "roi_height", "tiles", "model_versions", "stamps")
    class ModelVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ROI_X_FIELD_NUMBER: _ClassVar[int]
    ROI_Y_FIELD_NUMBER: _ClassVar[int]
    ROI_WIDTH_FIELD_NUMBER: _ClassVar[int]
    ROI_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    STAMPS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    context: _common_pb2.FrameContext
    tiles_total: int
    chunk_index: int
    chunks_total: int
    roi_x: int
    roi_y: int
    roi_width: int
    roi_height: int
    tiles: _containers.RepeatedCompositeFieldContainer[TilePrediction]
    model_versions: _containers.ScalarMap[str, str]
    stamps: _containers.RepeatedCompositeFieldContainer[_common_pb2.StageStamp]
    def __init__(self, schema_version: _Optional[int] = ..., context: _Optional[_Union[_common_pb2.FrameContext, _Mapping]] = ..., tiles_total: _Optional[int] = ..., chunk_index: _Optional[int] = ..., chunks_total: _Optional[int] = ..., roi_x: _Optional[int] = ..., roi_y: _Optional[int] = ..., roi_width: _Optional[int] = ..., roi_height: _Optional[int] = ..., tiles: _Optional[_Iterable[_Union[TilePrediction, _Mapping]]] = ..., model_versions: _Optional[_Mapping[str, str]] = ..., stamps: _Optional[_Iterable[_Union[_common_pb2.StageStamp, _Mapping]]] = ...) -> None: ...

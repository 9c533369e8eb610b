from defectflow.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tile(_message.Message):
    __slots__ = ("rect", "pixels")
    RECT_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    rect: _common_pb2.TileRect
    pixels: _common_pb2.Tensor
    def __init__(self, rect: _Optional[_Union[_common_pb2.TileRect, _Mapping]] = ..., pixels: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class TileChunk(_message.Message):
    __slots__ = ("schema_version", "context", "tiles_total", "chunk_index", "chunks_total", "roi_x", "roi_y", "roi_width", "roi_height", "tiles", "stamps")
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
    tiles: _containers.RepeatedCompositeFieldContainer[Tile]
    stamps: _containers.RepeatedCompositeFieldContainer[_common_pb2.StageStamp]
    def __init__(self, schema_version: _Optional[int] = ..., context: _Optional[_Union[_common_pb2.FrameContext, _Mapping]] = ..., tiles_total: _Optional[int] = ..., chunk_index: _Optional[int] = ..., chunks_total: _Optional[int] = ..., roi_x: _Optional[int] = ..., roi_y: _Optional[int] = ..., roi_width: _Optional[int] = ..., roi_height: _Optional[int] = ..., tiles: _Optional[_Iterable[_Union[Tile, _Mapping]]] = ..., stamps: _Optional[_Iterable[_Union[_common_pb2.StageStamp, _Mapping]]] = ...) -> None: ...

from defectflow.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_OK: _ClassVar[Verdict]
    VERDICT_NG: _ClassVar[Verdict]
    VERDICT_REVIEW: _ClassVar[Verdict]
VERDICT_UNSPECIFIED: Verdict
VERDICT_OK: Verdict
VERDICT_NG: Verdict
VERDICT_REVIEW: Verdict

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class Defect(_message.Message):
    __slots__ = ("defect_class", "score", "box", "area_px", "area_mm2", "contour", "source")
    DEFECT_CLASS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    AREA_PX_FIELD_NUMBER: _ClassVar[int]
    AREA_MM2_FIELD_NUMBER: _ClassVar[int]
    CONTOUR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    defect_class: str
    score: float
    box: _common_pb2.Box
    area_px: float
    area_mm2: float
    contour: _containers.RepeatedCompositeFieldContainer[Point]
    source: str
    def __init__(self, defect_class: _Optional[str] = ..., score: _Optional[float] = ..., box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., area_px: _Optional[float] = ..., area_mm2: _Optional[float] = ..., contour: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., source: _Optional[str] = ...) -> None: ...

class Inspection(_message.Message):
    __slots__ = ("schema_version", "context", "verdict", "score", "defects", "reasons", "model_versions", "complete", "tiles_expected", "tiles_received", "stamps")
    class ModelVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    DEFECTS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    TILES_EXPECTED_FIELD_NUMBER: _ClassVar[int]
    TILES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    STAMPS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    context: _common_pb2.FrameContext
    verdict: Verdict
    score: float
    defects: _containers.RepeatedCompositeFieldContainer[Defect]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    model_versions: _containers.ScalarMap[str, str]
    complete: bool
    tiles_expected: int
    tiles_received: int
    stamps: _containers.RepeatedCompositeFieldContainer[_common_pb2.StageStamp]
    def __init__(self, schema_version: _Optional[int] = ..., context: _Optional[_Union[_common_pb2.FrameContext, _Mapping]] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., score: _Optional[float] = ..., defects: _Optional[_Iterable[_Union[Defect, _Mapping]]] = ..., reasons: _Optional[_Iterable[str]] = ..., model_versions: _Optional[_Mapping[str, str]] = ..., complete: _Optional[bool] = ..., tiles_expected: _Optional[int] = ..., tiles_received: _Optional[int] = ..., stamps: _Optional[_Iterable[_Union[_common_pb2.StageStamp, _Mapping]]] = ...) -> None: ...

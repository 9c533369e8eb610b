from defectflow.v1 import inspections_pb2 as _inspections_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InspectionRecord(_message.Message):
    __slots__ = ("inspection", "stored_unix_ns")
    INSPECTION_FIELD_NUMBER: _ClassVar[int]
    STORED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    inspection: _inspections_pb2.Inspection
    stored_unix_ns: int
    def __init__(self, inspection: _Optional[_Union[_inspections_pb2.Inspection, _Mapping]] = ..., stored_unix_ns: _Optional[int] = ...) -> None: ...

class GetInspectionRequest(_message.Message):
    __slots__ = ("frame_id",)
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    def __init__(self, frame_id: _Optional[str] = ...) -> None: ...

class InspectionFilter(_message.Message):
    __slots__ = ("lines", "stations", "cameras", "verdicts", "recipe_id", "captured_from_unix_ns", "captured_to_unix_ns", "part_id")
    LINES_FIELD_NUMBER: _ClassVar[int]
    STATIONS_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    RECIPE_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_FROM_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_TO_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    PART_ID_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedScalarFieldContainer[str]
    stations: _containers.RepeatedScalarFieldContainer[str]
    cameras: _containers.RepeatedScalarFieldContainer[str]
    verdicts: _containers.RepeatedScalarFieldContainer[_inspections_pb2.Verdict]
    recipe_id: str
    captured_from_unix_ns: int
    captured_to_unix_ns: int
    part_id: str
    def __init__(self, lines: _Optional[_Iterable[str]] = ..., stations: _Optional[_Iterable[str]] = ..., cameras: _Optional[_Iterable[str]] = ..., verdicts: _Optional[_Iterable[_Union[_inspections_pb2.Verdict, str]]] = ..., recipe_id: _Optional[str] = ..., captured_from_unix_ns: _Optional[int] = ..., captured_to_unix_ns: _Optional[int] = ..., part_id: _Optional[str] = ...) -> None: ...

class ListInspectionsRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: InspectionFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[InspectionFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListInspectionsResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[InspectionRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[InspectionRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

from defectflow.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Frame(_message.Message):
    __slots__ = ("schema_version", "context", "stamps")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    STAMPS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    context: _common_pb2.FrameContext
    stamps: _containers.RepeatedCompositeFieldContainer[_common_pb2.StageStamp]
    def __init__(self, schema_version: _Optional[int] = ..., context: _Optional[_Union[_common_pb2.FrameContext, _Mapping]] = ..., stamps: _Optional[_Iterable[_Union[_common_pb2.StageStamp, _Mapping]]] = ...) -> None: ...

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class DeadLetter(_message.Message):
    __slots__ = ("service", "reason", "detail", "source_topic", "source_partition", "source_offset", "key", "value", "failed_unix_ns", "frame_id")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PARTITION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FAILED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    service: str
    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes
    value: bytes
    failed_unix_ns: int
    frame_id: str
    def __init__(self, service: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., source_topic: _Optional[str] = ..., source_partition: _Optional[int] = ..., source_offset: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., failed_unix_ns: _Optional[int] = ..., frame_id: _Optional[str] = ...) -> None: ...

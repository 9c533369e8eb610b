from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FrameSource(_message.Message):
    __slots__ = ("line", "station", "camera")
    LINE_FIELD_NUMBER: _ClassVar[int]
    STATION_FIELD_NUMBER: _ClassVar[int]
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    line: str
    station: str
    camera: str
    def __init__(self, line: _Optional[str] = ..., station: _Optional[str] = ..., camera: _Optional[str] = ...) -> None: ...

class ImageRef(_message.Message):
    __slots__ = ("blob_uri", "inline_data", "encoding", "width", "height", "channels", "sha256", "size_bytes")
    BLOB_URI_FIELD_NUMBER: _ClassVar[int]
    INLINE_DATA_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    blob_uri: str
    inline_data: bytes
    encoding: str
    width: int
    height: int
    channels: int
    sha256: str
    size_bytes: int
    def __init__(self, blob_uri: _Optional[str] = ..., inline_data: _Optional[bytes] = ..., encoding: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., channels: _Optional[int] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class FrameContext(_message.Message):
    __slots__ = ("frame_id", "source", "recipe_id", "recipe_version", "part_id", "captured_unix_ns", "sequence", "image", "review_reasons", "part_to_frame")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RECIPE_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PART_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_REASONS_FIELD_NUMBER: _ClassVar[int]
    PART_TO_FRAME_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    source: FrameSource
    recipe_id: str
    recipe_version: int
    part_id: str
    captured_unix_ns: int
    sequence: int
    image: ImageRef
    review_reasons: _containers.RepeatedScalarFieldContainer[str]
    part_to_frame: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, frame_id: _Optional[str] = ..., source: _Optional[_Union[FrameSource, _Mapping]] = ..., recipe_id: _Optional[str] = ..., recipe_version: _Optional[int] = ..., part_id: _Optional[str] = ..., captured_unix_ns: _Optional[int] = ..., sequence: _Optional[int] = ..., image: _Optional[_Union[ImageRef, _Mapping]] = ..., review_reasons: _Optional[_Iterable[str]] = ..., part_to_frame: _Optional[_Iterable[float]] = ...) -> None: ...

class StageStamp(_message.Message):
    __slots__ = ("stage", "received_unix_ns", "sent_unix_ns", "instance")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    SENT_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    stage: str
    received_unix_ns: int
    sent_unix_ns: int
    instance: str
    def __init__(self, stage: _Optional[str] = ..., received_unix_ns: _Optional[int] = ..., sent_unix_ns: _Optional[int] = ..., instance: _Optional[str] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x0", "y0", "x1", "y1")
    X0_FIELD_NUMBER: _ClassVar[int]
    Y0_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    x0: float
    y0: float
    x1: float
    y1: float
    def __init__(self, x0: _Optional[float] = ..., y0: _Optional[float] = ..., x1: _Optional[float] = ..., y1: _Optional[float] = ...) -> None: ...

class TileRect(_message.Message):
    __slots__ = ("index", "x", "y", "width", "height")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    index: int
    x: int
    y: int
    width: int
    height: int
    def __init__(self, index: _Optional[int] = ..., x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

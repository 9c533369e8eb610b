from defectflow.v1 import inspections_pb2 as _inspections_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReviewState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_STATE_ANY: _ClassVar[ReviewState]
    REVIEW_STATE_UNREVIEWED: _ClassVar[ReviewState]
    REVIEW_STATE_REVIEWED: _ClassVar[ReviewState]

class TimeBucket(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIME_BUCKET_NONE: _ClassVar[TimeBucket]
    TIME_BUCKET_HOUR: _ClassVar[TimeBucket]
    TIME_BUCKET_SHIFT: _ClassVar[TimeBucket]
    TIME_BUCKET_DAY: _ClassVar[TimeBucket]
REVIEW_STATE_ANY: ReviewState
REVIEW_STATE_UNREVIEWED: ReviewState
REVIEW_STATE_REVIEWED: ReviewState
TIME_BUCKET_NONE: TimeBucket
TIME_BUCKET_HOUR: TimeBucket
TIME_BUCKET_SHIFT: TimeBucket
TIME_BUCKET_DAY: TimeBucket

class InspectionRecord(_message.Message):
    __slots__ = ("inspection", "stored_unix_ns", "cursor", "image_available", "reviews")
    INSPECTION_FIELD_NUMBER: _ClassVar[int]
    STORED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REVIEWS_FIELD_NUMBER: _ClassVar[int]
    inspection: _inspections_pb2.Inspection
    stored_unix_ns: int
    cursor: str
    image_available: bool
    reviews: _containers.RepeatedCompositeFieldContainer[Review]
    def __init__(self, inspection: _Optional[_Union[_inspections_pb2.Inspection, _Mapping]] = ..., stored_unix_ns: _Optional[int] = ..., cursor: _Optional[str] = ..., image_available: _Optional[bool] = ..., reviews: _Optional[_Iterable[_Union[Review, _Mapping]]] = ...) -> None: ...

class Review(_message.Message):
    __slots__ = ("frame_id", "disposition", "defect_class", "comment", "reviewer", "reviewer_role", "reviewed_unix_ns", "machine_verdict", "machine_score", "review_id")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    DISPOSITION_FIELD_NUMBER: _ClassVar[int]
    DEFECT_CLASS_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_ROLE_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    MACHINE_VERDICT_FIELD_NUMBER: _ClassVar[int]
    MACHINE_SCORE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    disposition: _inspections_pb2.Verdict
    defect_class: str
    comment: str
    reviewer: str
    reviewer_role: str
    reviewed_unix_ns: int
    machine_verdict: _inspections_pb2.Verdict
    machine_score: float
    review_id: int
    def __init__(self, frame_id: _Optional[str] = ..., disposition: _Optional[_Union[_inspections_pb2.Verdict, str]] = ..., defect_class: _Optional[str] = ..., comment: _Optional[str] = ..., reviewer: _Optional[str] = ..., reviewer_role: _Optional[str] = ..., reviewed_unix_ns: _Optional[int] = ..., machine_verdict: _Optional[_Union[_inspections_pb2.Verdict, str]] = ..., machine_score: _Optional[float] = ..., review_id: _Optional[int] = ...) -> None: ...

class SubmitReviewRequest(_message.Message):
    __slots__ = ("frame_id", "disposition", "defect_class", "comment")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    DISPOSITION_FIELD_NUMBER: _ClassVar[int]
    DEFECT_CLASS_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    disposition: _inspections_pb2.Verdict
    defect_class: str
    comment: str
    def __init__(self, frame_id: _Optional[str] = ..., disposition: _Optional[_Union[_inspections_pb2.Verdict, str]] = ..., defect_class: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("name", "role", "authenticated")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    AUTHENTICATED_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    authenticated: bool
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., authenticated: _Optional[bool] = ...) -> None: ...

class GetInspectionRequest(_message.Message):
    __slots__ = ("frame_id",)
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    def __init__(self, frame_id: _Optional[str] = ...) -> None: ...

class GetByPartRequest(_message.Message):
    __slots__ = ("part_id",)
    PART_ID_FIELD_NUMBER: _ClassVar[int]
    part_id: str
    def __init__(self, part_id: _Optional[str] = ...) -> None: ...

class GetByPartResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[InspectionRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[InspectionRecord, _Mapping]]] = ...) -> None: ...

class InspectionFilter(_message.Message):
    __slots__ = ("lines", "stations", "cameras", "verdicts", "recipe_id", "captured_from_unix_ns", "captured_to_unix_ns", "part_id", "defect_classes", "model_versions", "recipe_version", "review_state", "sample_fraction", "reviewed_dispositions")
    class ModelVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LINES_FIELD_NUMBER: _ClassVar[int]
    STATIONS_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    RECIPE_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_FROM_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_TO_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    PART_ID_FIELD_NUMBER: _ClassVar[int]
    DEFECT_CLASSES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    RECIPE_VERSION_FIELD_NUMBER: _ClassVar[int]
    REVIEW_STATE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_DISPOSITIONS_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedScalarFieldContainer[str]
    stations: _containers.RepeatedScalarFieldContainer[str]
    cameras: _containers.RepeatedScalarFieldContainer[str]
    verdicts: _containers.RepeatedScalarFieldContainer[_inspections_pb2.Verdict]
    recipe_id: str
    captured_from_unix_ns: int
    captured_to_unix_ns: int
    part_id: str
    defect_classes: _containers.RepeatedScalarFieldContainer[str]
    model_versions: _containers.ScalarMap[str, str]
    recipe_version: int
    review_state: ReviewState
    sample_fraction: float
    reviewed_dispositions: _containers.RepeatedScalarFieldContainer[_inspections_pb2.Verdict]
    def __init__(self, lines: _Optional[_Iterable[str]] = ..., stations: _Optional[_Iterable[str]] = ..., cameras: _Optional[_Iterable[str]] = ..., verdicts: _Optional[_Iterable[_Union[_inspections_pb2.Verdict, str]]] = ..., recipe_id: _Optional[str] = ..., captured_from_unix_ns: _Optional[int] = ..., captured_to_unix_ns: _Optional[int] = ..., part_id: _Optional[str] = ..., defect_classes: _Optional[_Iterable[str]] = ..., model_versions: _Optional[_Mapping[str, str]] = ..., recipe_version: _Optional[int] = ..., review_state: _Optional[_Union[ReviewState, str]] = ..., sample_fraction: _Optional[float] = ..., reviewed_dispositions: _Optional[_Iterable[_Union[_inspections_pb2.Verdict, str]]] = ...) -> None: ...

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
    __slots__ = ("records", "next_page_token", "resume_cursor")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESUME_CURSOR_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[InspectionRecord]
    next_page_token: str
    resume_cursor: str
    def __init__(self, records: _Optional[_Iterable[_Union[InspectionRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., resume_cursor: _Optional[str] = ...) -> None: ...

class GetStatisticsRequest(_message.Message):
    __slots__ = ("filter", "by_line", "bucket", "time_zone", "shift_starts")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    BY_LINE_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    SHIFT_STARTS_FIELD_NUMBER: _ClassVar[int]
    filter: InspectionFilter
    by_line: bool
    bucket: TimeBucket
    time_zone: str
    shift_starts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, filter: _Optional[_Union[InspectionFilter, _Mapping]] = ..., by_line: _Optional[bool] = ..., bucket: _Optional[_Union[TimeBucket, str]] = ..., time_zone: _Optional[str] = ..., shift_starts: _Optional[_Iterable[str]] = ...) -> None: ...

class DefectClassCount(_message.Message):
    __slots__ = ("defect_class", "defects", "inspections")
    DEFECT_CLASS_FIELD_NUMBER: _ClassVar[int]
    DEFECTS_FIELD_NUMBER: _ClassVar[int]
    INSPECTIONS_FIELD_NUMBER: _ClassVar[int]
    defect_class: str
    defects: int
    inspections: int
    def __init__(self, defect_class: _Optional[str] = ..., defects: _Optional[int] = ..., inspections: _Optional[int] = ...) -> None: ...

class StatisticsGroup(_message.Message):
    __slots__ = ("line", "bucket_start_unix_ns", "bucket_label", "count", "ok", "ng", "review", "yield_rate", "ng_rate", "review_rate", "pareto", "mean_latency_s", "p95_latency_s")
    LINE_FIELD_NUMBER: _ClassVar[int]
    BUCKET_START_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_LABEL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    NG_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    YIELD_RATE_FIELD_NUMBER: _ClassVar[int]
    NG_RATE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_RATE_FIELD_NUMBER: _ClassVar[int]
    PARETO_FIELD_NUMBER: _ClassVar[int]
    MEAN_LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    P95_LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    line: str
    bucket_start_unix_ns: int
    bucket_label: str
    count: int
    ok: int
    ng: int
    review: int
    yield_rate: float
    ng_rate: float
    review_rate: float
    pareto: _containers.RepeatedCompositeFieldContainer[DefectClassCount]
    mean_latency_s: float
    p95_latency_s: float
    def __init__(self, line: _Optional[str] = ..., bucket_start_unix_ns: _Optional[int] = ..., bucket_label: _Optional[str] = ..., count: _Optional[int] = ..., ok: _Optional[int] = ..., ng: _Optional[int] = ..., review: _Optional[int] = ..., yield_rate: _Optional[float] = ..., ng_rate: _Optional[float] = ..., review_rate: _Optional[float] = ..., pareto: _Optional[_Iterable[_Union[DefectClassCount, _Mapping]]] = ..., mean_latency_s: _Optional[float] = ..., p95_latency_s: _Optional[float] = ...) -> None: ...

class GetStatisticsResponse(_message.Message):
    __slots__ = ("total", "groups")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    total: StatisticsGroup
    groups: _containers.RepeatedCompositeFieldContainer[StatisticsGroup]
    def __init__(self, total: _Optional[_Union[StatisticsGroup, _Mapping]] = ..., groups: _Optional[_Iterable[_Union[StatisticsGroup, _Mapping]]] = ...) -> None: ...

class WatchInspectionsRequest(_message.Message):
    __slots__ = ("filter", "cursor")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    filter: InspectionFilter
    cursor: str
    def __init__(self, filter: _Optional[_Union[InspectionFilter, _Mapping]] = ..., cursor: _Optional[str] = ...) -> None: ...

class WatchInspectionsResponse(_message.Message):
    __slots__ = ("record", "cursor")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    record: InspectionRecord
    cursor: str
    def __init__(self, record: _Optional[_Union[InspectionRecord, _Mapping]] = ..., cursor: _Optional[str] = ...) -> None: ...

class GetImageRequest(_message.Message):
    __slots__ = ("frame_id",)
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    def __init__(self, frame_id: _Optional[str] = ...) -> None: ...

class ImageResponse(_message.Message):
    __slots__ = ("frame_id", "png", "width", "height")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    png: bytes
    width: int
    height: int
    def __init__(self, frame_id: _Optional[str] = ..., png: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class RunRetentionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunRetentionResponse(_message.Message):
    __slots__ = ("records_deleted", "images_deleted")
    RECORDS_DELETED_FIELD_NUMBER: _ClassVar[int]
    IMAGES_DELETED_FIELD_NUMBER: _ClassVar[int]
    records_deleted: int
    images_deleted: int
    def __init__(self, records_deleted: _Optional[int] = ..., images_deleted: _Optional[int] = ...) -> None: ...

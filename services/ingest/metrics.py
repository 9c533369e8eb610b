"""Every Prometheus metric ingest declares (the shared ones are in services/common/metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

FRAMES_DROPPED = Counter(
    "defectflow_camera_frames_dropped_total",
    "Capture ticks skipped by the drop policy",
    ["line", "camera"],
)
FRAMES_ACCEPTED = Counter(
    "defectflow_frames_accepted_total", "Frames acknowledged by the broker", ["line", "camera"]
)
FRAMES_UNACKED = Counter(
    "defectflow_frames_unacknowledged_total", "Frame sends the broker did not acknowledge (retried)"
)
FRAMES_RESENT = Counter(
    "defectflow_frames_resent_total", "Spooled frames resent after an ingest restart"
)
CAMERA_UP = Gauge("defectflow_camera_connected", "1 while the camera delivers", ["camera"])
CAMERA_EVENTS = Counter(
    "defectflow_camera_events_total",
    "Camera trouble: kind=incomplete (broken buffer), missed (a request got no frame in "
    "time), reconnect",
    ["camera", "kind"],
)
CAMERA_GAP = Counter(
    "defectflow_camera_gap_seconds_total", "Time without frames while a camera was down", ["camera"]
)
PLC_TRIGGERS = Counter(
    "defectflow_ingest_plc_triggers_total", "Parts the PLC announced, by station", ["station"]
)
CAMERAS_ACTIVE = Gauge("defectflow_cameras_active", "Cameras open")

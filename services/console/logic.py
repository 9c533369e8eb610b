"""What the console decides, on plain values: filters from a form, live board counts, stage
latencies, the rows of an export. No HTTP, no gRPC here."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.common.domain import Verdict, verdict_name

VERDICT_CODES = {v.name.lower(): int(v) for v in (Verdict.OK, Verdict.NG, Verdict.REVIEW)}
REVIEW_STATES = {"": 0, "any": 0, "unreviewed": 1, "reviewed": 2}
MODEL_PIN = re.compile(r"^\s*([^=\s]+)\s*=\s*(\S+)\s*$")


# --- filters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterForm:
    """The gallery / export filter as the form sends it (strings), kept for re-rendering."""

    line: str = ""
    camera: str = ""
    verdict: str = "ng"  # ok | ng | review | any
    defect_class: str = ""
    since: str = ""  # ISO date-time, UTC when it names no offset
    until: str = ""
    recipe: str = ""
    model: str = ""  # name=version
    reviewed: str = ""  # "" | unreviewed | reviewed

    @staticmethod
    def from_params(params: dict[str, str]) -> FilterForm:
        names = FilterForm.__dataclass_fields__
        return FilterForm(**{k: str(v).strip() for k, v in params.items() if k in names})

    def fields(self) -> dict:
        """Keyword arguments of defectflow.v1.InspectionFilter; ValueError names the bad field."""
        out: dict = {}
        split = [("line", "lines"), ("camera", "cameras"), ("defect_class", "defect_classes")]
        for name, key in split:
            values = [v.strip() for v in getattr(self, name).split(",") if v.strip()]
            if values:
                out[key] = values
        if self.verdict and self.verdict != "any":
            if self.verdict not in VERDICT_CODES:
                raise ValueError(f"verdict {self.verdict!r} is not ok, ng, review or any")
            out["verdicts"] = [VERDICT_CODES[self.verdict]]
        if self.since:
            out["captured_from_unix_ns"] = unix_ns(self.since, "since")
        if self.until:
            out["captured_to_unix_ns"] = unix_ns(self.until, "until")
        if self.recipe:
            out["recipe_id"] = self.recipe
        if self.model:
            pins = {}
            for pin in self.model.split(","):
                m = MODEL_PIN.match(pin)
                if not m:
                    raise ValueError(f"model {pin!r} is not name=version")
                pins[m.group(1)] = m.group(2)
            out["model_versions"] = pins
        if self.reviewed not in REVIEW_STATES:
            raise ValueError(f"reviewed {self.reviewed!r} is not unreviewed or reviewed")
        if REVIEW_STATES[self.reviewed]:
            out["review_state"] = REVIEW_STATES[self.reviewed]
        return out

    def query(self) -> dict[str, str]:
        """The non-empty fields, for links that keep the filter."""
        return {k: v for k, v in self.__dict__.items() if v}


def unix_ns(text: str, name: str) -> int:
    try:
        t = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{name} {text!r} is not a date and time (YYYY-MM-DDTHH:MM)") from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


def utc(ns: int) -> str:
    if not ns:
        return ""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


# --- live board ------------------------------------------------------------------------


@dataclass
class CameraTally:
    line: str
    camera: str
    count: int = 0
    ok: int = 0
    ng: int = 0
    review: int = 0
    captured: deque = field(default_factory=deque)  # capture times within the rate window
    latest: deque = field(default_factory=lambda: deque(maxlen=4))  # (frame_id, verdict)


class Board:
    """Per line and camera: counts since the window start, the rate over the last minute,
    and the latest frames. Fed record by record from the live stream."""

    def __init__(self, rate_window_s: float = 60.0) -> None:
        self.rate_window_ns = int(rate_window_s * 1e9)
        self.cameras: dict[tuple[str, str], CameraTally] = {}
        self.version = 0

    def add(self, line: str, camera: str, verdict: int, frame_id: str, captured_ns: int) -> None:
        cam = self.cameras.get((line, camera))
        if cam is None:
            cam = self.cameras[(line, camera)] = CameraTally(line, camera)
        cam.count += 1
        if verdict == 1:
            cam.ok += 1
        elif verdict == 2:
            cam.ng += 1
        elif verdict == 3:
            cam.review += 1
        cam.captured.append(captured_ns)
        cam.latest.appendleft((frame_id, verdict_name(verdict)))
        self.version += 1

    def snapshot(self, now_ns: int) -> dict:
        rows = []
        total = {"count": 0, "ok": 0, "ng": 0, "review": 0, "rate_per_min": 0.0}
        for key in sorted(self.cameras):
            cam = self.cameras[key]
            while cam.captured and cam.captured[0] < now_ns - self.rate_window_ns:
                cam.captured.popleft()
            rate = len(cam.captured) * 60e9 / self.rate_window_ns
            rows.append(
                {
                    "line": cam.line,
                    "camera": cam.camera,
                    "count": cam.count,
                    "ok": cam.ok,
                    "ng": cam.ng,
                    "review": cam.review,
                    "yield": cam.ok / cam.count if cam.count else 0.0,
                    "rate_per_min": rate,
                    "latest": [{"frame_id": f, "verdict": v} for f, v in cam.latest],
                }
            )
            for k in ("count", "ok", "ng", "review"):
                total[k] += getattr(cam, k)
            total["rate_per_min"] += rate
        total["yield"] = total["ok"] / total["count"] if total["count"] else 0.0
        return {"cameras": rows, "total": total}


# --- inspection detail -----------------------------------------------------------------


@dataclass(frozen=True)
class StageTime:
    stage: str
    waited_ms: float  # since the previous stage handed the message on (queue + transport)
    handled_ms: float  # received -> sent in this stage
    instance: str


def stage_latencies(captured_ns: int, stamps: list[tuple[str, int, int, str]]) -> list[StageTime]:
    """(stage, received_ns, sent_ns, instance) stamps in pipeline order -> times per stage;
    a 0 timestamp (not stamped) counts as 0 ms."""
    out, prev = [], captured_ns
    for stage, received, sent, instance in stamps:
        waited = (received - prev) / 1e6 if received and prev else 0.0
        handled = (sent - received) / 1e6 if sent and received else 0.0
        out.append(StageTime(stage, max(waited, 0.0), max(handled, 0.0), instance))
        prev = sent or received or prev
    return out


# --- exports ---------------------------------------------------------------------------

EXPORT_COLUMNS = (
    "frame_id",
    "part_id",
    "line",
    "station",
    "camera",
    "captured_utc",
    "stored_utc",
    "recipe_id",
    "recipe_version",
    "model_versions",
    "verdict",
    "score",
    "complete",
    "defects",
    "defect_classes",
    "latency_s",
    "review_disposition",
    "review_defect_class",
    "reviewer",
    "reviewed_utc",
    "review_comment",
)


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat() if ns else ""


@dataclass(frozen=True)
class ExportRow:
    """One inspection as a flat row for SPC tools (the latest review, if any)."""

    frame_id: str
    part_id: str
    line: str
    station: str
    camera: str
    captured_utc: str
    stored_utc: str
    recipe_id: str
    recipe_version: int
    model_versions: str  # "name=version;..." sorted
    verdict: str
    score: float
    complete: bool
    defects: int
    defect_classes: str  # distinct, sorted, ";"-separated
    latency_s: float
    review_disposition: str
    review_defect_class: str
    reviewer: str
    reviewed_utc: str
    review_comment: str

    def values(self) -> list:
        return [getattr(self, c) for c in EXPORT_COLUMNS]

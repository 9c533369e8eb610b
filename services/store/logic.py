"""Store decisions: which columns an inspection becomes, cursors, filters, page sizes,
retention cut-offs and statistics arithmetic. No SQL, no gRPC here."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field

from defectflow.v1 import inspections_pb2

from services.common.domain import Verdict

NS_PER_DAY = 86_400 * 10**9


def inspection_row(
    msg: inspections_pb2.Inspection, payload: bytes, stored_ns: int
) -> tuple[dict, list[dict]]:
    """Columns of one inspection and its defects. An inline image moves to its own column so
    that listing records never drags image bytes along."""
    ctx = msg.context
    done_ns = max(
        (s.sent_unix_ns for s in msg.stamps if s.stage == "postprocess"), default=stored_ns
    )
    image_data = None
    if ctx.image.HasField("inline_data"):
        image_data = ctx.image.inline_data
        slim = inspections_pb2.Inspection()
        slim.CopyFrom(msg)
        slim.context.image.ClearField("inline_data")
        payload = slim.SerializeToString()
    row = {
        "frame_id": ctx.frame_id,
        "part_id": ctx.part_id,
        "line": ctx.source.line,
        "station": ctx.source.station,
        "camera": ctx.source.camera,
        "captured_unix_ns": ctx.captured_unix_ns,
        "stored_unix_ns": stored_ns,
        "processed_unix_ns": done_ns,
        "recipe_id": ctx.recipe_id,
        "recipe_version": ctx.recipe_version,
        "model_versions": dict(msg.model_versions),
        "verdict": int(msg.verdict),
        "score": float(msg.score),
        "complete": bool(msg.complete),
        "latency_s": max(0.0, (done_ns - ctx.captured_unix_ns) / 1e9),
        "image_uri": ctx.image.blob_uri if ctx.image.HasField("blob_uri") else "",
        "image_data": image_data,
        "payload": payload,
    }
    defects = [
        {
            "defect_class": d.defect_class,
            "score": d.score,
            "x0": d.box.x0,
            "y0": d.box.y0,
            "x1": d.box.x1,
            "y1": d.box.y1,
            "area_px": d.area_px,
            "area_mm2": d.area_mm2,
            "source": d.source,
            "contour": [[p.x, p.y] for p in d.contour],
        }
        for d in msg.defects
    ]
    return row, defects


def page_size(requested: int, maximum: int, default: int = 100) -> int:
    """AIP-158: 0 means the default; anything above the maximum is reduced to it."""
    if requested <= 0:
        return min(default, maximum)
    return min(requested, maximum)


# --- cursors -------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in store order: rows with (tx_id, id) greater than this come after it.

    Store order is (writing transaction id, row id). Readers only ever see rows below the
    oldest transaction still running (the frontier), so every row that becomes visible
    later sorts after any cursor handed out before: no skipped rows, no repeats.
    """

    tx_id: int = 0
    row_id: int = 0

    def encode(self) -> str:
        raw = json.dumps({"v": 1, "tx": self.tx_id, "id": self.row_id}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode()

    @staticmethod
    def frontier(xmin: int) -> Cursor:
        """Just before every row of transaction `xmin` and later (row ids start at 1)."""
        return Cursor(xmin, 0)


def decode_cursor(token: str) -> Cursor:
    """The position in a page token / cursor; ValueError says what is wrong with it."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        cur = Cursor(int(data["tx"]), int(data["id"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"invalid cursor {token!r}: pass a next_page_token, resume_cursor or cursor "
            "exactly as the API returned it"
        ) from exc
    if cur.tx_id < 0 or cur.row_id < 0:
        raise ValueError(f"invalid cursor {token!r}: negative position")
    return cur


# --- filters -------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    lines: tuple[str, ...] = ()
    stations: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()
    verdicts: tuple[int, ...] = ()
    recipe_id: str = ""
    recipe_version: int = 0
    captured_from_ns: int = 0
    captured_to_ns: int = 0
    part_id: str = ""
    defect_classes: tuple[str, ...] = ()
    model_versions: dict[str, str] = field(default_factory=dict)
    review_state: int = 0  # 0 any, 1 unreviewed, 2 reviewed
    sample_fraction: float = 0.0  # 0 = all
    reviewed_dispositions: tuple[int, ...] = ()

    def check(self) -> Filter:
        """Raise ValueError for a filter that can match nothing by mistake."""
        bad = [v for v in self.verdicts if v not in (1, 2, 3)]
        if bad:
            raise ValueError(f"verdicts {bad} are not OK(1), NG(2) or REVIEW(3)")
        bad = [v for v in self.reviewed_dispositions if v not in (1, 2)]
        if bad:
            raise ValueError(f"reviewed_dispositions {bad} are not OK(1) or NG(2)")
        if self.review_state not in (0, 1, 2):
            raise ValueError(f"unknown review_state {self.review_state}")
        if not 0.0 <= self.sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction {self.sample_fraction} is not in [0, 1]")
        if self.captured_from_ns < 0 or self.captured_to_ns < 0:
            raise ValueError("captured_from/to_unix_ns must not be negative")
        if self.captured_from_ns and 0 < self.captured_to_ns <= self.captured_from_ns:
            raise ValueError(
                f"empty time range: captured_to_unix_ns {self.captured_to_ns} is not after "
                f"captured_from_unix_ns {self.captured_from_ns}"
            )
        for name, values in (
            ("lines", self.lines),
            ("stations", self.stations),
            ("cameras", self.cameras),
            ("defect_classes", self.defect_classes),
        ):
            if any(not v for v in values):
                raise ValueError(f"{name} contains an empty string")
        return self


# --- retention -----------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep; 0 keeps forever. NG and REVIEW count as 'kept longer' verdicts."""

    records_ok_days: float = 0.0
    records_ng_days: float = 0.0
    images_ok_days: float = 0.0
    images_ng_days: float = 0.0

    def check(self) -> RetentionPolicy:
        values = (self.records_ok_days, self.records_ng_days)
        if any(v < 0 for v in (*values, self.images_ok_days, self.images_ng_days)):
            raise ValueError(f"retention days must not be negative: {self}")
        return self

    def cutoffs(self, now_ns: int) -> tuple[list[Cutoff], list[Cutoff]]:
        """(record cut-offs, image cut-offs): rows captured before `before_ns` go."""
        kept_longer = (int(Verdict.NG), int(Verdict.REVIEW), 0)

        def cut(ok_days: float, ng_days: float) -> list[Cutoff]:
            out = []
            if ok_days > 0:
                out.append(Cutoff((int(Verdict.OK),), now_ns - int(ok_days * NS_PER_DAY)))
            if ng_days > 0:
                out.append(Cutoff(kept_longer, now_ns - int(ng_days * NS_PER_DAY)))
            return out

        return (
            cut(self.records_ok_days, self.records_ng_days),
            cut(self.images_ok_days, self.images_ng_days),
        )


@dataclass(frozen=True)
class Cutoff:
    verdicts: tuple[int, ...]
    before_ns: int


# --- statistics ----------------------------------------------------------------------

HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def shift_minutes(starts: list[str] | tuple[str, ...]) -> tuple[int, ...]:
    """'HH:MM' shift starts -> sorted minutes after local midnight."""
    out = []
    for s in starts:
        m = HHMM.match(s.strip())
        if not m:
            raise ValueError(f"shift start {s!r} is not HH:MM (00:00 .. 23:59)")
        out.append(int(m.group(1)) * 60 + int(m.group(2)))
    if not out:
        raise ValueError("at least one shift start is needed to group by shift")
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate shift starts in {list(starts)}")
    return tuple(sorted(out))


def shift_number(minute_of_day: int, starts: tuple[int, ...]) -> int:
    """1-based shift of a local minute of the day; before the first start it is the last
    shift, begun the day before."""
    n = len(starts)
    for i in range(n - 1, -1, -1):
        if minute_of_day >= starts[i]:
            return i + 1
    return n


@dataclass(frozen=True)
class Rates:
    yield_: float
    ng_rate: float
    review_rate: float


def rates(count: int, ok: int, ng: int, review: int) -> Rates:
    if count <= 0:
        return Rates(0.0, 0.0, 0.0)
    return Rates(ok / count, ng / count, review / count)


# --- reviews -------------------------------------------------------------------------

MAX_COMMENT_CHARS = 2000
DEFECT_CLASS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _./-]{0,63}$")


def check_review(disposition: int, defect_class: str, comment: str) -> tuple[str, str]:
    """The (defect class, comment) to store for a human disposition; ValueError says what
    is wrong. NG needs a defect class, OK must not have one."""
    cls, text = defect_class.strip(), comment.strip()
    if disposition not in (int(Verdict.OK), int(Verdict.NG)):
        raise ValueError(f"disposition {disposition} is not OK(1) or NG(2)")
    if disposition == int(Verdict.NG) and not cls:
        raise ValueError("an NG disposition needs a defect_class")
    if disposition == int(Verdict.OK) and cls:
        raise ValueError(f"an OK disposition has no defect_class (got {cls!r})")
    if cls and not DEFECT_CLASS.match(cls):
        raise ValueError(f"defect_class {cls!r}: 1-64 letters, digits, space, '_', '.', '/' or '-'")
    if len(text) > MAX_COMMENT_CHARS:
        raise ValueError(f"comment has {len(text)} characters; at most {MAX_COMMENT_CHARS}")
    return cls, text

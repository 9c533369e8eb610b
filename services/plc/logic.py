"""A part's verdict for the PLC: aggregate its views, keep its deadline, never stay silent.

The PLC announces each part at a station (its part id); every camera of that station
sends one inspection for it. The part's verdict is decided by these rules, in order:

1. all expected views arrived: any NG -> NG, else any REVIEW -> REVIEW, else OK;
2. the aggregation window (`window_s` after the first view) closed with views missing:
   any NG -> NG (the part is bad whatever the others say), else REVIEW ("missing view");
3. the part's deadline (`deadline_s` after the trigger) passed with no verdict: the
   declared fail-safe (NG or REVIEW), reason "deadline";
4. the verdict could not be written before the deadline (PLC not answering): the
   fail-safe is counted with reason "plc_unreachable"; the PLC program's own timeout
   must reject the part (docs/plc.md).

Each part gets exactly one decision. Views arriving after it are counted as late and
never change what the PLC was told.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from services.common.domain import Verdict

FAILSAFE_CODE = "TIMEOUT"  # defect code written with a deadline fail-safe
MISSING_VIEW_CODE = "MISSING_VIEW"


@dataclass(frozen=True)
class View:
    camera: str
    verdict: Verdict
    defect_code: str = ""
    frame_id: str = ""


@dataclass(frozen=True)
class PartVerdict:
    station: str
    part_id: str
    verdict: Verdict
    defect_code: str
    reason: str  # "aggregated" | "missing_view" | "deadline"
    triggered_at: float
    decided_at: float

    @property
    def latency_s(self) -> float:
        return self.decided_at - self.triggered_at


@dataclass
class Part:
    station: str
    part_id: str
    triggered_at: float
    expected: frozenset[str]  # cameras that view this part
    views: dict[str, View] = field(default_factory=dict)
    first_view_at: float | None = None


def aggregate(views: list[View], expected: frozenset[str]) -> tuple[Verdict, str, str]:
    """(verdict, defect code, reason) from the views in hand; rules 1 and 2 above."""
    ordered = sorted(views, key=lambda v: v.camera)  # deterministic defect code
    ng = [v for v in ordered if v.verdict == Verdict.NG]
    if ng:
        return Verdict.NG, ng[0].defect_code, "aggregated"
    missing = expected - {v.camera for v in views}
    if missing:
        return Verdict.REVIEW, MISSING_VIEW_CODE, "missing_view"
    review = [v for v in ordered if v.verdict != Verdict.OK]
    if review:
        return Verdict.REVIEW, review[0].defect_code, "aggregated"
    return Verdict.OK, "", "aggregated"


class PartTracker:
    """Parts in front of the cameras, their views, and when each must be decided.

    Time is passed in (seconds on a monotonic clock), so every rule is testable without
    waiting. `decided` remembers recent decisions so a late or redelivered view of a
    decided part is recognised, bounded by `remember`.
    """

    def __init__(
        self,
        deadline_s: float,
        window_s: float,
        fail_safe: Verdict,
        orphan_grace_s: float = 2.0,
        remember: int = 100_000,
    ) -> None:
        if fail_safe not in (Verdict.NG, Verdict.REVIEW):
            raise ValueError(f"fail-safe verdict must be NG or REVIEW, not {fail_safe.name}")
        if window_s > deadline_s:
            raise ValueError(f"window_s {window_s} must not exceed deadline_s {deadline_s}")
        self.deadline_s, self.window_s, self.fail_safe = deadline_s, window_s, fail_safe
        self.orphan_grace_s = orphan_grace_s
        self.parts: dict[tuple[str, str], Part] = {}
        self.orphans: dict[tuple[str, str], tuple[float, list[View]]] = {}
        self.decided: OrderedDict[tuple[str, str], PartVerdict] = OrderedDict()
        self.remember = remember

    def triggered(
        self, station: str, part_id: str, at: float, expected: frozenset[str]
    ) -> PartVerdict | None:
        """The PLC put a part in front of `station`. Views that came first are applied."""
        key = (station, part_id)
        if key in self.parts or key in self.decided:
            return None  # the same trigger seen twice (a resubscription replays the value)
        part = Part(station, part_id, at, expected)
        self.parts[key] = part
        _, early = self.orphans.pop(key, (at, []))
        decision = None
        for v in early:
            decision = self._add(part, v, at) or decision
        return decision

    def view(
        self, station: str, part_id: str, view: View, at: float
    ) -> tuple[str, PartVerdict | None]:
        """One camera's inspection of a part -> (what became of it, a decision if complete).

        What became of it: "applied", "late" (the part was decided), "duplicate" (that
        camera's view is already in), "held" (the part's trigger not seen yet).
        """
        key = (station, part_id)
        if key in self.decided:
            return "late", None
        part = self.parts.get(key)
        if part is None:
            since, views = self.orphans.setdefault(key, (at, []))
            views.append(view)
            return "held", None
        if view.camera in part.views:
            return "duplicate", None
        return "applied", self._add(part, view, at)

    def _add(self, part: Part, view: View, at: float) -> PartVerdict | None:
        part.views[view.camera] = view
        if part.first_view_at is None:
            part.first_view_at = at
        if part.expected <= set(part.views):
            verdict, code, reason = aggregate(list(part.views.values()), part.expected)
            return self._decide(part, verdict, code, reason, at)
        return None

    def due(self, now: float) -> tuple[list[PartVerdict], list[tuple[str, str, int]]]:
        """Decisions whose window or deadline passed, and orphans given up on
        (station, part id, views dropped): inspections of parts the PLC never announced."""
        decisions = []
        for part in list(self.parts.values()):
            if now >= part.triggered_at + self.deadline_s:
                decisions.append(self._decide(part, self.fail_safe, FAILSAFE_CODE, "deadline", now))
            elif part.first_view_at is not None and now >= part.first_view_at + self.window_s:
                verdict, code, reason = aggregate(list(part.views.values()), part.expected)
                decisions.append(self._decide(part, verdict, code, reason, now))
        dropped = []
        for key, (since, views) in list(self.orphans.items()):
            if now >= since + self.orphan_grace_s:
                del self.orphans[key]
                dropped.append((key[0], key[1], len(views)))
        return decisions, dropped

    def _decide(
        self, part: Part, verdict: Verdict, code: str, reason: str, at: float
    ) -> PartVerdict:
        key = (part.station, part.part_id)
        del self.parts[key]
        d = PartVerdict(part.station, part.part_id, verdict, code, reason, part.triggered_at, at)
        self.decided[key] = d
        while len(self.decided) > self.remember:
            self.decided.popitem(last=False)
        return d

    def next_due(self) -> float | None:
        """The earliest time `due` can return something (for the caller's sleep)."""
        times = [p.triggered_at + self.deadline_s for p in self.parts.values()]
        times += [p.first_view_at + self.window_s for p in self.parts.values() if p.first_view_at]
        times += [since + self.orphan_grace_s for since, _ in self.orphans.values()]
        return min(times, default=None)


def verdict_from_inspection(value: int) -> Verdict:
    """The inspection's protobuf verdict; anything unknown is REVIEW, never OK."""
    try:
        v = Verdict(value)
    except ValueError:
        return Verdict.REVIEW
    return Verdict.REVIEW if v == Verdict.NONE else v

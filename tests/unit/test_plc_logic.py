"""The part verdict rules the PLC is told (services/plc/logic.py)."""

from __future__ import annotations

import pytest

from services.common.domain import Verdict
from services.plc.logic import (
    FAILSAFE_CODE,
    MISSING_VIEW_CODE,
    PartTracker,
    View,
    aggregate,
    verdict_from_inspection,
)

TWO = frozenset({"cam-a", "cam-b"})


def tracker(fail_safe=Verdict.NG) -> PartTracker:
    return PartTracker(deadline_s=2.0, window_s=0.5, fail_safe=fail_safe, orphan_grace_s=1.0)


def test_aggregate_rules():
    ok, ng, rv = Verdict.OK, Verdict.NG, Verdict.REVIEW
    assert aggregate([View("cam-a", ok), View("cam-b", ok)], TWO) == (ok, "", "aggregated")
    assert aggregate([View("cam-a", ok), View("cam-b", ng, "scratch")], TWO)[:2] == (ng, "scratch")
    assert aggregate([View("cam-a", rv, "x"), View("cam-b", ok)], TWO)[0] == rv
    # a missing view: NG still wins, otherwise REVIEW
    assert aggregate([View("cam-a", ng, "hole")], TWO)[:2] == (ng, "hole")
    assert aggregate([View("cam-a", ok)], TWO) == (rv, MISSING_VIEW_CODE, "missing_view")


def test_all_views_decide_at_once_and_exactly_once():
    t = tracker()
    t.triggered("s1", "p1", 0.0, TWO)
    assert t.view("s1", "p1", View("cam-a", Verdict.OK), 0.1) == ("applied", None)
    outcome, d = t.view("s1", "p1", View("cam-b", Verdict.NG, "crack"), 0.2)
    assert outcome == "applied" and d is not None
    assert (d.verdict, d.defect_code, d.reason) == (Verdict.NG, "crack", "aggregated")
    assert d.latency_s == pytest.approx(0.2)
    # a redelivered view after the decision is late and changes nothing
    assert t.view("s1", "p1", View("cam-b", Verdict.OK), 0.3) == ("late", None)
    assert t.due(10.0) == ([], [])


def test_window_closes_with_a_view_missing():
    t = tracker()
    t.triggered("s1", "p1", 0.0, TWO)
    t.view("s1", "p1", View("cam-a", Verdict.OK), 0.2)
    assert t.due(0.6) == ([], [])
    (d,), _ = t.due(0.71)
    assert (d.verdict, d.reason) == (Verdict.REVIEW, "missing_view")


@pytest.mark.parametrize("fail_safe", [Verdict.NG, Verdict.REVIEW])
def test_no_view_by_the_deadline_is_the_declared_fail_safe(fail_safe):
    t = tracker(fail_safe)
    t.triggered("s1", "p1", 0.0, TWO)
    assert t.next_due() == pytest.approx(2.0)
    assert t.due(1.99) == ([], [])
    (d,), _ = t.due(2.0)
    assert (d.verdict, d.defect_code, d.reason) == (fail_safe, FAILSAFE_CODE, "deadline")
    assert t.view("s1", "p1", View("cam-a", Verdict.OK), 2.5)[0] == "late"


def test_view_before_its_trigger_is_held_then_applied_or_dropped():
    t = tracker()
    assert t.view("s1", "p1", View("cam-a", Verdict.OK), 0.0) == ("held", None)
    assert t.triggered("s1", "p1", 0.1, frozenset({"cam-a"})).verdict == Verdict.OK
    # never announced: given up after the grace, counted by the caller
    t.view("s1", "p9", View("cam-a", Verdict.OK), 0.0)
    assert t.due(1.0)[1] == [("s1", "p9", 1)]


def test_duplicate_trigger_and_duplicate_view_are_ignored():
    t = tracker()
    t.triggered("s1", "p1", 0.0, TWO)
    assert t.triggered("s1", "p1", 0.1, TWO) is None
    t.view("s1", "p1", View("cam-a", Verdict.OK), 0.1)
    assert t.view("s1", "p1", View("cam-a", Verdict.NG), 0.2) == ("duplicate", None)


def test_fail_safe_must_not_be_ok_and_unknown_verdicts_are_review():
    with pytest.raises(ValueError, match="NG or REVIEW"):
        PartTracker(2.0, 1.0, Verdict.OK)
    assert verdict_from_inspection(0) == Verdict.REVIEW
    assert verdict_from_inspection(99) == Verdict.REVIEW
    assert verdict_from_inspection(2) == Verdict.NG

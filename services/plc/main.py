"""plc: each part's verdict to its station's PLC node, within the part's deadline.

A second consumer group on the inspections topic (beside the store): it follows the
PLC's part triggers, collects the views of each part, aggregates them (services/plc/logic.py)
and writes the verdict back over OPC UA. Parts that miss their deadline get the declared
fail-safe, counted and logged; a verdict the PLC does not take before the deadline is
counted as a fail-safe too ("plc_unreachable"), never silently dropped.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterable, Sequence

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import Counter, Gauge, Histogram

from services.common import metrics, topics
from services.common.domain import Verdict
from services.common.errors import BadInput
from services.common.logs import setup_logging
from services.common.opcua import PartTrigger, PlcLink, PlcUnavailable
from services.common.stage import Handled, StageRunner, dead_letter
from services.plc.adapters.inspections import read_view
from services.plc.adapters.stations import StationViews
from services.plc.config import PlcSettings
from services.plc.logic import PartTracker, PartVerdict

GROUP = "defectflow-plc"
log = logging.getLogger("defectflow.plc")

VERDICTS = Counter(
    "defectflow_plc_verdicts_total",
    "Part verdicts written to the PLC",
    ["station", "verdict", "reason"],
)
FAILSAFE = Counter(
    "defectflow_plc_failsafe_total",
    "Parts that ended in the fail-safe: reason=deadline (no verdict in time, fail-safe "
    "written) or plc_unreachable (the PLC did not take the verdict before the deadline)",
    ["station", "reason"],
)
VIEWS = Counter(
    "defectflow_plc_views_total",
    "Inspections seen, by what became of them (applied, late, duplicate, untracked, "
    "not_plc_station)",
    ["outcome"],
)
TRIGGERS = Counter("defectflow_plc_triggers_total", "Parts announced by the PLC", ["station"])
LATENCY = Histogram(
    "defectflow_plc_trigger_to_verdict_seconds",
    "From the PLC's part trigger reaching defectflow to the verdict written back",
    ["station"],
    buckets=metrics.LATENCY_BUCKETS,
)
CONNECTED = Gauge("defectflow_plc_connected", "1 while the OPC UA session to the PLC is up")


class PlcHandler:
    def __init__(self, s: PlcSettings, link: PlcLink | None = None) -> None:
        self.s = s
        self.stations = StationViews(s.cameras_path)
        self.tracker = PartTracker(s.deadline_s, s.window_s, Verdict[s.fail_safe], s.orphan_grace_s)
        self.triggers: queue.Queue[PartTrigger] = queue.Queue()
        self.link = link or PlcLink(
            s.endpoint,
            self.stations.stations,
            self.triggers.put,
            s.namespace,
            s.publishing_ms,
            s.request_timeout_s,
        )
        self.records: dict[tuple[str, str], list[ConsumerRecord]] = {}  # part -> its records
        self.unwritten: list[PartVerdict] = []  # the PLC did not take them yet

    def handle(self, records: Sequence[ConsumerRecord]) -> Handled:
        out = Handled()
        now = time.monotonic()
        self._drain_triggers()
        for record in records:
            try:
                station, part_id, view = read_view(record)
            except BadInput as err:
                out.outputs.append(dead_letter("plc", record, err))
                out.done.append(record)
                continue
            if station not in self.stations.stations:
                VIEWS.labels("not_plc_station").inc()
                out.done.append(record)
                continue
            outcome, decision = self.tracker.view(station, part_id, view, now)
            if outcome != "held":  # held views are counted when applied or dropped
                VIEWS.labels(outcome).inc()
            if outcome in ("late", "duplicate"):
                if outcome == "late":
                    log.info(
                        "view of %s/%s from %s after its verdict", station, part_id, view.camera
                    )
                out.done.append(record)
                continue
            self.records.setdefault((station, part_id), []).append(record)
            if decision is not None:
                out.done += self._write(decision)
        return out

    def tick(self) -> Handled:
        out = Handled()
        CONNECTED.set(1 if self.link.connected.is_set() else 0)
        if self.stations.refresh():
            log.info("cameras file changed: expected views updated for new parts")
        out.done += self._drain_triggers()
        now = time.monotonic()
        decisions, orphans = self.tracker.due(now)
        for station, part_id, n in orphans:
            VIEWS.labels("untracked").inc(n)
            log.warning(
                "%d inspections of %s/%s dropped: the PLC never announced that part",
                n,
                station,
                part_id,
            )
            out.done += self.records.pop((station, part_id), [])
        for d in decisions:
            if d.reason == "deadline":
                log.error(
                    "part %s/%s: no verdict within %.1f s, fail-safe %s",
                    d.station,
                    d.part_id,
                    self.s.deadline_s,
                    d.verdict.name,
                )
            out.done += self._write(d)
        retry, self.unwritten = self.unwritten, []
        for d in retry:
            out.done += self._write(d)
        return out

    def _drain_triggers(self) -> list[ConsumerRecord]:
        done: list[ConsumerRecord] = []
        while True:
            try:
                t = self.triggers.get_nowait()
            except queue.Empty:
                return done
            TRIGGERS.labels(t.station).inc()
            expected = self.stations.expected(t.station)
            decision = self.tracker.triggered(t.station, t.part_id, t.received_monotonic, expected)
            if decision is not None:
                done += self._write(decision)

    def _write(self, d: PartVerdict) -> list[ConsumerRecord]:
        """Write the verdict; the part's records are done once written or given up on."""
        now = time.monotonic()
        left = d.triggered_at + self.s.deadline_s - now
        if d.reason == "deadline":
            left = self.s.request_timeout_s  # the fail-safe gets one attempt
        if left <= 0:
            FAILSAFE.labels(d.station, "plc_unreachable").inc()
            log.error(
                "part %s/%s: PLC did not take verdict %s before the deadline (fail-safe "
                "on the PLC's side)",
                d.station,
                d.part_id,
                d.verdict.name,
            )
            return self.records.pop((d.station, d.part_id), [])
        try:
            self.link.write_verdict(
                d.station,
                d.part_id,
                int(d.verdict),
                d.defect_code,
                min(left, self.s.request_timeout_s),
            )
        except PlcUnavailable as exc:
            if d.reason == "deadline":
                FAILSAFE.labels(d.station, "plc_unreachable").inc()
                log.error("part %s/%s: fail-safe not written: %s", d.station, d.part_id, exc)
                return self.records.pop((d.station, d.part_id), [])
            log.warning("%s; retrying until the part's deadline", exc)
            self.unwritten.append(d)
            return []
        VERDICTS.labels(d.station, d.verdict.name, d.reason).inc()
        if d.reason == "deadline":
            FAILSAFE.labels(d.station, "deadline").inc()
        LATENCY.labels(d.station).observe(time.monotonic() - d.triggered_at)
        return self.records.pop((d.station, d.part_id), [])

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        # views from these partitions will be read again by their new owner; parts keep
        # their trigger and deadline here, so none is left without a decision
        gone = {(tp.topic, tp.partition) for tp in partitions}
        for key, recs in list(self.records.items()):
            self.records[key] = [r for r in recs if (r.topic, r.partition) not in gone]


def main() -> None:
    s = PlcSettings()
    setup_logging("plc", s.log_level)
    metrics.serve(s.metrics_port, s.metrics_addr)
    handler = PlcHandler(s)
    for station in handler.stations.stations:  # series from the start: 0 is a figure too
        for reason in ("deadline", "plc_unreachable"):
            FAILSAFE.labels(station, reason)
    handler.link.start()
    runner = StageRunner("plc", topics.INSPECTIONS, handler, s, group_id=GROUP)
    runner.install_signal_handlers()
    try:
        runner.run()
    finally:
        handler.link.stop()


if __name__ == "__main__":
    main()

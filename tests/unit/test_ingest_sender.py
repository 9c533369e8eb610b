"""Ingest's sender: frames the broker did not acknowledge are resent first, with a backoff
that doubles up to 10 s and starts again after a success; accepted ones leave the spool."""

from __future__ import annotations

import logging
import threading

from services.ingest.adapters.cameras import GroundTruthLog
from services.ingest.adapters.publish import Sender
from services.ingest.adapters.spool import Spool, Spooled


class Acked:
    def get(self, timeout: float) -> None:
        return None


class FlakyProducer:
    """Refuses the first `failures` sends, as a broker that is down would."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[bytes] = []

    def send(self, topic: str, key: bytes, value: bytes) -> Acked:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker down")
        self.sent.append(value)
        return Acked()

    def flush(self, timeout: float) -> None:
        return None


class Waits(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waited: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.append(timeout or 0.0)
        return False


def test_unacknowledged_frames_are_resent_first_with_a_doubling_backoff(tmp_path):
    spool = Spool(tmp_path / "spool")
    item = Spooled("f1", "line-1", "cam-1", b"k", b"frame", None)
    spool.put(item)
    truth = GroundTruthLog(tmp_path / "accepted.jsonl")
    sender = Sender(FlakyProducer(failures=3), spool, truth, logging.getLogger("test"))
    assert sender.resend_unacked(Waits()), "nothing unacknowledged: go on capturing"
    assert not sender.send([item])
    stop = Waits()
    assert [sender.resend_unacked(stop) for _ in range(3)] == [False, False, True]
    assert stop.waited == [0.5, 1.0], "doubling while the broker refuses"
    assert sender.producer.sent == [b"frame"] and sender.accepted == 1
    assert sender.unacked == [] and spool.pending() == []
    assert [e["frame_id"] for e in truth.entries()] == ["f1"]
    sender.producer.failures = 2
    assert not sender.send([Spooled("f2", "line-1", "cam-1", b"k", b"next", None)])
    assert not sender.resend_unacked(stop)
    assert stop.waited[-1] == 0.5, "a success starts the backoff again"

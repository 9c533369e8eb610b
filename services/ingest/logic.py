"""Ingest decisions: frame identity, keys, the camera drop policy, what a log may show."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


def new_frame_id() -> str:
    """Globally unique across restarts and replicas: the store's idempotency key."""
    return uuid.uuid4().hex


@dataclass
class Pacer:
    """Keeps a camera at its frame rate; when capture falls behind by more than
    `max_lag` periods the missed ticks are dropped (drop-oldest) and counted,
    instead of queueing without bound."""

    period_s: float
    max_lag: int
    next_due: float
    dropped: int = 0

    def due(self, now: float) -> bool:
        if now < self.next_due:
            return False
        behind = int((now - self.next_due) / self.period_s)
        if behind > self.max_lag:
            skipped = behind - self.max_lag
            self.dropped += skipped
            self.next_due += skipped * self.period_s
        self.next_due += self.period_s
        return True


def redacted(url: str) -> str:
    """A camera URL as logs and health reports may show it: the password of its user
    (rtsp://user:secret@host/...) replaced by ***; anything else unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))

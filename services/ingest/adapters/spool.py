"""Ingest's write-ahead spool: a captured frame is on disk before it is sent.

A frame is *accepted* when the broker acknowledged it (acks=all); only then is
it written to the accepted log and removed from the spool. A frame captured but
not acknowledged when ingest dies (kill -9, node lost, broker down) is still in
the spool and is sent again on restart with the same frame id, so it is neither
lost nor stored twice (the store is idempotent by frame id). One spool per
ingest replica (a volume of its own in Kubernetes).
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Spooled:
    frame_id: str
    line: str
    camera: str
    key: bytes
    value: bytes
    truth: dict | None


class Spool:
    def __init__(self, directory: Path | None) -> None:
        self.dir = Path(directory) if directory else None
        if self.dir:
            self.dir.mkdir(parents=True, exist_ok=True)
        self._seq = 0

    def put(self, item: Spooled) -> None:
        if not self.dir:
            return
        doc = {
            "frame_id": item.frame_id,
            "line": item.line,
            "camera": item.camera,
            "key": base64.b64encode(item.key).decode(),
            "value": base64.b64encode(item.value).decode(),
            "truth": item.truth,
        }
        # the name orders resends as they were captured; rename makes the write atomic
        self._seq += 1
        name = f"{time.time_ns():020d}-{self._seq:06d}-{item.frame_id}.json"
        tmp = self.dir / f".{name}.tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / name)

    def remove(self, frame_id: str) -> None:
        if self.dir:
            for path in self.dir.glob(f"*-{frame_id}.json"):
                path.unlink(missing_ok=True)

    def pending(self) -> list[Spooled]:
        """Frames captured but not known to be accepted, oldest first."""
        if not self.dir:
            return []
        out = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                d = json.loads(path.read_text())
            except (OSError, ValueError):  # never completed: the rename is the commit
                path.unlink(missing_ok=True)
                continue
            out.append(
                Spooled(
                    d["frame_id"],
                    d["line"],
                    d["camera"],
                    base64.b64decode(d["key"]),
                    base64.b64decode(d["value"]),
                    d["truth"],
                )
            )
        for tmp in self.dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        return out

"""Which stations follow the PLC and which cameras view each: read from the cameras file
ingest uses (docs/cameras.md), re-read when it changes; a broken file keeps the last good."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from services.common.watched import WatchedFile

log = logging.getLogger("defectflow.plc.stations")


class StationViews:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.stations: list[str] = []
        self.views: dict[str, frozenset[str]] = {}
        self.file = WatchedFile(self.path)
        self.refresh()

    def refresh(self) -> bool:
        """True when the file changed and was applied."""
        text = self.file.changed()
        if text is None:
            return False
        try:
            data = yaml.safe_load(text) or {}
            stations = [str(s) for s in data.get("plc_stations", [])]
            views: dict[str, set[str]] = {s: set() for s in stations}
            for name, cam in (data.get("cameras") or {}).items():
                if str(cam["station"]) in views:
                    views[str(cam["station"])].add(str(name))
        except (yaml.YAMLError, AttributeError, KeyError, TypeError) as exc:
            log.error("cameras file %s ignored, keeping the last good one: %r", self.path, exc)
            return False
        self.stations = stations
        self.views = {s: frozenset(v) for s, v in views.items()}
        log.info("stations following the PLC: %s", {s: sorted(v) for s, v in self.views.items()})
        return True

    def expected(self, station: str) -> frozenset[str]:
        return self.views.get(station, frozenset())

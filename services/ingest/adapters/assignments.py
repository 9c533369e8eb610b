"""Which recipe each line runs: the changeover switch.

A YAML file maps line -> recipe id (in Kubernetes a ConfigMap key mounted as a file;
locally any file). Ingest stamps the recipe id on every frame it captures, and every
later stage inspects the frame with the recipe it carries, so a changeover takes effect
on the next frame the line captures, with no restart and no frame in flight affected.
The file is re-read when its modification time changes; a broken file keeps the last
good assignment and is logged, never crashes the line.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import yaml

from services.common.watched import WatchedFile

log = logging.getLogger("defectflow.ingest.recipes")
RECIPE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class LineRecipes:
    def __init__(self, path: Path | None, default: str) -> None:
        self.path = Path(path) if path else None
        self.file = WatchedFile(self.path) if self.path else None
        self.default = default
        self.assigned: dict[str, str] = {}

    def recipe_for(self, line: str) -> str:
        self._refresh()
        return self.assigned.get(line, self.default)

    def _refresh(self) -> None:
        text = self.file.changed() if self.file else None
        if text is None:
            return
        try:
            data = yaml.safe_load(text) or {}
            if not isinstance(data, dict):
                raise ValueError("expected a mapping line -> recipe id")
            new = {str(k): str(v) for k, v in data.items()}
            bad = [v for v in new.values() if not RECIPE_ID.match(v)]
            if bad:
                raise ValueError(f"invalid recipe ids {bad}")
        except (yaml.YAMLError, ValueError) as exc:
            log.error("line recipe file %s ignored, keeping the last good one: %s", self.path, exc)
            return
        changed = {k: v for k, v in new.items() if self.assigned.get(k, self.default) != v}
        if changed:
            log.info("changeover: %s", ", ".join(f"{k} -> {v}" for k, v in sorted(changed.items())))
        self.assigned = new

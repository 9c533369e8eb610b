"""A configuration file that may change while a service runs (ConfigMaps, local files).

Each caller asks `changed()` as often as it likes (a stat, no read, when nothing changed);
it returns the new text once per change. What to do with a broken file is the caller's
decision; the convention in defectflow: keep the last good configuration and log why.
"""

from __future__ import annotations

from pathlib import Path


class WatchedFile:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._mtime: int | None = None

    def changed(self) -> str | None:
        """The file's text if it changed since the last call (or on the first), else None.
        A missing or unreadable file is no change."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if mtime == self._mtime:
            return None
        self._mtime = mtime
        try:
            return self.path.read_text()
        except OSError:
            return None

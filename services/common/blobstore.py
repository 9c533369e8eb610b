"""Claim-check store for frame pixels and overlays.

One small interface; a local directory here, an S3-compatible store or a shared
volume in production (same `put`/`get` by URI).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> str: ...
    def get(self, uri: str) -> bytes: ...
    def delete(self, uri: str) -> None: ...


class LocalBlobStore:
    """Blobs as files under `root`, written atomically (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.root / digest[:2] / digest[2:4] / key

    def put(self, key: str, data: bytes) -> str:
        if "/" in key or key.startswith("."):
            raise ValueError(f"blob key must be a plain file name, got {key!r}")
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path.as_uri()

    def _local(self, uri: str) -> Path:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ValueError(f"LocalBlobStore reads file:// URIs only, got {uri!r}")
        path = Path(parsed.path).resolve()
        if self.root not in path.parents:
            raise ValueError(f"blob {uri!r} is outside the store root {self.root}")
        return path

    def get(self, uri: str) -> bytes:
        return self._local(uri).read_bytes()

    def delete(self, uri: str) -> None:
        self._local(uri).unlink(missing_ok=True)

"""Bearer-token auth for the query API, as a gRPC server interceptor.

Tokens come from an env setting and/or a file (a mounted Kubernetes secret), one entry
`name:role:token` each; the file is re-read when it changes, so a rotated secret takes
effect without a restart. Roles: `read` (MES; every query), `reviewer` (also SubmitReview:
operators in the console) and `admin` (also RunRetention).
Health checking and reflection stay open so that probes and grpcurl discovery work.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.common.config import loopback_host

log = logging.getLogger("defectflow.store.auth")

ROLES = ("read", "reviewer", "admin")
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# the roles a method needs beyond `read` (every valid token may call the rest)
NEEDS = {
    "/defectflow.v1.InspectionQuery/RunRetention": ("admin",),
    "/defectflow.v1.InspectionQuery/SubmitReview": ("reviewer", "admin"),
}


@dataclass(frozen=True)
class Principal:
    name: str
    role: str


# who calls when the API runs open (no tokens configured: the local demo)
OPEN_CALLER = Principal("", "admin")


def parse_entries(text: str, origin: str) -> dict[str, Principal]:
    """`name:role:token` entries separated by commas or new lines; '#' starts a comment.
    Keyed by the token's SHA-256, so that lookups compare digests, not secrets."""
    out: dict[str, Principal] = {}
    # comments go first, line by line, so a comma inside a comment is no separator
    uncommented = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    for n, raw in enumerate(uncommented.replace(",", "\n").splitlines(), start=1):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise ValueError(f"{origin} entry {n}: expected name:role:token")
        name, role, token = (p.strip() for p in parts)
        if role not in ROLES:
            raise ValueError(f"{origin} entry {n} ({name}): role {role!r} is not one of {ROLES}")
        if len(token) < 16:
            raise ValueError(f"{origin} entry {n} ({name}): token shorter than 16 characters")
        out[digest(token)] = Principal(name, role)
    return out


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenBook:
    """The configured tokens; an empty book runs the API open, which `open_or_refuse`
    allows only when asked for and on loopback (the local demo)."""

    def __init__(self, env_entries: str = "", file: Path | None = None, recheck_s: float = 5.0):
        self.env = parse_entries(env_entries, "tokens setting") if env_entries else {}
        if env_entries and not self.env:
            # blanks, separators or comments only: a setting meant to hold tokens that holds
            # none must not leave the API open
            raise ValueError("the tokens setting is set but holds no name:role:token entry")
        self.file = file
        self.recheck_s = recheck_s
        self.lock = threading.Lock()
        self.file_entries: dict[str, Principal] = {}
        self.mtime_ns = -1
        self.checked = 0.0
        if file is not None:
            if not file.exists():
                raise FileNotFoundError(f"tokens file {file} does not exist")
            self._reload()

    def _reload(self) -> None:
        assert self.file is not None
        try:
            mtime = self.file.stat().st_mtime_ns
            if mtime != self.mtime_ns:
                self.file_entries = parse_entries(self.file.read_text(), str(self.file))
                self.mtime_ns = mtime
                log.info("loaded %d tokens from %s", len(self.file_entries), self.file)
        except (OSError, ValueError) as exc:  # keep the last good set; say why
            log.error("tokens file %s not reloaded: %s", self.file, exc)
        self.checked = time.monotonic()

    def lookup(self, token: str) -> Principal | None:
        if self.file is not None and time.monotonic() - self.checked > self.recheck_s:
            with self.lock:
                self._reload()
        key = digest(token)
        return self.env.get(key) or self.file_entries.get(key)

    @property
    def empty(self) -> bool:
        return not self.env and not self.file_entries and self.file is None


def loopback(address: str) -> bool:
    """Whether a gRPC bind address `host:port` (`[v6]:port`) listens on loopback only."""
    return loopback_host(address.rsplit(":", 1)[0].strip("[]"))


def open_or_refuse(book: TokenBook, open_api: bool, address: str) -> None:
    """Fail closed: an API without tokens starts only when asked to run open and bound to
    loopback; asking for both tokens and an open API is a contradiction. Raises ValueError
    saying what to set."""
    if not book.empty:
        if open_api:
            raise ValueError("open_api is set and tokens are configured: choose one")
        return
    if not open_api:
        raise ValueError(
            "the query API has no tokens: set DEFECTFLOW_STORE_TOKENS or "
            "DEFECTFLOW_STORE_TOKENS_FILE (name:role:token entries); for a local demo on "
            "127.0.0.1 only, DEFECTFLOW_STORE_OPEN_API=true"
        )
    if not loopback(address):
        raise ValueError(
            f"an open query API (no tokens) binds to loopback only, not {address!r}: "
            "configure tokens to serve other hosts"
        )


def bearer_token(metadata) -> str | None:
    """The token of an `authorization: Bearer <token>` entry, None when there is none."""
    values = [v for k, v in metadata or () if k == "authorization"]
    if not values:
        return None
    scheme, _, token = str(values[0]).partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def caller(book: TokenBook, metadata) -> Principal:
    """Who makes a call the interceptor let through (OPEN_CALLER when the API runs open)."""
    if book.empty:
        return OPEN_CALLER
    token = bearer_token(metadata)
    who = book.lookup(token) if token else None
    if who is None:  # the interceptor refuses these; never trust a call it did not see
        raise PermissionError("no valid bearer token")
    return who


def _refuse(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str):
    def abort(request, context):
        context.abort(code, message)

    def abort_stream(request, context):
        context.abort(code, message)
        yield  # pragma: no cover - abort raises

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            abort, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            abort_stream, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            abort, handler.request_deserializer, handler.response_serializer
        )
    return grpc.stream_stream_rpc_method_handler(
        abort_stream, handler.request_deserializer, handler.response_serializer
    )


class BearerAuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, book: TokenBook) -> None:
        self.book = book

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ):
        handler = continuation(details)
        method = details.method
        if handler is None or method.startswith(OPEN_PREFIXES) or self.book.empty:
            return handler
        token = bearer_token(details.invocation_metadata)
        if token is None:
            return _refuse(
                handler,
                grpc.StatusCode.UNAUTHENTICATED,
                "missing 'authorization: Bearer <token>' metadata",
            )
        who = self.book.lookup(token) if token else None
        if who is None:
            return _refuse(handler, grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token")
        roles = NEEDS.get(method)
        if roles and who.role not in roles:
            return _refuse(
                handler,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method} needs role {' or '.join(roles)}; token {who.name!r} has role {who.role}",
            )
        return handler

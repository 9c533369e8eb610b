"""The PLC's OPC UA node layout and a reconnecting client that ingest and the plc service share.

Node layout (namespace `urn:defectflow:plc`, string node ids, one set per station):

| node | type | written by | meaning |
|---|---|---|---|
| `<station>.PartId` | String | PLC | a part arrived in front of the station: the trigger |
| `<station>.Verdict` | Int32 | defectflow | 1 OK, 2 NG, 3 REVIEW (the fail-safe is NG or REVIEW) |
| `<station>.DefectCode` | String | defectflow | the deciding defect class, `TIMEOUT`, `MISSING_VIEW` |
| `<station>.VerdictPartId` | String | defectflow | the part the verdict is for, written last |

The three verdict nodes are written in one Write request, VerdictPartId last, so a PLC that
watches VerdictPartId reads a consistent verdict and matches it to the part at its gate.

The client runs asyncua on its own event loop thread, so the synchronous service loops call
it like any blocking client: `write_verdict` returns or raises within its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from asyncua import Client, ua

log = logging.getLogger("defectflow.opcua")
logging.getLogger("asyncua").setLevel(logging.WARNING)  # its INFO logs every publish response

NAMESPACE = "urn:defectflow:plc"
PART_ID, VERDICT, DEFECT_CODE, VERDICT_PART_ID = "PartId", "Verdict", "DefectCode", "VerdictPartId"
FIELDS = {
    PART_ID: ua.VariantType.String,
    VERDICT: ua.VariantType.Int32,
    DEFECT_CODE: ua.VariantType.String,
    VERDICT_PART_ID: ua.VariantType.String,
}


def node_id(ns: int, station: str, field: str) -> str:
    return f"ns={ns};s={station}.{field}"


class PlcUnavailable(RuntimeError):
    """The PLC did not take a write in time (not connected, not answering, refused)."""


@dataclass(frozen=True)
class PartTrigger:
    station: str
    part_id: str
    received_unix_ns: int  # when the notification reached us
    received_monotonic: float


class PlcLink:
    """OPC UA session to the PLC: follows the stations' PartId nodes, writes verdicts.

    Reconnects by itself with backoff; a PLC that stops answering is detected by a
    keep-alive read (`keepalive_s`) and by write timeouts. Part ids announced while the
    session was down are not replayed (the first value after a (re)subscription is the
    old one and is skipped): the PLC's own timeout handles those parts (docs/plc.md).
    """

    def __init__(
        self,
        endpoint: str,
        stations: list[str],
        on_part: Callable[[PartTrigger], None] | None = None,
        namespace: str = NAMESPACE,
        publishing_ms: float = 0.0,
        request_timeout_s: float = 1.0,
        keepalive_s: float = 1.0,
    ) -> None:
        self.endpoint, self.stations, self.on_part = endpoint, list(stations), on_part
        self.namespace, self.publishing_ms = namespace, publishing_ms
        self.request_timeout_s, self.keepalive_s = request_timeout_s, keepalive_s
        self.connected = threading.Event()
        self.connects = 0  # successful (re)connections
        self.last_part: dict[str, str] = {}  # station -> the last part id seen
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="opcua", daemon=True)
        self._client: Client | None = None
        self._ns = 0
        self._task: asyncio.Future | None = None
        self._lost = asyncio.Event()

    def start(self) -> PlcLink:
        self._thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._run(), self._loop)
        return self

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop).result(3)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def wait_connected(self, timeout_s: float) -> bool:
        return self.connected.wait(timeout_s)

    def write_verdict(
        self, station: str, part_id: str, verdict: int, defect_code: str, timeout_s: float
    ) -> None:
        """One Write request: Verdict, DefectCode, then VerdictPartId. Raises PlcUnavailable."""
        if not self.connected.is_set():
            raise PlcUnavailable(f"not connected to the PLC at {self.endpoint}")
        fut = asyncio.run_coroutine_threadsafe(
            self._write(station, part_id, verdict, defect_code), self._loop
        )
        try:
            fut.result(timeout_s)
        except Exception as exc:  # noqa: BLE001 - timeout, refused write, lost session
            fut.cancel()
            self._loop.call_soon_threadsafe(self._lost.set)
            raise PlcUnavailable(
                f"PLC at {self.endpoint} did not take the verdict of {station}/{part_id}: {exc!r}"
            ) from exc

    async def _write(self, station: str, part_id: str, verdict: int, code: str) -> None:
        client = self._client
        if client is None:
            raise PlcUnavailable("no session")
        fields = ((VERDICT, verdict), (DEFECT_CODE, code), (VERDICT_PART_ID, part_id))
        nodes = [client.get_node(node_id(self._ns, station, f)) for f, _ in fields]
        values = [ua.DataValue(ua.Variant(v, FIELDS[f])) for f, v in fields]
        await asyncio.wait_for(client.write_values(nodes, values), self.request_timeout_s)

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._session()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: drop the session, retry
                if self.connected.is_set():
                    log.warning("PLC session lost: %r; reconnecting", exc)
                else:
                    log.info("PLC at %s not reachable: %r; retrying", self.endpoint, exc)
            self.connected.clear()
            await self._disconnect()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _session(self) -> None:
        client = Client(self.endpoint, timeout=self.request_timeout_s)
        self._client = client
        await asyncio.wait_for(client.connect(), self.request_timeout_s * 4)
        self._ns = await client.get_namespace_index(self.namespace)
        if self.on_part is not None and self.stations:
            sub = await client.create_subscription(self.publishing_ms, _Notifications(self))
            nodes = [client.get_node(node_id(self._ns, s, PART_ID)) for s in self.stations]
            # a queue per item: two parts announced within one publishing interval both arrive
            await sub.subscribe_data_change(nodes, queuesize=64, sampling_interval=0)
        self._lost.clear()
        self.connects += 1
        self.connected.set()
        log.info("connected to the PLC at %s (stations %s)", self.endpoint, self.stations)
        while not self._lost.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self.keepalive_s)
            # a PLC that stopped answering keeps the socket open: only a request notices
            await asyncio.wait_for(
                client.nodes.server_state.read_value(), self.request_timeout_s * 2
            )
        raise PlcUnavailable("a request to the PLC failed")

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 1.0)
            with contextlib.suppress(Exception):
                client.disconnect_socket()


class _Notifications:
    def __init__(self, link: PlcLink) -> None:
        self.link = link
        self.seen: set[str] = set()  # stations whose initial (old) value was skipped

    def datachange_notification(self, node, val, data) -> None:  # type: ignore[no-untyped-def]
        station = str(node.nodeid.Identifier).rsplit(".", 1)[0]
        last = self.link.last_part
        if station not in self.seen:
            self.seen.add(station)  # the value the node had when we subscribed: not new
            last[station] = str(val)
            return
        # a recreated subscription (asyncua renews stale ones) reports the current value
        # again: part ids are unique, so a repeat is never a new part
        if not val or str(val) == last.get(station) or self.link.on_part is None:
            return
        last[station] = str(val)
        self.link.on_part(PartTrigger(station, str(val), time.time_ns(), time.monotonic()))

"""A PLC on 127.0.0.1 for tests and demos: an asyncua OPC UA server with the node layout of
services/common/opcua.py, announcing parts and recording the verdicts written back.

    python -m services.localstack.plc --port 4840 --stations station-1,station-2 \\
        --parts 50 --takt 0.3 --go-file GO --log plc.jsonl

Once `--go-file` exists it announces `--parts` parts per station, one every `--takt`
seconds (stations interleaved), by writing `<station>.PartId`. Every write is logged as a
JSON line: `{"event": "trigger" | "verdict", "station", "part_id", "t_ns", ...}`; a verdict
line is written when a client writes `<station>.VerdictPartId`, with the Verdict and
DefectCode written in the same request. Run as a process so a test can SIGSTOP it (a PLC
that stops answering).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from services.localstack.process import ManagedProcess, free_port, port_open


@dataclass
class PlcSimulator:
    process: ManagedProcess
    port: int
    log_path: Path
    go_file: Path

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/defectflow/"

    def go(self) -> None:
        self.go_file.touch()

    def events(self) -> list[dict]:
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def stop(self) -> None:
        self.process.stop(timeout_s=5)


def start_plc_simulator(
    workdir: Path, stations: list[str], parts: int, takt_s: float, label: str = "plc-sim"
) -> PlcSimulator:
    port = free_port()
    log_path = workdir / f"{label}.jsonl"
    go_file = workdir / f"{label}.go"
    for p in (log_path, go_file):
        p.unlink(missing_ok=True)
    proc = ManagedProcess(
        name=label,
        argv=[
            sys.executable,
            "-m",
            "services.localstack.plc",
            "--port",
            str(port),
            "--stations",
            ",".join(stations),
            "--parts",
            str(parts),
            "--takt",
            str(takt_s),
            "--go-file",
            str(go_file),
            "--log",
            str(log_path),
        ],
        log_path=workdir / "logs" / f"{label}.log",
        env=dict(os.environ),
    ).start()
    proc.wait_ready(lambda: port_open(port), 30)
    return PlcSimulator(proc, port, log_path, go_file)


async def serve(a: argparse.Namespace) -> None:
    from asyncua import Server, ua

    from services.common import opcua

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{a.port}/defectflow/")
    server.set_server_name("defectflow test PLC")
    ns = await server.register_namespace(opcua.NAMESPACE)
    stations = [s for s in a.stations.split(",") if s]
    log = open(a.log, "a", buffering=1)  # noqa: SIM115 - one line per event, for the process life
    nodes: dict[tuple[str, str], object] = {}
    folder = await server.nodes.objects.add_folder(ua.NodeId("Stations", ns), "Stations")
    for st in stations:
        obj = await folder.add_object(ua.NodeId(st, ns), st)
        for field, vtype in opcua.FIELDS.items():
            initial = 0 if vtype == ua.VariantType.Int32 else ""
            node = await obj.add_variable(
                ua.NodeId(opcua.node_id(ns, st, field).split(";s=", 1)[1], ns),
                field,
                ua.Variant(initial, vtype),
            )
            await node.set_writable()
            nodes[(st, field)] = node

    aspace = server.iserver.aspace

    def on_verdict(station: str):  # type: ignore[no-untyped-def]
        def cb(handle, value) -> None:  # type: ignore[no-untyped-def]
            # called synchronously by the write: the request's Verdict and DefectCode
            # (written before VerdictPartId) are already in place
            get = aspace.read_attribute_value
            verdict = get(nodes[(station, opcua.VERDICT)].nodeid, ua.AttributeIds.Value)
            code = get(nodes[(station, opcua.DEFECT_CODE)].nodeid, ua.AttributeIds.Value)
            event = {
                "event": "verdict",
                "station": station,
                "part_id": value.Value.Value,
                "verdict": verdict.Value.Value,
                "code": code.Value.Value,
                "t_ns": time.time_ns(),
            }
            log.write(json.dumps(event) + "\n")

        return cb

    for st in stations:
        aspace.add_datachange_callback(
            nodes[(st, opcua.VERDICT_PART_ID)].nodeid, ua.AttributeIds.Value, on_verdict(st)
        )
    async with server:
        go = Path(a.go_file) if a.go_file else None
        while go is not None and not go.exists():
            await asyncio.sleep(0.05)
        start = time.monotonic()
        for i in range(a.parts):
            for k, st in enumerate(stations):
                due = start + (i + k / len(stations)) * a.takt
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                part_id = f"{st}-P{i + 1:05d}"
                t_ns = time.time_ns()
                await nodes[(st, opcua.PART_ID)].write_value(
                    ua.Variant(part_id, ua.VariantType.String)
                )
                log.write(
                    json.dumps(
                        {"event": "trigger", "station": st, "part_id": part_id, "t_ns": t_ns}
                    )
                    + "\n"
                )
        while True:
            await asyncio.sleep(3600)


def main() -> None:
    ap = argparse.ArgumentParser(description="defectflow test PLC (OPC UA)")
    ap.add_argument("--port", type=int, default=4840)
    ap.add_argument("--stations", default="station-1")
    ap.add_argument("--parts", type=int, default=0)
    ap.add_argument("--takt", type=float, default=1.0)
    ap.add_argument("--go-file", default="")
    ap.add_argument("--log", default="plc.jsonl")
    asyncio.run(serve(ap.parse_args()))


if __name__ == "__main__":
    main()

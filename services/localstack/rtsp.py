"""An RTSP camera on 127.0.0.1: GStreamer's RTSP server streaming H.264 (tests and demos).

ffmpeg cannot serve RTSP; Debian's `gir1.2-gst-rtsp-server-1.0` with
`gstreamer1.0-plugins-base/-good/-ugly` can. Run as a process so a test can kill and
restart it mid-stream:

    python -m services.localstack.rtsp --port 8554 --path /cam --fps 10

GStreamer writes a registry cache into the home directory; `start_rtsp_camera` points
XDG_CACHE_HOME / XDG_DATA_HOME at the work directory instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from services.localstack.process import ManagedProcess, free_port, port_open


@dataclass
class RtspCamera:
    process: ManagedProcess
    port: int
    path: str

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def stop(self) -> None:
        self.process.stop(timeout_s=5)


def start_rtsp_camera(
    workdir: Path,
    port: int = 0,
    path: str = "/cam",
    fps: int = 10,
    size: tuple[int, int] = (320, 240),
    label: str = "rtsp",
) -> RtspCamera:
    port = port or free_port()
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(workdir / "xdg-cache")
    env["XDG_DATA_HOME"] = str(workdir / "xdg-data")
    proc = ManagedProcess(
        name=label,
        argv=[
            sys.executable,
            "-m",
            "services.localstack.rtsp",
            "--port",
            str(port),
            "--path",
            path,
            "--fps",
            str(fps),
            "--size",
            f"{size[0]}x{size[1]}",
        ],
        log_path=workdir / "logs" / f"{label}.log",
        env=env,
    ).start()
    proc.wait_ready(lambda: port_open(port), 30)
    return RtspCamera(proc, port, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", default="/cam")
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--size", default="320x240")
    a = ap.parse_args()
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    w, h = a.size.split("x")
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},"
        f"framerate={a.fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast "
        f"key-int-max={a.fps} ! rtph264pay name=pay0 pt=96 )"
    )
    factory.set_shared(True)  # one encoder for every client, like a real camera
    server.get_mount_points().add_factory(a.path, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{a.port}")
    print(f"rtsp://127.0.0.1:{a.port}{a.path}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()

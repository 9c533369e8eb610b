"""One benchmark run: Triton alone (the ceiling), then the whole pipeline at rising load.

Order, all against the same tritonserver, broker and PostgreSQL on 127.0.0.1:
1. Triton alone: the recipe's model, batches of its preferred batch size, as many requests
   in flight as the inference service keeps; one request at a time for the model's own
   batch latency, then back to back for the ceiling (tiles/s).
2. Pipeline, 1 replica of each stage: synthetic cameras offering more than the ceiling, so
   the stored rate is the pipeline's saturation; then fractions of that saturation
   (50 %, 70 %, ...) for frame->record latency percentiles and where the time went.
3. Scaling: 2, 4 ... replicas of inference and postprocess at the same overload.

Every level: CPU and RSS of every component (process trees from /proc) over the measured
window; frames counted by the store's commit stamp; latencies and stage spans from the
stamps on the stored inspections.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from defectflow.v1 import inspections_pb2

from services.bench import procstats
from services.bench.logic import (
    StoredFrame,
    cpu_share,
    latencies,
    percentiles,
    rate,
    stage_breakdown,
    tiles_per_frame,
)
from services.bench.triton_load import TritonResult, drive, preferred_batch
from services.inference.config import InferenceSettings
from services.localstack.stack import LocalStack
from services.tiling.logic import recipe_tiles

log = logging.getLogger("defectflow.bench")


SATURATED = 0.95  # stored / offered below this: the pipeline no longer keeps up


@dataclass(frozen=True)
class BenchConfig:
    seconds: float = 30.0  # measured window of each pipeline level
    warmup_s: float = 8.0  # offered before the window opens (queues reach steady state)
    triton_seconds: float = 20.0  # Triton alone at saturation
    lines: int = 2
    cameras_per_line: int = 4  # 8 cameras: keys spread over the partitions
    width: int = 512
    height: int = 512
    overload: float = 1.3  # offered load / Triton's ceiling of the probe
    ramp_steps: int = 6  # offers above the probe's rate, until the store falls behind
    loads: tuple[float, ...] = (0.5, 0.7)  # fractions of the pipeline's saturation
    replicas: tuple[int, ...] = (1, 2, 4)  # of inference and postprocess
    drain_timeout_s: float = 180.0  # an overload's backlog drains at the pipeline's pace
    profile_dir: Path | None = None  # py-spy profiles of the stages at saturation
    triton_shm: bool = True  # Triton alone also through system shared memory
    # > 0: tritonserver gets the first N cores to itself, everything else (services, broker,
    # PostgreSQL, cameras) the rest, in both measurements: the layout of a GPU node, where
    # the model does not compete with the pipeline for the same cores. 0: all share all.
    triton_cores: int = 0
    camera_pool: int = 2  # parts each synthetic camera renders (in the warm-up), then repeats


@dataclass
class Level:
    name: str
    replicas: int
    offered_frames_s: float
    window_s: float
    accepted_frames: int = 0  # by ingest, whole level
    dropped_by_ingest: int = 0
    stored_frames_s: float = float("nan")  # frames committed in the window / window
    stored_tiles_s: float = float("nan")
    latency_s: dict[str, float] = field(default_factory=dict)
    latency_frames: int = 0
    drained: bool = True
    stages: list[dict] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # component -> cores busy
    rss_mib: dict[str, float] = field(default_factory=dict)


@dataclass
class BenchResult:
    machine: dict
    config: dict
    model: str
    tiles_per_frame: int
    batch: int
    in_flight: int
    triton_single: TritonResult | None = None
    triton: TritonResult | None = None  # tensors in the gRPC messages
    triton_shm: TritonResult | None = None  # tensors in system shared memory
    triton_cpu: dict[str, float] = field(default_factory=dict)
    levels: list[Level] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)

    @property
    def ceiling_tiles_s(self) -> float:
        """Triton alone at its best: gRPC or shared memory, whichever did more."""
        got = [t.tiles_s for t in (self.triton, self.triton_shm) if t is not None]
        return max(got) if got else float("nan")

    def saturation(self, replicas: int = 1) -> Level | None:
        for lv in self.levels:
            if lv.name == "saturation" and lv.replicas == replicas:
                return lv
        return None

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str, indent=1)


def machine_info() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def sample_tiles(stack: LocalStack, n_frames: int = 2) -> np.ndarray:
    """Real preprocessed tiles of synthetic parts, as the tiling service makes them."""
    from services.common.synthetic import render_part

    recipe = stack.prepare_models().recipe
    out = []
    for seed in range(n_frames):
        img = render_part("brushed_metal", 50_000 + seed, (512, 512))[0]
        out.append(recipe_tiles(img, recipe).tiles)
    return np.concatenate(out)


class Bench:
    def __init__(self, stack: LocalStack, cfg: BenchConfig) -> None:
        self.stack = stack
        self.cfg = cfg
        self.engine: sa.Engine | None = None
        self.level_no = 0
        self.profiles: dict[str, str] = {}

    # --- components ------------------------------------------------------------------

    def components(self) -> dict[str, int]:
        """Label -> root pid of everything that costs CPU on this machine."""
        s = self.stack
        out = {label: p.pid for label, p in s.services.items() if p.alive()}
        if s.triton:
            out["tritonserver"] = s.triton.process.pid
        if s.broker:
            out["broker"] = s.broker.process.pid
        if s.postgres:
            out["postgresql"] = s.postgres.process.pid
        out["bench (this process)"] = os.getpid()
        return out

    def cpu_window(self) -> tuple[dict[str, tuple[float, int]], float]:
        """CPU seconds and RSS of each component now; this process alone, not its children
        (every component is one)."""
        me = os.getpid()
        got = {k: procstats.sample(pid, children=pid != me) for k, pid in self.components().items()}
        return got, time.time()

    @staticmethod
    def cpu_delta(a: tuple[dict, float], b: tuple[dict, float]) -> tuple[dict, dict]:
        (sa_, ta), (sb, tb) = a, b
        cpu, rss = {}, {}
        for k, (c1, r1) in sb.items():
            c0 = sa_.get(k, (c1, r1))[0]
            cpu[k] = cpu_share(c1 - c0, tb - ta)
            rss[k] = r1 / 2**20
        return cpu, rss

    # --- Triton alone ----------------------------------------------------------------

    def triton_alone(self, res: BenchResult) -> None:
        s, cfg = self.stack, self.cfg
        tiles = sample_tiles(s)
        assert s.triton is not None
        url, model = s.triton.grpc_url, res.model
        drive(url, model, tiles, res.batch, res.in_flight, 2.0)  # warm: instances, caches
        res.triton_single = drive(url, model, tiles, res.batch, 1, max(2.0, cfg.triton_seconds / 3))
        a = self.cpu_window()
        res.triton = drive(url, model, tiles, res.batch, res.in_flight, cfg.triton_seconds)
        b = self.cpu_window()
        cpu, _ = self.cpu_delta(a, b)
        res.triton_cpu = {
            k: v for k, v in cpu.items() if k in ("tritonserver", "bench (this process)")
        }
        if cfg.triton_shm:
            res.triton_shm = drive(
                url, model, tiles, res.batch, res.in_flight, cfg.triton_seconds, shm=True
            )

    # --- pipeline --------------------------------------------------------------------

    def ensure_replicas(self, n: int) -> None:
        for name in ("inference", "postprocess"):
            for r in range(n):
                label = name if r == 0 else f"{name}-{r}"
                if label not in self.stack.services or not self.stack.services[label].alive():
                    self.stack.start_service(name, None, replica=r)

    def start_pipeline(self, extra: dict[str, dict[str, str]] | None = None) -> None:
        self.stack.stop_services()  # the benchmark needs the pipeline to itself
        self.stack.start_pipeline(extra)
        assert self.stack.postgres is not None
        self.engine = sa.create_engine(self.stack.postgres.url)

    def warm_up(self) -> None:
        """A few frames through every stage (consumer groups joined, Triton warm)."""
        lv = self.level("warm-up", 0.5 * len(self.cameras()), 1, seconds=4.0, warmup_s=0.0)
        if not lv.drained or lv.accepted_frames == 0:
            raise RuntimeError(
                f"warm-up frames never reached the store; see the logs in {self.stack.workdir}"
            )

    def cameras(self) -> list[int]:
        return list(range(self.cfg.lines * self.cfg.cameras_per_line))

    def level(
        self,
        name: str,
        frames_s: float,
        replicas: int,
        seconds: float | None = None,
        warmup_s: float | None = None,
        profile: bool = False,
        overload: bool = False,
    ) -> Level:
        cfg = self.cfg
        seconds = cfg.seconds if seconds is None else seconds
        warmup_s = cfg.warmup_s if warmup_s is None else warmup_s
        self.level_no += 1
        ncams = len(self.cameras())
        fps = frames_s / ncams
        per_cam = max(1, math.ceil(fps * (warmup_s + seconds)))
        tag = f"level{self.level_no:02d}"
        truth = self.stack.workdir / "bench" / f"{tag}.jsonl"
        truth.parent.mkdir(parents=True, exist_ok=True)
        truth.unlink(missing_ok=True)
        lv = Level(name, replicas, frames_s, seconds)
        log.info(
            "%s: %.2f frames/s offered, %d replica(s), %.0f s", name, frames_s, replicas, seconds
        )
        start_ns = time.time_ns()
        ingest = self.stack.start_service(
            "ingest",
            {
                "lines": str(cfg.lines),
                "cameras_per_line": str(cfg.cameras_per_line),
                "fps": f"{fps:.6f}",
                "frames": str(per_cam),
                "width": str(cfg.width),
                "height": str(cfg.height),
                "seed": str(self.level_no),
                "synthetic_pool": str(cfg.camera_pool),
                "ground_truth_path": str(truth),
                "spool_dir": str(self.stack.workdir / "bench" / f"{tag}-spool"),
            },
        )
        time.sleep(warmup_s)
        a = self.cpu_window()
        t0 = time.time_ns()
        prof = self.start_profiles(seconds) if profile else []
        time.sleep(seconds)
        t1 = time.time_ns()
        b = self.cpu_window()
        lv.cpu, lv.rss_mib = self.cpu_delta(a, b)
        self.finish_profiles(prof)
        assert ingest.proc is not None
        if overload:  # cameras stop with the window (ingest itself may lag behind)
            ingest.stop(timeout_s=20)
        try:
            ingest.proc.wait(timeout=max(60.0, 3 * (warmup_s + seconds)))
        except subprocess.TimeoutExpired:
            ingest.stop()
        lv.accepted_frames = sum(1 for _ in truth.open()) if truth.exists() else 0
        lv.dropped_by_ingest = max(0, per_cam * ncams - lv.accepted_frames)
        # an overload's backlog drains at the pipeline's own pace before the next level
        lv.drained = self.wait_stored(start_ns, lv.accepted_frames)
        stored = self.count_stored(t0, t1)
        lv.stored_frames_s = rate(stored, (t1 - t0) / 1e9)
        # under overload the queue grows all through the window, and so do the latencies
        frames = self.frames_captured(t0, t1)
        lv.latency_frames = len(frames)
        lv.latency_s = percentiles(latencies(frames))
        lv.stages = stage_breakdown(frames)
        return lv

    def ramp(self, start: float, replicas: int, res: BenchResult, profile: bool) -> Level:
        """Offer 1.1 x `start` frames/s, then 1.2 x more each step while the store keeps up
        (>= 95 % of the offer); the level with the most stored is the saturation."""
        offered, tried = 1.1 * start, []
        for step in range(self.cfg.ramp_steps):
            lv = self.level("ramp", offered, replicas, overload=True)
            tried.append(lv)
            res.levels.append(lv)
            if lv.stored_frames_s < SATURATED * offered or step == self.cfg.ramp_steps - 1:
                break
            offered *= 1.2
        best = max(tried, key=lambda lv: lv.stored_frames_s)
        best.name = "saturation"
        if profile and self.cfg.profile_dir is not None:  # py-spy at the saturating offer
            again = self.level(
                "saturation, profiled", best.offered_frames_s, replicas, overload=True, profile=True
            )
            res.levels.append(again)
        return best

    def wait_stored(self, since_ns: int, expected: int) -> bool:
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        while time.monotonic() < deadline:
            if self._scalar("captured_unix_ns >= :a", a=since_ns) >= expected:
                return True
            time.sleep(0.5)
        log.warning(
            "not drained after %.0f s: %d frames expected", self.cfg.drain_timeout_s, expected
        )
        return False

    def _scalar(self, where: str, **params: int) -> int:
        assert self.engine is not None
        with self.engine.connect() as conn:
            q = sa.text(f"select count(*) from inspections where {where}")  # noqa: S608
            return int(conn.execute(q, params).scalar_one())

    def count_stored(self, t0: int, t1: int) -> int:
        return self._scalar("stored_unix_ns >= :a and stored_unix_ns < :b", a=t0, b=t1)

    def frames_captured(self, t0: int, t1: int) -> list[StoredFrame]:
        assert self.engine is not None
        q = sa.text(
            "select captured_unix_ns, stored_unix_ns, payload from inspections "
            "where captured_unix_ns >= :a and captured_unix_ns < :b"
        )
        out = []
        with self.engine.connect() as conn:
            for row in conn.execute(q, {"a": t0, "b": t1}):
                msg = inspections_pb2.Inspection.FromString(row.payload)
                stamps = tuple((s.stage, s.received_unix_ns, s.sent_unix_ns) for s in msg.stamps)
                out.append(StoredFrame(row.captured_unix_ns, row.stored_unix_ns, stamps))
        return out

    # --- profiles --------------------------------------------------------------------

    def start_profiles(self, seconds: float) -> list[tuple[str, subprocess.Popen, Path]]:
        d = self.cfg.profile_dir
        spy = shutil.which("py-spy")
        if d is None or spy is None:
            return []
        d.mkdir(parents=True, exist_ok=True)
        out = []
        for label in ("tiling", "inference", "postprocess", "store", "ingest"):
            p = self.stack.services.get(label)
            if p is None or not p.alive():
                continue
            path = d / f"{label}.txt"
            cmd = [spy, "record", "-p", str(p.pid), "-d", str(int(seconds)), "-r", "50"]
            cmd += ["-f", "raw", "-o", str(path), "--nonblocking", "--idle"]
            out.append(
                (
                    label,
                    subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                    path,
                )
            )
        return out

    def finish_profiles(self, prof: list[tuple[str, subprocess.Popen, Path]]) -> None:
        for label, proc, path in prof:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            if path.exists():
                self.profiles[label] = str(path)


LOOP_PARTS = (  # the stage loop's phases, by the innermost frame of each that a stack holds
    ("StageRunner._publish", "produce + flush (acks=all)"),
    ("StageRunner._commit", "offset commit"),
    ("TritonModels._run", "waiting for Triton"),
    ("StageRunner._handle", "handler, own work"),
    ("KafkaConsumer.poll", "poll (fetch wait)"),
)


def loop_breakdown(raw_path: Path) -> list[tuple[str, float]]:
    """Where a stage's main thread spends wall time, from a py-spy --idle raw profile:
    share of samples per loop phase (LOOP_PARTS), most first."""
    counts: Counter[str] = Counter()
    for line in Path(raw_path).read_text().splitlines():
        stack, _, num = line.rpartition(" ")
        if "StageRunner.run" not in stack or not num.isdigit():
            continue  # other threads: Kafka I/O, heartbeats, gRPC, /metrics
        part = next((name for fn, name in LOOP_PARTS if fn + " " in stack), "other")
        counts[part] += int(num)
    total = sum(counts.values())
    return [(k, v / total) for k, v in counts.most_common()] if total else []


def top_frames(raw_path: Path, n: int = 6, busy_only: bool = True) -> list[tuple[str, float]]:
    """Self-time share of the hottest functions of a py-spy raw (collapsed stacks) file;
    idle samples (waits) left out when `busy_only`."""
    counts: Counter[str] = Counter()
    for line in Path(raw_path).read_text().splitlines():
        stack, _, num = line.rpartition(" ")
        if not stack or not num.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        if busy_only and any(w in leaf for w in IDLE_LEAVES):
            continue
        counts[leaf] += int(num)
    total = sum(counts.values())
    return [(f, c / total) for f, c in counts.most_common(n)] if total else []


IDLE_LEAVES = ("wait (", "select (", "poll (", "_wait_for_tstate_lock", "acquire", "sleep")


def pin_cores(stack: LocalStack, triton_cores: int) -> dict[str, list[int]]:
    """tritonserver on the first `triton_cores` of this process's cores, the rest for the
    broker, PostgreSQL, this process and every service it starts from now on."""
    cores = sorted(os.sched_getaffinity(0))
    if not 0 < triton_cores < len(cores):
        raise ValueError(
            f"--triton-cores {triton_cores}: needs 1..{len(cores) - 1} of the {len(cores)} cores"
            " this process may use, leaving at least one for the pipeline"
        )
    model, rest = set(cores[:triton_cores]), set(cores[triton_cores:])
    assert stack.triton and stack.broker and stack.postgres
    procstats.pin_tree(stack.triton.process.pid, model)
    for pid in (stack.broker.process.pid, stack.postgres.process.pid):
        procstats.pin_tree(pid, rest)
    # this process alone: tritonserver, the broker and PostgreSQL are its children too
    procstats.pin_tree(os.getpid(), rest, children=False)
    return {"tritonserver": sorted(model), "everything else": sorted(rest)}


def run(stack: LocalStack, cfg: BenchConfig) -> BenchResult:
    stack.start_components()
    stack.stop_services()  # services started before the pinning would keep all cores
    recipe = stack.prepare_models().recipe
    t = recipe.tiling
    assert stack.triton is not None
    batch = preferred_batch(stack.triton.grpc_url, recipe.model.name)
    res = BenchResult(
        machine=machine_info(),
        config={k: str(v) for k, v in asdict(cfg).items()},
        model=recipe.model.name,
        tiles_per_frame=tiles_per_frame(cfg.width, cfg.height, t.tile_size, t.overlap),
        batch=batch,
        in_flight=InferenceSettings().max_in_flight,
    )
    if cfg.triton_cores:
        res.machine["cores_pinned"] = pin_cores(stack, cfg.triton_cores)
    bench = Bench(stack, cfg)
    bench.profiles = res.profiles  # filled by the saturated level when profiling
    try:
        log.info("Triton alone: %s, batch %d, %d in flight", res.model, batch, res.in_flight)
        bench.triton_alone(res)
        ceiling_frames = res.ceiling_tiles_s / res.tiles_per_frame
        bench.start_pipeline()
        bench.warm_up()
        replicas = sorted(cfg.replicas)
        start = 0.0
        for n in replicas:
            bench.ensure_replicas(n)
            if n > 1:
                bench.warm_up()  # consumer groups rebalanced onto the new replicas
            if not start:
                # a probe far above Triton's ceiling says roughly where saturation is; the
                # ramp then offers just above it, so that the cameras (on the same cores)
                # do not burn CPU on frames that only queue up
                probe = bench.level(
                    "overload probe", cfg.overload * ceiling_frames, n, overload=True
                )
                res.levels.append(probe)
                start = probe.stored_frames_s
            sat = bench.ramp(start, n, res, profile=n == replicas[0])
            start = sat.stored_frames_s
            if n == replicas[0]:
                for frac in cfg.loads:
                    res.levels.append(
                        bench.level(f"{frac:.0%} load", frac * sat.stored_frames_s, n)
                    )
        for lv in res.levels:
            lv.stored_tiles_s = lv.stored_frames_s * res.tiles_per_frame
    finally:
        stack.stop_services()
    res.machine["load_average_after"] = os.getloadavg()
    return res

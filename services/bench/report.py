"""The benchmark's printed figures (markdown tables, pasted as is into docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

from services.bench.logic import per_unit_cost
from services.bench.run import SATURATED, BenchResult, Level

STAGES = ("ingest", "tiling", "inference", "postprocess", "store")


def _ms(x: float) -> str:
    return f"{1000 * x:.0f}"


def _lat(lv: Level) -> str:
    p = lv.latency_s
    return " / ".join(f"{p.get(k, float('nan')):.2f}" for k in ("p50", "p95", "p99"))


def _group(label: str) -> str:
    """inference-2 -> inference."""
    base, _, num = label.rpartition("-")
    return base if base in STAGES and num.isdigit() else label


def _layout(m: dict) -> str:
    pinned = m.get("cores_pinned")
    if not pinned:
        return (
            "Cores: every component shares all of them (Triton's model competes with the pipeline)."
        )
    return (
        "Cores: "
        + "; ".join(
            f"{who} on core{'s' if len(c) > 1 else ''} {', '.join(map(str, c))}"
            for who, c in pinned.items()
        )
        + " (the layout of a GPU node: the model does not compete with the pipeline)."
    )


def format_report(res: BenchResult) -> str:
    m = res.machine
    tri, single = res.triton, res.triton_single
    out = [
        f"## defectflow bench: {m['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; load average "
        f"before {_load(m['load_average'])}, after {_load(m.get('load_average_after'))}.",
        f"Model `{res.model}`, {res.tiles_per_frame} tiles per "
        f"{res.config['width']}x{res.config['height']} frame, batch {res.batch} "
        f"(preferred batch size), {res.in_flight} requests in flight.",
        _layout(m),
        "",
        "### Triton alone (tritonclient gRPC, same model, batch and concurrency)",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    if single is not None:
        out.append(
            f"| batch latency, 1 request at a time, p50 / p95 / p99 ms | "
            f"{' / '.join(_ms(single.batch_latency_s[k]) for k in ('p50', 'p95', 'p99'))} |"
        )
    if tri is not None:
        out += [
            f"| batch latency at saturation, p50 / p99 ms | "
            f"{_ms(tri.batch_latency_s['p50'])} / {_ms(tri.batch_latency_s['p99'])} |",
            f"| saturated throughput (tensors in gRPC), tiles/s | {tri.tiles_s:.1f} |",
        ]
        if res.triton_shm is not None:
            out.append(
                "| saturated throughput (tensors in system shared memory), tiles/s | "
                f"{res.triton_shm.tiles_s:.1f} |"
            )
        out.append(
            f"| **ceiling** (the better of the two), tiles/s = frames/s | "
            f"**{res.ceiling_tiles_s:.1f}** = {res.ceiling_tiles_s / res.tiles_per_frame:.2f} |"
        )
        for k, v in res.triton_cpu.items():
            out.append(f"| CPU cores busy: {k} | {v:.2f} |")
    out += ["", "### Pipeline: synthetic cameras -> ... -> PostgreSQL", ""]
    out += [
        "| level | replicas | offered frames/s | stored frames/s | stored tiles/s | "
        "pipeline / Triton alone | frame->record p50 / p95 / p99 s | frames | drained |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ceiling = res.ceiling_tiles_s
    for lv in res.levels:
        out.append(
            f"| {_name(lv, res)} | {lv.replicas} | {lv.offered_frames_s:.2f} | {lv.stored_frames_s:.2f} | "
            f"{lv.stored_tiles_s:.1f} | {lv.stored_tiles_s / ceiling:.2f} | {_lat(lv)} | "
            f"{lv.latency_frames} | {_drained(lv)} |"
        )
    sat = res.saturation(min((lv.replicas for lv in res.levels), default=1))
    if sat is not None and tri is not None:
        out += [
            "",
            f"**Pipeline / Triton alone at saturation: {'>= ' if _kept_up(sat, res) else ''}"
            f"{sat.stored_tiles_s / ceiling:.2f}** "
            f"({sat.stored_tiles_s:.1f} vs {ceiling:.1f} tiles/s).",
        ]
        l70 = next((lv for lv in res.levels if lv.name == "70% load"), None)
        if l70 is not None and single is not None:
            bound = 2 * single.batch_latency_s["p99"]
            out.append(
                f"p99 frame->record at 70 % load: {l70.latency_s['p99']:.2f} s; "
                f"2 x the model's own p99 batch latency: {bound:.2f} s."
            )
        out += ["", *cpu_table(sat, res), ""]
        # per-tile costs where every stage runs at the same rate: the highest drained load
        # below saturation (under overload, stages upstream of the bottleneck work on
        # frames that only queue, which inflates their cost per stored tile)
        steady = [lv for lv in res.levels if lv.name.endswith("% load") and lv.drained]
        out += sizing(max(steady, key=lambda lv: lv.stored_frames_s) if steady else sat, res)
    for lv in res.levels:
        if lv.name == "70% load" or (
            lv.name == "50% load" and not any(x.name == "70% load" for x in res.levels)
        ):
            out += ["", f"### Where the time goes ({lv.name}, {lv.latency_frames} frames)", ""]
            out += stage_table(lv)
    if len({lv.replicas for lv in res.levels}) > 1:
        out += ["", "### Scaling (inference and postprocess replicas, at overload)", ""]
        out += [
            "| replicas | stored tiles/s | / Triton alone | CPU cores busy, all components |",
            "|---|---|---|---|",
        ]
        for lv in res.levels:
            if lv.name == "saturation":
                out.append(
                    f"| {lv.replicas} | {'>= ' if _kept_up(lv, res) else ''}{lv.stored_tiles_s:.1f} | "
                    f"{lv.stored_tiles_s / ceiling:.2f} | {sum(lv.cpu.values()):.2f} |"
                )
    if res.profiles:
        from services.bench.run import loop_breakdown, top_frames

        out += ["", "### py-spy at saturation (1 replica)", ""]
        for label, path in sorted(res.profiles.items()):
            loop = ", ".join(f"{k} {v:.0%}" for k, v in loop_breakdown(Path(path)))
            tops = ", ".join(f"`{f}` {v:.0%}" for f, v in top_frames(Path(path), 4))
            out.append(f"- {label}: main-thread wall time: {loop or 'n/a'}; busiest: {tops}")
    return "\n".join(out)


def _kept_up(lv: Level, res: BenchResult) -> bool:
    """A 'saturation' where no offer of its ramp outran the store: the ramp ran out of
    steps first, so the real saturation is at least this."""
    ramp = [x for x in res.levels if x.replicas == lv.replicas and x.name in ("ramp", "saturation")]
    return lv.name == "saturation" and all(
        x.stored_frames_s >= SATURATED * x.offered_frames_s for x in ramp
    )


def _name(lv: Level, res: BenchResult) -> str:
    return f"{lv.name} (kept up: at least)" if _kept_up(lv, res) else lv.name


def _drained(lv: Level) -> str:
    return "yes" if lv.drained else "NO"


def _load(v) -> str:  # type: ignore[no-untyped-def]
    return " ".join(f"{x:.2f}" for x in v) if v else "?"


def cpu_table(lv: Level, res: BenchResult) -> list[str]:
    frames = lv.stored_frames_s
    out = [
        f"CPU and memory per component at saturation ({lv.replicas} replica(s), "
        f"{lv.window_s:.0f} s window):",
        "",
        "| component | CPU cores busy | RSS MiB | CPU ms per stored frame | per tile |",
        "|---|---|---|---|---|",
    ]
    for k in sorted(lv.cpu, key=lambda k: -lv.cpu[k]):
        out.append(
            f"| {k} | {lv.cpu[k]:.2f} | {lv.rss_mib.get(k, float('nan')):.0f} | "
            f"{per_unit_cost(lv.cpu[k], 1) / frames if frames else float('nan'):.1f} | "
            f"{per_unit_cost(lv.cpu[k], 1) / (frames * res.tiles_per_frame) if frames else float('nan'):.2f} |"
        )
    out.append(f"| all | {sum(lv.cpu.values()):.2f} | {sum(lv.rss_mib.values()):.0f} | | |")
    return out


def stage_table(lv: Level) -> list[str]:
    out = [
        "| stage | phase | mean ms | p50 ms | p99 ms | share of mean latency |",
        "|---|---|---|---|---|---|",
    ]
    for r in lv.stages:
        out.append(
            f"| {r['stage']} | {r['phase']} | {_ms(r['mean_s'])} | {_ms(r['p50_s'])} | "
            f"{_ms(r['p99_s'])} | {r['share']:.0%} |"
        )
    return out


def sizing(lv: Level, res: BenchResult) -> list[str]:
    """What one replica costs per unit of work: an operator divides the GPU's tiles/s."""
    tiles_s = lv.stored_tiles_s
    per: dict[str, tuple[float, float]] = {}
    for k, v in lv.cpu.items():
        g = _group(k)
        if g in STAGES or g in ("broker", "postgresql", "tritonserver"):
            cpu, rss = per.get(g, (0.0, 0.0))
            per[g] = (cpu + v, max(rss, lv.rss_mib.get(k, 0.0)))
    if not tiles_s or not per:
        return []
    out = [
        f"Per-replica cost at {lv.name} ({lv.replicas} replica(s)); for sizing a GPU node, "
        "divide the GPU's tiles/s by 'tiles/s per busy core' for the cores each stage needs:",
        "",
        "| stage | CPU ms per tile | tiles/s per busy core | RSS MiB per replica |",
        "|---|---|---|---|",
    ]
    total = 0.0
    for g in (*STAGES, "broker", "postgresql", "tritonserver"):
        if g in per:
            cpu, rss = per[g]
            ms = per_unit_cost(cpu, 1) / tiles_s
            if g in STAGES:
                total += ms
            out.append(f"| {g} | {ms:.2f} | {1000 / ms if ms else float('inf'):.0f} | {rss:.0f} |")
    out.append(f"| the five stages | {total:.2f} | {1000 / total:.0f} | |")
    return out

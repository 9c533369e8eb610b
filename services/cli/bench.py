"""`defectflow bench`: Triton alone versus the whole pipeline, printed side by side."""

from __future__ import annotations

import logging
from pathlib import Path

import typer


def bench(
    seconds: float = typer.Option(30.0, help="measured window of each pipeline load level"),
    warmup: float = typer.Option(8.0, help="seconds offered before each window opens"),
    triton_seconds: float = typer.Option(20.0, help="Triton alone at saturation"),
    loads: str = typer.Option("0.5,0.7", help="fractions of the pipeline's saturation"),
    replicas: str = typer.Option("1,2,4", help="inference and postprocess replicas to run"),
    overload: float = typer.Option(1.3, help="offered load / Triton's ceiling at saturation"),
    lines: int = typer.Option(2),
    cameras: int = typer.Option(4, help="cameras per line"),
    size: int = typer.Option(512, help="frame width and height"),
    triton_cores: int = typer.Option(
        0,
        help="give tritonserver this many cores to itself and the pipeline the rest, in both "
        "measurements (as on a GPU node); 0 = all components share all cores",
    ),
    workdir: Path = typer.Option(Path("var/bench"), help="models, logs, database"),
    profile: bool = typer.Option(False, "--profile", help="py-spy the stages at saturation"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the figures here"),
) -> None:
    """Start broker, Triton, PostgreSQL; measure Triton alone, then the pipeline at rising
    load up to saturation, with 1..N replicas; print throughput, latency, CPU, stages."""
    from services.bench.report import format_report
    from services.bench.run import BenchConfig, run
    from services.localstack.stack import LocalStack

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    cfg = BenchConfig(
        seconds=seconds,
        warmup_s=warmup,
        triton_seconds=triton_seconds,
        lines=lines,
        cameras_per_line=cameras,
        width=size,
        height=size,
        overload=overload,
        loads=tuple(float(x) for x in loads.split(",") if x.strip()),
        replicas=tuple(int(x) for x in replicas.split(",") if x.strip()),
        triton_cores=triton_cores,
        profile_dir=(workdir / "profiles").resolve() if profile else None,
    )
    stack = LocalStack(workdir.resolve())
    try:
        res = run(stack, cfg)
    finally:
        stack.stop()
    typer.echo(format_report(res))
    if json_out is not None:
        json_out.write_text(res.to_json())

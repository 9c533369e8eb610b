"""The `defectflow` command line."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

import typer

from services.cli.bench import bench
from services.cli.chaos import app as chaos_app
from services.cli.console import register as register_console
from services.cli.db import app as db_app
from services.cli.dlq import app as dlq_app
from services.cli.offline import (
    accuracy,
    calibrate,
    data_app,
    evaluate,
    inspect,
    models_app,
    train,
)
from services.cli.query import app as query_app

app = typer.Typer(help="defectflow: streaming visual defect inspection.", no_args_is_help=True)
app.add_typer(query_app, name="query")
app.add_typer(db_app, name="db")
app.add_typer(dlq_app, name="dlq")
app.add_typer(chaos_app, name="chaos")
app.add_typer(data_app, name="data")
app.command("inspect")(inspect)
app.command("eval")(evaluate)
app.command("train")(train)
app.add_typer(models_app, name="models")
register_console(app)
app.command("accuracy")(accuracy)
app.command("calibrate")(calibrate)
app.command("bench")(bench)


@app.command()
def up(
    frames: int = typer.Option(0, help="frames per camera, then stop; 0 = run until Ctrl-C"),
    lines: int = typer.Option(2),
    cameras: int = typer.Option(2, help="cameras per line"),
    fps: float = typer.Option(2.0, help="frames per second per camera"),
    workdir: Path = typer.Option(Path("var/up"), help="logs, blobs, models, database"),
    monitoring: bool = typer.Option(
        False, "--monitoring", help="also start Prometheus (scrapes every service, alert rules)"
    ),
) -> None:
    """Start broker, Triton, PostgreSQL and the five services; run synthetic cameras."""
    from services.cli.status import Status, scrape_all
    from services.localstack.process import free_port, port_open
    from services.localstack.stack import LocalStack

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stack = LocalStack(workdir.resolve())
    try:
        typer.echo(f"starting components (logs in {workdir}/logs) ...")
        stack.start_components()
        if monitoring:
            prom = stack.start_prometheus()
            typer.echo(
                f"Prometheus on {prom.url}  (alerts {prom.url}/alerts; Grafana dashboard: "
                "monitoring/dashboards/defectflow.json)"
            )
        stack.start_pipeline()
        truth = workdir.resolve() / "ground_truth.jsonl"
        truth.unlink(missing_ok=True)
        stack.start_service(
            "ingest",
            {
                "lines": str(lines),
                "cameras_per_line": str(cameras),
                "fps": str(fps),
                "frames": str(frames),
                "ground_truth_path": str(truth),
            },
        )
        assert stack.postgres and stack.broker
        typer.echo(
            f"query API on 127.0.0.1:{stack.query_port}   (defectflow query list "
            f"--target 127.0.0.1:{stack.query_port})"
        )
        console_port = free_port()
        stack.start_service(
            "console",
            {"query_target": f"127.0.0.1:{stack.query_port}", "port": str(console_port)},
        ).wait_ready(lambda: port_open(console_port), 60)
        typer.echo(
            f"console on http://127.0.0.1:{console_port}/   "
            "(local demo: the API runs open; sign in with an empty token)"
        )
        typer.echo(
            "metrics: " + "  ".join(f"{name} {url}" for name, url in stack.metrics_urls().items())
        )
        expected = frames * lines * cameras
        last: dict = {}
        while not stop.wait(1.0):
            # the same counters Prometheus scrapes (lag: approximate against Tansu)
            scraped = scrape_all(stack.metrics_urls(), last)
            st = Status.from_samples(s for samples in scraped.values() for s in samples)
            stored = st.stored
            typer.echo("\r" + st.line(), nl=False)
            if expected and stored >= expected:
                break
            for name, proc in stack.services.items():
                if not proc.alive() and not (
                    name == "ingest" and proc.proc and proc.proc.returncode == 0
                ):
                    raise typer.Exit(f"\nservice {name} died; see {proc.log_path}")
        typer.echo("")
    finally:
        typer.echo("stopping ...")
        stack.stop()


@app.command()
def fit(
    recipe: Path = typer.Option(Path("models/recipes/brushed-metal.yaml"), help="recipe template"),
    good: Path = typer.Option(
        None, help="folder of good images (e.g. <family>/train/good); default: generated parts"
    ),
    val: Path = typer.Option(
        None, help="held-out good images for calibration; default: every 4th image of --good"
    ),
    defects: Path = typer.Option(
        None, help="optional folder of defective images; helps choose among candidate settings"
    ),
    family: str = typer.Option("brushed_metal", help="generated part family when no --good"),
    workdir: Path = typer.Option(Path("var/up")),
    target: str = typer.Option("cpu", help="Triton repository target: cpu or gpu"),
) -> None:
    """Fit the anomaly model on good parts only, calibrate thresholds, build the Triton
    repository (WORKDIR/models, WORKDIR/recipes, WORKDIR/repository/TARGET)."""
    from models.prepare import build_for, fit_from_images, model_paths, synth_fit_sets
    from services.cli.offline import progress_bar
    from services.common.recipes import load_recipe
    from services.offline.inspect import images_under

    t0 = time.perf_counter()
    template = load_recipe(recipe)
    if good is None:
        train_imgs, val_imgs = synth_fit_sets(family)
    else:
        paths = list(images_under(good))
        val_paths = list(images_under(val)) if val else paths[3::4]
        train_paths = paths if val else [p for i, p in enumerate(paths) if i % 4 != 3]
        if not train_paths or not val_paths:
            raise typer.BadParameter(
                f"need good images to fit and to calibrate; {good} has {len(paths)}"
            )
        train_imgs = [_read(p) for p in train_paths]
        val_imgs = [_read(p) for p in val_paths]
    defect_imgs = [_read(p) for p in images_under(defects)] if defects else []
    with progress_bar("coreset") as update:
        calibrated = fit_from_images(
            template, train_imgs, val_imgs, workdir, update, defects=defect_imgs
        )
    choice = workdir / "recipes" / f"{calibrated.id}-fit.md"
    if template.fit.candidates and choice.exists():
        typer.echo(choice.read_text())
    onnx_path, _, recipe_path = model_paths(workdir, calibrated)
    repository = build_for(calibrated, onnx_path, workdir / "repository" / target, target)
    th = calibrated.thresholds
    typer.echo(
        f"fitted on {len(train_imgs)} good images, calibrated on {len(val_imgs)}\n"
        f"model {onnx_path}\nrecipe {recipe_path} (image threshold {th.image:.2f}: {th.method})\n"
        f"repository {repository}\ndone in {time.perf_counter() - t0:.1f} s"
    )


def _read(path: Path):
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise typer.BadParameter(f"cannot read image {path}")
    return img


@app.command()
def triton(
    repository: Path = typer.Option(..., help="Triton model repository (from `defectflow fit`)"),
    workdir: Path = typer.Option(Path("var/triton"), help="backend copy and cache"),
    address: str = typer.Option("127.0.0.1", help="listen address; 0.0.0.0 in a container"),
    grpc_port: int = typer.Option(8001),
    http_port: int = typer.Option(8000),
    metrics_port: int = typer.Option(8002),
) -> None:
    """Run the tritonserver bundled in nvidia-pytriton in the foreground (CPU, python backend)."""
    import os

    from services.localstack.triton import triton_argv, triton_env

    workdir.mkdir(parents=True, exist_ok=True)
    argv = triton_argv(repository, workdir, address, (grpc_port, http_port, metrics_port))
    os.execve(argv[0], argv, triton_env())


@app.command()
def protos() -> None:
    """Regenerate the protobuf/gRPC Python code from protos/."""
    from services.cli.protogen import generate

    for path in generate():
        typer.echo(str(path))


if __name__ == "__main__":
    app()

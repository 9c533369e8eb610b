"""Commands that need no servers: generate data, fit models, inspect folders, evaluate."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import typer

data_app = typer.Typer(help="Generate data sets in the MVTec AD layout.", no_args_is_help=True)


@contextmanager
def progress_bar(label: str):
    """A typer progress bar driven by (done, total) callbacks."""
    state: dict = {}

    def update(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = typer.progressbar(length=total, label=label)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        yield update
    finally:
        if "bar" in state:
            state["bar"].__exit__(None, None, None)


@data_app.command("synth")
def synth(
    out: Path = typer.Option(Path("var/data"), help="output folder; one subfolder per family"),
    family: list[str] = typer.Option(
        ["brushed_metal", "woven_fabric", "printed_pattern"], help="part family (repeatable)"
    ),
    train_good: int = typer.Option(40, help="good training images per family"),
    test_good: int = typer.Option(40, help="good test images per family"),
    test_per_type: int = typer.Option(10, help="test images per defect type (half subtle)"),
    size: int = typer.Option(512, help="image edge in pixels"),
    seed: int = typer.Option(0, help="seed block; different seeds never share an image"),
    nuisance: str = typer.Option(
        "line", help="nuisance profile of the images: line (what fit data carry) or shifted"
    ),
    test_nuisance: str | None = typer.Option(
        None, help="profile of the test split only (default: --nuisance), e.g. shifted"
    ),
) -> None:
    """Render seeded part images with defects in the MVTec AD layout, plus annotations.jsonl
    (class, severity, boxes, nuisance profile). Same arguments, same bytes."""
    from models.data.mvtec import SynthPlan, write_synthetic
    from services.common.synthetic import FAMILIES, NUISANCES

    for name, value in (("--nuisance", nuisance), ("--test-nuisance", test_nuisance)):
        if value is not None and value not in NUISANCES:
            raise typer.BadParameter(
                f"unknown profile {value!r} for {name}; choose one of {', '.join(NUISANCES)}"
            )
    for fam in family:
        if fam not in FAMILIES:
            raise typer.BadParameter(f"unknown family {fam!r}; known: {', '.join(FAMILIES)}")
        plan = SynthPlan(
            fam,
            (size, size),
            train_good,
            test_good,
            test_per_type,
            seed,
            nuisance=nuisance,
            test_nuisance=test_nuisance,
        )
        with progress_bar(fam) as update:
            samples = write_synthetic(out, plan, update)
        typer.echo(f"{out / fam}: {len(samples)} images")


def inspect(
    folder: Path = typer.Argument(..., help="folder of images (searched recursively)"),
    recipe: Path = typer.Option(..., help="calibrated recipe (from `defectflow fit`)"),
    out: Path = typer.Option(..., help="output folder for results.jsonl and maps/"),
    models: Path = typer.Option(
        Path("var/up/models"), help="folder holding <model>/<v>/model.onnx"
    ),
    maps: bool = typer.Option(True, help="write each anomaly map as float16 .npy"),
) -> None:
    """Inspect a folder offline (onnxruntime in-process, no servers) -> OUT/results.jsonl."""
    from services.offline.inspect import Inspector, inspect_folder

    inspector = Inspector.from_paths(recipe, models)
    t0 = time.perf_counter()
    with progress_bar("inspect") as update:
        results = inspect_folder(folder, inspector, out, update, save_maps=maps)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.decision.verdict.name] = counts.get(r.decision.verdict.name, 0) + 1
    typer.echo(
        f"{len(results)} images in {time.perf_counter() - t0:.1f} s: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + f"\nresults: {out / 'results.jsonl'}"
    )


def evaluate(
    data: Path = typer.Option(..., help="family folder in the MVTec layout (test/ is used)"),
    recipe: Path = typer.Option(..., help="calibrated recipe"),
    models: Path = typer.Option(Path("var/up/models")),
    out: Path = typer.Option(Path("var/eval"), help="results.jsonl, maps and report.json"),
) -> None:
    """Accuracy on a test split training never saw: image/pixel AUROC, AUPRO, box AP@0.5,
    false-reject and escape rates at the calibrated threshold."""
    from models.eval.report import evaluate_family

    with progress_bar("eval") as update:
        report = evaluate_family(data, recipe, models, out, update)
    typer.echo(json.dumps(report, indent=2))


def train(
    workdir: Path = typer.Option(Path("var/up"), help="writes WORKDIR/models/defects/1/"),
    per_type: int = typer.Option(32, help="training images per family and defect type"),
    good_per_family: int = typer.Option(20),
    epochs: int = typer.Option(50),
    seed: int = typer.Option(0),
) -> None:
    """Train DefectNet (segmentation, detection, classification heads on frozen Lite0
    features) on generated labelled parts, export it to ONNX."""
    from models.prepare import prepare_defects
    from models.supervised.train import TrainConfig

    cfg = TrainConfig(per_type=per_type, good_per_family=good_per_family, epochs=epochs, seed=seed)
    onnx_path, stats = prepare_defects(workdir, cfg, force=True, echo=typer.echo)
    typer.echo(f"model {onnx_path} in {stats['train_seconds']:.0f} s")


models_app = typer.Typer(help="Triton model repository.", no_args_is_help=True)


@models_app.command("build")
def build(
    target: str = typer.Option("cpu", help="cpu (python backend + onnxruntime) or gpu (KIND_GPU)"),
    workdir: Path = typer.Option(
        Path("var/up"), help="where `defectflow fit`/`train` wrote models"
    ),
    recipe: str = typer.Option("brushed-metal", help="calibrated recipe id in WORKDIR/recipes"),
    out: Path = typer.Option(None, help="repository folder; default WORKDIR/repository/TARGET"),
) -> None:
    """Render the Triton repository for a target from the one spec per model, so the CPU and
    GPU repositories never drift."""
    from models.prepare import build_for, model_paths
    from services.common.recipes import load_recipe

    calibrated = load_recipe(workdir / "recipes" / f"{recipe}.yaml")
    onnx_path, _, _ = model_paths(workdir, calibrated)
    if not onnx_path.exists():
        raise typer.BadParameter(f"no model {onnx_path}; run `defectflow fit` first")
    repo = build_for(calibrated, onnx_path, out or workdir / "repository" / target, target)
    for cfg in sorted(repo.glob("*/config.pbtxt")):
        typer.echo(str(cfg))


def accuracy(
    workdir: Path = typer.Option(Path("var/accuracy")),
    report: Path = typer.Option(Path("docs/accuracy.md")),
    elpv: bool = typer.Option(False, help="also the real-data check on ELPV (optional extra)"),
    splits: str = typer.Option(
        "both",
        help="line (in distribution), shifted (wider nuisance than the fit data, beside a "
        "stock PatchCore) or both",
    ),
    defectnet: bool = typer.Option(
        True, help="train DefectNet and evaluate its boxes (line split)"
    ),
    family: list[str] = typer.Option(
        ["brushed_metal", "woven_fabric", "printed_pattern"], help="part family (repeatable)"
    ),
    train_good: int = typer.Option(40, help="good training images per family"),
    test_good: int = typer.Option(40, help="good test images per family"),
    test_per_type: int = typer.Option(10, help="test images per defect type (half subtle)"),
    seed: int = typer.Option(
        9, help="seed block of the data; 9 is reserved for reports, develop on others"
    ),
) -> None:
    """Generate data, fit and train every reference model, evaluate, write the report."""
    from models.eval.accuracy import REPORT_SEED_BLOCK, SPLITS, Counts, run
    from services.common.synthetic import FAMILIES

    chosen = {"both": SPLITS, **{s: (s,) for s in SPLITS}}.get(splits)
    if chosen is None:
        raise typer.BadParameter(
            f"unknown --splits {splits!r}; choose one of {', '.join(SPLITS)}, both"
        )
    for fam in family:
        if fam not in FAMILIES:
            raise typer.BadParameter(f"unknown family {fam!r}; known: {', '.join(FAMILIES)}")
    command = f"defectflow accuracy --workdir {workdir} --report {report}"
    if splits != "both":
        command += f" --splits {splits}"
    if not defectnet:
        command += " --no-defectnet"
    if tuple(family) != FAMILIES:
        command += "".join(f" --family {f}" for f in family)
    usual = Counts()
    for flag, value, default in (
        ("--train-good", train_good, usual.train_good),
        ("--test-good", test_good, usual.test_good),
        ("--test-per-type", test_per_type, usual.test_per_type),
        ("--seed", seed, REPORT_SEED_BLOCK),
    ):
        if value != default:
            command += f" {flag} {value}"
    if elpv:
        command += " --elpv"
    run(
        workdir,
        report,
        command,
        families=tuple(family),
        train_good=train_good,
        test_good=test_good,
        test_per_type=test_per_type,
        echo=typer.echo,
        elpv=elpv,
        splits=chosen,
        defectnet=defectnet,
        seed_block=seed,
    )
    typer.echo(f"report: {report}")


def calibrate(
    recipe: Path = typer.Option(..., help="recipe to calibrate (rewritten, version + 1)"),
    good: Path = typer.Option(None, help="folder of good images not used for fitting"),
    defects: Path = typer.Option(None, help="optional folder of defective images"),
    models: Path = typer.Option(Path("var/up/models")),
    method: str = typer.Option(
        "target_frr", help="target_frr | max_normal | quantile | k_sigma | f1 (needs --defects)"
    ),
    target_frr: float = typer.Option(0.01, help="target_frr: false-reject rate to stay below"),
    confidence: float = typer.Option(0.95, help="target_frr: confidence of that bound"),
    quantile: float = typer.Option(0.99, help="quantile: p"),
    k: float = typer.Option(3.0, help="k_sigma: k"),
    report: Path = typer.Option(None, help="report folder; default next to the recipe"),
    from_reviews: bool = typer.Option(
        False, help="use reviewed inspections from the query API (--target/--token) instead"
    ),
    target: str = typer.Option("127.0.0.1:50051", help="--from-reviews: query API host:port"),
    token: str = typer.Option("", envvar="DEFECTFLOW_TOKEN", help="--from-reviews: token"),
) -> None:
    """Choose thresholds from good (and optionally defective) parts and write them into the
    recipe, not the model; report with a score histogram and the expected false-reject rate.
    With --from-reviews the labelled scores are the inspections people reviewed."""
    if from_reviews:
        from services.cli.reviews import calibrate_from_reviews

        cal = calibrate_from_reviews(recipe, target, token, None, 0, target_frr, confidence)
        typer.echo(cal.summary() + f"\nrecipe {recipe} rewritten")
        return
    if good is None:
        raise typer.BadParameter("--good is required (or --from-reviews)")
    import cv2

    from models.calibrate import calibrate as run_calibration
    from models.calibrate import histogram_png, record_drift_reference, report_md
    from services.common import thresholds as th
    from services.common.recipes import save_recipe
    from services.offline.inspect import Inspector, images_under

    try:
        rule = th.method_named(method, target_frr, confidence, quantile, k)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc

    def read(folder: Path | None) -> list:
        if folder is None:
            return []
        images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in images_under(folder)]
        if not images or any(i is None for i in images):
            raise typer.BadParameter(f"{folder}: no images, or an unreadable one")
        return images

    inspector = Inspector.from_paths(recipe, models)
    with progress_bar("calibrate") as update:
        cal = run_calibration(inspector, read(good), read(defects), rule, progress=update)
    save_recipe(cal.recipe, recipe)
    record_drift_reference(cal, recipe.parent)
    out = report or recipe.parent / f"{cal.recipe.id}-calibration"
    png = histogram_png(cal, out / "scores.png")
    (out / "calibration.md").write_text(report_md(cal, png))
    typer.echo((out / "calibration.md").read_text())

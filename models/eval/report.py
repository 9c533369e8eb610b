"""`defectflow eval`: run offline inspection on a test split and score it.

Pixel metrics are taken inside the recipe's ROI (outside it nothing is inspected);
image AUROC is also given per defect type (good parts against that type) and per
severity (good parts against the obvious, or the subtle, defects) where the data say so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.data.mvtec import Sample, load_family, split
from models.eval import metrics
from services.common.recipes import Roi
from services.offline.inspect import Inspector, inspect_folder


def crop(a: np.ndarray, roi: Roi | None) -> np.ndarray:
    return a if roi is None else a[roi.y : roi.y + roi.height, roi.x : roi.x + roi.width]


def score_metrics(
    samples: Sequence[Sample],
    scores: Sequence[float],
    maps: Sequence[np.ndarray],
    roi: Roi | None = None,
) -> dict:
    """Threshold-free accuracy of one model on a test split: image AUROC (all, per defect
    type, obvious-only, subtle-only), pixel AUROC and AUPRO (FPR <= 0.3) inside `roi`."""
    good = [sc for s, sc in zip(samples, scores, strict=True) if not s.defective]

    def auroc_against(chosen: list[float]) -> float | None:
        if not chosen or not good:
            return None
        return metrics.image_auroc([False] * len(good) + [True] * len(chosen), good + chosen)

    def of(keep) -> list[float]:
        return [sc for s, sc in zip(samples, scores, strict=True) if s.defective and keep(s)]

    masks = [crop(s.mask(m.shape), roi) for s, m in zip(samples, maps, strict=True)]
    cropped = [crop(m, roi) for m in maps]
    labels = sorted({s.label for s in samples if s.defective})
    return {
        "image_auroc": metrics.image_auroc([s.defective for s in samples], scores),
        "image_auroc_by_type": {t: auroc_against(of(lambda s, t=t: s.label == t)) for t in labels},
        "image_auroc_obvious": auroc_against(of(lambda s: s.severity == "obvious")),
        "image_auroc_subtle": auroc_against(of(lambda s: s.severity == "subtle")),
        "pixel_auroc": metrics.pixel_auroc(masks, cropped),
        "aupro_0.3": metrics.aupro(masks, cropped),
    }


def evaluate_family(
    data: Path, recipe_path: Path, models_dir: Path, out: Path, progress=None
) -> dict:
    data, out = Path(data), Path(out)
    samples = split(load_family(data), "test")
    if not samples:
        raise FileNotFoundError(f"{data}/test holds no images")
    inspector = Inspector.from_paths(recipe_path, models_dir)
    results = {r.image: r for r in inspect_folder(data / "test", inspector, out, progress)}
    rows = []
    for s in samples:
        rel = s.rel.removeprefix("test/")
        if rel not in results:
            raise RuntimeError(f"{s.rel} was not inspected (unreadable?); see {out}/results.jsonl")
        rows.append((s, results[rel]))

    defective = [s.defective for s, _ in rows]
    scores = [r.decision.score for _, r in rows]
    maps = [r.anomaly_map for _, r in rows]
    truths = {s.rel: list(s.boxes) for s, _ in rows}
    detections = [
        metrics.Detection(s.rel, d.score, d.box) for s, r in rows for d in r.decision.defects
    ]
    verdicts = [r.decision.verdict.name for _, r in rows]
    good = [v for v, d in zip(verdicts, defective, strict=True) if not d]
    bad = [(v, s) for v, (s, _) in zip(verdicts, rows, strict=True) if s.defective]
    per_type: dict[str, dict] = {}
    for v, s in bad:
        t = per_type.setdefault(s.label, {"n": 0, "escaped": 0})
        t["n"] += 1
        t["escaped"] += v == "OK"
    th = inspector.recipe.thresholds
    report = {
        "data": str(data),
        "recipe": f"{inspector.recipe.id} v{inspector.recipe.version}",
        "images": {"good": len(good), "defective": len(bad)},
        **score_metrics([s for s, _ in rows], scores, maps, inspector.recipe.roi),
        "anomaly_box_ap50": metrics.average_precision(detections, truths),
        "threshold": {"image": th.image, "pixel": th.pixel, "method": th.method},
        "false_reject_rate": sum(v == "NG" for v in good) / max(1, len(good)),
        "good_review_rate": sum(v == "REVIEW" for v in good) / max(1, len(good)),
        "escape_rate": sum(v == "OK" for v, _ in bad) / max(1, len(bad)),
        "defective_review_rate": sum(v == "REVIEW" for v, _ in bad) / max(1, len(bad)),
        "escapes_by_type": {k: f"{v['escaped']}/{v['n']}" for k, v in sorted(per_type.items())},
        "score_good_max": float(
            np.max([sc for sc, d in zip(scores, defective, strict=True) if not d])
        ),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report

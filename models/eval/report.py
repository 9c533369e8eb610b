"""`defectflow eval`: run offline inspection on a test split and score it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.data.mvtec import load_family, split
from models.eval import metrics
from services.offline.inspect import Inspector, inspect_folder


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
    masks, maps = [], []
    for s, r in rows:
        amap = r.anomaly_map
        masks.append(s.mask(amap.shape))
        maps.append(amap)
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
        "image_auroc": metrics.image_auroc(defective, scores),
        "pixel_auroc": metrics.pixel_auroc(masks, maps),
        "aupro_0.3": metrics.aupro(masks, maps),
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

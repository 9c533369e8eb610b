"""Post-processing: stitch tile maps, find defects, decide the verdict.

`decide` is the rulebook; everything it needs is passed in, so its unit tests
read like the rules a quality engineer signs off.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from services.common import register
from services.common.decoders import Det
from services.common.domain import Decision, DefectRecord, TileRect, Verdict
from services.common.recipes import Recipe
from services.common.thresholds import regions


def stitch(
    frame_size: tuple[int, int],
    tiles: Sequence[tuple[TileRect, np.ndarray]],
    mode: str = "max",
) -> np.ndarray:
    """Blend per-tile maps (any resolution) into one float32 map of frame size (w, h).

    Pixels no tile covers are 0. In overlaps: "max" keeps the strongest evidence,
    "mean" averages.
    """
    width, height = frame_size
    # mean accumulates in float64 so that averaging k equal values returns the value exactly
    canvas = np.zeros((height, width), np.float64 if mode == "mean" else np.float32)
    weight = np.zeros((height, width), np.float64) if mode == "mean" else None
    for rect, tile_map in tiles:
        m = np.asarray(tile_map, np.float32).reshape(tile_map.shape[-2:])
        if m.shape != (rect.height, rect.width):
            m = cv2.resize(m, (rect.width, rect.height), interpolation=cv2.INTER_LINEAR)
        region = canvas[rect.y : rect.y1, rect.x : rect.x1]
        if weight is None:
            np.maximum(region, m, out=region)
        else:
            region += m
            weight[rect.y : rect.y1, rect.x : rect.x1] += 1.0
    if weight is not None:
        np.divide(canvas, weight, out=canvas, where=weight > 0)
    return canvas.astype(np.float32, copy=False)


def find_defects(
    anomaly_map: np.ndarray,
    pixel_threshold: float,
    min_area_px: int,
    pixel_pitch_mm: float,
    defect_class: str,
    max_contour_points: int = 64,
    min_area_mm2: float = 0.0,
) -> list[DefectRecord]:
    """The map's regions at the pixel threshold (thresholds.regions: narrow gaps closed, so
    one defect is one record) that are at least `min_area_px` and `min_area_mm2` large."""
    n, labels, stats = regions(anomaly_map, pixel_threshold)
    defects = []
    for label in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[label])
        if area < min_area_px or area * pixel_pitch_mm**2 < min_area_mm2:
            continue
        component = labels[y : y + h, x : x + w] == label
        score = float(anomaly_map[y : y + h, x : x + w][component].max())
        contours, _ = cv2.findContours(
            component.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        outline = max(contours, key=cv2.contourArea)
        if len(outline) > max_contour_points:
            outline = cv2.approxPolyDP(outline, 1.5, True)
        points = tuple((float(px + x), float(py + y)) for px, py in outline.reshape(-1, 2))
        defects.append(
            DefectRecord(
                defect_class=defect_class,
                score=score,
                box=(float(x), float(y), float(x + w), float(y + h)),
                area_px=float(area),
                area_mm2=float(area) * pixel_pitch_mm**2,
                contour=points,
            )
        )
    defects.sort(key=lambda d: d.score, reverse=True)
    return defects


def decide(
    score: float,
    defects: Sequence[DefectRecord],
    image_threshold: float,
    review_low: float,
    complete: bool,
    tiles_expected: int,
    tiles_received: int,
    disagreements: Sequence[str] = (),
    minor_only: bool = False,
    upstream: Sequence[str] = (),
) -> Decision:
    """The verdict rules, in order.

    0. A stage before postprocess could not prepare the frame as
       the recipe asks (the part did not register), `upstream`  -> REVIEW.
    1. Not all tiles arrived (or the score is not a number)      -> REVIEW.
    2. A defect region exists and the image score >= threshold   -> NG
       (REVIEW when every defect is of a class the recipe rates minor).
    3. The models disagree (the detector is sure of a defect the
       anomaly model does not see)                               -> REVIEW.
    4. Image score in the review band [review_low, threshold),
       or a defect region with an image score below threshold    -> REVIEW.
    5. Otherwise                                                 -> OK.
    """
    if upstream:
        return Decision(Verdict.REVIEW, score, tuple(defects), tuple(upstream))
    if not complete:
        return Decision(
            Verdict.REVIEW,
            score,
            tuple(defects),
            (f"incomplete frame: {tiles_received} of {tiles_expected} tiles arrived",),
        )
    if not np.isfinite(score):
        return Decision(Verdict.REVIEW, score, tuple(defects), (f"non-finite image score {score}",))
    if defects and score >= image_threshold and minor_only:
        return Decision(
            Verdict.REVIEW,
            score,
            tuple(defects),
            (f"only minor defects ({', '.join(sorted({d.defect_class for d in defects}))})",),
        )
    if defects and score >= image_threshold:
        return Decision(
            Verdict.NG,
            score,
            tuple(defects),
            (
                f"{len(defects)} defect region(s); score {score:.3f} >= threshold {image_threshold:.3f}",
            ),
        )
    if disagreements:
        return Decision(Verdict.REVIEW, score, tuple(defects), tuple(disagreements))
    if score >= review_low or defects:
        return Decision(
            Verdict.REVIEW,
            score,
            tuple(defects),
            (f"score {score:.3f} in review band [{review_low:.3f}, {image_threshold:.3f})",),
        )
    return Decision(
        Verdict.OK, score, (), (f"score {score:.3f} below review band {review_low:.3f}",)
    )


def assess(
    recipe: Recipe,
    frame_size: tuple[int, int],
    tile_maps: Sequence[tuple[TileRect, np.ndarray]],
    tiles_expected: int,
    complete: bool = True,
    tile_detections: Sequence[tuple[TileRect, Det]] = (),
    upstream: Sequence[str] = (),
    part_to_frame: np.ndarray | None = None,
) -> tuple[Decision, np.ndarray | None]:
    """A frame's tile maps (and detector boxes) -> (verdict, stitched anomaly map).

    The one path from model output to verdict: the postprocess service and the offline
    `defectflow inspect` both call it, so they cannot disagree. `upstream`: reasons a
    stage before raised (REVIEW); `part_to_frame`: the registered frame's 2x3 affine
    from part coordinates to frame pixels, which the stitched map is mapped back by.
    """
    th = recipe.thresholds
    disagreements: list[str] = []
    if tile_maps:
        amap = stitch(frame_size, tile_maps, recipe.tiling.stitch)
        score = float(amap.max())
        if part_to_frame is not None:
            amap = register.to_frame(amap, part_to_frame)
        defects = find_defects(
            amap,
            th.pixel,
            th.min_defect_area_px,
            recipe.pixel_pitch_mm,
            recipe.defect_class,
            min_area_mm2=th.min_defect_area_mm2,
        )
        if recipe.detector is not None:
            boxes = merge_tile_boxes(tile_detections, frame_size)
            defects, disagreements = fuse(
                defects,
                boxes,
                recipe.detector.classes,
                recipe.detector.threshold,
                recipe.pixel_pitch_mm,
            )
    else:
        amap, score, defects = None, float("nan"), []
    rules = recipe.defect_classes
    defects = [
        d
        for d in defects
        if d.defect_class not in rules or d.area_mm2 >= rules[d.defect_class].min_area_mm2
    ]
    minor_only = bool(defects) and all(
        d.defect_class in rules and rules[d.defect_class].severity == "minor" for d in defects
    )
    decision = decide(
        score,
        defects,
        th.image,
        th.review_low,
        complete,
        tiles_expected,
        len(tile_maps),
        disagreements=disagreements,
        minor_only=minor_only,
        upstream=upstream,
    )
    return decision, amap


def merge_tile_boxes(
    items: Sequence[tuple[TileRect, Det]],
    frame_size: tuple[int, int],
    edge_px: float = 2.0,
    duplicate_iou: float = 0.5,
    min_score_ratio: float = 0.5,
) -> list[Det]:
    """Detector boxes of all tiles (tile coordinates) -> one list in frame coordinates.

    Boxes are first clipped to their tile (a model sees nothing beyond it). Then, greedy,
    highest score first (SAHI's GREEDYNMM idea): a box joins an earlier box when they are
    the same defect seen twice (IoU >= duplicate_iou), or when they overlap, either was cut
    by an inner tile border (touches its tile's edge where a neighbouring tile continues)
    and the joining box scores at least `min_score_ratio` of the earlier one (weak
    proposals do not inflate a strong box). Joined boxes become their union and keep the
    class and score of the stronger box. Matching ignores the class: one place, one defect;
    a tile that calls a scratch a crack must not turn it into two defects.
    """
    width, height = frame_size
    groups: list[tuple[Det, bool]] = []  # (box in frame coords, was cut)
    for rect, d in sorted(items, key=lambda it: -it[1].score):
        d = Det(
            max(0.0, d.x0),
            max(0.0, d.y0),
            min(float(rect.width), d.x1),
            min(float(rect.height), d.y1),
            d.score,
            d.cls,
        )
        if d.x1 <= d.x0 or d.y1 <= d.y0:
            continue
        f = d.shifted(rect.x, rect.y)
        cut = (
            (rect.x > 0 and d.x0 <= edge_px)
            or (rect.y > 0 and d.y0 <= edge_px)
            or (rect.x1 < width and d.x1 >= rect.width - edge_px)
            or (rect.y1 < height and d.y1 >= rect.height - edge_px)
        )
        for i, (g, g_cut) in enumerate(groups):
            same = _iou(g, f) >= duplicate_iou
            joined = _intersects(g, f) and (cut or g_cut) and f.score >= min_score_ratio * g.score
            if same or joined:
                groups[i] = (
                    Det(
                        min(g.x0, f.x0),
                        min(g.y0, f.y0),
                        max(g.x1, f.x1),
                        max(g.y1, f.y1),
                        g.score,
                        g.cls,
                    ),
                    g_cut or cut,
                )
                break
        else:
            groups.append((f, cut))
    return [g for g, _ in groups]


def _intersects(a: Det, b: Det) -> bool:
    return min(a.x1, b.x1) > max(a.x0, b.x0) and min(a.y1, b.y1) > max(a.y0, b.y0)


def _iou(a: Det, b: Det) -> float:
    ix = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = ix * iy
    union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter
    return inter / union if union > 0 else 0.0


def fuse(
    regions: Sequence[DefectRecord],
    detections: Sequence[Det],
    classes: Sequence[str],
    detector_threshold: float,
    pixel_pitch_mm: float,
    match_ios: float = 0.3,
) -> tuple[list[DefectRecord], list[str]]:
    """Anomaly regions + detector boxes (frame coordinates, merged) -> defect records and
    disagreements.

    - A region overlapped by a detector box (intersection over the smaller >= match_ios)
      takes the class of the strongest such box: the anomaly model says where, the
      detector says what.
    - A region no box explains keeps its anomaly class: an unknown defect is still a defect.
    - A box at or above `detector_threshold` that no region explains becomes its own record
      (source "detector") and is reported as a disagreement: the verdict rules send the
      part to REVIEW rather than trust either model alone.
    """
    records: list[DefectRecord] = []
    used: set[int] = set()
    for r in regions:
        best = None
        for i, d in enumerate(detections):
            if _ios(r.box, d.box) >= match_ios and (
                best is None or d.score > detections[best].score
            ):
                best = i
        if best is None:
            records.append(r)
            continue
        used.add(best)
        d = detections[best]
        records.append(
            DefectRecord(
                defect_class=classes[d.cls],
                score=r.score,
                box=r.box,
                area_px=r.area_px,
                area_mm2=r.area_mm2,
                contour=r.contour,
                source="anomaly+detector",
            )
        )
    disagreements = []
    for i, d in enumerate(detections):
        if i in used or d.score < detector_threshold:
            continue
        # the detector alone: also a region another region already explains is not new
        if any(_ios(rec.box, d.box) >= match_ios for rec in records):
            continue
        area = (d.x1 - d.x0) * (d.y1 - d.y0)
        records.append(
            DefectRecord(
                defect_class=classes[d.cls],
                score=d.score,
                box=d.box,
                area_px=area,
                area_mm2=area * pixel_pitch_mm**2,
                contour=((d.x0, d.y0), (d.x1, d.y0), (d.x1, d.y1), (d.x0, d.y1)),
                source="detector",
            )
        )
        disagreements.append(
            f"detector found {classes[d.cls]} ({d.score:.2f}) at "
            f"[{d.x0:.0f}, {d.y0:.0f}, {d.x1:.0f}, {d.y1:.0f}] where the anomaly map shows no region"
        )
    records.sort(key=lambda x: x.score, reverse=True)
    return records, disagreements


def _ios(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0

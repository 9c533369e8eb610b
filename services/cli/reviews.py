"""`defectflow calibrate --from-reviews`: the operators' reviews as labelled data.

Every inspection a person reviewed in the console (or through SubmitReview) has an image
score from the line and a human label: OK -> a normal score, NG -> a defective one (the
latest review counts). With both kinds the image threshold is the F1-optimal one; with
normal scores only it is the target-false-reject order statistic. The report gives the
false-reject and escape rates the new threshold has on the reviewed parts.

Reviewed parts are not a random sample: REVIEW verdicts (near the old threshold) are
over-represented, which is what a threshold needs, but the rates are those of the
reviewed set, not of the line; the audit sample of OK / NG is what keeps them honest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer
from defectflow.v1 import inspections_pb2, query_pb2

from services.common import thresholds as th


@dataclass(frozen=True)
class Labelled:
    good: np.ndarray  # image scores of parts a person called OK
    defective: np.ndarray  # ... called NG
    overturned: int  # reviews that disagree with an OK / NG machine verdict


@dataclass(frozen=True)
class ReviewCalibration:
    choice: th.Choice
    labelled: Labelled
    false_reject_rate: float  # reviewed good parts at or above the threshold
    escape_rate: float | None  # reviewed defective parts below it (None: no defective)
    previous: float | None  # the recipe's image threshold before

    def summary(self) -> str:
        lab, c = self.labelled, self.choice
        lines = [
            f"reviewed inspections: {lab.good.size} OK, {lab.defective.size} NG "
            f"({lab.overturned} overturned a machine verdict)",
            f"image threshold: {c.threshold:.4f} ({c.method})"
            + (f", was {self.previous:.4f}" if self.previous is not None else ""),
            f"false-reject rate on the reviewed good parts: {self.false_reject_rate:.2%}",
        ]
        if c.frr_bound is not None:
            lines.append(
                f"false-reject rate on new good parts: <= {c.frr_bound:.2%} at "
                f"{c.confidence:.0%} confidence (order-statistic bound)"
            )
        if self.escape_rate is not None:
            lines.append(f"escape rate on the reviewed defective parts: {self.escape_rate:.2%}")
        else:
            lines.append("escape rate: unknown (no reviewed NG part yet)")
        if c.note:
            lines.append(f"note: {c.note}")
        return "\n".join(lines)


def labelled_scores(records: list[query_pb2.InspectionRecord]) -> Labelled:
    good: list[float] = []
    bad: list[float] = []
    overturned = 0
    for rec in records:
        if not rec.reviews:
            continue
        human = rec.reviews[-1].disposition
        (good if human == inspections_pb2.VERDICT_OK else bad).append(rec.inspection.score)
        machine = rec.inspection.verdict
        overturned += int(machine in (1, 2) and machine != human)
    return Labelled(np.array(good, np.float64), np.array(bad, np.float64), overturned)


def choose(
    lab: Labelled, target_frr: float, confidence: float, previous: float | None = None
) -> ReviewCalibration:
    """F1-optimal with reviewed OK and NG parts, else the target-FRR order statistic."""
    if lab.good.size == 0:
        raise ValueError(
            "no reviewed OK part: thresholds need normal scores; review some OK or "
            "REVIEW verdicts as OK first"
        )
    if lab.defective.size:
        choice = th.F1Optimal().choose(lab.good.tolist(), lab.defective.tolist())
    else:
        choice = th.TargetFalseReject(target_frr, confidence).choose(lab.good.tolist())
    t = choice.threshold
    frr = float((lab.good >= t).mean())
    escape = float((lab.defective < t).mean()) if lab.defective.size else None
    return ReviewCalibration(choice, lab, frr, escape, previous)


def reviewed_records(call, recipe_id: str, recipe_version: int = 0) -> list:
    """Every reviewed inspection of the recipe, through ListInspections."""
    flt = query_pb2.InspectionFilter(
        recipe_id=recipe_id,
        recipe_version=recipe_version,
        review_state=query_pb2.REVIEW_STATE_REVIEWED,
    )
    out, token = [], ""
    while True:
        page = call(
            "ListInspections",
            query_pb2.ListInspectionsRequest(filter=flt, page_size=1000, page_token=token),
        )
        out += list(page.records)
        token = page.next_page_token
        if not token:
            return out


def calibrate_from_reviews(
    recipe: Path,
    target: str,
    token: str,
    tls_ca: Path | None = None,
    recipe_version: int = 0,
    target_frr: float = 0.01,
    confidence: float = 0.95,
    review_margin: float = 0.05,
    write: bool = True,
    timeout: float = 30.0,
) -> ReviewCalibration:
    """Thresholds for the recipe file from the reviewed inspections of its recipe id; the
    recipe is rewritten (version + 1, image threshold and review band) unless `write` is
    false. The pixel threshold stays: reviews label images, not pixels."""
    from services.cli.query import Client
    from services.common.recipes import load_recipe, save_recipe

    current = load_recipe(recipe)
    client = Client(target, token, tls_ca, timeout)
    records = reviewed_records(client.call, current.id, recipe_version)
    try:
        cal = choose(labelled_scores(records), target_frr, confidence, current.thresholds.image)
    except ValueError as exc:
        raise typer.BadParameter(f"recipe {current.id}: {exc}") from exc
    if write:
        t = cal.choice.threshold
        new = current.thresholds.model_copy(
            update={
                "image": t,
                "review_low": t * (1.0 - review_margin),
                "method": f"from {len(records)} reviews: {cal.choice.method}",
                "frr_bound": cal.choice.frr_bound,
                "confidence": cal.choice.confidence,
            }
        )
        save_recipe(
            current.model_copy(update={"thresholds": new, "version": current.version + 1}), recipe
        )
    return cal

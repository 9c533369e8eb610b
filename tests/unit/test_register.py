"""Registration of structured parts: aligned when the part moved, REVIEW when it cannot be."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.anomaly.train import with_fitted_preprocess
from services.common import register
from services.common.domain import Rect, Verdict
from services.common.errors import BadInput
from services.common.recipes import Preprocess, Recipe, Registration, Roi, Thresholds, Tiling
from services.offline.inspect import Inspector
from services.postprocess.logic import assess
from services.tiling.logic import condition, plan_tiles

SIZE = 320
ROI = Roi(x=40, y=40, width=240, height=240)


def board(seed: int = 0, angle: float = 0.0, shift=(0.0, 0.0), size: int = SIZE) -> np.ndarray:
    """A fixed layout of pads and traces (one layout per seed), placed with a rotation
    about the centre and a shift, BGR uint8."""
    rng = np.random.default_rng(seed)
    big = size + 80
    img = np.full((big, big), 150, np.float32)
    for _ in range(40):
        x, y = rng.integers(10, big - 30, 2)
        w, h = rng.integers(6, 24, 2)
        cv2.rectangle(
            img, (int(x), int(y)), (int(x + w), int(y + h)), float(rng.integers(40, 90)), -1
        )
    for _ in range(14):
        p0, p1 = rng.integers(10, big - 10, (2, 2))
        cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 215.0, 3)
    m = cv2.getRotationMatrix2D((big / 2, big / 2), angle, 1.0)
    m[:, 2] += shift
    img = cv2.warpAffine(img, m, (big, big), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    img = img[40 : 40 + size, 40 : 40 + size]
    img = img + np.random.default_rng(seed + 99).normal(0, 2, img.shape)
    return cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def recipe(**reg) -> Recipe:
    return Recipe(
        id="board",
        version=1,
        roi=ROI,
        tiling=Tiling(tile_size=128, overlap=0, model_input=128, context=16),
        preprocess=Preprocess(registration=Registration(**reg)),
        model={"name": "m"},
        thresholds=Thresholds(pixel=1, image=1, review_low=1),
    )


def fitted(**reg) -> Recipe:
    return with_fitted_preprocess(recipe(**reg), [board(0), board(0, 0.5, (1, -1)), board(0, -0.4)])


def roi_rect() -> Rect:
    return Rect(ROI.x, ROI.y, ROI.width, ROI.height)


def test_fit_builds_a_reference_of_the_roi_at_the_registration_size():
    r = fitted(size=128)
    ref = register.decode_reference(r.preprocess.registration.reference)
    assert ref.shape == (128, 128)
    assert (
        np.corrcoef(ref.ravel(), register.grey_roi(board(0), roi_rect(), 128).ravel())[0, 1] > 0.95
    )


def test_a_turned_and_shifted_part_is_aligned_back_to_the_reference():
    r = fitted()
    moved = board(0, angle=2.5, shift=(9.0, -6.0))
    a = register.align(cv2.GaussianBlur(moved, (0, 0), 1), roi_rect(), r.preprocess.registration)
    assert a.failure is None
    assert a.rotation_deg == pytest.approx(-2.5, abs=0.3) or a.rotation_deg == pytest.approx(
        2.5, abs=0.3
    )
    assert 8.0 < a.shift_px < 13.0
    inner = (slice(60, 260), slice(60, 260))
    before = np.abs(moved[inner].astype(float) - board(0)[inner].astype(float)).mean()
    after = np.abs(
        condition(moved, r).image[inner].astype(float) - board(0)[inner].astype(float)
    ).mean()
    assert before > 20
    assert after < 0.3 * before


def test_a_part_shifted_by_many_pixels_still_aligns():
    r = fitted(max_shift_px=40.0)
    a = register.align(board(0, 1.0, (-21.0, 17.0)), roi_rect(), r.preprocess.registration)
    assert a.failure is None
    assert a.shift_px == pytest.approx(np.hypot(21, 17), abs=2.0)


def test_the_anomaly_map_is_mapped_back_to_where_the_defect_is_in_the_frame():
    r = fitted()
    moved = board(0, angle=3.0, shift=(-10.0, 7.0))
    moved[200:206, 120:126] = 255  # a defect at (123, 203) in the camera's frame
    cond = condition(moved, r)
    part = (
        cond.image[:, :, 0].astype(np.int32)
        - condition(board(0, 3.0, (-10.0, 7.0)), r).image[:, :, 0]
    )
    py, px = np.unravel_index(np.argmax(part), part.shape)  # where the models see it
    assert abs(px - 123) + abs(py - 203) > 8  # registration moved it
    # a model that marks exactly that spot in its tile maps
    _, rects = plan_tiles(r, SIZE, SIZE)
    maps = []
    for rc in rects:
        m = np.zeros((128, 128), np.float32)
        if rc.x <= px < rc.x1 and rc.y <= py < rc.y1:
            m[py - rc.y, px - rc.x] = 10.0
            m = cv2.GaussianBlur(m, (0, 0), 2) * 20
        maps.append((rc, m))
    _, amap = assess(r, (SIZE, SIZE), maps, len(rects), part_to_frame=cond.part_to_frame)
    fy, fx = np.unravel_index(np.argmax(amap), amap.shape)
    assert abs(fx - 123) <= 4 and abs(fy - 203) <= 4


def test_the_wrong_part_fails_registration_and_the_verdict_is_review():
    r = fitted()
    cond = condition(board(seed=5), r)
    assert cond.part_to_frame is None
    assert len(cond.review) == 1 and cond.review[0].startswith("registration failed")
    decision, _ = assess(
        r.model_copy(update={"thresholds": Thresholds(pixel=100, image=100, review_low=90)}),
        (SIZE, SIZE),
        [(rc, np.zeros((128, 128), np.float32)) for rc in plan_tiles(r, SIZE, SIZE)[1]],
        len(plan_tiles(r, SIZE, SIZE)[1]),
        upstream=cond.review,
    )
    assert decision.verdict is Verdict.REVIEW  # the maps alone would say OK
    assert decision.reasons == cond.review


def test_a_part_moved_further_than_the_recipe_allows_fails_with_the_shift():
    r = fitted(max_shift_px=5.0)
    cond = condition(board(0, shift=(9.0, 0.0)), r)
    assert cond.review and "shifted" in cond.review[0]


def test_fit_names_a_good_image_that_does_not_align():
    with pytest.raises(ValueError, match="good image 2 of 2 does not align"):
        with_fitted_preprocess(recipe(), [board(0), board(7)])


def test_inspection_without_a_fitted_reference_refuses():
    with pytest.raises(BadInput, match="no reference"):
        condition(board(0), recipe())


def test_the_tiling_service_marks_the_frame_and_dead_letters_an_unfitted_recipe(tmp_path):
    from defectflow.v1 import common_pb2, frames_pb2, tiles_pb2

    from services.common import topics
    from services.common.images import encode_png
    from services.common.recipes import save_recipe
    from services.tiling.config import TilingSettings
    from services.tiling.main import TilingHandler
    from tests.unit.test_decoders import letters_of, record

    save_recipe(fitted(), tmp_path / "board.yaml")
    save_recipe(recipe().model_copy(update={"id": "unfitted"}), tmp_path / "unfitted.yaml")
    h = TilingHandler(TilingSettings(recipes_dir=tmp_path, blob_root=tmp_path / "blobs"))

    def frame(image: np.ndarray, frame_id: str, recipe_id: str = "board") -> bytes:
        ref = common_pb2.ImageRef(encoding="png", width=SIZE, height=SIZE, channels=3)
        ref.inline_data = encode_png(image)
        ctx = common_pb2.FrameContext(frame_id=frame_id, recipe_id=recipe_id, image=ref)
        return frames_pb2.Frame(schema_version=1, context=ctx).SerializeToString()

    frames = [
        frame(board(0, 2.0, (6, 4)), "moved"),
        frame(board(5), "wrong"),
        frame(board(0), "unfitted", "unfitted"),
    ]
    out = h.handle([record(topics.FRAMES, f, i) for i, f in enumerate(frames)])
    ctxs = {}
    for o in out.outputs:
        if o.topic == topics.TILES:
            c = tiles_pb2.TileChunk.FromString(o.value).context
            ctxs[c.frame_id] = c
    assert len(ctxs["moved"].part_to_frame) == 6 and not ctxs["moved"].review_reasons
    assert not ctxs["wrong"].part_to_frame
    assert ctxs["wrong"].review_reasons[0].startswith("registration failed")
    assert [(d.reason, d.frame_id) for d in letters_of(out)] == [("recipe_unfitted", "unfitted")]


def test_offline_inspection_reports_the_failed_registration(tmp_path):
    """The offline path (`defectflow inspect`) runs the same rule as the service."""
    from models.anomaly.local_stats import LocalStatsAnomaly
    from models.anomaly.train import export_onnx

    r = fitted()
    model = LocalStatsAnomaly(np.zeros(2, np.float32), np.eye(2, dtype=np.float32), 16).eval()
    onnx = export_onnx(model, r.tiling.input_size, tmp_path / "m.onnx")
    inspector = Inspector(
        r.model_copy(update={"thresholds": Thresholds(pixel=1e9, image=1e9, review_low=1e9)}), onnx
    )
    assert inspector.inspect(board(0, 1.0, (3, 2))).decision.verdict is Verdict.OK
    wrong = inspector.inspect(board(seed=5)).decision
    assert wrong.verdict is Verdict.REVIEW
    assert wrong.reasons[0].startswith("registration failed")

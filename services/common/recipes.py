"""Recipes: one versioned YAML file per product, validated with pydantic.

A recipe says how a product is inspected: ROI, tiling, which model, the
calibrated thresholds (outside the model graph) and the verdict rules' limits.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.common.errors import BadInput


class Roi(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    x: int = Field(ge=0)
    y: int = Field(ge=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class Tiling(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    tile_size: int = Field(gt=0, description="tile edge in frame pixels")
    overlap: int = Field(ge=0, description="overlap between neighbouring tiles in frame pixels")
    model_input: int = Field(gt=0, description="tile edge the model takes; tiles are resized to it")
    context: int = Field(
        0,
        ge=0,
        multiple_of=16,
        description="model-input pixels of real image the model sees beyond each tile edge; "
        "its features keep their context and the model cuts the margin off its map",
    )
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    stitch: str = Field("max", pattern="^(max|mean)$")
    chunk_bytes: int = Field(
        512 * 1024, gt=0, le=900 * 1024, description="byte budget of one tiles message"
    )

    @property
    def input_size(self) -> int:
        """Edge of the model's input: the tile plus its context margin on both sides."""
        return self.model_input + 2 * self.context

    @property
    def context_px(self) -> int:
        """The context margin in frame pixels."""
        return round(self.context * self.tile_size / self.model_input)

    @model_validator(mode="after")
    def _overlap_below_tile(self) -> Tiling:
        if self.overlap >= self.tile_size:
            raise ValueError(
                f"overlap {self.overlap} must be smaller than tile_size {self.tile_size}"
            )
        return self


class Registration(BaseModel):
    """Alignment of each frame's ROI to a reference image of a good part (structured parts:
    printed layouts, boards), by maximising the enhanced correlation coefficient (ECC,
    Evangelidis and Psarakis 2008) at reduced scale. A frame that does not align is
    judged REVIEW with the reason, never scored as if it had."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    motion: str = Field(
        "euclidean",
        pattern="^(translation|euclidean)$",
        description="translation: shift only; euclidean: shift and rotation",
    )
    min_correlation: float = Field(
        0.6, gt=0.0, lt=1.0, description="ECC correlation below which alignment failed"
    )
    max_shift_px: float = Field(
        24.0, gt=0.0, description="a larger shift (frame px) means a misplaced part: failed"
    )
    max_rotation_deg: float = Field(
        6.0, gt=0.0, le=45.0, description="a larger rotation means a misplaced part: failed"
    )
    size: int = Field(
        256, ge=64, le=1024, description="px: the ROI's longer side is scaled to this to align"
    )
    reference: str | None = Field(
        None,
        description="the reference ROI, greyscale PNG at `size`, base64 (fit sets it from "
        "the good parts: their mean after aligning them to the first)",
    )


class Preprocess(BaseModel):
    """Frame conditioning before tiling, identical in fit, calibration, the tiling service
    and offline inspection (services/tiling/logic.condition)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    registration: Registration | None = Field(
        None, description="align each frame to the good parts' reference (after the flat field)"
    )
    illumination: str = Field(
        "none",
        pattern="^(none|flat_field)$",
        description="flat_field: each colour channel divided by a smooth surface fitted to it "
        "inside the ROI (removes gain, gradients, vignetting and colour-gain drift)",
    )
    level: tuple[float, float, float] | None = Field(
        None, description="flat_field: B, G, R level the channels are scaled to (fit sets it)"
    )
    contrast: bool = Field(
        False,
        description="scale the frame's detail (what a 8 px blur removes) to the contrast "
        "the good parts had at fit time: defocus and contrast drift then change the "
        "features less",
    )
    contrast_level: float | None = Field(
        None, gt=0, description="contrast: the detail's standard deviation (fit sets it)"
    )
    smooth_sigma: float = Field(
        0.0,
        ge=0.0,
        le=4.0,
        description="Gaussian blur (px) of every frame: sensor noise and defocus that vary "
        "along the line then change the features less than a defect does",
    )


class ModelRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())
    name: str
    task: str = Field("anomaly", pattern="^(anomaly|segmentation|detection|classification)$")
    decoder: str = "defectflow_anomaly"
    version: str = ""  # empty: the version Triton serves as latest


class Detector(BaseModel):
    """An optional second model that names and boxes defects (DefectNet or a YOLO export)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())
    name: str = "defects"
    decoder: str = Field("defectnet", pattern="^(defectnet|yolo)$")
    version: str = ""
    classes: tuple[str, ...] = Field(min_length=1)
    input_size: int | None = Field(
        None,
        gt=0,
        description="tile edge the detector takes (DefectNet: 128); tiles are resized to it "
        "and its boxes scaled back; default: the tile as the anomaly model sees it",
    )
    score_min: float = Field(0.25, ge=0, le=1, description="boxes below are dropped")
    threshold: float = Field(
        0.6, ge=0, le=1, description="a box at or above this with no anomaly region -> REVIEW"
    )


class DefectClass(BaseModel):
    """Per defect class: how bad it is and how small it may be before it counts."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    severity: str = Field("major", pattern="^(critical|major|minor)$")
    min_area_mm2: float = Field(0.0, ge=0)


class Candidate(BaseModel):
    """Settings `defectflow fit` tries: dotted recipe fields and their values, e.g.
    {"fit.stride": 4} or {"preprocess.illumination": "none"}."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    label: str
    set: dict[str, int | float | str | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_fields(self) -> Candidate:
        for key in self.set:
            section, _, name = key.partition(".")
            model = {"tiling": Tiling, "preprocess": Preprocess, "fit": Fit}.get(section)
            if model is None or name not in model.model_fields or name == "candidates":
                raise ValueError(
                    f"candidate {self.label!r} sets {key!r}; candidates set tiling.*, "
                    "preprocess.* or fit.* fields"
                )
        return self


class Fit(BaseModel):
    """How `defectflow fit` builds the anomaly model from good parts."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    arch: str = Field("patchcore_lite0", pattern="^(patchcore_lite0|local_stats)$")
    bank_size: int = Field(2048, gt=0, description="PatchCore memory bank (coreset) size")
    stride: int = Field(8, description="PatchCore feature stride: 8, or 4 for thin defects")
    augment: int = Field(
        0, ge=0, le=8, description="copies of each good image with line nuisance added"
    )
    seed: int = 0
    candidates: tuple[Candidate, ...] = Field(
        (), description="settings fit tries on held-out parts; the best one is kept"
    )

    @model_validator(mode="after")
    def _known_stride(self) -> Fit:
        if self.stride not in (4, 8):
            raise ValueError(f"fit.stride {self.stride} must be 4 or 8")
        return self


class Thresholds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    pixel: float = Field(description="anomaly-map value above which a pixel is defective")
    image: float = Field(description="image score at or above which a part is NG")
    review_low: float = Field(description="image scores in [review_low, image) are REVIEW")
    min_defect_area_px: int = Field(8, ge=1)
    min_defect_area_mm2: float = Field(
        0.0, ge=0, description="regions smaller than this are no defect"
    )
    method: str = "unset"  # how they were calibrated, for the record
    frr_bound: float | None = Field(
        None, description="calibration's upper bound of the false-reject rate on good parts"
    )
    confidence: float | None = None


class Recipe(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: int = Field(ge=1)
    description: str = ""
    roi: Roi | None = None
    pixel_pitch_mm: float = Field(0.1, gt=0)
    max_image_pixels: int = Field(64_000_000, gt=0)
    tiling: Tiling
    preprocess: Preprocess = Preprocess()
    model: ModelRef
    fit: Fit = Fit()
    detector: Detector | None = None
    thresholds: Thresholds
    defect_class: str = "anomaly"  # class of a region no detector names
    # severity and minimum size per class (classes not listed: major, no minimum);
    # a part whose only defects are minor is REVIEW, not NG
    defect_classes: dict[str, DefectClass] = Field(default_factory=dict)
    frame_timeout_s: float = Field(30.0, gt=0, description="wait this long for a frame's tiles")

    @model_validator(mode="after")
    def _review_band(self) -> Recipe:
        t = self.thresholds
        if t.review_low > t.image:
            raise ValueError(
                f"thresholds.review_low {t.review_low} is above thresholds.image {t.image}"
            )
        return self


class RecipeError(ValueError):
    pass


def with_settings(recipe: Recipe, settings: dict) -> Recipe:
    """The recipe with dotted fields replaced (a candidate's settings), validated."""
    data = recipe.model_dump(mode="json")
    for key, value in settings.items():
        section, _, name = key.partition(".")
        data[section][name] = value
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(f"settings {settings} make recipe {recipe.id!r} invalid: {exc}") from exc


def load_recipe(path: Path) -> Recipe:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from exc
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise RecipeError(f"invalid recipe {path}: {problems}") from exc


def save_recipe(recipe: Recipe, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))


class RecipeBook:
    """All recipes in a directory, reloaded when a file changes (changeover without restart).

    Every version seen is kept: a frame tiled under version 3 is judged under version 3
    even when recalibration wrote version 4 while its tiles were in flight."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._cache: dict[str, tuple[float, Recipe]] = {}
        self._versions: dict[tuple[str, int], Recipe] = {}

    def get(self, recipe_id: str, version: int = 0) -> Recipe:
        """The recipe's current version, or `version` when given and seen by this process
        (else the current one: after a restart only the file's version is known)."""
        latest = self._latest(recipe_id)
        if version and version != latest.version:
            return self._versions.get((recipe_id, version), latest)
        return latest

    def _latest(self, recipe_id: str) -> Recipe:
        path = self.directory / f"{recipe_id}.yaml"
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            raise RecipeError(f"unknown recipe {recipe_id!r}: no file {path}") from None
        cached = self._cache.get(recipe_id)
        if cached and cached[0] == mtime:
            return cached[1]
        recipe = load_recipe(path)
        if recipe.id != recipe_id:
            raise RecipeError(
                f"recipe file {path} declares id {recipe.id!r}, expected {recipe_id!r}"
            )
        self._cache[recipe_id] = (mtime, recipe)
        self._versions[(recipe_id, recipe.version)] = recipe
        return recipe

    def require(self, recipe_id: str, version: int = 0) -> Recipe:
        """`get` for a message handler: a missing or invalid recipe is bad input (dead letter)."""
        try:
            return self.get(recipe_id, version)
        except RecipeError as exc:
            raise BadInput("unknown_recipe", str(exc)) from exc

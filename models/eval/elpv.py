"""Real-data check on ELPV (Buerhop-Lutz et al. 2018; Deitsch et al. 2019): 2,624
electroluminescence images of solar cells, 300x300, labelled with a defect probability.

Optional: the data comes from the PyPI package `elpv-dataset` (CC BY-NC-SA 4.0), installed
with `pip install 'defectflow[elpv]'`; it is never vendored and no test needs it.

Unsupervised protocol: per cell type (mono, poly) a PatchCore model is fitted on
functional cells only (defect probability 0), then scored on held-out functional cells
and on defective cells (probability 1.0); the figure is the image AUROC.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import torch

from models.anomaly.patchcore import fit_patchcore
from models.eval.metrics import image_auroc
from services.common.domain import Rect
from services.tiling.logic import preprocess, tile_grid

TILE = 300  # the whole cell as one tile...
MODEL_INPUT = 256  # ...resized to the model input


def load():
    try:
        from elpv_dataset.utils import load_dataset
    except ImportError as exc:
        raise RuntimeError(
            "ELPV is optional: pip install 'defectflow[elpv]' (data licensed CC BY-NC-SA 4.0)"
        ) from exc
    return load_dataset()


def _tiles(images: np.ndarray) -> np.ndarray:
    rect = tile_grid(Rect(0, 0, TILE, TILE), TILE, 0)
    return np.concatenate(
        [
            preprocess(
                cv2.cvtColor(im, cv2.COLOR_GRAY2BGR), rect, MODEL_INPUT, (0.5,) * 3, (0.5,) * 3
            )
            for im in images
        ]
    )


@torch.no_grad()
def evaluate(n_train: int = 200, bank_size: int = 2048, seed: int = 0) -> dict:
    images, proba, types = load()
    rng = np.random.default_rng(seed)
    out: dict = {"n_train_per_type": n_train, "bank_size": bank_size}
    all_y, all_s = [], []
    for cell_type in ("mono", "poly"):
        t0 = time.perf_counter()
        good = np.nonzero((types == cell_type) & (proba == 0))[0]
        bad = np.nonzero((types == cell_type) & (proba == 1))[0]
        rng.shuffle(good)
        train, test_good = good[:n_train], good[n_train:]
        model = fit_patchcore(_tiles(images[train]), MODEL_INPUT, bank_size=bank_size, seed=seed)
        test = np.concatenate([test_good, bad])
        y = np.r_[np.zeros(len(test_good)), np.ones(len(bad))]
        scores = []
        for i in range(0, len(test), 32):
            _, s = model(torch.as_tensor(_tiles(images[test[i : i + 32]])))
            scores.append(s.numpy().reshape(-1))
        s = np.concatenate(scores)
        out[cell_type] = {
            "image_auroc": image_auroc(y, s),
            "test_functional": int(len(test_good)),
            "test_defective": int(len(bad)),
            "seconds": time.perf_counter() - t0,
        }
        all_y.append(y)
        all_s.append(s)
    # the two models' scores are on different scales: per-type AUROCs are the figures;
    # the pooled one is given for reference only
    out["pooled_image_auroc"] = image_auroc(np.concatenate(all_y), np.concatenate(all_s))
    return out

"""PatchCore on Lite0 at small sizes: the coreset covers the data, a defect stands out,
the backbone loads the packaged ImageNet weights."""

import numpy as np
import torch

from models.anomaly.patchcore import fit_patchcore, greedy_coreset
from models.backbone.lite0 import lite0_features, pretrained_state
from services.common.domain import Rect
from services.common.synthetic import render_part
from services.tiling.logic import preprocess, tile_grid


def test_greedy_coreset_takes_the_farthest_points_first():
    x = torch.tensor([[0.0], [0.1], [0.2], [10.0], [10.1], [5.0]])
    idx = greedy_coreset(x, 3, seed=0).tolist()
    # whatever the start, three picks cover the three clusters
    assert {round(float(x[i]) / 5) for i in idx} == {0, 1, 2}


def test_the_backbone_loads_every_tensor_it_uses_from_the_package():
    net = lite0_features()
    state = pretrained_state()
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def tiles(image):
    rects = tile_grid(Rect(0, 0, 128, 128), 64, 0)
    return preprocess(image, rects, 64, (0.5,) * 3, (0.5,) * 3)


def test_a_defect_scores_above_every_good_tile():
    good = np.concatenate([tiles(render_part("woven_fabric", s, (128, 128))[0]) for s in range(6)])
    model = fit_patchcore(good, 64, bank_size=256)
    with torch.no_grad():
        _, good_scores = model(
            torch.as_tensor(
                np.concatenate(
                    [tiles(render_part("woven_fabric", s, (128, 128))[0]) for s in (50, 51)]
                )
            )
        )
        bad_img, truth = render_part("woven_fabric", 52, (128, 128), "hole", "obvious")
        amap, bad_scores = model(torch.as_tensor(tiles(bad_img)))
    assert bad_scores.max() > 1.3 * good_scores.max()
    # and the map peaks on the hole: the tile holding the hole scores highest
    cy, cx = np.argwhere(truth.mask > 0).mean(axis=0)
    assert int(bad_scores.argmax()) == int(cy // 64) * 2 + int(cx // 64)
    assert amap.dtype == torch.float16 and amap.shape == (4, 1, 64, 64)

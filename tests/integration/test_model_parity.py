"""The same tiles through torch, onnxruntime and the real tritonserver give the same maps."""

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient

from models.anomaly import train
from services.common.synthetic import render_part
from services.common.tensors import resize_tiles, tile_core
from services.inference.adapters.triton import TritonModels
from services.offline.runner import OnnxRunner
from services.tiling.logic import recipe_tiles

pytestmark = pytest.mark.integration

# anomaly-map units (PatchCore feature distance, good parts score ~20, defects 25-80);
# the float16 output map has a resolution of 1/64 at 32..64, so 0.05 is ~3 float16 steps
TOL = 0.05


def test_torch_onnxruntime_and_triton_agree(prepared, triton):
    recipe = prepared.recipe
    image, _ = render_part("brushed_metal", 4242, (512, 512), "scratch")
    tiles = recipe_tiles(image, recipe).tiles
    tiles = tiles[:16]
    ort_maps, ort_scores = OnnxRunner(prepared.onnx_path)(tiles)
    model = train.load_torch(prepared.torch_path)
    with torch.no_grad():
        t_maps, t_scores = model(torch.as_tensor(tiles))
    models = TritonModels(triton.grpc_url, max_in_flight=4, timeout_s=30, retries=0)
    try:
        ((tr_maps, tr_scores, version),) = models.infer_many(recipe.model.name, "", [tiles])
    finally:
        models.close()
    assert version == "1"
    np.testing.assert_allclose(t_maps.float().numpy(), ort_maps.astype(np.float32), atol=TOL)
    np.testing.assert_allclose(ort_maps.astype(np.float32), tr_maps.astype(np.float32), atol=1e-3)
    np.testing.assert_allclose(t_scores.numpy(), tr_scores, atol=TOL)
    assert tr_scores.max() > recipe.thresholds.image  # the scratch is in these tiles


def test_triton_reports_the_batching_contract(prepared, triton):
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    cfg = client.get_model_config(prepared.recipe.model.name, as_json=True)["config"]
    client.close()
    assert [i["name"] for i in cfg["input"]] == ["tiles"]
    assert {o["name"] for o in cfg["output"]} == {"anomaly_map", "score"}
    assert cfg["dynamic_batching"]["preferred_batch_size"] == [8, 16]


def test_defectnet_torch_onnxruntime_and_triton_agree(prepared, triton):
    from models.prepare import defects_paths
    from models.supervised import train as sup

    onnx_path, pt_path = defects_paths(prepared.onnx_path.parents[3])
    image, _ = render_part("printed_pattern", 77, (512, 512), "hole")
    windows = recipe_tiles(image, prepared.recipe).tiles
    # DefectNet takes the tile alone at its own size, as the inference service sends it
    tiles = resize_tiles(tile_core(windows[:8], prepared.recipe.tiling.model_input), 128)
    net = sup.load(pt_path)
    with torch.no_grad():
        t_out = [o.numpy() for o in net(torch.as_tensor(tiles))]
    ort_out = OnnxRunner(onnx_path).run(tiles)
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        inp = grpcclient.InferInput("tiles", list(tiles.shape), "FP16")
        inp.set_data_from_numpy(tiles)
        names = ["seg_logits", "detections", "cls_logits"]
        res = client.infer(
            "defects", [inp], outputs=[grpcclient.InferRequestedOutput(n) for n in names]
        )
    finally:
        client.close()
    for name, t in zip(names, t_out, strict=True):
        # float32 graph, same weights: differences are summation order only
        np.testing.assert_allclose(t, ort_out[name], atol=1e-3, rtol=1e-3, err_msg=name)
        np.testing.assert_allclose(ort_out[name], res.as_numpy(name), atol=1e-4, err_msg=name)

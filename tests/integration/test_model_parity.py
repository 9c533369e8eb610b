"""The same tiles through torch, onnxruntime and the real tritonserver give the same maps."""

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient

from models.anomaly import train
from models.synth.parts import render_part
from services.inference.adapters.triton import TritonModels

pytestmark = pytest.mark.integration

# anomaly-map units (PatchCore feature distance, good parts score ~20, defects 25-80);
# the float16 output map has a resolution of 1/64 at 32..64, so 0.05 is ~3 float16 steps
TOL = 0.05


def test_torch_onnxruntime_and_triton_agree(prepared, triton):
    recipe = prepared.recipe
    image, _ = render_part("brushed_metal", 4242, (512, 512), "scratch")
    _, tiles = train.recipe_tiles(image, recipe)
    tiles = tiles[:16]
    ort_maps, ort_scores = train.OnnxRunner(prepared.onnx_path)(tiles)
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

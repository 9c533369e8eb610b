"""Triton python-backend model that runs an ONNX graph with onnxruntime (CPU target).

The bundled tritonserver has only the python backend; on GPU nodes the same
model.onnx is served by the onnxruntime backend instead (see build.py).
Requests that Triton's dynamic batcher hands over together are run as one batch.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        threads = int(params.get("intra_op_threads", "1"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        arrays = {name: [] for name in self.inputs}
        sizes = []
        for request in requests:
            for name in self.inputs:
                arrays[name].append(pb_utils.get_input_tensor_by_name(request, name).as_numpy())
            sizes.append(arrays[self.inputs[0]][-1].shape[0])
        feed = {name: np.concatenate(parts) for name, parts in arrays.items()}
        results = self.session.run(self.outputs, feed)
        responses = []
        start = 0
        for n in sizes:
            tensors = [
                pb_utils.Tensor(name, r[start : start + n])
                for name, r in zip(self.outputs, results, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += n
        return responses

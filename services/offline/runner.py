"""In-process onnxruntime: the offline path (fit, calibrate, inspect) with no server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


class OnnxRunner:
    """In-process onnxruntime: the offline path (fit, calibrate, inspect) with no server."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # 0: onnxruntime picks (all cores)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.input = self.session.get_inputs()[0].name

    def run(self, tiles: np.ndarray, batch: int = 8) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.outputs}
        for i in range(0, len(tiles), batch):
            outs = self.session.run(self.outputs, {self.input: tiles[i : i + batch]})
            for name, out in zip(self.outputs, outs, strict=True):
                parts[name].append(out)
        return {name: np.concatenate(p) for name, p in parts.items()}

    def __call__(self, tiles: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
        out = self.run(tiles, batch)
        return out["anomaly_map"], out["score"]

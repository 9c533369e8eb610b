"""Triton over gRPC: batched, pipelined requests (several in flight)."""

from __future__ import annotations

import functools
import queue
import time

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from services.common import metrics
from services.common.errors import BadInput, Transient


def _deliver(done: queue.Queue, index: int, result, error) -> None:  # type: ignore[no-untyped-def]
    done.put((index, result, error))


# gRPC codes with which Triton refuses a request that no retry can change (the request
# does not fit the model: shape, dtype, input or output names)
REFUSED = ("StatusCode.INVALID_ARGUMENT", "StatusCode.UNIMPLEMENTED")


def refused(model: str, exc: InferenceServerException) -> BadInput | None:
    """The dead-letter error for a request Triton refused for good, None when a retry may
    succeed (Triton down, overloaded, timed out, a model still loading)."""
    if str(exc.status()) in REFUSED:
        return BadInput(
            "model_refused",
            f"Triton refused the request to model {model!r} ({exc.status()}): {exc.message()}",
        )
    return None


class TritonModels:
    def __init__(self, url: str, max_in_flight: int, timeout_s: float, retries: int) -> None:
        self.url = url
        self.client = grpcclient.InferenceServerClient(url)
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.retries = retries
        self._max_batch: dict[str, int] = {}

    def max_batch(self, model: str) -> int:
        """The model's preferred batch size (largest), else its max_batch_size."""
        if model not in self._max_batch:
            try:
                cfg = self.client.get_model_config(model, as_json=True)["config"]
            except InferenceServerException as exc:
                served = self.served()
                if served is not None and model not in served:
                    raise BadInput(
                        "unknown_model",
                        f"Triton at {self.url} serves no model {model!r} (it serves "
                        f"{', '.join(sorted(served)) or 'none'}): check the recipe's model",
                    ) from exc
                raise Transient(
                    f"cannot read config of model {model!r} from Triton: {exc}"
                ) from exc
            preferred = [
                int(x) for x in cfg.get("dynamic_batching", {}).get("preferred_batch_size", [])
            ]
            self._max_batch[model] = (
                max(preferred) if preferred else max(1, int(cfg.get("max_batch_size", 1)))
            )
        return self._max_batch[model]

    def served(self) -> set[str] | None:
        """Names in Triton's model repository (loaded or not); None when Triton does not
        answer (then nothing can be said about a model)."""
        try:
            index = self.client.get_model_repository_index(as_json=True)
        except InferenceServerException:
            return None
        return {m["name"] for m in index.get("models", []) if "name" in m}

    def infer_many(
        self, model: str, version: str, batches: list[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray, str]]:
        """An anomaly model's (anomaly_map, score, served version) per batch, in order."""
        results = self.infer_outputs(model, version, batches, ("anomaly_map", "score"))
        return [(out["anomaly_map"], out["score"], served) for out, served in results]

    def infer_outputs(
        self, model: str, version: str, batches: list[np.ndarray], names: tuple[str, ...]
    ) -> list[tuple[dict[str, np.ndarray], str]]:
        """Run all batches with up to max_in_flight requests at once; per batch the named
        outputs and the version Triton served, in order."""
        for attempt in range(self.retries + 1):
            try:
                return self._run(model, version, batches, names)
            except (InferenceServerException, queue.Empty) as exc:
                if isinstance(exc, InferenceServerException) and (bad := refused(model, exc)):
                    raise bad from exc
                if attempt == self.retries:
                    raise Transient(
                        f"Triton model {model!r} failed {attempt + 1} times: {exc}"
                    ) from exc
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def _run(self, model: str, version: str, batches: list[np.ndarray], names: tuple[str, ...]):
        done: queue.Queue = queue.Queue()
        results: list = [None] * len(batches)
        sent: dict[int, float] = {}
        in_flight = 0
        next_i = 0
        finished = 0
        while finished < len(batches):
            while next_i < len(batches) and in_flight < self.max_in_flight:
                inp = grpcclient.InferInput("tiles", list(batches[next_i].shape), "FP16")
                inp.set_data_from_numpy(batches[next_i])
                outs = [grpcclient.InferRequestedOutput(n) for n in names]
                i = next_i
                metrics.BATCH_SIZE.labels(model).observe(len(batches[i]))
                sent[i] = time.perf_counter()
                self.client.async_infer(
                    model,
                    [inp],
                    callback=functools.partial(_deliver, done, i),
                    model_version=version,
                    outputs=outs,
                    client_timeout=self.timeout_s,
                )
                in_flight += 1
                next_i += 1
            i, result, error = done.get(timeout=self.timeout_s + 5)
            metrics.TRITON_SECONDS.labels(model).observe(time.perf_counter() - sent[i])
            in_flight -= 1
            finished += 1
            if error is not None:
                raise error
            served = result.get_response().model_version
            results[i] = ({n: result.as_numpy(n) for n in names}, served)
        return results

    def close(self) -> None:
        self.client.close()

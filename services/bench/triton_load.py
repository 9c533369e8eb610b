"""Triton alone: the pipeline's model driven directly with tritonclient, the ceiling.

Same model, same tile size, same batch (the model's preferred batch size, as the
inference service sizes its batches) and the same number of requests in flight as the
inference service; requests are kept in flight back to back for a fixed time.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient

from services.bench.logic import percentiles, rate


@dataclass
class _State:
    out: int = 0  # requests in flight
    done: int = 0
    error: object = None


@dataclass(frozen=True)
class TritonResult:
    batch: int
    in_flight: int
    seconds: float
    requests: int
    tiles: int
    tiles_s: float
    batch_latency_s: dict[str, float]  # p50/p95/p99 of one request, at this concurrency


def drive(
    url: str,
    model: str,
    tiles: np.ndarray,
    batch: int,
    in_flight: int,
    seconds: float,
    outputs: tuple[str, ...] = ("anomaly_map", "score"),
    shm: bool = False,
) -> TritonResult:
    """Keep `in_flight` requests of `batch` tiles outstanding for `seconds`; with `shm`,
    tensors go through system shared memory (one region set per request slot) instead of
    the gRPC message."""
    client = grpcclient.InferenceServerClient(url)
    reps = -(-batch // len(tiles))
    data = np.ascontiguousarray(np.concatenate([tiles] * reps)[:batch])
    lock = threading.Condition()
    state = _State()
    lat: list[float] = []
    stop_at = [0.0]
    slots = SharedSlots(client, model, in_flight, data, outputs) if shm else None
    free = list(range(in_flight))

    def send() -> None:
        slot = free.pop()
        inp = grpcclient.InferInput("tiles", list(data.shape), "FP16")
        req = [grpcclient.InferRequestedOutput(n) for n in outputs]
        if slots is None:
            inp.set_data_from_numpy(data)
        else:
            slots.bind(slot, data, inp, req)
        t0 = time.perf_counter()

        def done(result, error) -> None:  # type: ignore[no-untyped-def]
            if error is None:
                for n in outputs:  # the client pays for reading the answer, as the service does
                    if slots is None:
                        result.as_numpy(n)
                    else:
                        slots.read(slot, n).copy()
            with lock:
                free.append(slot)
                state.out -= 1
                if error is not None:
                    state.error = error
                else:
                    state.done += 1
                    lat.append(time.perf_counter() - t0)
                lock.notify()

        client.async_infer(model, [inp], callback=done, outputs=req, client_timeout=60)
        state.out += 1

    try:
        start = time.perf_counter()
        stop_at[0] = start + seconds
        with lock:
            while True:
                if state.error is not None:
                    raise RuntimeError(f"Triton failed under load: {state.error}")
                now = time.perf_counter()
                if now >= stop_at[0]:
                    break
                while state.out < in_flight:
                    send()
                lock.wait(timeout=1.0)
            end = time.perf_counter()
            done_in_window = state.done
            while state.out > 0:  # let the last requests finish before closing
                lock.wait(timeout=5.0)
        elapsed = end - start
        return TritonResult(
            batch=batch,
            in_flight=in_flight,
            seconds=elapsed,
            requests=done_in_window,
            tiles=done_in_window * batch,
            tiles_s=rate(done_in_window * batch, elapsed),
            batch_latency_s=percentiles(lat),
        )
    finally:
        if slots is not None:
            slots.close()
        client.close()


class SharedSlots:
    """System shared-memory regions for `n` concurrent requests: one input region and one
    per output in each slot, registered with Triton (which must run on this host)."""

    def __init__(self, client, model: str, n: int, data: np.ndarray, outputs: tuple[str, ...]):  # type: ignore[no-untyped-def]
        import tritonclient.utils.shared_memory as shm

        self.shm, self.client = shm, client
        meta = client.get_model_metadata(model, as_json=True)
        shapes = {
            o["name"]: (o["datatype"], [int(d) for d in o["shape"][1:]]) for o in meta["outputs"]
        }
        dt = {"FP16": np.float16, "FP32": np.float32}
        self.out_spec = {
            name: (dt[shapes[name][0]], [len(data), *shapes[name][1]]) for name in outputs
        }
        self.regions: list[tuple[str, object, int]] = []
        self.handles: dict[tuple[int, str], tuple[str, object, int]] = {}
        tag = f"dfbench{os.getpid()}"
        for i in range(n):
            sizes = {"tiles": data.nbytes}
            for name, (dtype, shape) in self.out_spec.items():
                sizes[name] = int(np.prod(shape)) * np.dtype(dtype).itemsize
            for name, size in sizes.items():
                region = f"{tag}_{i}_{name}"
                handle = shm.create_shared_memory_region(region, "/" + region, size)
                client.register_system_shared_memory(region, "/" + region, size)
                self.handles[(i, name)] = (region, handle, size)
                self.regions.append((region, handle, size))

    def bind(self, slot: int, data: np.ndarray, inp, outs) -> None:  # type: ignore[no-untyped-def]
        region, handle, size = self.handles[(slot, "tiles")]
        self.shm.set_shared_memory_region(handle, [data])
        inp.set_shared_memory(region, size)
        for out in outs:
            region, _, size = self.handles[(slot, out.name())]
            out.set_shared_memory(region, size)

    def read(self, slot: int, name: str) -> np.ndarray:
        _, handle, _ = self.handles[(slot, name)]
        dtype, shape = self.out_spec[name]
        return self.shm.get_contents_as_numpy(handle, dtype, shape)

    def close(self) -> None:
        for region, handle, _ in self.regions:
            try:
                self.client.unregister_system_shared_memory(region)
            finally:
                self.shm.destroy_shared_memory_region(handle)


def preferred_batch(url: str, model: str) -> int:
    """What the inference service batches to: the largest preferred batch size."""
    from services.inference.adapters.triton import TritonModels

    models = TritonModels(url, 1, 30.0, 0)
    try:
        return models.max_batch(model)
    finally:
        models.close()

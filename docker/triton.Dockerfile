# syntax=docker/dockerfile:1
# Triton on GPU nodes, serving the GPU repository that models/repository/ documents
# (models/triton/build.py: platform onnxruntime_onnx, instance_group KIND_GPU) with both
# reference models: anomaly_brushed_metal (PatchCore, `defectflow fit`) and defects
# (DefectNet seg/det/cls heads, `defectflow train`), rendered by `defectflow models build`.
# Build from the repository root:
#   docker build -f docker/triton.Dockerfile -t defectflow-triton:0.1.0 .
# The calibrated recipe from the same fit lands in /opt/defectflow/recipes: the recipes
# ConfigMap (k8s/base/recipes/) must carry that file, so thresholds match the model.

FROM python:3.11-slim-bookworm AS fit
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# CPU build of the pinned torch==2.13.0: fitting runs on the build machine, not the GPU.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY models ./models
COPY services ./services
RUN pip install --no-cache-dir .
# Same commands as models/repository/README.md: fit + calibrate the anomaly model, train
# DefectNet, then render one repository holding both (the config.pbtxt files equal the
# checked-in ones: tests/unit/test_triton_repository.py).
RUN defectflow fit --target gpu --workdir /build \
 && defectflow train --workdir /build \
 && defectflow models build --target gpu --workdir /build --out /build/repository/gpu \
 && test -f /build/repository/gpu/anomaly_brushed_metal/1/model.onnx \
 && test -f /build/repository/gpu/defects/1/model.onnx

FROM nvcr.io/nvidia/tritonserver:24.10-py3
COPY --from=fit --chown=1000:1000 /build/repository/gpu /models
COPY --from=fit --chown=1000:1000 /build/recipes /opt/defectflow/recipes
# triton-server (uid 1000) is the unprivileged user the NGC image ships.
USER 1000:1000
EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models", "--disable-auto-complete-config", \
     "--exit-on-error=true", "--log-format=ISO8601"]

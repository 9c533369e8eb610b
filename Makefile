# defectflow: each target is one line of real work. `make help` lists them.
PY ?= python3

.PHONY: help setup demo test protos lint bench

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

setup:  ## install system packages (PostgreSQL 15, Prometheus) and the project with its test extras
	bash .ci/setup

demo: setup  ## the local multi-line demo: broker, Triton, PostgreSQL, five services, 2 lines x 2 cameras
	defectflow up --frames 50

test: setup  ## the whole test suite: unit, integration (real servers), end to end
	$(PY) -m pytest

protos:  ## regenerate protobuf/gRPC code from protos/
	$(PY) -m services.cli.protogen

lint:  ## ruff and mypy on services/
	ruff check services models tests && mypy services

bench:  ## benchmarks that print figures: Triton alone vs the pipeline (docs/benchmarks.md), then tests/bench
	defectflow bench && $(PY) -m pytest tests/bench/bench_*.py -s -q

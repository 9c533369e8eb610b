"""Session-scoped real components on 127.0.0.1, each started once and shared."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from models.prepare import DEFAULT_RECIPE, fit_recipe
from services.common.kafka_admin import ensure_topics
from services.localstack.broker import start_broker
from services.localstack.postgres import start_postgres
from services.localstack.stack import LocalStack
from services.localstack.triton import start_triton


@pytest.fixture(scope="session")
def stack_dir():
    # not pytest's tmp_path: its 0700 parents keep the unprivileged PostgreSQL user out
    d = Path(tempfile.mkdtemp(prefix="defectflow-test-"))
    os.chmod(d, 0o755)
    yield d
    if not os.environ.get("DEFECTFLOW_KEEP_TEST_DIR"):
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def prepared(stack_dir):
    return fit_recipe(DEFAULT_RECIPE, "brushed_metal", stack_dir)


@pytest.fixture(scope="session")
def broker(stack_dir):
    b = start_broker(stack_dir)
    ensure_topics(b.bootstrap, partitions=4)
    yield b
    b.stop()


@pytest.fixture(scope="session")
def postgres(stack_dir):
    pg = start_postgres(stack_dir / "postgres")
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def triton(stack_dir, prepared):
    t = start_triton(prepared.repository, stack_dir)
    yield t
    t.stop()


@pytest.fixture(scope="session")
def stack(stack_dir, prepared, broker, postgres, triton):
    """The components above, wrapped so tests can start services against them."""
    s = LocalStack(stack_dir, prepared=prepared, broker=broker, postgres=postgres, triton=triton)
    yield s
    s.stop_services()

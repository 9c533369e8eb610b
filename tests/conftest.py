"""Session-scoped real components on 127.0.0.1, each started once and shared.

Each fixture starts one component through the same LocalStack that `defectflow up`
uses, so a test that needs only PostgreSQL starts only PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from services.localstack.stack import LocalStack


@pytest.fixture(scope="session")
def local():
    # not pytest's tmp_path: its 0700 parents keep the unprivileged PostgreSQL user out
    d = Path(tempfile.mkdtemp(prefix="defectflow-test-"))
    os.chmod(d, 0o755)
    yield LocalStack(d)
    if not os.environ.get("DEFECTFLOW_KEEP_TEST_DIR"):
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def prepared(local):
    return local.prepare_models()


@pytest.fixture(scope="session")
def broker(local):
    yield local.start_broker()
    local.broker.stop()


@pytest.fixture(scope="session")
def postgres(local):
    yield local.start_postgres()
    local.postgres.stop()


@pytest.fixture(scope="session")
def triton(local, prepared):
    yield local.start_triton()
    local.triton.stop()


@pytest.fixture(scope="session")
def stack(local, prepared, broker, postgres, triton):
    """All components; tests start services against them."""
    yield local
    local.stop_services()

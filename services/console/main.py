"""Console: the operator web app over the store's gRPC query API."""

from __future__ import annotations

import logging

import uvicorn

from services.common.logs import setup_logging
from services.common.metrics import serve
from services.console.app import create_app
from services.console.config import ConsoleSettings

log = logging.getLogger("defectflow.console")


def run(settings: ConsoleSettings) -> None:
    app = create_app(settings)
    log.info(
        "console on http://%s:%d (query API %s)",
        settings.host,
        settings.port,
        settings.query_target,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)


def main() -> None:
    settings = ConsoleSettings()
    setup_logging("console", settings.log_level)
    serve(settings.metrics_port, settings.metrics_addr)
    run(settings)


if __name__ == "__main__":
    main()

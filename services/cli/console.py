"""`defectflow console` (the operator web app) and `defectflow report` (a daily report)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import typer

from services.cli.query import TARGET, TIMEOUT, TLS_CA, TOKEN, Client


def console(
    target: str = TARGET,
    tls_ca: Path = TLS_CA,
    host: str = typer.Option("127.0.0.1", help="listen address of the web app"),
    port: int = typer.Option(8080, help="listen port of the web app"),
    audit_sample: float = typer.Option(
        0.02, help="fraction of OK and NG verdicts sampled into the review queue"
    ),
) -> None:
    """Run the operator console (lines, NG gallery, inspection detail, review queue, exports)
    over the store's gRPC query API; sign in with a query API token."""
    from services.common.logs import setup_logging
    from services.console.config import ConsoleSettings
    from services.console.main import run

    settings = ConsoleSettings(
        query_target=target, tls_ca_file=tls_ca, host=host, port=port, audit_sample=audit_sample
    )
    setup_logging("console", settings.log_level)
    typer.echo(f"console on http://{host}:{port}/  (query API {target}; Ctrl-C stops it)")
    run(settings)


def report(
    day: str = typer.Option("", help="YYYY-MM-DD; default: yesterday"),
    time_zone: str = typer.Option("UTC", help="IANA time zone of the day and its hours"),
    out: Path = typer.Option(Path("var/report"), help="folder for report.html and the PNGs"),
    target: str = TARGET,
    token: str = TOKEN,
    tls_ca: Path = TLS_CA,
    timeout: float = TIMEOUT,
) -> None:
    """Daily report as HTML + PNG: yield per line over the day, defect Pareto, score
    histograms per recipe; read through the gRPC query API."""
    from services.console.report import collect, write_report

    try:
        the_day = date.fromisoformat(day) if day else datetime.now().date() - timedelta(days=1)
    except ValueError as exc:
        raise typer.BadParameter(f"day {day!r} is not YYYY-MM-DD") from exc
    client = Client(target, token, tls_ca, timeout)
    data = collect(client.call, the_day, time_zone)
    path = write_report(data, out / the_day.isoformat())
    t = data.stats.total
    typer.echo(
        f"{the_day}: {t.count} inspections, yield {100 * t.yield_rate:.2f} %, NG {t.ng}, "
        f"REVIEW {t.review}, {data.reviewed} reviewed\nreport: {path}"
    )


def register(app: typer.Typer) -> None:
    app.command("console")(console)
    app.command("report")(report)

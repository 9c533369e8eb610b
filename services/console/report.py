"""`defectflow report`: one day of a factory as PNG plots and an HTML page, read through
the gRPC query API (yield per line over the day, defect Pareto, score histograms per
recipe with the human reviews marked)."""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from defectflow.v1 import query_pb2
from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

from services.common.domain import VERDICT_HEX, Verdict, verdict_name


@dataclass
class DayData:
    day: date
    time_zone: str
    stats: query_pb2.GetStatisticsResponse
    # recipe -> verdict -> image scores
    scores: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    reviewed: int = 0
    overturned: int = 0  # latest human disposition differs from an OK / NG machine verdict
    truncated: bool = False


def day_range_ns(day: date, tz: str) -> tuple[int, int]:
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    end = start + timedelta(days=1)
    return int(start.timestamp()) * 10**9, int(end.timestamp()) * 10**9


def collect(call, day: date, tz: str, max_records: int = 200_000) -> DayData:
    """`call(method, request)` is the gRPC call (with the caller's token and deadline)."""
    t0, t1 = day_range_ns(day, tz)
    flt = query_pb2.InspectionFilter(captured_from_unix_ns=t0, captured_to_unix_ns=t1)
    stats = call(
        "GetStatistics",
        query_pb2.GetStatisticsRequest(
            filter=flt, by_line=True, bucket=query_pb2.TIME_BUCKET_HOUR, time_zone=tz
        ),
    )
    data = DayData(day, tz, stats)
    scores: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    token, n = "", 0
    while True:
        page = call(
            "ListInspections",
            query_pb2.ListInspectionsRequest(filter=flt, page_size=1000, page_token=token),
        )
        for rec in page.records:
            ins = rec.inspection
            scores[ins.context.recipe_id or "(none)"][int(ins.verdict)].append(float(ins.score))
            if rec.reviews:
                data.reviewed += 1
                human = rec.reviews[-1].disposition
                data.overturned += int(ins.verdict in (1, 2) and human != ins.verdict)
        n += len(page.records)
        token = page.next_page_token
        if not token:
            break
        if n >= max_records:
            data.truncated = True
            break
    data.scores = {k: dict(v) for k, v in scores.items()}
    return data


def plot_yield(data: DayData, path: Path) -> Path:
    fig = Figure(figsize=(8, 3.6), dpi=100)
    ax = fig.add_subplot()
    by_line: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for g in data.stats.groups:
        by_line[g.line].append((g.bucket_start_unix_ns, 100 * g.yield_rate))
    zone = ZoneInfo(data.time_zone)
    for line, points in sorted(by_line.items()):
        points.sort()
        xs = [datetime.fromtimestamp(t / 1e9, zone).hour for t, _ in points]
        ax.plot(xs, [y for _, y in points], marker="o", label=line)
    ax.set_xlim(-0.5, 23.5)
    ax.set_ylim(0, 101)
    ax.set_xlabel(f"hour ({data.time_zone})")
    ax.set_ylabel("first-pass yield (%)")
    ax.set_title(f"Yield per line, {data.day.isoformat()}")
    ax.grid(alpha=0.3)
    if by_line:
        ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_pareto(data: DayData, path: Path) -> Path:
    fig = Figure(figsize=(8, 3.6), dpi=100)
    ax = fig.add_subplot()
    pareto = list(data.stats.total.pareto)
    names = [p.defect_class for p in pareto]
    counts = [p.defects for p in pareto]
    ax.bar(names, counts, color=VERDICT_HEX[Verdict.NG])
    if counts:
        total = sum(counts)
        cum, acc = ax.twinx(), 0
        shares = []
        for c in counts:
            acc += c
            shares.append(100 * acc / total)
        cum.plot(names, shares, color="#14213d", marker="o")
        cum.set_ylim(0, 105)
        cum.set_ylabel("cumulative (%)")
    ax.set_ylabel("defects")
    ax.set_title(f"Defect Pareto, {data.day.isoformat()}")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_scores(data: DayData, path: Path) -> Path:
    recipes = sorted(data.scores) or ["(no records)"]
    fig = Figure(figsize=(8, 2.8 * len(recipes)), dpi=100)
    for i, recipe in enumerate(recipes, start=1):
        ax = fig.add_subplot(len(recipes), 1, i)
        by_verdict = data.scores.get(recipe, {})
        for verdict in (1, 3, 2):
            values = by_verdict.get(verdict, [])
            if values:
                ax.hist(
                    values,
                    bins=40,
                    alpha=0.6,
                    color=VERDICT_HEX[Verdict(verdict)],
                    label=f"{verdict_name(verdict)} ({len(values)})",
                )
        ax.set_title(f"Image scores, recipe {recipe}")
        ax.set_xlabel("image anomaly score")
        ax.set_ylabel("inspections")
        if by_verdict:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_report(data: DayData, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    pngs = [
        plot_yield(data, out / "yield.png"),
        plot_pareto(data, out / "pareto.png"),
        plot_scores(data, out / "scores.png"),
    ]
    t = data.stats.total
    esc = html.escape
    rows = "".join(
        f"<tr><th scope='row'>{esc(g.line)}</th><td>{g.count}</td><td>{100 * g.yield_rate:.1f} %</td>"
        f"<td>{g.ng}</td><td>{g.review}</td></tr>"
        for g in _line_totals(data.stats)
    )
    pareto = "".join(
        f"<tr><th scope='row'>{esc(p.defect_class)}</th><td>{p.defects}</td><td>{p.inspections}</td></tr>"
        for p in t.pareto
    )
    note = "<p><strong>Truncated:</strong> more records than the report reads.</p>" * data.truncated
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>defectflow daily report {data.day}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}th,td{{border-bottom:1px solid #ccc;padding:.3rem .6rem;text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>Daily report {data.day.isoformat()} ({esc(data.time_zone)})</h1>
<p>Inspected {t.count}; first-pass yield {100 * t.yield_rate:.2f} %; NG {t.ng}; REVIEW {t.review};
latency mean {t.mean_latency_s:.2f} s, p95 {t.p95_latency_s:.2f} s. Human reviews: {data.reviewed}
({data.overturned} overturned an OK / NG verdict).</p>{note}
<h2>Per line</h2><table><thead><tr><th>Line</th><th>Inspected</th><th>Yield</th><th>NG</th><th>REVIEW</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Yield over the day</h2><img src="{pngs[0].name}" alt="yield per line by hour">
<h2>Defect Pareto</h2><img src="{pngs[1].name}" alt="defects by class, descending">
<table><thead><tr><th>Class</th><th>Defects</th><th>Inspections</th></tr></thead><tbody>{pareto}</tbody></table>
<h2>Score histograms</h2><img src="{pngs[2].name}" alt="image score histograms per recipe and verdict">
</body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path


def _line_totals(stats: query_pb2.GetStatisticsResponse) -> list[query_pb2.StatisticsGroup]:
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for g in stats.groups:
        s = sums[g.line]
        s[0] += g.count
        s[1] += g.ok
        s[2] += g.ng
        s[3] += g.review
    return [
        query_pb2.StatisticsGroup(
            line=line, count=c, ok=ok, ng=ng, review=rv, yield_rate=ok / c if c else 0.0
        )
        for line, (c, ok, ng, rv) in sorted(sums.items())
    ]

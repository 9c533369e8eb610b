"""CSV and Parquet files of an inspection list, for SPC tools."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from services.console.logic import EXPORT_COLUMNS, ExportRow

ARROW_TYPES = {
    "recipe_version": pa.int32(),
    "score": pa.float32(),
    "complete": pa.bool_(),
    "defects": pa.int32(),
    "latency_s": pa.float64(),
}


def to_csv(rows: Sequence[ExportRow]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for r in rows:
        writer.writerow(r.values())
    return out.getvalue().encode()


def to_parquet(rows: Sequence[ExportRow]) -> bytes:
    schema = pa.schema([(c, ARROW_TYPES.get(c, pa.string())) for c in EXPORT_COLUMNS])
    columns = {c: [getattr(r, c) for r in rows] for c in EXPORT_COLUMNS}
    table = pa.Table.from_pydict(columns, schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()

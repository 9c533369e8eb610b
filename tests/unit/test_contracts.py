"""Checked-in generated code matches protos/; topic names are defined once."""

import filecmp
import re
from pathlib import Path

from services.cli.protogen import PROTOS, ROOT, generate
from services.common import topics


def test_generated_code_is_fresh(tmp_path):
    fresh = generate(tmp_path)
    assert fresh, "protoc generated nothing"
    stale = [
        p.name
        for p in fresh
        if not filecmp.cmp(p, PROTOS / "defectflow" / "v1" / p.name, shallow=False)
    ]
    assert not stale, f"run `make protos`: checked-in code differs for {stale}"


def test_topic_names_appear_only_in_topics_module():
    pattern = re.compile(r"defectflow\.(frames|tiles|predictions|inspections|deadletter)\.v1")
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "services").rglob("*.py")
        if p.name != "topics.py" and pattern.search(p.read_text())
    ]
    assert not offenders
    assert all(t.endswith(".v1") for t in topics.ALL)


def test_every_message_on_a_topic_has_a_schema_version():
    from defectflow.v1 import frames_pb2, inspections_pb2, predictions_pb2, tiles_pb2

    for cls in (
        frames_pb2.Frame,
        tiles_pb2.TileChunk,
        predictions_pb2.PredictionChunk,
        inspections_pb2.Inspection,
    ):
        assert "schema_version" in cls.DESCRIPTOR.fields_by_name
        assert Path(PROTOS).exists()

"""Topic names and consumer groups, defined once and imported everywhere."""

FRAMES = "defectflow.frames.v1"
TILES = "defectflow.tiles.v1"
PREDICTIONS = "defectflow.predictions.v1"
INSPECTIONS = "defectflow.inspections.v1"
DEADLETTER = "defectflow.deadletter.v1"

ALL = (FRAMES, TILES, PREDICTIONS, INSPECTIONS, DEADLETTER)

# consumer group of each stage: one name per service everywhere (folder, group, env prefix)
GROUPS = {
    TILES: "defectflow-inference",
    FRAMES: "defectflow-tiling",
    PREDICTIONS: "defectflow-postprocess",
    INSPECTIONS: "defectflow-store",
}

SCHEMA_VERSION = 1


def camera_key(line: str, station: str, camera: str) -> bytes:
    """Message key that keeps one camera's frames in order on one partition."""
    return f"{line}/{station}/{camera}".encode()

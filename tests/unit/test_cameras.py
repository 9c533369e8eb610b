"""The image-folder and video-file cameras read what OpenCV wrote, then report exhaustion."""

import cv2
import numpy as np
import pytest

from services.ingest.adapters.cameras import FolderCamera, SyntheticCamera, VideoCamera


def test_folder_camera_reads_images_in_order_then_stops(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((20, 30, 3), i * 50, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    cam = FolderCamera("l1", "s1", "c1", tmp_path)
    values = [int(cam.read().image[0, 0, 0]) for _ in range(3)]
    assert values == [0, 50, 100] and cam.read() is None


def test_folder_camera_without_images_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images"):
        FolderCamera("l1", "s1", "c1", tmp_path)


def test_video_camera_reads_every_frame(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    cam = VideoCamera("l1", "s1", "c1", path)
    frames = []
    while (cap := cam.read()) is not None:
        frames.append(cap.image)
    assert len(frames) == 5 and frames[0].shape == (48, 64, 3)
    assert abs(int(frames[4].mean()) - 160) <= 3


def test_synthetic_camera_is_seeded_and_keeps_ground_truth():
    a = SyntheticCamera("l1", "s1", "c1", "brushed_metal", 3, 1.0, ["scratch"], (128, 128))
    b = SyntheticCamera("l1", "s1", "c1", "brushed_metal", 3, 1.0, ["scratch"], (128, 128))
    ca, cb = a.read(), b.read()
    assert np.array_equal(ca.image, cb.image)
    assert ca.truth["defect_type"] == "scratch" and ca.truth["box"] is not None


def test_a_pooled_synthetic_camera_renders_its_pool_once_then_repeats_it():
    cam = SyntheticCamera("l1", "s1", "c1", "brushed_metal", 5, 0.5, ["hole"], (96, 96), pool=3)
    first = [cam.read() for _ in range(3)]
    again = [cam.read() for _ in range(4)]
    assert len({c.truth["seed"] for c in first}) == 3, "the pool holds distinct parts"
    for i, c in enumerate(again):
        assert np.array_equal(c.image, first[i % 3].image)
        assert c.truth == first[i % 3].truth
    assert cam.parts == 7
    plain = SyntheticCamera("l1", "s1", "c1", "brushed_metal", 5, 0.5, ["hole"], (96, 96))
    assert [plain.read().truth["seed"] for _ in range(3)] == [c.truth["seed"] for c in first]
    assert plain.read().truth["seed"] != first[0].truth["seed"], "without a pool: new parts"

"""The changeover switch: a line's recipe follows the file, a broken file changes nothing."""

import os

from services.ingest.adapters.assignments import LineRecipes


def write(path, text, bump):
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump))  # a distinct mtime each write


def test_lines_follow_the_file_and_unnamed_lines_keep_the_default(tmp_path):
    f = tmp_path / "lines.yaml"
    write(f, "line-1: brushed-metal\n", 1)
    r = LineRecipes(f, "default-recipe")
    assert r.recipe_for("line-1") == "brushed-metal"
    assert r.recipe_for("line-2") == "default-recipe"
    write(f, "line-1: woven-fabric\nline-2: printed-pattern\n", 2)
    assert r.recipe_for("line-1") == "woven-fabric"
    assert r.recipe_for("line-2") == "printed-pattern"


def test_a_broken_file_keeps_the_last_good_assignment(tmp_path):
    f = tmp_path / "lines.yaml"
    write(f, "line-1: brushed-metal\n", 1)
    r = LineRecipes(f, "d")
    assert r.recipe_for("line-1") == "brushed-metal"
    for bad, n in (("line-1: [unclosed\n", 2), ("- a list\n", 3), ("line-1: 'Bad Id!'\n", 4)):
        write(f, bad, n)
        assert r.recipe_for("line-1") == "brushed-metal"


def test_no_file_means_the_default(tmp_path):
    assert LineRecipes(tmp_path / "missing.yaml", "d").recipe_for("x") == "d"
    assert LineRecipes(None, "d").recipe_for("x") == "d"


def test_a_frame_keeps_the_recipe_version_it_was_tiled_under(tmp_path):
    import yaml

    from services.common.recipes import RecipeBook

    base = {
        "id": "r1",
        "version": 3,
        "tiling": {"tile_size": 64, "overlap": 8, "model_input": 64},
        "model": {"name": "m"},
        "thresholds": {"pixel": 1.0, "image": 2.0, "review_low": 1.5},
    }
    f = tmp_path / "r1.yaml"
    write(f, yaml.safe_dump(base), 1)
    book = RecipeBook(tmp_path)
    assert book.get("r1").version == 3
    write(
        f,
        yaml.safe_dump({**base, "version": 4, "thresholds": {**base["thresholds"], "image": 5.0}}),
        2,
    )
    assert book.get("r1").thresholds.image == 5.0  # new frames: the new version
    assert book.get("r1", 3).thresholds.image == 2.0  # a frame tiled under v3 stays on v3
    assert book.get("r1", 9).version == 4  # unknown version: the current one


def test_a_watched_file_reports_each_change_once(tmp_path):
    from services.common.watched import WatchedFile

    f = tmp_path / "cfg.yaml"
    w = WatchedFile(f)
    assert w.changed() is None  # missing: no change
    write(f, "a: 1\n", 1)
    assert w.changed() == "a: 1\n"
    assert w.changed() is None  # same file, asked again
    write(f, "a: 2\n", 2)
    assert w.changed() == "a: 2\n"

"""rlcode.run.atomic: the one atomic file replacement every run file goes through."""

from __future__ import annotations

import json
import os

import pytest

from rlcode.run.atomic import default_file_mode, replace_file, temporary_pattern, write_json_atomic
from rlcode.run.run_dirs import MARKER, TEMPORARY_PATTERNS


def test_replace_file_writes_whole_files_with_the_default_mode(tmp_path):
    path = write_json_atomic(tmp_path / "summary.json", {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.stat(path).st_mode & 0o777 == default_file_mode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("old")

    def write(temporary):
        temporary.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replace_file(path, write)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]


@pytest.mark.parametrize("name", ["README.md", MARKER])
def test_the_run_dir_cleanup_pattern_matches_the_temporaries_of_its_files(tmp_path, name):
    """A kill between write and rename leaves a temporary the run-dir cleanup must recognise (the
    marker's, a hidden file, once got a second leading dot and escaped it)."""
    seen = []
    replace_file(tmp_path / name, lambda temporary: seen.append(temporary.name) or temporary.write_text("x"))
    assert temporary_pattern(name) in TEMPORARY_PATTERNS
    assert list(tmp_path.glob(temporary_pattern(name))) == []  # renamed away
    (tmp_path / seen[0]).write_text("left by a kill")
    assert [p.name for p in tmp_path.glob(temporary_pattern(name))] == seen

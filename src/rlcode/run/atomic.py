"""The one way rlcode replaces a file: write a hidden sibling, fsync it, rename it over the target.

A reader (or a run killed mid-write) sees the old file or the new one, never half of one. Every
whole-file write of a run's files goes through ``replace_file`` (model cards, the run marker,
trimmed metrics, sweep summaries and trial records, videos); the checkpoint's directory swap in
``rlcode.run.checkpoints`` is a directory-level version of the same steps and uses ``fsync_path``.
Temporaries are named ``.NAME.XXXXXXXX.tmp`` (``temporary_pattern``), so that a run directory's
cleanup can find the ones a kill left behind and nothing else.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEMPORARY_SUFFIX = ".tmp"


def default_file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 less the umask); mkstemp makes 0600 files."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fsync_path(path: str | Path) -> None:
    """fsync a file or a directory by its path (a directory: so that a rename in it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hidden(name: str) -> str:
    return name if name.startswith(".") else f".{name}"


def temporary_pattern(name: str, suffix: str = TEMPORARY_SUFFIX) -> str:
    """The glob of the temporaries ``replace_file`` makes for a file called ``name``."""
    return f"{_hidden(name)}.*{suffix}"


def replace_file(path: str | Path, write: Callable[[Path], object], suffix: str = TEMPORARY_SUFFIX) -> Path:
    """Make ``path`` what ``write(temporary)`` writes, atomically; return ``path``.

    ``write`` gets a fresh empty sibling file; ``suffix`` is its name's end (a video writer picks
    the format from it). The temporary is fsynced, given the default file mode, renamed over
    ``path``, and the folder fsynced; on any error it is removed and ``path`` is left as it was.
    """
    path = Path(path)
    handle, name = tempfile.mkstemp(prefix=f"{_hidden(path.name)}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        fsync_path(temporary)
        os.chmod(temporary, default_file_mode())  # a card or a video is for sharing
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Replace ``path`` by ``text`` (UTF-8) atomically: readers never see half a file."""
    return replace_file(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, data: Any, **dumps: Any) -> Path:
    """Replace ``path`` by ``data`` as indented JSON atomically (``dumps`` go to ``json.dumps``)."""
    return write_text_atomic(path, json.dumps(data, indent=2, **dumps))

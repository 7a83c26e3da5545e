"""Run directories belong to the user: rlcode replaces only what it wrote there, and nothing else.

The marker. When a run starts, rlcode writes ``RUN_DIR/.rlcode-run.json``::

    {"rlcode_run": 1, "run_id": "…", "algorithm": "ppo", "env": "CartPole-v1", "started": "…",
     "finished": false, "files": ["checkpoint", "metrics.jsonl", "README.md"]}

``files`` names every entry of the run directory that this run may write, listed *before* any of them
is created, so a kill at any moment leaves a marker that covers all of them. Those names (plus the
marker itself and the temporary names of rlcode's atomic writes, ``.checkpoint.tmp-*``,
``.checkpoint.old-*``, ``.README.md.*.tmp``) are the only things rlcode ever deletes or replaces.
A directory is not marked by a file *inside* ``checkpoint/`` because the conflicts to detect
(a user's README.md, a user's metrics.jsonl) live beside it.

The rules, checked before any work (``check_run_dir``) and again when the directory is claimed:

* missing or empty directory, or one holding only files rlcode will not write: a new run starts;
* a name the run would write (``checkpoint``, ``metrics.jsonl``, ``README.md``, and ``tensorboard``
  or ``wandb`` when those loggers are on) that exists but is not listed in the marker is the user's:
  refused, also with ``--resume`` and ``--overwrite``; the message names it and suggests another
  ``--run-dir``. So the model card never replaces a user's README.md: the run is refused before any
  work rather than writing the card under another name, because the card is what ``rlcode push``
  uploads as the Hub's README.md and a second name would leave the user's README as the repo's card;
* a marker (an earlier rlcode run) without a flag: refused; ``--resume`` continues that run (same
  run id, metrics.jsonl appended to), ``--overwrite`` deletes the files its marker lists and starts
  a new run there;
* a directory written by an rlcode from before markers (an rlcode ``checkpoint/state.json`` and no
  marker) counts as an earlier run whose files are ``checkpoint``, ``metrics.jsonl`` and an rlcode
  model card ``README.md``.

Default run directories (``create_default_run_dir``) carry a timestamp and a random suffix and are
made with ``mkdir(exist_ok=False)``, retrying on collision, so simultaneous starts never share one.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from rlcode.configs import ConfigError
from rlcode.run.atomic import temporary_pattern, write_text_atomic

MARKER = ".rlcode-run.json"
MARKER_VERSION = 1
CORE_FILES = ("checkpoint", "metrics.jsonl", "README.md")
TEMPORARY_PATTERNS = (".checkpoint.tmp-*", ".checkpoint.old-*", temporary_pattern("README.md"), temporary_pattern(MARKER))
Mode = Literal["new", "resume", "overwrite"]


class RunDirError(ConfigError):
    """rlcode refuses to start into a run directory; the message says why and what to pass instead."""


def mode_of(resume: bool, overwrite: bool) -> Mode:
    """The mode of ``train(..., resume=, overwrite=)``: at most one of them."""
    if resume and overwrite:
        raise RunDirError("pass --resume or --overwrite, not both.")
    return "resume" if resume else "overwrite" if overwrite else "new"


def read_marker(run_dir: str | Path) -> dict[str, Any] | None:
    """The marker of an earlier rlcode run in ``run_dir``, or None when there is none."""
    path = Path(run_dir) / MARKER
    try:
        marker = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunDirError(f"{path} is not valid JSON, so rlcode cannot tell which files there are its own; "
                          "pass another --run-dir.") from None
    if not isinstance(marker, dict) or not isinstance(marker.get("files"), list):
        raise RunDirError(f"{path} is not an rlcode run marker; pass another --run-dir.")
    return marker


def _is_rlcode_card(path: Path) -> bool:
    from rlcode.run.model_card import is_rlcode_card

    return is_rlcode_card(path)


def _legacy_files(run_dir: Path) -> list[str] | None:
    """Files of a run written before markers existed: only if its checkpoint is an rlcode checkpoint."""
    from rlcode.run.checkpoints import is_rlcode_checkpoint

    if not is_rlcode_checkpoint(run_dir / "checkpoint"):
        return None
    files = ["checkpoint", "metrics.jsonl"]
    return files + ["README.md"] if _is_rlcode_card(run_dir / "README.md") else files


def previous_run(run_dir: str | Path) -> tuple[dict[str, Any] | None, list[str] | None]:
    """(marker, files rlcode wrote) of an earlier run in ``run_dir``; (None, None) when there is none."""
    run_dir = Path(run_dir)
    marker = read_marker(run_dir)
    if marker is not None:
        return marker, [str(name) for name in marker["files"]]
    return None, _legacy_files(run_dir)


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _describe(run_dir: Path, marker: dict[str, Any] | None) -> str:
    if marker is None:
        return "a run from an earlier rlcode version"
    state = "finished" if marker.get("finished") else "unfinished"
    return f"an earlier {state} {marker.get('algorithm', 'rlcode')} run on {marker.get('env', '?')}"


def check_run_dir(run_dir: str | Path, names: Sequence[str], mode: Mode) -> None:
    """Refuse (RunDirError) to start into ``run_dir``; read-only, so it can run before any work."""
    run_dir = Path(run_dir)
    if _exists(run_dir) and not run_dir.is_dir():
        raise RunDirError(f"--run-dir {str(run_dir)!r} is a file, not a directory; pass another --run-dir.")
    marker, owned = previous_run(run_dir) if run_dir.is_dir() else (None, None)
    for name in names:
        if _exists(run_dir / name) and name not in (owned or ()):
            raise RunDirError(f"{str(run_dir)!r} already holds {name!r}, which rlcode did not write there; "
                              "rlcode never replaces your files, also not with --overwrite. "
                              "Pass another --run-dir (e.g. runs/NAME).")
    if mode == "resume" and owned is None:
        raise RunDirError(f"{str(run_dir)!r} holds no rlcode run to resume (no {MARKER} or checkpoint/); "
                          "start a new run with --run-dir instead.")
    if mode == "new" and owned is not None:
        raise RunDirError(f"{str(run_dir)!r} holds {_describe(run_dir, marker)}; pass --resume to continue it, "
                          "--overwrite to replace its files, or another --run-dir.")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _remove_owned(run_dir: Path, owned: Iterable[str]) -> None:
    """Delete the files an earlier run listed (and its temporaries); never anything else."""
    for name in owned:
        if name and "/" not in name and name not in (".", ".."):  # a hand-edited marker cannot reach out
            _remove(run_dir / name)
    for pattern in TEMPORARY_PATTERNS:
        for path in run_dir.glob(pattern):
            _remove(path)


def _write_marker(run_dir: Path, marker: dict[str, Any], exclusive: bool) -> None:
    text = json.dumps(marker, indent=2)
    if not exclusive:
        write_text_atomic(run_dir / MARKER, text)
        return
    try:  # O_EXCL: of two runs started into one directory at the same moment, one is refused
        handle = os.open(run_dir / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise RunDirError(f"another rlcode run started in {str(run_dir)!r} at the same time; "
                          "pass another --run-dir.") from None
    with os.fdopen(handle, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def claim_run_dir(run_dir: str | Path, names: Sequence[str], mode: Mode, algorithm: str, env: str) -> Path:
    """Check ``run_dir`` again, create it, clear an overwritten run's files, and mark it as this run's."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, names, mode)
    run_dir.mkdir(parents=True, exist_ok=True)
    marker, owned = previous_run(run_dir)
    if mode == "resume" and marker is not None:
        marker = marker | {"files": sorted(set(marker["files"]) | set(names)), "finished": False}
        _write_marker(run_dir, marker, exclusive=False)
        return run_dir
    if mode == "overwrite" and owned is not None:
        _remove_owned(run_dir, owned)
        (run_dir / MARKER).unlink(missing_ok=True)
    fresh = {"rlcode_run": MARKER_VERSION, "run_id": f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}",
             "algorithm": algorithm, "env": env, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
             "finished": False, "files": sorted(set(names) | set(owned or ()) if mode == "resume" else names)}
    _write_marker(run_dir, fresh, exclusive=mode == "new")
    return run_dir


def mark_finished(run_dir: str | Path) -> None:
    """Record in the marker that the run reached its end (the refusal message says so)."""
    marker = read_marker(run_dir)
    if marker is not None:
        _write_marker(Path(run_dir), marker | {"finished": True}, exclusive=False)


def create_default_run_dir(prefix: str, root: str | Path = "runs") -> Path:
    """``root/PREFIX-YYYYmmdd-HHMMSS-XXXXXX``, created exclusively: two starts in one second never share it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        path = root / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        try:
            path.mkdir(exist_ok=False)
        except FileExistsError:
            continue
        return path
    raise RunDirError(f"could not create a new run directory under {str(root)!r}; pass --run-dir.")

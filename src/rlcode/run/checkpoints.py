"""Pickle-free, atomic checkpoints: ``config.json`` + ``*.safetensors`` + ``state.json``.

A checkpoint is a directory. It is first written in full to a sibling temporary directory, every
file and the directory itself fsynced, and only then swapped in with ``os.rename``. A process killed
at any moment leaves either the previous checkpoint or the new one, never a mix: if the kill lands
between the two renames of the swap, ``RUN_DIR/checkpoint`` is missing while the previous checkpoint
waits under ``.checkpoint.old-*``. ``find_checkpoint`` (which every reader uses: ``load_checkpoint``,
``rlcode evaluate``, ``rlcode plot``, ``rlcode train --resume``) then takes it (or, for a run's first
save, the complete ``.checkpoint.tmp-*``), says so on stderr and deletes nothing; the next save
cleans up. ``state.json`` records the SHA-256 of every file, so a
truncated or tampered file is reported as such instead of failing deep inside a tensor loader.

A save replaces only an rlcode checkpoint: a ``checkpoint`` folder without an rlcode ``state.json``
is the user's, and ``save_checkpoint`` refuses to touch it (see ``rlcode.run.run_dirs``).
Loading uses json and safetensors only, never pickle or ``torch.load``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlcode.run.atomic import fsync_path

FORMAT_VERSION = 1
CHECKPOINT_DIRNAME = "checkpoint"
Tensors = dict[str, Any]  # name -> torch.Tensor or np.ndarray


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or corrupt; the message says which file and what to do."""


@dataclass
class Checkpoint:
    """What a checkpoint holds: the config, named tensor files, and JSON-able state."""

    config: dict[str, Any]
    tensors: dict[str, Tensors] = field(default_factory=dict)  # file stem -> tensors
    state: dict[str, Any] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "numpy": np.__version__}
    for name in ("torch", "gymnasium", "transformers", "safetensors"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "unknown")
    from rlcode import __version__

    versions["rlcode"] = __version__
    return versions


def capture_rng_state() -> tuple[dict[str, Any], Tensors]:
    """RNG states of python, numpy's legacy global RNG and torch (CPU), as JSON and tensors."""
    version, internal, gauss = random.getstate()
    legacy = np.random.get_state(legacy=False)
    numpy_state = dict(legacy)
    numpy_state["state"] = {k: np.asarray(v).tolist() for k, v in legacy["state"].items()}
    rng_json: dict[str, Any] = {"python": [version, list(internal), gauss], "numpy": numpy_state}
    tensors: Tensors = {}
    if "torch" in sys.modules:
        import torch

        tensors["torch_cpu"] = torch.get_rng_state()
        rng_json["torch_threads"] = torch.get_num_threads()
    return rng_json, tensors


def restore_rng_state(rng_json: dict[str, Any], tensors: Tensors) -> None:
    version, internal, gauss = rng_json["python"]
    random.setstate((version, tuple(internal), gauss))
    legacy = dict(rng_json["numpy"])
    legacy["state"] = {k: np.asarray(v, dtype=np.uint64) if k == "key" else v for k, v in legacy["state"].items()}
    np.random.set_state(legacy)  # type: ignore[arg-type]
    if "torch_cpu" in tensors:
        import torch

        torch.set_rng_state(tensors["torch_cpu"])


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


def _write_tensors(path: Path, tensors: Tensors) -> None:
    if any(_is_torch(v) for v in tensors.values()):
        import torch
        from safetensors.torch import save_file

        tensors = {k: (v if _is_torch(v) else torch.from_numpy(np.asarray(v))) for k, v in tensors.items()}
        for name, value in tensors.items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise CheckpointError(f"refusing to save non-finite values in tensor {name!r} of {path.name}")
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
    else:
        from safetensors.numpy import save_file as save_numpy

        arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        for name, value in arrays.items():
            if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                raise CheckpointError(f"refusing to save non-finite values in tensor {name!r} of {path.name}")
        save_numpy(arrays, str(path))


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


STATE_DIGEST_KEY = "state_sha256"


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 of state.json's content without this digest (canonical JSON), stored in state.json itself.

    The file hashes in state["sha256"] do not cover state.json, which holds what changes an agent's
    behaviour too (normaliser statistics, optimizer settings); a file cannot hold its own hash, but it
    can hold the hash of everything else it says.
    """
    content = {key: value for key, value in state.items() if key != STATE_DIGEST_KEY}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _verify_state_digest(path: Path, state: dict[str, Any]) -> None:
    """Like the file hashes, this catches accidents and casual edits; anyone can recompute it (no secret)."""
    if STATE_DIGEST_KEY not in state:  # written before the digest existed: still loadable, unverified
        warnings.warn(f"{str(path)!r} has no {STATE_DIGEST_KEY} (written by an older rlcode), so edits to it "
                      "cannot be detected; save the run again to add one.", RuntimeWarning, stacklevel=3)
        return
    if state[STATE_DIGEST_KEY] != state_digest(state):
        raise CheckpointError(
            f"checkpoint file {str(path)!r} is corrupt: its content does not match its {STATE_DIGEST_KEY} "
            "(edited or damaged after saving). Restore it from a backup or retrain."
        )


def checkpoint_path(run_dir: str | Path) -> Path:
    """Where to read the checkpoint of a run directory (or the path itself if it is a checkpoint)."""
    run_dir = Path(run_dir)
    # a user's folder that merely holds a state.json, or is named checkpoint, is a run directory
    if is_rlcode_checkpoint(run_dir) or (run_dir.name == CHECKPOINT_DIRNAME and not run_dir.exists()):
        return run_dir
    return run_dir / CHECKPOINT_DIRNAME


def is_rlcode_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` holds a ``state.json`` that rlcode wrote (format version and file hashes)."""
    try:
        state = json.loads((Path(directory) / "state.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "format_version" in state and isinstance(state.get("sha256"), dict)


def _save_target(run_dir: Path) -> Path:
    """``run_dir/checkpoint``, or ``run_dir`` itself when that is an rlcode checkpoint (never a user's folder)."""
    target = run_dir if is_rlcode_checkpoint(run_dir) else run_dir / CHECKPOINT_DIRNAME
    if target.exists() and not is_rlcode_checkpoint(target) and any(target.iterdir()):
        raise CheckpointError(
            f"{str(target)!r} exists and is not an rlcode checkpoint; rlcode will not replace it. "
            "Pass another run directory."
        )
    return target


def _stale(target: Path) -> list[Path]:
    """Temporaries of earlier saves of ``target`` (only the names rlcode's own mkdtemp calls create)."""
    return [*target.parent.glob(f".{target.name}.tmp-*"), *target.parent.glob(f".{target.name}.old-*")]


def save_checkpoint(run_dir: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` atomically to ``run_dir/checkpoint`` and return that path."""
    target = _save_target(Path(run_dir))
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write_json(temporary / "config.json", checkpoint.config)
        for stem, tensors in checkpoint.tensors.items():
            _write_tensors(temporary / f"{stem}.safetensors", tensors)
        files = sorted(p.name for p in temporary.iterdir())
        state = dict(checkpoint.state)
        state["format_version"] = FORMAT_VERSION
        state.setdefault("versions", library_versions())
        state["sha256"] = {name: _sha256(temporary / name) for name in files}
        state[STATE_DIGEST_KEY] = state_digest(state)
        _write_json(temporary / "state.json", state)
        for path in temporary.iterdir():
            fsync_path(path)
        fsync_path(temporary)
        if target.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            previous.rmdir()
            os.rename(target, previous)
        os.rename(temporary, target)
        fsync_path(target.parent)
        # the new checkpoint is complete: drop the previous one and leftovers of interrupted saves
        for stale in _stale(target):
            shutil.rmtree(stale, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return target


def _is_complete(directory: Path) -> bool:
    """Every file that ``state.json`` lists is there with its recorded SHA-256."""
    try:
        state = json.loads((directory / "state.json").read_text())
        return isinstance(state, dict) and all(
            _sha256(directory / name) == digest for name, digest in state["sha256"].items()
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _recover(target: Path) -> Path:
    """``target``, or after a kill mid-swap the checkpoint the interrupted save was replacing.

    Between the swap's two renames the previous checkpoint is under ``.old-*``: the last save that
    completed, so it is preferred. Only when there is none (the kill hit a run's first save right
    before its rename) is a ``.tmp-*`` taken, and only a complete one: every file present with its
    recorded SHA-256. Nothing is renamed or deleted here: readers stay readers; the next save cleans up.
    """
    if target.exists():
        return target
    olds = [path for path in target.parent.glob(f".{target.name}.old-*") if _is_complete(path)]
    temporaries = [path for path in target.parent.glob(f".{target.name}.tmp-*") if _is_complete(path)]
    for candidates in (olds, temporaries):
        if candidates:
            chosen = max(candidates, key=lambda path: (path / "state.json").stat().st_mtime_ns)
            print(f"rlcode: note: {target} is missing (a save was interrupted); using the last complete "
                  f"checkpoint {chosen}", file=sys.stderr)
            return chosen
    raise CheckpointError(
        f"no checkpoint at {str(target)!r}; pass a run directory written by rlcode (it holds checkpoint/state.json)."
    )


def find_checkpoint(run_dir: str | Path) -> Path:
    """The directory of the last complete checkpoint of a run directory (recovering interrupted saves)."""
    return _recover(checkpoint_path(run_dir))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {str(path)!r} is missing; the checkpoint is incomplete.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"checkpoint file {str(path)!r} is not valid JSON ({error}); it was truncated or edited. "
            "Restore it from a backup or retrain."
        ) from None


def load_checkpoint(run_dir: str | Path, framework: str = "numpy") -> Checkpoint:
    """Read a checkpoint, verifying every file's SHA-256; tensors come back as numpy or torch."""
    directory = find_checkpoint(run_dir)
    state = _read_json(directory / "state.json")
    if not isinstance(state, dict) or "sha256" not in state:
        raise CheckpointError(f"{str(directory / 'state.json')!r} is not an rlcode checkpoint state file.")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format {state.get('format_version')!r} is not supported by this rlcode "
            f"(expects {FORMAT_VERSION}); load it with the rlcode version that wrote it."
        )
    _verify_state_digest(directory / "state.json", state)
    for name, expected in state["sha256"].items():
        path = directory / name
        if not path.exists():
            raise CheckpointError(f"checkpoint file {str(path)!r} is missing; the checkpoint is incomplete.")
        if _sha256(path) != expected:
            raise CheckpointError(
                f"checkpoint file {str(path)!r} is corrupt: its SHA-256 does not match state.json "
                "(truncated or modified after saving). Restore it from a backup or retrain."
            )
    tensors: dict[str, Tensors] = {}
    for path in sorted(directory.glob("*.safetensors")):
        if framework == "torch":
            from safetensors.torch import load_file
        else:
            from safetensors.numpy import load_file  # type: ignore[assignment]
        try:
            tensors[path.stem] = dict(load_file(str(path)))
        except Exception as error:  # safetensors' own error type (a bad header, a size past the end, ...)
            raise CheckpointError(
                f"checkpoint file {str(path)!r} is not a valid safetensors file ({error}); restore it from a "
                "backup or retrain."
            ) from None
    return Checkpoint(config=_read_json(directory / "config.json"), tensors=tensors, state=state)


def optimizer_to_checkpoint(optimizer: Any) -> tuple[Tensors, dict[str, Any]]:
    """Split a torch optimizer's state_dict into tensors (safetensors) and JSON (hyperparameters)."""
    state_dict = optimizer.state_dict()
    tensors: Tensors = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if _is_torch(value):
                tensors[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_from_checkpoint(optimizer: Any, tensors: Tensors, meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})

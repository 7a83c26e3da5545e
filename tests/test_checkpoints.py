"""Checkpoints: round trip, crash safety under SIGKILL, and clear errors for damaged files."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from rlcode.run.checkpoints import (
    Checkpoint,
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    optimizer_from_checkpoint,
    optimizer_to_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _checkpoint(value: float) -> Checkpoint:
    return Checkpoint(
        config={"algorithm": "test", "value": value},
        tensors={"model": {"weight": torch.full((3, 4), value), "step": torch.tensor([7])}},
        state={"algorithm": "test", "updates": int(value)},
    )


def test_round_trip_torch_and_numpy(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _checkpoint(2.0))
    loaded = load_checkpoint(tmp_path, framework="torch")
    assert loaded.config == {"algorithm": "test", "value": 2.0}
    assert torch.equal(loaded.tensors["model"]["weight"], torch.full((3, 4), 2.0))
    assert loaded.state["updates"] == 2 and "versions" in loaded.state
    as_numpy = load_checkpoint(tmp_path)
    assert isinstance(as_numpy.tensors["model"]["weight"], np.ndarray)


def test_numpy_only_checkpoint(tmp_path: Path) -> None:
    q = np.arange(12, dtype=np.float64).reshape(4, 3)
    save_checkpoint(tmp_path, Checkpoint(config={}, tensors={"q_table": {"q": q}}, state={}))
    assert np.array_equal(load_checkpoint(tmp_path).tensors["q_table"]["q"], q)


def test_overwrite_replaces_and_leaves_no_temporaries(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _checkpoint(1.0))
    save_checkpoint(tmp_path, _checkpoint(3.0))
    assert load_checkpoint(tmp_path).config["value"] == 3.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_refuses_to_save_nan(tmp_path: Path) -> None:
    bad = Checkpoint(config={}, tensors={"model": {"w": torch.tensor([1.0, float("nan")])}}, state={})
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint(tmp_path, bad)
    assert not (tmp_path / "checkpoint").exists()


def test_truncated_file_gives_clear_error(tmp_path: Path) -> None:
    directory = save_checkpoint(tmp_path, _checkpoint(1.0))
    tensor_file = directory / "model.safetensors"
    tensor_file.write_bytes(tensor_file.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="model.safetensors.*corrupt"):
        load_checkpoint(tmp_path)


def test_tampered_config_gives_clear_error(tmp_path: Path) -> None:
    directory = save_checkpoint(tmp_path, _checkpoint(1.0))
    (directory / "config.json").write_text(json.dumps({"algorithm": "test", "value": 9.0}))
    with pytest.raises(CheckpointError, match="config.json.*SHA-256"):
        load_checkpoint(tmp_path)


def test_garbled_state_and_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
    directory = save_checkpoint(tmp_path, _checkpoint(1.0))
    (directory / "state.json").write_text('{"sha256": ')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path)


def test_rng_state_round_trip() -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    rng_json, rng_tensors = capture_rng_state()
    rng_json = json.loads(json.dumps(rng_json))  # must survive JSON
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(rng_json, rng_tensors)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_optimizer_round_trip() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).pow(2).sum().backward()
        optimizer.step()
    tensors, meta = optimizer_to_checkpoint(optimizer)
    meta = json.loads(json.dumps(meta))
    fresh = torch.optim.Adam(model.parameters(), lr=0.5)
    optimizer_from_checkpoint(fresh, tensors, meta)
    assert fresh.param_groups[0]["lr"] == 0.01
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(fresh.state[model.weight][key], optimizer.state[model.weight][key])


# The child saves checkpoint "1", then dies by SIGKILL at a chosen point of saving checkpoint "2".
_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    import rlcode.run.checkpoints as ck

    run_dir, stage = sys.argv[1], sys.argv[2]
    def make(v):
        return ck.Checkpoint(config={"value": v}, tensors={"model": {"w": torch.full((256, 256), v)}},
                             state={"algorithm": "test"})
    ck.save_checkpoint(run_dir, make(1.0))
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    if stage == "tensors":
        ck._write_tensors = die
    elif stage == "state":
        ck._write_json = lambda path, data: die() if path.name == "state.json" else None
    elif stage == "swap":  # between moving the old checkpoint away and moving the new one in
        real_rename, calls = os.rename, []
        def rename(src, dst):
            calls.append(src)
            if len(calls) == 2:
                die()
            real_rename(src, dst)
        ck.os.rename = rename
    ck.save_checkpoint(run_dir, make(2.0))
    """
)


@pytest.mark.parametrize("stage", ["tensors", "state", "swap"])
def test_sigkill_during_save_keeps_previous_checkpoint(tmp_path: Path, stage: str) -> None:
    result = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path), stage], timeout=120)
    assert result.returncode == -9, "the child should have been killed mid-save"
    loaded = load_checkpoint(tmp_path, framework="torch")
    assert loaded.config == {"value": 1.0}
    assert torch.equal(loaded.tensors["model"]["w"], torch.full((256, 256), 1.0))
    # the next save after a crash still works and cleans up
    save_checkpoint(tmp_path, Checkpoint(config={"value": 3.0}, tensors={}, state={}))
    assert load_checkpoint(tmp_path).config == {"value": 3.0}

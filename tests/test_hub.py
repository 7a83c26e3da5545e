"""push_to_hub without network: only HfApi.create_repo / upload_folder are replaced."""

from __future__ import annotations

import sys

import numpy as np
import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")

from rlcode.run.checkpoints import Checkpoint, CheckpointError, save_checkpoint  # noqa: E402
from rlcode.run.hub import push_to_hub  # noqa: E402
from rlcode.run.model_card import REPO_PLACEHOLDER, write_model_card  # noqa: E402


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    checkpoint = Checkpoint(config={"env": "CartPole-v1"}, tensors={"model": {"w": np.ones(3)}})
    checkpoint.state["algorithm"] = "ppo"
    save_checkpoint(run, checkpoint)
    write_model_card(run, algorithm="ppo", env_id="CartPole-v1", mean_return=500, std_return=0, config={})
    (run / "metrics.jsonl").write_text('{"step": 1.0}\n')
    return run


@pytest.fixture
def hub_calls(monkeypatch):
    calls: list[tuple[str, dict]] = []

    def create_repo(self, **kwargs):
        calls.append(("create_repo", kwargs | {"token": self.token}))
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        calls.append(("upload_folder", kwargs))

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    return calls


def test_push_creates_the_repo_and_uploads_the_run(run_dir, hub_calls):
    url = push_to_hub(run_dir, "someone/CartPole-v1-ppo", token="hf_test", private=True)
    assert url == "https://huggingface.co/someone/CartPole-v1-ppo"
    (create_name, create), (upload_name, upload) = hub_calls
    assert create_name == "create_repo" and upload_name == "upload_folder"
    assert create["repo_id"] == "someone/CartPole-v1-ppo" and create["private"] is True
    assert create["exist_ok"] is True and create["token"] == "hf_test"
    assert upload["repo_id"] == "someone/CartPole-v1-ppo" and upload["folder_path"] == str(run_dir)
    card = (run_dir / "README.md").read_text()
    assert "someone/CartPole-v1-ppo" in card and REPO_PLACEHOLDER not in card


def test_run_dir_without_checkpoint_is_refused_before_any_call(tmp_path, hub_calls):
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        push_to_hub(tmp_path, "someone/repo")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        push_to_hub(tmp_path / "missing", "someone/repo")
    assert hub_calls == []


def test_bad_repo_id_is_refused(run_dir, hub_calls):
    with pytest.raises(ValueError, match="user/name"):
        push_to_hub(run_dir, "no-owner")
    assert hub_calls == []


def test_missing_huggingface_hub_says_how_to_install(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes `import huggingface_hub` fail
    with pytest.raises(RuntimeError, match=r"rlcode\[hub\]"):
        push_to_hub(run_dir, "someone/repo")


def test_rlcode_push_command(run_dir, hub_calls, capsys):
    from rlcode.cli.app import main

    assert main(["push", str(run_dir), "someone/CartPole-v1-ppo", "--private"]) == 0
    assert capsys.readouterr().out.strip() == "https://huggingface.co/someone/CartPole-v1-ppo"
    assert hub_calls[0][1]["private"] is True

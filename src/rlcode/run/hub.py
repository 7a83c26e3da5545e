"""Share a run directory on the Hugging Face Hub: ``push_to_hub(run_dir, "user/CartPole-v1-ppo")``.

A thin layer over ``huggingface_hub`` (``create_repo`` + ``upload_folder``); the run directory is
uploaded as it is: checkpoint, metrics and the model card ``README.md`` written at the end of
training. Install with ``pip install 'rlcode[hub]'``; log in with ``hf auth login`` or pass ``token``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlcode.extras import require
from rlcode.run.atomic import write_text_atomic
from rlcode.run.checkpoints import CheckpointError, find_checkpoint
from rlcode.run.model_card import CARD_NAME, REPO_PLACEHOLDER

# Temp files of interrupted atomic writes, caches and TensorBoard's lock-free leftovers stay local.
IGNORE_PATTERNS = [".*", "**/.*", "__pycache__", "**/__pycache__", "*.tmp"]


def _checked_run_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run directory {str(run_dir)!r} does not exist; pass one written by `rlcode train`."
        )
    try:
        state = find_checkpoint(run_dir) / "state.json"  # the last complete one, also after a kill mid-save
    except CheckpointError:
        state = run_dir / "checkpoint" / "state.json"
    if not state.is_file():
        raise CheckpointError(
            f"{str(run_dir)!r} holds no checkpoint ({state} is missing); push a run directory written by "
            "`rlcode train` after training finished."
        )
    return run_dir


def push_to_hub(
    run_dir: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
) -> str:
    """Create (or reuse) the model repository ``repo_id`` and upload ``run_dir`` to it; returns its URL.

    The model card's download line names ``repo_id`` once pushed.
    """
    run_dir = _checked_run_dir(run_dir)
    if "/" not in repo_id or repo_id.count("/") != 1:
        raise ValueError(f"repo_id {repo_id!r} must look like 'user/name' (or 'organisation/name').")
    HfApi = require("huggingface_hub", "hub", "push_to_hub").HfApi

    card = run_dir / CARD_NAME
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        if REPO_PLACEHOLDER in text:
            write_text_atomic(card, text.replace(REPO_PLACEHOLDER, repo_id))

    api: Any = HfApi(token=token)
    repo_url = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=str(run_dir),
        commit_message=commit_message or f"Upload rlcode run {run_dir.name}",
        ignore_patterns=IGNORE_PATTERNS,
    )
    return str(repo_url)

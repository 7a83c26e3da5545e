"""Model cards: Hub-readable metadata, a config block that loads back, written atomically."""

from __future__ import annotations

import math
import re

import pytest

from rlcode.configs import load_config_file
from rlcode.run.model_card import read_card_metadata, write_model_card

CONFIG = {
    "env": "CartPole-v1",
    "learning_rate": 0.0003,
    "net_arch": [64, 64],
    "normalize": False,
    "target_kl": None,
    "total_steps": 100_000,
    "max_grad_norm": math.inf,
}


def _toml_block(text: str) -> str:
    match = re.search(r"```toml\n(.*?)\n```", text, flags=re.S)
    assert match, "the card has no ```toml block"
    return match.group(1)


def test_card_metadata_matches_the_hub_rl_cards(tmp_path):
    path = write_model_card(
        tmp_path, algorithm="ppo", env_id="CartPole-v1", mean_return=498.25, std_return=3.5, config=CONFIG
    )
    assert path == tmp_path / "README.md"
    meta = read_card_metadata(path)
    assert meta["library_name"] == "rlcode"
    assert {"reinforcement-learning", "CartPole-v1", "ppo", "rlcode"} <= set(meta["tags"])
    (entry,) = meta["model-index"]
    assert entry["name"] == "PPO"
    (result,) = entry["results"]
    assert result["task"]["type"] == "reinforcement-learning"
    assert result["dataset"] == {"name": "CartPole-v1", "type": "CartPole-v1"}
    (metric,) = result["metrics"]
    assert metric["type"] == "mean_reward" and metric["value"] == "498.25 +/- 3.50"
    text = path.read_text()
    assert "498.25 ± 3.50" in text and "rlcode evaluate" in text
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]  # no temp file left behind


def test_config_block_is_toml_that_loads_back(tmp_path):
    path = write_model_card(
        tmp_path, algorithm="ppo", env_id="CartPole-v1", mean_return=1.0, std_return=0.0, config=CONFIG
    )
    (tmp_path / "config.toml").write_text(_toml_block(path.read_text()))
    loaded = load_config_file(tmp_path / "config.toml")
    assert loaded == {k: v for k, v in CONFIG.items() if v is not None}
    assert "target_kl" in _toml_block(path.read_text())  # the unset field is still mentioned


def test_tabular_card_and_metrics_table(tmp_path):
    path = write_model_card(
        tmp_path,
        algorithm="qlearning",
        env_id="FrozenLake-v1",
        mean_return=0.74,
        std_return=0.44,
        config={"env": "FrozenLake-v1", "gamma": 0.99},
        metrics={"eval/greedy_value": 0.7413, "eval/optimal_value": 0.7414},
    )
    meta = read_card_metadata(path)
    assert meta["model-index"][0]["name"] == "Q-Learning"
    assert "deep-reinforcement-learning" not in meta["tags"]
    assert "| `eval/greedy_value` | 0.7413 |" in path.read_text()


def test_rewriting_replaces_the_card(tmp_path):
    write_model_card(tmp_path, algorithm="a2c", env_id="Acrobot-v1", mean_return=-90, std_return=5, config={})
    path = write_model_card(
        tmp_path, algorithm="a2c", env_id="Acrobot-v1", mean_return=-80, std_return=4, config={}
    )
    assert (
        read_card_metadata(path)["model-index"][0]["results"][0]["metrics"][0]["value"] == "-80.00 +/- 4.00"
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, "500"])
def test_non_finite_result_is_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="mean_return"):
        write_model_card(
            tmp_path, algorithm="ppo", env_id="CartPole-v1", mean_return=bad, std_return=0, config={}
        )
    assert not list(tmp_path.iterdir())

"""A Hugging Face model card (``README.md`` with YAML metadata) for every run directory.

The metadata follows the cards of the Hugging Face Deep RL course and Stable-Baselines3
(``library_name``, ``tags``, and a ``model-index`` whose ``mean_reward`` reads "mean +/- std"),
so the Hub shows the evaluation result and the RL leaderboard can read it. The card is written
offline and atomically; ``rlcode.run.hub.push_to_hub`` uploads it with the checkpoint. It never
replaces a README.md that is not an rlcode card (``rlcode.run.run_dirs`` refuses such a run directory
before any work; this is the last line of defence for direct calls).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from rlcode.run.atomic import write_text_atomic

CARD_NAME = "README.md"
REPO_PLACEHOLDER = "YOUR_USER/YOUR_REPO"  # replaced by push_to_hub with the real repository id
TABULAR_ALGORITHMS = ("qlearning", "sarsa", "expected-sarsa")
DISPLAY_NAMES = {
    "qlearning": "Q-Learning",
    "sarsa": "SARSA",
    "expected-sarsa": "Expected SARSA",
    "reinforce": "REINFORCE",
    "a2c": "A2C",
    "ppo": "PPO",
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))  # a TOML basic string uses JSON's escapes


def config_as_toml(config: Mapping[str, Any]) -> str:
    """Flat ``key = value`` lines that ``rlcode train ALGO --config file.toml`` reads back.

    TOML has no null, so fields set to None are written as comments (None is their default).
    """
    lines = []
    for key, value in config.items():
        if value is None:
            lines.append(f"# {key} is unset (None)")
        elif isinstance(value, Mapping):
            lines.append(f"# {key} = {json.dumps(value)}  (not a flag of rlcode train)")
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines)


def _metadata(algorithm: str, env_id: str, mean_return: float, std_return: float) -> dict[str, Any]:
    name = DISPLAY_NAMES.get(algorithm, algorithm)
    kind = "reinforcement-learning" if algorithm in TABULAR_ALGORITHMS else "deep-reinforcement-learning"
    tags = [env_id, algorithm, "reinforcement-learning", kind, "rlcode"]
    return {
        "library_name": "rlcode",
        "tags": list(dict.fromkeys(tags)),
        "model-index": [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "reinforcement-learning", "name": "reinforcement-learning"},
                        "dataset": {"name": env_id, "type": env_id},
                        "metrics": [
                            {
                                "type": "mean_reward",
                                "value": f"{mean_return:.2f} +/- {std_return:.2f}",
                                "name": "mean_reward",
                                "verified": False,
                            }
                        ],
                    }
                ],
            }
        ],
    }


def _format_metric(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render_model_card(
    *,
    algorithm: str,
    env_id: str,
    mean_return: float,
    std_return: float,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
) -> str:
    """The text of the card; ``write_model_card`` writes it."""
    name = DISPLAY_NAMES.get(algorithm, algorithm)
    front_matter = yaml.safe_dump(
        _metadata(algorithm, env_id, mean_return, std_return), sort_keys=False, allow_unicode=True
    )
    repo = repo_id or REPO_PLACEHOLDER
    sections = [
        f"---\n{front_matter}---\n",
        f"# {name} agent playing {env_id}\n",
        f"A **{name}** agent trained on **{env_id}** with "
        "rlcode, a readable and verified reinforcement-learning library.\n",
        f"Evaluation return: **{mean_return:.2f} ± {std_return:.2f}** (mean ± standard deviation over "
        "evaluation episodes).\n",
        "## Usage\n",
        "```bash\n"
        "pip install rlcode huggingface_hub\n"
        f'python -c "from huggingface_hub import snapshot_download; '
        f"snapshot_download('{repo}', local_dir='{env_id}-{algorithm}')\"\n"
        f"rlcode evaluate {env_id}-{algorithm} --video {env_id}-{algorithm}.mp4\n"
        "```\n",
        "## Reproduce\n",
        f"Save the configuration below as `config.toml` and run `rlcode train {algorithm} --config config.toml`.\n",
        f"```toml\n{config_as_toml(config)}\n```\n",
    ]
    if metrics:
        rows = "\n".join(f"| `{key}` | {_format_metric(value)} |" for key, value in metrics.items())
        sections += [
            "## Training metrics (end of training)\n",
            f"| metric | value |\n| --- | --- |\n{rows}\n",
        ]
    return "\n".join(sections)


def write_model_card(
    run_dir: str | Path,
    *,
    algorithm: str,
    env_id: str,
    mean_return: float,
    std_return: float,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write ``run_dir/README.md``: YAML metadata, usage, the config as TOML, the final metrics."""
    for label, value in (("mean_return", mean_return), ("std_return", std_return)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(
                f"write_model_card: {label}={value!r} must be a finite number; pass the evaluation result."
            )
    if not algorithm or not env_id:
        raise ValueError("write_model_card: algorithm and env_id must be non-empty strings.")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CARD_NAME
    if path.exists() and not is_rlcode_card(path):
        raise ValueError(f"{str(path)!r} is not an rlcode model card; rlcode will not replace it. "
                         "Pass another run directory.")
    text = render_model_card(
        algorithm=algorithm,
        env_id=env_id,
        mean_return=float(mean_return),
        std_return=float(std_return),
        config=config,
        metrics=metrics,
        repo_id=repo_id,
    )
    write_text_atomic(path, text)
    return path


def write_run_card(run_dir: str | Path, algorithm: str, env_id: str, config: Mapping[str, Any],
                   result: Mapping[str, Any]) -> Path:
    """The card a tier's ``train()`` writes: mean/std return from ``result``, its finite numbers as metrics."""
    metrics = {
        k: v for k, v in result.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }
    return write_model_card(run_dir, algorithm=algorithm, env_id=env_id, mean_return=result["mean_return"],
                            std_return=result["std_return"], config=config, metrics=metrics)


def is_rlcode_card(path: str | Path) -> bool:
    """Whether ``path`` is a model card rlcode wrote (its front matter says ``library_name: rlcode``)."""
    try:
        return read_card_metadata(path).get("library_name") == "rlcode"
    except (OSError, ValueError, yaml.YAMLError, TypeError):
        return False


def read_card_metadata(path: str | Path) -> dict[str, Any]:
    """The YAML front matter of a model card."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise ValueError(f"{str(path)!r} has no YAML front matter (it must start with a '---' line).")
    end = text.index("\n---\n", 4)
    return dict(yaml.safe_load(text[4:end]))

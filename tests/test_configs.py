"""The config machinery: coercion, unknown keys, CLI flag generation, config files."""

from __future__ import annotations

import argparse
from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from rlcode.configs import (
    ConfigError,
    add_config_arguments,
    check_choice,
    check_range,
    config_from_args,
    config_from_dict,
    config_to_dict,
    doc_field,
)


@dataclass(frozen=True)
class DemoConfig:
    algorithm: ClassVar[str] = "demo"
    env: str = doc_field("CartPole-v1", "environment id")
    learning_rate: float = doc_field(0.001, "step size of the optimizer")
    steps: int = doc_field(100, "number of updates")
    schedule: Literal["constant", "linear"] = doc_field("constant", "learning-rate schedule")
    clip: float | None = doc_field(None, "optional clip range")
    normalize: bool = doc_field(True, "normalise observations")
    sizes: tuple[int, ...] = doc_field((64, 64), "hidden layer sizes")

    def __post_init__(self) -> None:
        check_range(self, "learning_rate", 0.0, None, low_open=True)
        check_range(self, "steps", 1, None)
        check_choice(self, "schedule", ["constant", "linear"])


def test_valid_config_is_frozen_and_round_trips() -> None:
    config = config_from_dict(DemoConfig, {"learning_rate": "0.01", "steps": 5, "sizes": "32,16"})
    assert config.learning_rate == 0.01 and config.sizes == (32, 16)
    with pytest.raises(FrozenInstanceError):
        config.steps = 3  # type: ignore[misc]
    assert config_from_dict(DemoConfig, config_to_dict(config)) == config


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"learning_rate": -1.0}, r"DemoConfig.learning_rate=-1.0 is invalid: allowed \(0.0, inf\]"),
        ({"steps": 0}, r"DemoConfig.steps=0 is invalid: allowed \[1, inf\]"),
        ({"steps": 2.5}, r"DemoConfig.steps=2.5 is not a valid int"),
        ({"schedule": "cosine"}, r"DemoConfig.schedule='cosine' is invalid: allowed one of \['constant', 'linear'\]"),
        ({"learning_rate": float("nan")}, r"learning_rate=nan is invalid: allowed a finite number"),
        ({"normalize": "maybe"}, r"DemoConfig.normalize='maybe' is not a valid bool"),
        ({"lr": 0.1}, r"unknown key\(s\) \['lr'\].*valid keys are"),
    ],
)
def test_invalid_values_name_the_field(data: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict(DemoConfig, data)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_config_arguments(parser, DemoConfig)
    return parser


def test_flags_are_generated_and_documented() -> None:
    help_text = _parser().format_help()
    for flag in ("--env", "--learning-rate", "--steps", "--schedule", "--clip", "--normalize", "--no-normalize"):
        assert flag in help_text
    assert "step size of the optimizer" in help_text


def test_file_then_flags_override(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('learning_rate = 0.5\nsteps = 7\nschedule = "linear"\n')
    args = _parser().parse_args(["--config", str(path), "--steps", "9", "--no-normalize", "--clip", "none"])
    config = config_from_args(DemoConfig, args, args.config)
    assert (config.learning_rate, config.steps, config.schedule, config.normalize, config.clip) == (
        0.5, 9, "linear", False, None,
    )


def test_unknown_key_in_file_fails_before_anything(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("learning_rate = 0.5\ngamma = 0.9\n")
    with pytest.raises(ConfigError, match=r"c.toml has unknown key\(s\) \['gamma'\]"):
        config_from_args(DemoConfig, _parser().parse_args([]), path)


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config_from_args(DemoConfig, _parser().parse_args([]), tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("learning_rate = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config_from_args(DemoConfig, _parser().parse_args([]), broken)
    other = tmp_path / "c.ini"
    other.write_text("x")
    with pytest.raises(ConfigError, match="unknown suffix"):
        config_from_args(DemoConfig, _parser().parse_args([]), other)

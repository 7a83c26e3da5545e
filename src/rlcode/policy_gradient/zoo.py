"""Read rl-baselines3-zoo hyperparameter files (``hyperparams/ppo.yml`` shape) as rlcode config values.

A zoo file maps env ids to SB3 hyperparameters::

    CartPole-v1:
      n_envs: 8
      n_timesteps: !!float 1e5
      learning_rate: lin_0.001
      policy_kwargs: "dict(net_arch=[64, 64], activation_fn=nn.Tanh, ortho_init=False)"

``load_yaml_config`` takes the file's single entry (or fails listing them), sets the env from its key
and renames every hyperparameter with ``rlcode.policy_gradient.config.ZOO_KEYS``. Zoo semantics are
kept where a name alone would change them: ``lin_X`` is X with a linear-to-0 schedule and a plain
number a constant one, as in SB3. Omitted keys keep rlcode's defaults, not SB3's. Nothing is ever
evaluated: YAML is read with ``yaml.safe_load`` and ``policy_kwargs`` strings with ``ast``.
"""

from __future__ import annotations

import ast
import dataclasses
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from rlcode.configs import ConfigError, read_config_text
from rlcode.errors import short_repr, shorten
from rlcode.policy_gradient.config import (
    ZOO_IGNORED,
    ZOO_KEYS,
    ZOO_VALUES,
    A2CConfig,
    PPOConfig,
    ReinforceConfig,
)

# A zoo value "lin_X" sets the field to X and its schedule field to "linear"; a number sets "constant".
SCHEDULE_FIELDS = {"learning_rate": "lr_schedule", "clip_range": "clip_range_schedule"}
# A zoo entry has a few dozen values; YAML aliases nested in aliases can make 340 bytes stand for
# billions of them, which every later step (and any error message) would walk.
MAX_YAML_VALUES = 100_000
# Zoo keys that change the environment or training loop: ignored with a warning, not silently.
WARN_IGNORED = ("env_wrapper", "frame_stack", "callback")
VEC_NORMALIZE_KEYS = {"norm_obs": "normalize_observations", "norm_reward": "normalize_rewards"}


def _zoo_tables() -> tuple[Mapping[str, Any], Mapping[str, Mapping[Any, Any]], frozenset[str]]:
    return ZOO_KEYS, ZOO_VALUES, ZOO_IGNORED


def _default_config_classes() -> list[type]:
    return [PPOConfig, A2CConfig, ReinforceConfig]


def _literal(node: ast.AST, source: str) -> Any:
    """A Python literal, ``dict(a=...)`` call or dotted name (``nn.Tanh`` -> "nn.Tanh"), never evaluated."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "dict"
        and not node.args
    ):
        if any(keyword.arg is None for keyword in node.keywords):
            raise ConfigError(f"policy_kwargs {short_repr(source)}: '**' is not supported; write the keys out.")
        return {keyword.arg: _literal(keyword.value, source) for keyword in node.keywords}
    if isinstance(node, ast.Dict):
        return {
            _literal(k, source): _literal(v, source) for k, v in zip(node.keys, node.values) if k is not None
        }
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(item, source) for item in node.elts]
    if isinstance(node, ast.Attribute):
        return f"{_literal(node.value, source)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ConfigError(
            f"policy_kwargs {short_repr(source)} contains {short_repr(ast.unparse(node))}, which is not a literal, dict(...) "
            "or a name like nn.Tanh; write it as one of those."
        ) from None


def parse_kwargs(value: Any, key: str) -> dict[str, Any]:
    """``"dict(net_arch=[64, 64], ortho_init=False)"`` (or a YAML mapping, or a dict literal) -> dict."""
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str):
        raise ConfigError(f'{key}={short_repr(value)} must be a mapping or a string like "dict(net_arch=[64, 64])".')
    try:
        tree = ast.parse(value.strip(), mode="eval")
    except SyntaxError as error:
        raise ConfigError(f"{key}={short_repr(value)} is not valid Python syntax ({error.msg}).") from None
    parsed = _literal(tree.body, value)
    if not isinstance(parsed, dict):
        raise ConfigError(f"{key}={short_repr(value)} must be a dict(...) or {{...}}, not {type(parsed).__name__}.")
    return parsed


def _net_arch(value: Any) -> list[int]:
    """SB3's net_arch: [64, 64], dict(pi=[..], vf=[..]) or the older [dict(pi=[..], vf=[..])]."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0]
    if isinstance(value, dict):
        if set(value) != {"pi", "vf"} or value["pi"] != value["vf"]:
            raise ConfigError(
                f"policy_kwargs net_arch={short_repr(value)}: rlcode's actor and critic have the same hidden sizes; "
                "give one list such as net_arch=[64, 64]."
            )
        value = value["pi"]
    return list(value)


def _schedule(name: str, value: Any, native_fields: set[str] | frozenset[str]) -> dict[str, Any]:
    schedule_field = SCHEDULE_FIELDS[name]
    has_schedule = not native_fields or schedule_field in native_fields
    if isinstance(value, str) and value.startswith("lin_"):
        if not has_schedule:
            raise ConfigError(f"{name}={short_repr(value)}: this algorithm has no {schedule_field}; give a number.")
        return {name: float(value[len("lin_") :]), schedule_field: "linear"}
    return {name: value, schedule_field: "constant"} if has_schedule else {name: value}


def _normalize(value: Any) -> dict[str, Any]:
    """VecNormalize settings: true/false, or a dict (or its string) of norm_obs / norm_reward."""
    if isinstance(value, bool):
        return {field: value for field in VEC_NORMALIZE_KEYS.values()}
    options = parse_kwargs(value, "normalize")
    unknown = sorted(set(options) - set(VEC_NORMALIZE_KEYS))
    if unknown:
        raise ConfigError(
            f"normalize options {unknown} are not supported; only {sorted(VEC_NORMALIZE_KEYS)}."
        )
    return {field: bool(options.get(key, True)) for key, field in VEC_NORMALIZE_KEYS.items()}


def _translate_value(
    zoo_key: str, field: str, value: Any, zoo_values: Mapping[str, Mapping[Any, Any]]
) -> Any:
    if zoo_key in zoo_values:
        table = zoo_values[zoo_key]
        if value not in table:
            raise ConfigError(f"{zoo_key}={short_repr(value)} is not supported; use one of {sorted(map(str, table))}.")
        return table[value]
    if zoo_key == "policy_kwargs.net_arch":
        return _net_arch(value)
    if isinstance(value, str) and value.startswith("lin_"):
        raise ConfigError(f"{zoo_key}={short_repr(value)}: only learning_rate and clip_range take lin_ schedules.")
    return value


def translate_zoo_hyperparameters(
    hyperparameters: Mapping[str, Any], native_fields: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Rename one zoo entry's hyperparameters to rlcode fields; fields named as in rlcode pass through."""
    zoo_keys, zoo_values, zoo_ignored = _zoo_tables()
    flat: dict[str, Any] = {}
    for key, value in hyperparameters.items():
        if key == "policy_kwargs":
            flat.update({f"policy_kwargs.{name}": item for name, item in parse_kwargs(value, key).items()})
        else:
            flat[key] = value
    unknown = sorted(k for k in flat if k not in zoo_keys and k not in zoo_ignored and k not in native_fields)
    if unknown:
        raise ConfigError(
            f"rl-zoo hyperparameter(s) {unknown} are not supported by rlcode; remove them. Supported: "
            f"{sorted(zoo_keys)}."
        )
    config: dict[str, Any] = {}
    for key, value in flat.items():
        if key in zoo_ignored:
            if key in WARN_IGNORED:
                warnings.warn(
                    f"rl-zoo key {key}={short_repr(value)} is ignored by rlcode.", RuntimeWarning, stacklevel=3
                )
            elif key == "policy" and value not in ("MlpPolicy", None):
                raise ConfigError(
                    f"policy={short_repr(value)} is not supported; rlcode trains MLP policies (MlpPolicy)."
                )
            continue
        if key not in zoo_keys:  # already an rlcode field name
            config[key] = value
        elif key == "normalize":
            config.update(_normalize(value))
        elif key in SCHEDULE_FIELDS:
            config.update(_schedule(key, value, native_fields))
        else:
            field = zoo_keys[key]
            config[field] = _translate_value(key, field, value, zoo_values)
    return config


def _env_field(config_classes: list[type]) -> str:
    names = {f.name for cls in config_classes for f in dataclasses.fields(cls)}
    return "env_id" if "env_id" in names else "env"


def _check_expansion(path: Path, root: yaml.Node | None) -> None:
    """Refuse a document whose aliases expand to more than MAX_YAML_VALUES values, counted without expanding."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:  # an alias: the same node object again; its size is known
            return sizes[id(node)]
        sizes[id(node)] = MAX_YAML_VALUES + 1  # a node that contains itself expands without end
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        total = 1
        for child in children:
            total = min(total + size(child), MAX_YAML_VALUES + 1)
        sizes[id(node)] = total
        return total

    try:
        too_many = root is not None and size(root) > MAX_YAML_VALUES
    except RecursionError:
        too_many = True
    if too_many:
        raise ConfigError(
            f"config file {str(path)!r} expands to more than {MAX_YAML_VALUES} values through nested YAML "
            "aliases (&name / *name); a zoo entry needs a few dozen: write the values out."
        )


def load_yaml_config(path: str | Path, config_class: type | None = None) -> dict[str, Any]:
    """Read a zoo-shaped YAML file (one env-id entry) into rlcode config values, env included.

    ``config_class`` (default: the policy-gradient configs) decides the env field's name and which
    rlcode field names may appear as they are beside the zoo names.
    """
    path = Path(path)
    text = read_config_text(path)
    try:
        _check_expansion(path, yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"config file {str(path)!r} nests too deeply; a zoo entry is two levels deep.") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {shorten(str(error))}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"config file {str(path)!r} must map an env id to its hyperparameters, like rl-baselines3-zoo's "
            "'CartPole-v1: {n_envs: 8, ...}'."
        )
    if len(data) != 1:
        raise ConfigError(
            f"config file {str(path)!r} holds {len(data)} entries {short_repr(sorted(map(str, data)))}; rlcode trains one "
            "env per run: keep only the entry you want (or copy it into its own file)."
        )
    ((env_id, hyperparameters),) = data.items()
    if hyperparameters is None:
        hyperparameters = {}
    if not isinstance(env_id, str) or not isinstance(hyperparameters, dict):
        raise ConfigError(
            f"config file {str(path)!r}: the entry must be 'ENV_ID: {{hyperparameter: value, ...}}', "
            f"got {short_repr(env_id)}: {type(hyperparameters).__name__}."
        )
    classes = [config_class] if config_class is not None else _default_config_classes()
    native = {f.name for cls in classes for f in dataclasses.fields(cls)}
    env_field = _env_field(classes)
    try:
        config = translate_zoo_hyperparameters(hyperparameters, native)
    except ConfigError as error:
        raise ConfigError(f"config file {str(path)!r}, entry {short_repr(env_id)}: {error}") from None
    config[env_field] = env_id
    return config


# The config-file suffixes this tier adds to TOML and JSON; the algorithm registry hands them to
# ``rlcode.configs.load_config_file`` (``Algorithm.config_readers``).
CONFIG_READERS = {".yml": load_yaml_config, ".yaml": load_yaml_config}

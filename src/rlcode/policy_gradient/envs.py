"""Vector environments for the policy-gradient tier, their spaces, and exact snapshots of their state.

Autoreset: gymnasium 1.x vector envs default to ``AutoresetMode.NEXT_STEP`` and environments with a
native vectorised implementation (CartPole's ``CartPoleVectorEnv``) support only that mode, so the
rollout is written for it. When env i ends an episode at step t, ``step`` returns the *real* final
observation at t (so V(final observation) is simply the value of the next stored observation), and
the following ``step`` ignores env i's action and returns its reset observation with reward 0. The
rollout marks that following transition invalid (``mask`` = 0) and every loss ignores it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlcode.configs import ConfigError
from rlcode.env_ids import make_env, resolve_env_id


def resolve_vector_mode(env_id: str, vector_mode: str) -> str:
    """auto -> the env's own vectorised class where registered (as gymnasium.make_vec does), else sync."""
    if vector_mode != "auto":
        return vector_mode
    import gymnasium

    spec = gymnasium.spec(resolve_env_id(env_id))  # spec(), unlike make(), does not import a module: prefix
    return "vector_entry_point" if spec.vector_entry_point is not None else "sync"


def make_vector_env(env_id: str, num_envs: int, vector_mode: str = "auto", **env_kwargs: Any) -> Any:
    """A gymnasium vector env with NEXT_STEP autoreset (checked, since the rollout relies on it)."""
    import gymnasium
    from gymnasium.vector import AutoresetMode

    mode = resolve_vector_mode(env_id, vector_mode)
    env = gymnasium.make_vec(resolve_env_id(env_id), num_envs=num_envs, vectorization_mode=mode, **env_kwargs)
    autoreset = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if autoreset != AutoresetMode.NEXT_STEP:
        env.close()
        raise RuntimeError(
            f"{env_id} vector env uses autoreset mode {autoreset}; rlcode's rollout expects NEXT_STEP "
            "(gymnasium's default). Use vector_mode sync or async."
        )
    return env


def env_spaces(env_id: str) -> tuple[Any, Any]:
    """(observation_space, action_space) of one env, read without stepping it."""
    env = make_env(env_id)  # a one-line ConfigError for unknown ids and missing packages
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def check_against_spaces(config: Any, observation_space: Any, action_space: Any) -> None:
    """Reject spaces the networks cannot handle and options that do not apply to this action space."""
    from gymnasium import spaces

    name = type(config).__name__
    if not isinstance(observation_space, spaces.Box) or observation_space.shape is None:
        raise ConfigError(
            f"{config.env_id} has observation space {observation_space}; {name} needs a Box (vector) "
            "observation space. Flatten it with a gymnasium wrapper or pick another env."
        )
    if len(observation_space.shape) > 1:  # the networks are MLPs over one feature axis
        raise ConfigError(
            f"{config.env_id} has image observations {observation_space}; {name} does not support image "
            f"(multi-dimensional Box) observations yet, only 1-D vectors. {_vector_alternative(config.env_id)}"
        )
    if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
        raise ConfigError(
            f"{config.env_id} has action space {action_space}; {name} supports Discrete and Box actions only."
        )
    if isinstance(action_space, spaces.Box) and len(action_space.shape) != 1:
        raise ConfigError(f"{config.env_id} has a Box action space of shape {action_space.shape}; only 1-D is supported.")
    if isinstance(action_space, spaces.Discrete) and config.log_std_init is not None:
        raise ConfigError(
            f"{name}.log_std_init={config.log_std_init} applies to continuous (Box) actions only, but "
            f"{config.env_id} has {action_space}; remove log_std_init (--log-std-init) for this env."
        )


def _vector_alternative(env_id: str) -> str:
    """How to get vector observations from an env whose observations are images."""
    bare = resolve_env_id(env_id)
    if bare.startswith("ALE/") and bare.endswith("-v5"):
        return f"Train on the console's 128-byte RAM instead: --env {bare[: -len('-v5')]}-ram-v5."
    return ("Register a variant with vector observations (e.g. gymnasium.wrappers.FlattenObservation) in a "
            "module of yours and pass it as --env module:EnvId.")


# ---------------------------------------------------------------------------------------------
# Exact snapshots. A resumed run must continue bit for bit, so a checkpoint stores the state of the
# environments too: every numeric attribute (arrays, numbers, None-able counters, numpy Generators) of
# the vector env, its sub-envs and their wrappers, as JSON. This covers numpy-based envs such as
# classic control; async envs live in other processes and are not snapshotted.

_SCALARS = (bool, int, float, type(None))


def _chain(env: Any) -> list[Any]:
    """An env followed by every env it wraps (gymnasium wrappers keep the inner one in ``.env``)."""
    layers = [env]
    while getattr(layers[-1], "env", None) is not None:
        layers.append(layers[-1].env)
    return layers


def _components(env: Any) -> dict[str, Any]:
    found = {f"vector.{depth}": layer for depth, layer in enumerate(_chain(env))}
    for index, sub_env in enumerate(getattr(found[f"vector.{len(found) - 1}"], "envs", None) or ()):
        found.update({f"env{index}.{depth}": layer for depth, layer in enumerate(_chain(sub_env))})
    return found


def _encode(value: Any) -> Any:
    if isinstance(value, np.random.Generator):
        return {"generator": value.bit_generator.state}
    if isinstance(value, np.ndarray):
        return {"dtype": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}
    if isinstance(value, np.generic):
        return {"dtype": value.dtype.str, "shape": None, "data": value.item()}
    return {"value": value}


def _decode(encoded: dict[str, Any], current: Any) -> Any:
    if "generator" in encoded:
        generator = current if isinstance(current, np.random.Generator) else np.random.default_rng()
        generator.bit_generator.state = encoded["generator"]
        return generator
    if "dtype" in encoded:
        dtype = np.dtype(encoded["dtype"])
        if encoded["shape"] is None:
            return dtype.type(encoded["data"])
        return np.asarray(encoded["data"], dtype=dtype).reshape(encoded["shape"])
    return encoded["value"]


def _snapshot_value(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    return isinstance(value, (np.random.Generator, np.generic, *_SCALARS))


def snapshot_env(env: Any) -> dict[str, Any]:
    """JSON-able state of a sync or natively vectorised env (see the comment above)."""
    if type(env).__name__ == "AsyncVectorEnv":
        return {}
    snapshot: dict[str, Any] = {}
    for key, component in _components(env).items():
        attributes = {
            name: _encode(value)
            for name, value in vars(component).items()
            if _snapshot_value(value) and not (isinstance(value, float) and not np.isfinite(value))
        }
        snapshot[key] = attributes
    return snapshot


def restore_env(env: Any, snapshot: dict[str, Any]) -> None:
    """Write a ``snapshot_env`` result back into a freshly built env of the same id and size."""
    components = _components(env)
    for key, attributes in snapshot.items():
        if key not in components:
            raise RuntimeError(f"the checkpoint's env state has component {key!r} that this env lacks; "
                               "resume with the same env_id, num_envs and vector_mode.")
        component = components[key]
        for name, encoded in attributes.items():
            setattr(component, name, _decode(encoded, getattr(component, name, None)))

"""Gymnasium env ids as users write them: ``module:EnvId`` and namespaced ids such as ``ALE/Pong-v5``.

``gymnasium.make("mypkg:MyEnv-v1")`` imports ``mypkg`` (which registers ``MyEnv-v1``) before the
lookup, but ``gymnasium.spec`` does not, and nothing imports the package that owns a namespace: in
gymnasium 1.x ``ALE/...`` ids exist only after ``gymnasium.register_envs(ale_py)``. Every place in
rlcode that hands an id to gymnasium (make, make_vec, spec) first calls ``resolve_env_id``, which does
both imports and returns the bare id. The id users wrote stays in configs and checkpoints, so a fresh
process (a sweep worker, ``rlcode evaluate``) imports the module again by resolving it.
"""

from __future__ import annotations

import importlib
from typing import Any

from rlcode.configs import ConfigError

# Namespaces whose envs a package registers when imported: namespace -> (module, pip package).
NAMESPACE_PACKAGES = {"ALE": ("ale_py", "ale-py")}


def split_env_id(env_id: str) -> tuple[str | None, str]:
    """``"mypkg.envs:MyEnv-v1"`` -> ``("mypkg.envs", "MyEnv-v1")``; ``"CartPole-v1"`` -> ``(None, "CartPole-v1")``."""
    module, sep, bare = env_id.partition(":")
    if not sep:
        return None, env_id
    if not module or not bare or ":" in bare:
        raise ConfigError(f"env id {env_id!r} is malformed; write a gymnasium id (CartPole-v1) or "
                          "module:EnvId with one colon (mypkg.envs:MyEnv-v1).")
    return module, bare


def resolve_env_id(env_id: str) -> str:
    """Import what ``env_id`` needs registered and return the id gymnasium's registry knows it by.

    Raises a one-line ConfigError when the module of ``module:EnvId`` cannot be imported, when a
    namespace's package is missing (``ALE/...`` without ale-py) or when no package registered the namespace.
    """
    module, bare = split_env_id(env_id)
    if module is not None:
        _import_env_module(module, env_id)
    namespace = _namespace(bare, env_id)
    if namespace is not None:
        _register_namespace(namespace, bare, env_id)
    return bare


def make_env(env_id: str, **kwargs: Any) -> Any:
    """``gymnasium.make`` of a user's env id; a missing optional dependency becomes a one-line ConfigError."""
    import gymnasium

    bare = resolve_env_id(env_id)
    try:
        return gymnasium.make(bare, **kwargs)
    except gymnasium.error.Error as error:  # DependencyNotInstalled names its pip fix, e.g. gymnasium[box2d]
        raise ConfigError(f"env id {env_id!r} cannot be made: {error}") from None


def _import_env_module(module: str, env_id: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as error:
        missing = f" ({error.name} is missing)" if getattr(error, "name", None) not in (None, module) else ""
        raise ConfigError(
            f"env id {env_id!r}: module {module!r} cannot be imported{missing}: {error}; pip install the "
            "package that provides it, or put its folder on PYTHONPATH."
        ) from None


def _namespace(bare: str, env_id: str) -> str | None:
    from gymnasium.envs.registration import parse_env_id

    try:
        namespace, _name, _version = parse_env_id(bare)
    except Exception as error:  # gymnasium.error.Error for ids that are not [namespace/]Name[-vN]
        raise ConfigError(f"env id {env_id!r} is malformed: {error}") from None
    return namespace


def _register_namespace(namespace: str, bare: str, env_id: str) -> None:
    """Import the package that registers ``namespace``, or fail naming what to install."""
    import gymnasium

    if namespace in NAMESPACE_PACKAGES:
        module_name, package = NAMESPACE_PACKAGES[namespace]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ConfigError(f"env id {env_id!r} needs the {package} package, which is not installed; "
                              f"run: pip install {package}") from None
        gymnasium.register_envs(module)  # importing registers them; this call documents why we import
        if namespace == "ALE":
            _register_ale_ram(bare)
    if not any(spec.namespace == namespace for spec in gymnasium.registry.values()):
        known = sorted({spec.namespace for spec in gymnasium.registry.values() if spec.namespace})
        raise ConfigError(
            f"env id {env_id!r}: no installed package registers the gymnasium namespace {namespace!r} "
            f"(registered: {', '.join(known) or 'none'}); import the package that does with "
            f"module:{bare}, e.g. mypkg:{bare}."
        )


def _register_ale_ram(bare: str) -> None:
    """Register ``ALE/<Game>-ram-v5`` (ale-py < 0.9 did; newer versions need ``obs_type="ram"``).

    The RAM variant observes the console's 128 bytes instead of the screen, a vector the
    policy-gradient MLPs can take. Its vector env must be the generic one: ale-py's own vector env
    returns preprocessed screen images whatever ``obs_type`` says.
    """
    import gymnasium

    if not bare.endswith("-v5") or bare in gymnasium.registry:
        return
    game_id = bare[: -len("-v5")]
    if not game_id.endswith("-ram"):
        return
    screen_id = f"{game_id[: -len('-ram')]}-v5"
    screen = gymnasium.registry.get(screen_id)
    if screen is None:
        return  # the lookup that follows reports the unknown game
    gymnasium.register(
        bare, entry_point=screen.entry_point, max_episode_steps=screen.max_episode_steps,
        nondeterministic=screen.nondeterministic, reward_threshold=screen.reward_threshold,
        kwargs={**screen.kwargs, "obs_type": "ram"},
    )

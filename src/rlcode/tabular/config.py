"""Configs of the tabular tier: one frozen dataclass per algorithm, all sharing ``TabularConfig``.

Imports neither gymnasium nor numba, so ``rlcode --help`` stays fast. The defaults are tuned so that
``rlcode train qlearning`` (FrozenLake-v1 4x4, slippery) ends within 1 % of the exact optimum in a
few seconds for any seed we tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from rlcode.configs import MAX_EPISODES, check_choice, check_range, doc_field, fail
from rlcode.errors import short_repr

FROZEN_LAKE_TILES = set("SFHG")
Decay = Literal["constant", "linear", "exponential"]


def is_frozen_lake(env_id: str) -> bool:
    return env_id.split("/")[-1].startswith("FrozenLake")


@dataclass(frozen=True)
class TabularConfig:
    """Everything a tabular TD run needs; the subclasses only pick the algorithm."""

    algorithm: ClassVar[str] = "tabular"

    env: str = doc_field("FrozenLake-v1", "gymnasium id of an env with Discrete observation and action spaces "
                         "(FrozenLake-v1, FrozenLake8x8-v1, Taxi-v4, CliffWalking-v1, ...)")
    map_size: int = doc_field(4, "FrozenLake only: 4 or 8 (the built-in 4x4 or 8x8 map); ignored with map_desc")
    slippery: bool = doc_field(True, "FrozenLake only: the agent moves in the intended direction with "
                               "probability 1/3 and slips to either side otherwise")
    map_desc: str | None = doc_field(None, "FrozenLake only: custom map as comma-separated rows of S/F/H/G, "
                                     "e.g. 'SFFF,FHFH,FFFH,HFFG'")
    max_episode_steps: int | None = doc_field(None, "time limit per episode; None keeps the env's own "
                                              "TimeLimit, 0 removes it")
    episodes: int = doc_field(100_000, "training episodes")
    gamma: float = doc_field(0.995, "discount factor of the TD target; the reported exact value is always "
                             "the undiscounted episode return under the time limit")
    learning_rate: float = doc_field(0.1, "step size at the start of training")
    learning_rate_end: float = doc_field(0.005, "step size at the end of training")
    learning_rate_decay: Decay = doc_field("exponential", "how the step size moves from learning_rate to "
                                           "learning_rate_end over all episodes")
    epsilon_start: float = doc_field(1.0, "exploration rate of the epsilon-greedy behaviour policy at the start")
    epsilon_end: float = doc_field(0.1, "exploration rate once the decay is over")
    epsilon_decay_fraction: float = doc_field(0.5, "fraction of the episodes over which epsilon decays "
                                              "linearly from epsilon_start to epsilon_end")
    initial_q: float = doc_field(0.0, "initial value of every Q-table entry")
    seed: int = doc_field(0, "seeds the TD loop's random stream and the env; same seed, same Q-table bit for bit")
    eval_episodes: int = doc_field(1000, "episodes of the sampled greedy evaluation after training")
    log_points: int = doc_field(20, "times during training the greedy policy's exact value is computed "
                                "and logged")
    backend: Literal["auto", "table", "env"] = doc_field(
        "auto", "auto: sample transitions from env.unwrapped.P in a numba loop when the env has it, else "
        "step the env; table: require the table; env: always call env.step (slow, for checking)")

    def __post_init__(self) -> None:
        name = type(self).__name__
        if not isinstance(self.env, str) or not self.env.strip():
            fail(name, "env", self.env, "a gymnasium environment id", "pass e.g. --env FrozenLake-v1")
        check_choice(self, "map_size", (4, 8))
        self._check_frozen_lake_options(name)
        if self.map_desc is not None:
            self._check_map_desc(name)
        if self.max_episode_steps is not None:
            check_range(self, "max_episode_steps", 0)
        check_range(self, "episodes", 1)
        check_range(self, "gamma", 0.0, 1.0, low_open=True)
        check_range(self, "learning_rate", 0.0, 1.0, low_open=True)
        check_range(self, "learning_rate_end", 0.0, 1.0, low_open=True)
        check_choice(self, "learning_rate_decay", ("constant", "linear", "exponential"))
        check_range(self, "epsilon_start", 0.0, 1.0)
        check_range(self, "epsilon_end", 0.0, 1.0)
        if self.epsilon_end > self.epsilon_start:
            fail(name, "epsilon_end", self.epsilon_end, f"[0, epsilon_start={self.epsilon_start}]",
                 "epsilon decays, so make epsilon_end <= epsilon_start")
        check_range(self, "epsilon_decay_fraction", 0.0, 1.0, low_open=True)
        check_range(self, "initial_q", -1e9, 1e9)
        check_range(self, "seed", 0, 2**63 - 1)
        check_range(self, "eval_episodes", 1, MAX_EPISODES)
        check_range(self, "log_points", 1, 100_000)
        check_choice(self, "backend", ("auto", "table", "env"))
        for field_name in ("map_size", "max_episode_steps", "episodes", "seed", "eval_episodes", "log_points"):
            value = getattr(self, field_name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                fail(name, field_name, value, "an integer", f"pass a whole number for {field_name}")

    def _check_frozen_lake_options(self, name: str) -> None:
        """map_size and slippery change only FrozenLake; on another env a changed one would be ignored."""
        if is_frozen_lake(self.env):
            return
        if self.map_size != 4:
            fail(name, "map_size", self.map_size, "only with a FrozenLake env",
                 f"drop map_size or set env to FrozenLake-v1 (env is {short_repr(self.env)})")
        if self.slippery is not True:
            fail(name, "slippery", self.slippery, "only with a FrozenLake env",
                 f"drop --no-slippery or set env to FrozenLake-v1 (env is {short_repr(self.env)})")

    def _check_map_desc(self, name: str) -> None:
        if not is_frozen_lake(self.env):
            fail(name, "map_desc", self.map_desc, "only with a FrozenLake env",
                 f"drop map_desc or set env to FrozenLake-v1 (env is {short_repr(self.env)})")
        rows = [row.strip() for row in str(self.map_desc).split(",")]
        allowed = "comma-separated rows of equal length made of S, F, H, G with one S and at least one G"
        if (not rows or any(len(row) != len(rows[0]) or set(row) - FROZEN_LAKE_TILES for row in rows)
                or "".join(rows).count("S") != 1 or "G" not in "".join(rows)):
            fail(name, "map_desc", self.map_desc, allowed, "write the map like 'SFFF,FHFH,FFFH,HFFG'")

    @property
    def map_rows(self) -> list[str] | None:
        """The custom FrozenLake map as a list of rows, or None for a built-in map."""
        return None if self.map_desc is None else [row.strip() for row in self.map_desc.split(",")]


@dataclass(frozen=True)
class QLearningConfig(TabularConfig):
    """Q-learning: off-policy TD control with the Bellman optimality target r + γ max_a Q(s', a)."""

    algorithm: ClassVar[str] = "qlearning"


@dataclass(frozen=True)
class SarsaConfig(TabularConfig):
    """SARSA: on-policy TD control with the target r + γ Q(s', a'), a' drawn from the ε-greedy policy."""

    algorithm: ClassVar[str] = "sarsa"


@dataclass(frozen=True)
class ExpectedSarsaConfig(TabularConfig):
    """Expected SARSA: the target averages Q(s', ·) under the ε-greedy policy instead of sampling a'."""

    algorithm: ClassVar[str] = "expected-sarsa"


CONFIGS: dict[str, type[TabularConfig]] = {
    cls.algorithm: cls for cls in (QLearningConfig, SarsaConfig, ExpectedSarsaConfig)
}

"""Tiny envs registered on import, for tests of ``module:EnvId`` ids (``rlcode_test_envs:Corridor-v0``).

Not a test module and not a package: tests put this folder on sys.path (or PYTHONPATH for fresh
processes), as a user's own env package would be installed.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

LENGTH = 5  # cells 0..4; the goal is the last one


class Corridor(gym.Env):
    """Walk right to the goal: Box([position]) observations, Discrete(2) actions (0 left, 1 right)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.render_mode = render_mode
        self.position = 0

    def _observation(self) -> Any:
        return np.array([self.position / (LENGTH - 1)], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.position = 0
        return self._observation(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self.position = int(np.clip(self.position + (1 if int(action) == 1 else -1), 0, LENGTH - 1))
        done = self.position == LENGTH - 1
        return self._observation(), float(done), done, False, {}

    def render(self) -> np.ndarray:
        frame = np.zeros((8, 8 * LENGTH, 3), dtype=np.uint8)
        frame[:, 8 * self.position : 8 * (self.position + 1)] = 255
        return frame


class ImageCorridor(Corridor):
    """The corridor seen as a [1, LENGTH] uint8 image, which the policy-gradient MLPs reject."""

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        self.observation_space = spaces.Box(0, 255, (1, LENGTH), np.uint8)

    def _observation(self) -> Any:
        image = np.zeros((1, LENGTH), dtype=np.uint8)
        image[0, self.position] = 255
        return image


class TabularCorridor(Corridor):
    """The corridor with Discrete(LENGTH) states and toy-text's transition table ``P``."""

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        self.observation_space = spaces.Discrete(LENGTH)
        self.initial_state_distrib = np.eye(LENGTH)[0]
        self.P: dict[int, dict[int, list[tuple[float, int, float, bool]]]] = {}
        for state in range(LENGTH):
            self.P[state] = {}
            for action in range(2):
                nxt = state if state == LENGTH - 1 else int(np.clip(state + (1 if action else -1), 0, LENGTH - 1))
                self.P[state][action] = [(1.0, nxt, float(nxt == LENGTH - 1 and state != nxt), nxt == LENGTH - 1)]

    def _observation(self) -> Any:
        return self.position


for _name, _cls in (("Corridor", Corridor), ("ImageCorridor", ImageCorridor), ("TabularCorridor", TabularCorridor)):
    if f"Rlcode{_name}-v0" not in gym.registry:  # importing twice (fresh sys.modules) must not re-register
        gym.register(f"Rlcode{_name}-v0", entry_point=f"rlcode_test_envs:{_cls.__name__}", max_episode_steps=20)

"""record_video: real gymnasium rendering, real files, checked by reading them back."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("pygame", reason="gymnasium renders classic-control and toy-text envs with pygame")

from rlcode.run.video import record_video  # noqa: E402


def _episode_lengths(env_id: str, act, episodes: int, seed: int, **kwargs) -> list[int]:
    env = gym.make(env_id, **kwargs)
    lengths = []
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed if episode == 0 else None)
        steps, done = 0, False
        while not done:
            observation, _, terminated, truncated, _ = env.step(act(observation))
            steps, done = steps + 1, terminated or truncated
        lengths.append(steps)
    env.close()
    return lengths


def push_left(observation: np.ndarray) -> int:
    return 0


def test_gif_of_cartpole_has_its_frames(tmp_path):
    from PIL import Image

    env = gym.make("CartPole-v1", render_mode="rgb_array")
    path = record_video(env, push_left, tmp_path / "cartpole.gif", episodes=2, seed=3, fps=25)
    assert path == tmp_path / "cartpole.gif" and path.stat().st_size > 0
    expected_frames = sum(n + 1 for n in _episode_lengths("CartPole-v1", push_left, 2, seed=3))
    with Image.open(path) as gif:
        assert gif.size == (600, 400)
        # Pillow merges a frame identical to the one before (adding its delay), so count time too.
        durations = []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
        assert 2 < gif.n_frames <= expected_frames
        assert sum(durations) == pytest.approx(expected_frames * 40, abs=1)
    assert [p.name for p in tmp_path.iterdir()] == ["cartpole.gif"]  # no temp file left behind


def test_mp4_of_frozenlake_has_one_frame_per_step(tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")

    def go_down(observation: int) -> int:
        return 1  # 0 -> 4 -> 8 -> 12, a hole: a 3-step episode

    env = gym.make("FrozenLake-v1", render_mode="rgb_array", is_slippery=False)
    path = record_video(env, go_down, tmp_path / "lake.mp4", episodes=1, seed=0)
    expected_frames = _episode_lengths("FrozenLake-v1", go_down, 1, seed=0, is_slippery=False)[0] + 1
    with imageio.get_reader(path) as reader:
        frames = [frame for frame in reader]
    assert len(frames) == expected_frames == 4
    assert frames[0].shape == (256, 256, 3)
    assert frames[0].std() > 0  # a picture, not a blank


class CountingEnv:
    """Records whether any work was done."""

    render_mode = "rgb_array"
    resets = 0

    def reset(self, seed=None):
        self.resets += 1
        return 0, {}


def test_unknown_suffix_fails_before_rendering(tmp_path):
    env = CountingEnv()
    with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
        record_video(env, push_left, tmp_path / "out.avi")
    assert env.resets == 0 and not list(tmp_path.iterdir())


def test_env_without_rgb_array_rendering_is_refused(tmp_path):
    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        record_video(env, push_left, tmp_path / "out.gif")
    with pytest.raises(ValueError, match="episodes"):
        record_video(
            gym.make("CartPole-v1", render_mode="rgb_array"), push_left, tmp_path / "x.gif", episodes=0
        )

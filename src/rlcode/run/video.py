"""Render episodes of an agent to a .gif or .mp4 file.

The env renders itself (gymnasium ``render_mode="rgb_array"``); GIFs are written with Pillow,
MP4s with imageio's ffmpeg plugin (``pip install rlcode[video]`` brings imageio-ffmpeg, which
ships its own ffmpeg binary). The file appears atomically: frames go to a sibling temp file that is
renamed into place only once it is complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rlcode.extras import require
from rlcode.run.atomic import replace_file

VIDEO_SUFFIXES = (".gif", ".mp4")


def _check_writer(suffix: str) -> None:
    """Fail before rendering anything when the library for ``suffix`` is missing."""
    for module in ("PIL.Image",) if suffix == ".gif" else ("imageio", "imageio_ffmpeg"):
        require(module, "video", f"writing a {suffix} video")


def _frames(env: Any, act: Callable[[Any], Any], episodes: int, seed: int | None) -> Iterator[np.ndarray]:
    """Yield one rgb frame [H, W, 3] after reset and after every step, episode after episode."""
    for episode in range(episodes):
        # Seed once; later resets continue the env's RNG, as gymnasium intends.
        observation, _ = env.reset(seed=seed if episode == 0 else None)
        yield _rgb(env.render())
        done = False
        while not done:
            observation, _reward, terminated, truncated, _info = env.step(act(observation))
            yield _rgb(env.render())
            done = bool(terminated or truncated)


def _rgb(frame: Any) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] not in (3, 4):
        raise RuntimeError(
            f"env.render() returned an array of shape {frame.shape}, not an [H, W, 3] image; "
            'make the env with render_mode="rgb_array".'
        )
    return np.ascontiguousarray(frame[..., :3], dtype=np.uint8)


def _write_gif(frames: Iterator[np.ndarray], path: Path, fps: float) -> int:
    from PIL import Image

    # Each frame is reduced to its own 256-colour palette as it arrives, so memory holds
    # one byte per pixel; GIF cannot be streamed frame by frame with Pillow.
    images = [
        Image.fromarray(frame).quantize(colors=256, method=Image.Quantize.MEDIANCUT) for frame in frames
    ]
    if not images:
        raise RuntimeError("the env rendered no frames; nothing to write.")
    duration_ms = max(20, round(1000 / fps))  # browsers treat GIF delays below 20 ms as 100 ms
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=duration_ms,
        loop=0,
        optimize=False,
    )
    return len(images)


def _write_mp4(frames: Iterator[np.ndarray], path: Path, fps: float) -> int:
    import imageio.v2 as imageio

    count = 0
    # macro_block_size=2 keeps every even frame size as it is (yuv420p needs even sides only).
    with imageio.get_writer(
        path, format="FFMPEG", mode="I", fps=fps, codec="libx264", macro_block_size=2, pixelformat="yuv420p"
    ) as writer:
        for frame in frames:  # streamed to ffmpeg, never all in memory
            writer.append_data(frame)  # type: ignore[attr-defined]
            count += 1
    if count == 0:
        raise RuntimeError("the env rendered no frames; nothing to write.")
    return count


def record_video(
    env: Any,
    act: Callable[[Any], Any],
    path: str | Path,
    episodes: int = 1,
    seed: int | None = None,
    fps: float = 30,
) -> Path:
    """Run ``episodes`` episodes of ``act(observation) -> action`` in ``env`` and save them as a video.

    ``env`` is a gymnasium Env made with ``render_mode="rgb_array"``; the suffix of ``path`` (.gif or
    .mp4) picks the format. GIFs keep every frame in memory until written: use .mp4 for long runs.
    Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(
            f"cannot write a video to {str(path)!r}: the suffix must be one of {list(VIDEO_SUFFIXES)}; "
            "pass a path ending in .gif or .mp4."
        )
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}.")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}.")
    render_mode = getattr(env, "render_mode", None)
    if render_mode != "rgb_array":
        raise ValueError(
            f"record_video needs an env made with render_mode='rgb_array', got render_mode={render_mode!r}; "
            "make it with gymnasium.make(env_id, render_mode='rgb_array')."
        )
    _check_writer(suffix)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)

    write = _write_gif if suffix == ".gif" else _write_mp4
    return replace_file(path, lambda temporary: write(_frames(env, act, episodes, seed), temporary, fps), suffix)

"""MetricsLogger: JSONL always, TensorBoard event files, the W&B hook, progress bar and quiet mode."""

from __future__ import annotations

import io
import sys
import types
import warnings

import pytest

from rlcode.run import metrics
from rlcode.run.metrics import EPISODE_RETURN, VOCABULARY, MetricsLogger, read_metrics


def test_jsonl_round_trip_and_added_timing(tmp_path):
    with MetricsLogger(tmp_path, total_steps=100, quiet=True) as logger:
        logger.log(10, {EPISODE_RETURN: 12.5, "loss/policy": -0.25})
        logger.log(20, {"loss/policy": float("nan")})
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [10.0, 20.0]
    assert records[0][EPISODE_RETURN] == 12.5 and records[0]["time/steps_per_second"] > 0
    assert records[1]["loss/policy"] != records[1]["loss/policy"]  # NaN kept, not dropped
    with MetricsLogger(tmp_path, quiet=True) as logger:  # a resumed run appends
        logger.log(30, {EPISODE_RETURN: 20.0})
    assert len(read_metrics(tmp_path)) == 3


def test_vocabulary_names_are_namespaced():
    assert all("/" in name and name == name.lower() for name in VOCABULARY)
    names = "rollout/episode_return loss/policy loss/value loss/entropy policy/approx_kl policy/clip_fraction"
    names += " value/explained_variance time/steps_per_second"
    assert set(names.split()) <= set(VOCABULARY)


def test_quiet_prints_nothing(tmp_path):
    stream = io.StringIO()
    with MetricsLogger(tmp_path, total_steps=10, quiet=True, stream=stream, progress_bar=True) as logger:
        for step in range(1, 11):
            logger.log(step, {EPISODE_RETURN: step}, force_print=True)
    assert stream.getvalue() == ""


def test_compact_line_off_a_terminal_shows_rate_eta_and_latest_return():
    stream = io.StringIO()
    logger = MetricsLogger(total_steps=1000, stream=stream, print_every=0.0)
    logger.log(100, {EPISODE_RETURN: 42.0, "loss/value": 0.5})
    logger.log(200, {"loss/value": 0.25})  # the return is carried over from the record before
    logger.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("step 200/1,000 | ") and "steps/s" in lines[1] and "ETA" in lines[1]
    assert "episode_return 42" in lines[1] and "value 0.25" in lines[1]


def test_compact_lines_are_rate_limited():
    stream = io.StringIO()
    with MetricsLogger(total_steps=1000, stream=stream, print_every=3600) as logger:
        for step in range(1, 50):
            logger.log(step, {EPISODE_RETURN: 1.0})
    assert len(stream.getvalue().splitlines()) == 1


def test_live_progress_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    with MetricsLogger(total_steps=1000, stream=stream) as logger:
        assert logger._bar is not None  # picked because the stream is a terminal
        logger.log(500, {EPISODE_RETURN: 123.0})
    output = stream.getvalue()
    assert "500/1000" in output and "steps/s" in output and "ETA" in output and "episode_return 123" in output


def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricsLogger(tmp_path, quiet=True, tensorboard=True) as logger:
        logger.log(8, {EPISODE_RETURN: 9.0})
        logger.log(16, {EPISODE_RETURN: 11.0, "loss/policy": 0.5})
    event_dir = tmp_path / metrics.TENSORBOARD_DIRNAME
    assert list(event_dir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(event_dir))
    events.Reload()
    returns = events.Scalars(EPISODE_RETURN)
    assert [(e.step, e.value) for e in returns] == [(8, 9.0), (16, 11.0)]
    assert "time/steps_per_second" in events.Tags()["scalars"]


def test_tensorboard_needs_a_run_dir():
    with pytest.raises(ValueError, match="run_dir"):
        MetricsLogger(quiet=True, tensorboard=True)


def test_set_defaults_turns_tensorboard_on(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.setattr(metrics, "_defaults", dict(metrics._defaults))
    metrics.set_defaults(tensorboard=True)
    with MetricsLogger(tmp_path, quiet=True) as logger:
        logger.log(1, {EPISODE_RETURN: 1.0})
    assert list((tmp_path / metrics.TENSORBOARD_DIRNAME).glob("events.out.tfevents.*"))


def test_wandb_missing_warns_once_and_logs_on(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ModuleNotFoundError
    monkeypatch.setattr(metrics, "_warned", set())
    with pytest.warns(RuntimeWarning, match="wandb is not installed"):
        logger = MetricsLogger(tmp_path, quiet=True, wandb_project="rlcode-test")
    logger.log(1, {EPISODE_RETURN: 1.0})
    logger.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MetricsLogger(tmp_path, quiet=True, wandb_project="rlcode-test").close()  # no second warning
    assert len(read_metrics(tmp_path)) == 1


def test_wandb_hook_opens_logs_and_finishes_a_run(tmp_path, monkeypatch):
    calls: list[tuple] = []

    class FakeRun:
        def log(self, data, step):
            calls.append(("log", data, step))

        def finish(self):
            calls.append(("finish",))

    def init(**kwargs):
        calls.append(("init", kwargs))
        return FakeRun()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    with MetricsLogger(
        tmp_path / "run-1", quiet=True, wandb_project="proj", config={"gamma": 0.99}
    ) as logger:
        logger.log(5, {EPISODE_RETURN: 3.0})
    (_, init_kwargs), (_, data, step), (finish,) = calls
    assert init_kwargs["project"] == "proj" and init_kwargs["name"] == "run-1"
    assert init_kwargs["config"] == {"gamma": 0.99}
    assert step == 5 and data[EPISODE_RETURN] == 3.0 and finish == "finish"

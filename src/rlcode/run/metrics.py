"""One logger for every training loop: progress on the console, JSONL, TensorBoard, Weights & Biases.

Training loops call ``logger.log(step, {"name": value, ...})`` with plain floats, using the names
of ``VOCABULARY`` so that every env algorithm logs the same keys (the RLHF trainer keeps TRL's).
The logger adds ``time/steps_per_second`` and appends every record to ``run_dir/metrics.jsonl``.
On a terminal it shows a live rich progress bar (steps/s, ETA, latest return); elsewhere a compact
line every ``print_every`` seconds; nothing when ``quiet``. TensorBoard event files go to
``run_dir/tensorboard`` when asked (``pip install 'rlcode[tensorboard]'``); a W&B run is opened when
``wandb_project`` is given and wandb is installed, and skipped with one warning otherwise.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from rlcode.extras import install_command, require
from rlcode.run.atomic import write_text_atomic

EPISODE_RETURN = "rollout/episode_return"
VOCABULARY: dict[str, str] = {
    EPISODE_RETURN: "mean undiscounted return of the episodes that ended since the last record",
    "rollout/episode_length": "mean length of those episodes",
    "loss/policy": "policy-gradient (or clipped surrogate) loss",
    "loss/value": "value-function loss",
    "loss/entropy": "entropy bonus term (mean policy entropy)",
    "policy/approx_kl": "approximate KL(old || new) of the update",
    "policy/clip_fraction": "fraction of samples whose ratio was clipped",
    "value/explained_variance": "1 - Var(returns - values) / Var(returns)",
    "time/steps_per_second": "env steps per wall-clock second since the start (added by the logger)",
    "time/elapsed": "seconds since the logger started (added by the logger)",
}
TENSORBOARD_DIRNAME = "tensorboard"

_defaults: dict[str, Any] = {"tensorboard": False, "wandb_project": None}
_warned: set[str] = set()


def set_defaults(*, tensorboard: bool | None = None, wandb_project: str | None = None) -> None:
    """Process-wide defaults for loggers built without these arguments (``rlcode train --tensorboard``)."""
    if tensorboard is not None:
        _defaults["tensorboard"] = tensorboard
    if wandb_project is not None:
        _defaults["wandb_project"] = wandb_project or None


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _short(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e5 or not math.isfinite(value):
        return f"{value:.4g}"
    return f"{value:.3e}"


def _tensorboard_writer(run_dir: Path | None) -> Any:
    if run_dir is None:
        raise ValueError("tensorboard=True needs a run_dir to write event files into; pass run_dir.")
    require("tensorboard", "tensorboard")
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIRNAME))


def _wandb_run(project: str, run_dir: Path | None, config: Mapping[str, Any] | None,
               init_kwargs: Mapping[str, Any] | None = None) -> Any:
    try:
        import wandb
    except ModuleNotFoundError:
        _warn_once("wandb", "wandb_project was given but wandb is not installed; not logging to W&B "
                   f"(install it with: {install_command('wandb')}).")
        return None
    settings: dict[str, Any] = {
        "project": project,
        "name": run_dir.name if run_dir is not None else None,
        "dir": str(run_dir) if run_dir is not None else None,
        "config": dict(config) if config is not None else None,
    }
    return wandb.init(**(settings | dict(init_kwargs or {})))


class _RichBar:
    """A rich progress bar with the logger's own steps/s, ETA and latest shown values."""

    def __init__(self, stream: TextIO, total: int | None, description: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        console = Console(file=stream, force_terminal=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[info]}"),
            console=console,
            refresh_per_second=4,
        )
        self.task = self.progress.add_task(description, total=total, rate="", eta="", info="")
        self.progress.start()

    def update(self, step: int, rate: str, eta: str, info: str) -> None:
        self.progress.update(self.task, completed=step, rate=rate, eta=eta, info=info)

    def print(self, line: str) -> None:
        self.progress.console.print(line, highlight=False, markup=False)

    def close(self) -> None:
        self.progress.stop()


class MetricsLogger:
    """Collects ``dict[str, float]`` records; shows progress, writes JSONL (+ TensorBoard, W&B)."""

    def __init__(
        self,
        run_dir: str | Path | None = None,
        total_steps: int | None = None,
        quiet: bool = False,
        print_every: float = 2.0,
        stream: TextIO | None = None,
        show: tuple[str, ...] = (),
        *,
        tensorboard: bool | None = None,
        wandb_project: str | None = None,
        config: Mapping[str, Any] | None = None,
        progress_bar: bool | None = None,
        description: str = "train",
        wandb_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """``progress_bar`` None picks the live bar when ``stream`` is a terminal; ``config`` goes to W&B, and
        ``wandb_kwargs`` to ``wandb.init`` (over the project, name, dir and config chosen here)."""
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.total_steps = total_steps
        self.quiet = quiet
        self.print_every = print_every
        self.stream = stream or sys.stdout
        self.show = show
        self.start = time.perf_counter()
        self._last_print = -math.inf
        self._file = None
        self.history: list[dict[str, float]] = []
        self.latest: dict[str, float] = {}  # last value of every key, kept across records
        tensorboard = _defaults["tensorboard"] if tensorboard is None else tensorboard
        wandb_project = wandb_project or _defaults["wandb_project"]
        self._tensorboard = _tensorboard_writer(self.run_dir) if tensorboard else None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        self._wandb = _wandb_run(wandb_project, self.run_dir, config, wandb_kwargs) if wandb_project else None
        if progress_bar is None:
            progress_bar = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = _RichBar(self.stream, total_steps, description) if progress_bar and not quiet else None

    def log(self, step: int, metrics: Mapping[str, float], force_print: bool = False) -> dict[str, float]:
        elapsed = time.perf_counter() - self.start
        record: dict[str, float] = {"step": float(step), "time/elapsed": elapsed}
        record["time/steps_per_second"] = step / elapsed if elapsed > 0 else 0.0
        record.update({k: float(v) for k, v in metrics.items()})
        self.history.append(record)
        self.latest.update(record)
        if self._file is not None:
            self._file.write(json.dumps(record, allow_nan=True) + "\n")
        if self._tensorboard is not None:
            for key, value in record.items():
                if key != "step":
                    self._tensorboard.add_scalar(key, value, global_step=step)
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in record.items() if k != "step"}, step=step)
        if not self.quiet:
            self._show_progress(step, record, force_print)
        return record

    def log_histograms(self, step: int, arrays: Mapping[str, Any]) -> None:
        """Distributions (1-D arrays) as TensorBoard and W&B histograms; the JSONL file keeps scalars only."""
        if self._tensorboard is not None:
            for key, values in arrays.items():
                self._tensorboard.add_histogram(key, values, global_step=step)
        if self._wandb is not None:
            import wandb

            self._wandb.log({key: wandb.Histogram(values) for key, values in arrays.items()}, step=step)

    def log_table(self, step: int, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table (e.g. sampled texts and their rewards): one JSON line per row in ``run_dir/{name}.jsonl``,
        a markdown table as TensorBoard text, a ``wandb.Table`` in W&B."""
        if self._file is not None and self.run_dir is not None:
            with open(self.run_dir / f"{name}.jsonl", "a") as handle:
                for row in rows:
                    handle.write(json.dumps({"step": step, **dict(zip(columns, row))}, default=str) + "\n")
        if self._tensorboard is not None:
            def cell(value: Any) -> str:
                return str(value).replace("|", "\\|").replace("\n", " ")

            lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
            self._tensorboard.add_text(name, "\n".join(lines), global_step=step)
        if self._wandb is not None:
            import wandb

            self._wandb.log({name: wandb.Table(columns=list(columns), rows=[list(r) for r in rows])}, step=step)

    def _show_progress(self, step: int, record: dict[str, float], force_print: bool) -> None:
        if self._bar is not None:
            rate = record["time/steps_per_second"]
            values = self._values_text(limit=2)  # an 80-column terminal fits two
            self._bar.update(step, f"{rate:,.0f} steps/s", self._eta(step, rate), values)
            if force_print:
                self._bar.print(self.progress_line(step, record))
            return
        now = time.perf_counter()
        if force_print or now - self._last_print >= self.print_every:
            self._last_print = now
            self.stream.write(self.progress_line(step, record) + "\n")
            self.stream.flush()

    def _eta(self, step: int, rate: float) -> str:
        if self.total_steps and rate > 0:
            return f"ETA {format_duration(max(0, self.total_steps - step) / rate)}"
        return ""

    def _shown_keys(self, limit: int = 4) -> tuple[str, ...]:
        if self.show:
            return self.show[:limit]
        keys = [k for k in self.latest if not k.startswith("time/") and k != "step"]
        if EPISODE_RETURN in keys:  # the number a user watches first
            keys.remove(EPISODE_RETURN)
            keys.insert(0, EPISODE_RETURN)
        return tuple(keys[:limit])

    def _values_text(self, limit: int = 4) -> str:
        keys = self._shown_keys(limit)
        return " | ".join(f"{k.split('/')[-1]} {_short(self.latest[k])}" for k in keys if k in self.latest)

    def progress_line(self, step: int, record: dict[str, Any]) -> str:
        rate = record["time/steps_per_second"]
        parts = [f"step {step:,}" + (f"/{self.total_steps:,}" if self.total_steps else "")]
        parts.append(f"{rate:,.0f} steps/s")
        if eta := self._eta(step, rate):
            parts.append(eta)
        if values := self._values_text():
            parts.append(values)
        return " | ".join(parts)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def output_names() -> tuple[str, ...]:
    """Entries of a run directory that a logger built with the process-wide defaults writes."""
    names = ["metrics.jsonl"]
    if _defaults["tensorboard"]:
        names.append(TENSORBOARD_DIRNAME)
    if _defaults["wandb_project"]:
        names.append("wandb")  # wandb.init(dir=run_dir) keeps its files in run_dir/wandb
    return tuple(names)


def truncate_metrics(run_dir: str | Path, last_step: float) -> None:
    """Before a resume: drop records logged after the checkpoint (and a line torn by a kill).

    The resumed run logs those steps again, so without this the file would hold them twice.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    steps = [_step_of(line) for line in lines]
    kept = [line for line, step in zip(lines, steps) if step is not None and step <= last_step]
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(line + "\n" for line in kept))


def _step_of(line: str) -> float | None:
    try:
        record = json.loads(line)
        return float(record["step"])
    except (ValueError, KeyError, TypeError):
        return None


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """Read every record of ``run_dir/metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]

"""One logger for every training loop: a compact progress line, JSONL in the run directory.

Training loops call ``logger.log(step, {"name": value, ...})`` with plain floats; the logger adds
``time/steps_per_second`` and the ETA, prints at most one progress line every ``print_every``
seconds (never when ``quiet``), and appends every record to ``run_dir/metrics.jsonl``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _short(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


class MetricsLogger:
    """Collects ``dict[str, float]`` records; prints progress and writes JSONL."""

    def __init__(
        self,
        run_dir: str | Path | None = None,
        total_steps: int | None = None,
        quiet: bool = False,
        print_every: float = 2.0,
        stream: TextIO | None = None,
        show: tuple[str, ...] = (),
    ) -> None:
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
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.run_dir / "metrics.jsonl", "a", buffering=1)

    def log(self, step: int, metrics: dict[str, float], force_print: bool = False) -> dict[str, float]:
        elapsed = time.perf_counter() - self.start
        record: dict[str, float] = {"step": float(step), "time/elapsed": elapsed}
        record["time/steps_per_second"] = step / elapsed if elapsed > 0 else 0.0
        record.update({k: float(v) for k, v in metrics.items()})
        self.history.append(record)
        if self._file is not None:
            self._file.write(json.dumps(record, allow_nan=True) + "\n")
        now = time.perf_counter()
        if not self.quiet and (force_print or now - self._last_print >= self.print_every):
            self._last_print = now
            self.stream.write(self.progress_line(step, record) + "\n")
            self.stream.flush()
        return record

    def progress_line(self, step: int, record: dict[str, Any]) -> str:
        rate = record["time/steps_per_second"]
        parts = [f"step {step:,}" + (f"/{self.total_steps:,}" if self.total_steps else "")]
        parts.append(f"{rate:,.0f} steps/s")
        if self.total_steps and rate > 0:
            parts.append(f"ETA {format_duration((self.total_steps - step) / rate)}")
        keys = self.show or tuple(k for k in record if not k.startswith("time/") and k != "step")[:4]
        parts += [f"{k.split('/')[-1]} {_short(record[k])}" for k in keys if k in record]
        return " | ".join(parts)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """Read every record of ``run_dir/metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]

"""What the two-venv benchmarks share: run one side in its own process, and describe the machine.

Each side (TRL's in its venv, rlcode's in this one) runs as ``python SCRIPT --side ...`` in a fresh
process, so its peak RSS is its own, and prints its measurements as JSON on its last line.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def run_side(command: list[str], label: str, environment: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``command`` and return the JSON object on the last line of its output (or fail naming ``label``)."""
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise RuntimeError(f"{label} side failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo (and lscpu) gives it, else what platform knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_meta(start_load: float, **settings: Any) -> dict[str, Any]:
    """The machine and the run's settings, for a benchmark's ``--out`` JSON."""
    import torch

    return {"machine": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "load_average_start": start_load, "load_average_end": os.getloadavg(), **settings}

"""GRPOTrainer.step() against TRL 1.16.0's GRPOTrainer/RLOOTrainer themselves, in TRL's own venv.

benchmarks/grpo_parity.py runs TRL's ``_generate_and_score_completions`` and ``compute_loss`` on stored
completions (only the sampling is replaced) and rlcode's ``step()`` on the same weights, then compares.
The venv (benchmarks/trl_env.py --trl 1.16) is built from PyPI on first use (a few minutes) and reused
while benchmarks/requirements-trl116.txt is unchanged; the test skips, saying why, when it cannot be
built, or when RLCODE_SKIP_TRL=1.

Tolerances, float32 (observed on x86 CPUs: at most 5e-7 everywhere):
advantages, per-token log-probs and losses 1e-5 absolute (the values are O(1)); gradients 1e-5 of the
largest |TRL gradient|; weights after training 1e-5 of TRL's largest weight update; the clipped
fraction of every step equal (1e-6).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("RLCODE_SKIP_TRL") == "1", reason="RLCODE_SKIP_TRL=1: TRL venv not wanted"),
]

VALUE_TOLERANCE, RELATIVE_TOLERANCE = 1e-5, 1e-5


@pytest.fixture(scope="module")
def trl_python():
    from trl_env import ensure_trl_venv, smoke_test

    try:
        python = ensure_trl_venv(quiet=True, trl="1.16")
    except RuntimeError as error:  # no PyPI: nothing to compare with
        pytest.skip(f"the TRL 1.16 venv could not be built: {str(error)[-300:]}")
    assert "GRPOTrainer took 1 step" in smoke_test(python, trl="1.16")
    return python


def scenarios() -> list[str]:
    from grpo_parity import SCENARIOS

    return list(SCENARIOS)


@pytest.mark.parametrize("scenario", scenarios())
def test_step_matches_trl_116(trl_python, scenario, tmp_path):
    from grpo_parity import run_scenario

    report = run_scenario(scenario, trl_python, tmp_path)
    for key in ("advantages", "log_probs", "loss"):
        assert report[key]["abs"] < VALUE_TOLERANCE, (key, report[key])
    for key in ("gradients", "weights"):
        assert report[key]["rel"] < RELATIVE_TOLERANCE, (key, report[key])
    assert report["weights"]["moved_by_trl"] > 1e-3, "the comparison is empty unless training moved the weights"
    assert report["clip_region"]["abs"] < 1e-6, report["clip_region"]
    settings = report["settings"]
    expected_steps = settings["num_iterations"] * settings["optimizer_steps"]
    assert report["optimizer_steps"] == expected_steps
    if expected_steps > 1:  # off-policy steps: the clipping (epsilon, epsilon_high, GSPO, RLOO) is exercised
        assert max(report["clip_region"]["trl"]) > 0.05, report["clip_region"]

"""The exactly solvable LLM task: exact quantities against loops, sampling against exact probabilities, runs, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rlcode.cli.app import main
from rlcode.rlhf import optimum
from rlcode.rlhf.optimum_runs import _sample, _trainer, exact_state, response_indices, train

BETA = optimum.DEFAULT_BETA


@pytest.fixture(scope="module")
def exact() -> dict:
    return exact_state(BETA)


def test_sequence_log_probs_equal_a_token_by_token_loop(exact: dict) -> None:
    model = optimum.reference_model()
    for p, prompt in enumerate(optimum.PROMPTS):
        for n in (0, 7, 62, 124):
            tokens, total = list(prompt), 0.0
            for token in exact["responses"][n].tolist():
                with torch.no_grad():
                    logits = model.pretrained_model(input_ids=torch.tensor([tokens])).logits[0, -1]
                total += float(logits.log_softmax(-1)[token])
                tokens.append(token)
            assert exact["ref_log_probs"][p, n].item() == pytest.approx(total, abs=1e-5)
    assert torch.allclose(exact["ref_log_probs"].exp().sum(-1), torch.ones(len(optimum.PROMPTS)), atol=1e-5)


def test_rewards_by_a_loop(exact: dict) -> None:
    for p, prompt in enumerate(optimum.PROMPTS):
        for n, response in enumerate(exact["responses"].tolist()):
            expected = (1.0 if prompt[-1] in response else 0.0) + (0.5 if response[0] == response[-1] else 0.0)
            assert exact["rewards"][p, n].item() == expected


def test_optimum_by_brute_force(exact: dict) -> None:
    ref, rewards = exact["ref_log_probs"].double(), exact["rewards"].double()
    best = optimum.optimal_log_probs(ref, rewards, BETA)
    # J* from its closed form equals J(π*) summed by hand, and J(π_ref) is the mean reward under π_ref
    by_hand = sum(sum(math.exp(lp) * (r - BETA * (lp - q)) for lp, r, q in zip(best[p].tolist(), rewards[p].tolist(),
                                                                             ref[p].tolist())) for p in range(len(ref)))
    assert optimum.optimal_value(ref, rewards, BETA) == pytest.approx(by_hand / len(ref), abs=1e-9)
    assert exact["reference"] == pytest.approx(float((ref.exp() * rewards).sum(-1).mean()), abs=1e-6)
    # the optimum is not one response, and the KL term matters: π* is not the reward's argmax
    assert best.exp().max() < 0.5 and exact["optimum"] - exact["reference"] > 0.1
    # any perturbation of π* lowers J, by β·KL(π ‖ π*) exactly
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        other = (best + 0.3 * torch.randn(best.shape, generator=generator, dtype=best.dtype)).log_softmax(-1)
        value = optimum.kl_objective(other, ref, rewards, BETA)
        kl = float((other.exp() * (other - best)).sum(-1).mean())
        assert value < optimum.optimal_value(ref, rewards, BETA)
        assert optimum.optimal_value(ref, rewards, BETA) - value == pytest.approx(BETA * kl, rel=1e-6)
    assert optimum.gap_percent(1.0, 0.5, 0.5) == 100.0 and optimum.gap_percent(1.0, 1.0, 0.5) == 0.0


@pytest.mark.parametrize("algorithm", ["ppo", "rloo"])
def test_generate_samples_the_exact_distribution(exact: dict, algorithm: str) -> None:
    """Chi-square of 4·G·rounds responses from the trainer's generate() against exact π_ref (125 cells a prompt)."""
    trainer = _trainer(algorithm, BETA, 0, optimum.reference_model())
    rounds, counts = 8, torch.zeros_like(exact["ref_log_probs"])
    for _ in range(rounds):
        queries, responses = _sample(trainer, 64)
        assert all(len(r) == optimum.RESPONSE_LENGTH for r in responses)
        rows = torch.arange(len(optimum.PROMPTS)).repeat_interleave(64)
        counts.index_put_((rows, response_indices(torch.stack(responses))), torch.ones(len(rows)), accumulate=True)
    expected = exact["ref_log_probs"].exp() * counts.sum(-1, keepdim=True)                    # [P, N]
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    cells = counts.numel() - len(optimum.PROMPTS)  # degrees of freedom: 4 × (125 − 1) = 496
    # chi-square with 496 degrees of freedom: mean 496, sd sqrt(2·496) ≈ 31.5; 5 sd is far beyond chance
    assert chi_square < cells + 5 * math.sqrt(2 * cells), chi_square


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["ppo", "grpo", "rloo"])
def test_each_algorithm_reaches_the_optimum(exact: dict, algorithm: str) -> None:
    result = train(algorithm, BETA, exact=exact)
    assert len(result["gap_curve"]) == result["steps"]
    assert result["gap_percent"] < 5.0, result["gap_curve"][-10:]


def test_cli_runs_and_writes_the_curves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "optimum.json"
    assert main(["rlhf-optimum", "--algorithm", "rloo", "--steps", "2", "--out", str(out)]) == 0
    assert "rloo" in capsys.readouterr().out
    (result,) = json.loads(out.read_text())
    assert result["algorithm"] == "rloo" and len(result["gap_curve"]) == 2 and result["optimum"] > result["reference"]
    assert main(["rlhf-optimum", "--algorithm", "ppo", "--steps", "1", "--out", str(out)]) == 0  # its own file
    assert json.loads(out.read_text())[0]["algorithm"] == "ppo"


def test_cli_never_overwrites_a_file_it_did_not_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    assert main(["rlhf-optimum", "--algorithm", "rloo", "--steps", "1", "--out", str(notes)]) == 2
    assert "does not overwrite" in capsys.readouterr().err and notes.read_text() == '{"mine": 1}'


@pytest.mark.parametrize("argv", [["--beta", "0"], ["--beta", "nan"], ["--steps", "0"],
                                  ["--out", "no/such/folder/x.json"]])
def test_cli_bad_input_is_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rlhf-optimum", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlcode: error:") and len(err.strip().splitlines()) == 1 and "Traceback" not in err

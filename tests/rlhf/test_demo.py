"""The end-to-end RLHF demo: a pre-trained tiny GPT-2 learns to say positive words, KL stays bounded."""

from __future__ import annotations

import pytest

from rlcode.cli.app import main
from rlcode.rlhf import GRPOTrainer, PPOTrainer
from rlcode.rlhf.demo import load_policy, run_demo
from rlcode.rlhf.synthetic import NEGATIVE, POSITIVE, build_tokenizer, corpus, sentiment_reward


def test_reward_counts_positive_minus_negative_words():
    assert sentiment_reward("the food was good and great .") == 2.0
    assert sentiment_reward("the trip was bad but fun .") == 0.0
    assert sentiment_reward("awful awful") == -2.0
    assert sentiment_reward("") == 0.0


def test_tokenizer_round_trips_the_corpus(tmp_path):
    tokenizer = build_tokenizer()
    for line in corpus(50, seed=3):
        ids = tokenizer(line)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == line
    tokenizer.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded("the movie was good")["input_ids"] == tokenizer("the movie was good")["input_ids"]
    assert set(POSITIVE).isdisjoint(NEGATIVE)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rlhf-demo")
    return out, run_demo(out=out, quiet=True)


@pytest.mark.slow
def test_demo_reward_rises_with_bounded_kl(demo_run):
    out, rows = demo_run
    first, last = rows[0]["reward"], sum(row["reward"] for row in rows[-3:]) / 3
    assert last > first + 1.5, [round(row["reward"], 2) for row in rows]
    assert max(row["kl"] for row in rows) < 15.0, [round(row["kl"], 2) for row in rows]
    assert (out / "pretrained" / "config.json").is_file() and (out / "metrics.jsonl").is_file()


@pytest.mark.slow
def test_cli_demo_loads_any_saved_model_and_saves_a_resumable_trainer(demo_run, tmp_path, capsys):
    pretrained = demo_run[0] / "pretrained"
    code = main(["rlhf-demo", "--model", str(pretrained), "--out", str(tmp_path), "--steps", "2",
                 "--batch-size", "8", "--mini-batch-size", "4", "--response-length", "4"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "reward" in printed and "kl_coef" in printed and "trainer saved" in printed
    policy, tokenizer = load_policy(pretrained)
    trainer = PPOTrainer.load(tmp_path / "trainer", model=policy, tokenizer=tokenizer)
    assert trainer.current_step == 2


@pytest.mark.slow
@pytest.mark.parametrize("algorithm,rise", [("grpo", 1.5), ("rloo", 1.0)])
def test_grpo_and_rloo_demos_raise_the_reward(demo_run, tmp_path, algorithm, rise):
    rows = run_demo(out=tmp_path, model=str(demo_run[0] / "pretrained"), task="synthetic", algorithm=algorithm,
                    quiet=True)
    first, last = rows[0]["reward"], sum(row["reward"] for row in rows[-3:]) / 3
    assert last > first + rise, [round(row["reward"], 2) for row in rows]
    assert set(rows[0]) == {"step", "reward", "kl", "beta", "policy_loss", "reward_std", "seconds"}


@pytest.mark.slow
def test_cli_grpo_demo_saves_a_grpo_trainer(demo_run, tmp_path, capsys):
    pretrained = demo_run[0] / "pretrained"
    code = main(["rlhf-demo", "--algorithm", "rloo", "--model", str(pretrained), "--out", str(tmp_path), "--steps",
                 "2", "--batch-size", "8", "--mini-batch-size", "4", "--response-length", "4"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "RLOO on" in printed and "2 prompts x 4" in printed and "trainer saved" in printed
    policy, tokenizer = load_policy(pretrained)
    trainer = GRPOTrainer.load(tmp_path / "trainer", model=policy, tokenizer=tokenizer)
    assert trainer.current_step == 2 and trainer.config.algorithm == "rloo"


def test_cli_rejects_bad_arguments(capsys):
    assert main(["rlhf-demo", "--steps", "0"]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
    assert main(["rlhf-demo", "--algorithm", "grpo", "--batch-size", "6"]) == 2
    error = capsys.readouterr().err
    assert "multiple of 4" in error and len(error.strip().splitlines()) == 1


def test_saved_pretrained_directory_names_a_tokenizer_class_every_transformers_has(tmp_path):
    """transformers 5 writes "TokenizersBackend", which 4.x (TRL 0.11.4's stack) cannot load."""
    import json

    from transformers import AutoTokenizer

    from rlcode.rlhf.synthetic import make_pretrained

    path, losses = make_pretrained(tmp_path, steps=2)
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    settings = json.loads((path / "tokenizer_config.json").read_text())
    assert settings["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (path / "model.safetensors").is_file()
    loaded = AutoTokenizer.from_pretrained(path)
    assert loaded("the movie was good")["input_ids"] == build_tokenizer()("the movie was good")["input_ids"]



def test_next_token_loss_is_the_models_own_labels_loss():
    import torch

    from rlcode.rlhf.synthetic import build_model, corpus, next_token_loss

    tokenizer = build_tokenizer()
    model = build_model(tokenizer, n_layer=1, n_embd=16)
    windows = torch.tensor([tokenizer(line)["input_ids"][:4] for line in corpus(4, seed=1)])  # [4, 4]
    with torch.no_grad():
        expected = model(input_ids=windows, labels=windows).loss
        got = next_token_loss(model, windows)
    torch.testing.assert_close(got, expected)

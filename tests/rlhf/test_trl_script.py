"""A TRL-0.11-style sentiment PPO script runs on rlcode with only its import lines changed.

SCRIPT is such a script, written the way TRL 0.11's examples are (a datasets.Dataset of tokenized
prompts, the dict collator, per-query and list generation with a LengthSampler, step, log_stats,
save_pretrained). Its first line is the only rlcode-specific one: with ``from trl import ...`` and
``from trl.core import LengthSampler`` instead it is a TRL script. The model and tokenizer are the
project's offline tiny GPT-2 and word-level tokenizer (rlcode.rlhf.synthetic), saved to disk.
"""

import json
import runpy
import sys

import pytest
import torch

from .test_ppo_trainer import TRL_KEYS

IMPORTS = "from rlcode.rlhf import AutoModelForCausalLMWithValueHead, LengthSampler, PPOConfig, PPOTrainer\n"

SCRIPT = '''
import sys

import torch
from datasets import Dataset
from transformers import AutoTokenizer

PROMPTS = [f"{subject} {verb}" for subject in ("the movie", "the food", "the book", "this song")
           for verb in ("was", "is", "seems", "felt")]


def sentiment_reward(text):
    words = text.split()
    return float(sum(w in ("good", "great", "happy", "fun") for w in words) - sum(w in ("bad", "sad") for w in words))


model_path, log_dir, out_dir = sys.argv[1:4]
config = PPOConfig(model_name=model_path, learning_rate=1.41e-5, log_with="tensorboard", batch_size=8,
                   mini_batch_size=4, project_kwargs={"logging_dir": log_dir})

tokenizer = AutoTokenizer.from_pretrained(config.model_name)
tokenizer.pad_token = tokenizer.eos_token


def build_dataset(tokenizer):
    dataset = Dataset.from_dict({"review": PROMPTS[:16], "label": [1] * 16})

    def tokenize(sample):
        # the prompt starts with the bos token, which is the eos token here as in GPT-2
        sample["input_ids"] = [tokenizer.bos_token_id] + tokenizer.encode(sample["review"])
        sample["query"] = tokenizer.decode(sample["input_ids"])
        return sample

    dataset = dataset.map(tokenize)
    dataset.set_format(type="torch")
    return dataset


def collator(data):
    return dict((key, [d[key] for d in data]) for key in data[0])


dataset = build_dataset(tokenizer)
model = AutoModelForCausalLMWithValueHead.from_pretrained(config.model_name)
ref_model = AutoModelForCausalLMWithValueHead.from_pretrained(config.model_name)
ppo_trainer = PPOTrainer(config, model, ref_model, tokenizer, dataset=dataset, data_collator=collator)
device = ppo_trainer.accelerator.device

gen_kwargs = {"min_length": -1, "top_k": 0.0, "top_p": 1.0, "do_sample": True, "pad_token_id": tokenizer.eos_token_id}
output_length_sampler = LengthSampler(4, 8)
all_stats, generated = [], []

for epoch, batch in enumerate(ppo_trainer.dataloader):
    query_tensors = batch["input_ids"]
    response_tensors = []
    for query in query_tensors:
        gen_len = output_length_sampler()
        gen_kwargs["max_new_tokens"] = gen_len
        response = ppo_trainer.generate(query, **gen_kwargs)
        generated.append((query, response))
        response_tensors.append(response.squeeze()[-gen_len:])
    batch["response"] = [tokenizer.decode(r.squeeze()) for r in response_tensors]
    texts = [q + r for q, r in zip(batch["query"], batch["response"])]
    rewards = [torch.tensor(sentiment_reward(text)) for text in texts]
    stats = ppo_trainer.step(query_tensors, response_tensors, rewards)
    ppo_trainer.log_stats(stats, batch, rewards)
    all_stats.append(stats)

for batch in ppo_trainer.dataloader:  # the batched form
    query_tensors = batch["input_ids"]
    response_tensors = ppo_trainer.generate(query_tensors, return_prompt=False, length_sampler=output_length_sampler,
                                            **{k: v for k, v in gen_kwargs.items() if k != "max_new_tokens"})
    batch["response"] = tokenizer.batch_decode(response_tensors)
    rewards = [torch.tensor(sentiment_reward(r)) for r in batch["response"]]
    stats = ppo_trainer.step(query_tensors, response_tensors, rewards)
    ppo_trainer.log_stats(stats, batch, rewards)
    all_stats.append(stats)
    with_prompts = ppo_trainer.generate(query_tensors, max_new_tokens=4, do_sample=False)

model.save_pretrained(out_dir)
tokenizer.save_pretrained(out_dir)
'''


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from rlcode.rlhf.synthetic import build_model, build_tokenizer, portable_tokenizer_class

    directory = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    portable_tokenizer_class(directory)  # so that transformers 4.46 (TRL's venv) loads it too
    return directory


def test_a_trl_sentiment_script_runs_with_only_the_import_changed(saved_model, tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    pytest.importorskip("tensorboard")
    script = tmp_path / "ppo_sentiment.py"
    script.write_text(IMPORTS + SCRIPT)
    monkeypatch.setattr(sys, "argv", [str(script), str(saved_model), str(tmp_path / "logs"), str(tmp_path / "out")])
    torch.manual_seed(0)
    namespace = runpy.run_path(str(script), run_name="__main__")

    all_stats = namespace["all_stats"]
    assert len(all_stats) == 4  # 16 prompts, batches of 8, two passes
    for stats in all_stats:
        assert set(stats) == TRL_KEYS
    eos = namespace["tokenizer"].eos_token_id
    for query, response in namespace["generated"]:  # TRL's single form: [1, L], the prompt (with its eos) intact
        assert response.dim() == 2 and response.shape[0] == 1 and query[0] == eos
        assert torch.equal(response[0, : len(query)], query) and 1 <= response.shape[1] - len(query) <= 7
    for response in namespace["response_tensors"]:  # the batched form: response only, 4 to 7 new tokens
        assert 1 <= len(response) <= 7 and (len(response) >= 4 or response[-1] == eos)
    for query, full in zip(namespace["query_tensors"], namespace["with_prompts"]):
        assert torch.equal(full[: len(query)], query)  # TRL 0.11 would cut at the prompt's leading eos

    records = [json.loads(line) for line in (tmp_path / "logs" / "trl" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4] and all("env/reward_mean" in r for r in records)
    assert list((tmp_path / "logs" / "trl" / "tensorboard").iterdir())
    samples = (tmp_path / "logs" / "trl" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 32 and {"query", "response", "reward", "step"} <= set(json.loads(samples[0]))

    from rlcode.rlhf import AutoModelForCausalLMWithValueHead

    saved = AutoModelForCausalLMWithValueHead.from_pretrained(tmp_path / "out")
    trained = namespace["model"]
    assert torch.equal(saved.v_head.summary.weight, trained.v_head.summary.weight)
    original = AutoModelForCausalLMWithValueHead.from_pretrained(saved_model)
    moved = original.pretrained_model.transformer.h[0].mlp.c_fc.weight
    assert not torch.equal(saved.pretrained_model.transformer.h[0].mlp.c_fc.weight, moved)  # training happened


@pytest.mark.slow
@pytest.mark.skipif(__import__("os").environ.get("RLCODE_SKIP_TRL") == "1", reason="RLCODE_SKIP_TRL=1")
def test_the_same_script_with_trls_imports_runs_on_trl_0114(saved_model, tmp_path):
    """The other half of the claim: SCRIPT is a TRL script, not one that only rlcode accepts."""
    import os
    import subprocess
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from trl_env import ensure_trl_venv

    python = os.environ.get("RLCODE_TRL_PYTHON") or str(ensure_trl_venv(quiet=True))
    check = subprocess.run([python, "-c", "import datasets"], capture_output=True)
    if check.returncode:
        pytest.skip("the TRL venv has no datasets package")
    script = tmp_path / "ppo_sentiment_trl.py"
    trl_imports = ("from trl import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer\n"
                   "from trl.core import LengthSampler\n")
    script.write_text(trl_imports + SCRIPT + "print('steps', len(all_stats))\n")
    result = subprocess.run([python, str(script), str(saved_model), str(tmp_path / "logs"), str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "steps 4" in result.stdout

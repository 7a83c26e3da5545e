"""PPOTrainer's TRL 0.11 surface: constructor, dataloader, accelerator, scheduler, shared layers, generate."""

import json
import sys
import types

import pytest
import torch

from rlcode.rlhf import PPOConfig, PPOTrainer

from .conftest import make_batch, make_model


def rows(n, width=3):
    return [{"input_ids": torch.arange(3 + i, 3 + i + width), "query": f"q{i}", "extra": i} for i in range(n)]


def collator(data):
    return {key: [d[key] for d in data] for key in data[0]}


def test_constructor_takes_trls_positional_order():
    optimizer_model = make_model()
    optimizer = torch.optim.SGD(optimizer_model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), optimizer_model, None, None, rows(8), optimizer,
                         collator, None, scheduler)
    assert trainer.optimizer is optimizer and trainer.lr_scheduler is scheduler
    assert len(trainer.dataloader) == 2 and trainer.kl_ctl is trainer.kl_controller
    assert trainer.is_peft_model is False and trainer.is_distributed is False
    assert trainer.current_device == torch.device("cpu")
    with pytest.raises(ValueError, match="lr_scheduler"):
        PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), make_model(), lr_scheduler=object())


def test_a_backbone_without_lm_head_is_refused_before_any_work():
    from transformers import GPT2Model

    from .conftest import tiny_config

    with pytest.raises(TypeError, match="head"):
        PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), GPT2Model(tiny_config()))


def test_dataloader_batches_shuffles_and_drops_the_last_partial_batch():
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), make_model(), dataset=rows(10),
                         data_collator=collator)
    batches = list(trainer.dataloader)
    assert len(batches) == 2 and all(len(b["input_ids"]) == 4 for b in batches)
    seen = [q for b in batches for q in b["query"]]
    assert len(set(seen)) == 8 and seen != [f"q{i}" for i in range(8)]


def test_hf_dataset_loses_the_columns_the_model_does_not_take():
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_list([{"input_ids": [3, 4, 5], "query": "a b", "review": "x", "label": 1}] * 4)
    data.set_format("torch")
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), make_model(), dataset=data,
                         data_collator=collator)
    batch = next(iter(trainer.dataloader))
    assert set(batch) == {"input_ids", "query", "label"}
    kept = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2, remove_unused_columns=False), make_model(),
                      dataset=data, data_collator=collator)
    assert "review" in next(iter(kept.dataloader))


def test_bad_datasets_fail_at_construction():
    with pytest.raises(ValueError, match="input_ids"):
        PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), make_model(), dataset=[{"text": "a"}] * 8)
    with pytest.raises(ValueError, match="fewer than one batch"):
        PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), make_model(), dataset=rows(3))
    datasets = pytest.importorskip("datasets")
    with pytest.raises(ValueError, match="input_ids"):
        PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), make_model(),
                   dataset=datasets.Dataset.from_list([{"text": "a"}] * 8))


def test_no_dataset_means_no_dataloader_and_no_warning():
    """rlcode's own loop passes batches to step() itself; TRL 0.11's "No dataset is provided" warning is noise there."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), make_model())
    assert trainer.dataloader is None


def test_accelerator_in_one_process(capsys):
    model = make_model()
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), model)
    accelerator = trainer.accelerator
    assert (accelerator.num_processes, accelerator.process_index, accelerator.is_main_process) == (1, 0, True)
    assert accelerator.device == torch.device("cpu") and accelerator.unwrap_model(model) is model
    assert accelerator.gather(torch.tensor(2.0)).tolist() == [2.0]
    assert accelerator.gather_object(["a"]) == ["a"]
    accelerator.print("hello")
    accelerator.wait_for_everyone()
    assert capsys.readouterr().out == "hello\n"


def test_lr_scheduler_steps_once_per_step_after_the_rate_is_logged():
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2, ppo_epochs=2), model, optimizer=optimizer,
                         lr_scheduler=scheduler)
    queries, responses, scores = make_batch(4)
    rates = [trainer.step(queries, responses, scores)["ppo/learning_rate"] for _ in range(2)]
    assert rates == pytest.approx([1e-3, 5e-4]) and optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4)


def test_shared_layers_are_one_frozen_tensor_that_step_leaves_alone():
    model = make_model()
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2, learning_rate=1e-2), model, num_shared_layers=1)
    policy_layer = model.pretrained_model.transformer.h[0].mlp.c_fc.weight
    assert trainer.ref_model.pretrained_model.transformer.h[0].mlp.c_fc.weight is policy_layer
    shared_before = policy_layer.detach().clone()
    top = model.pretrained_model.transformer.h[1].mlp.c_fc.weight
    top_before = top.detach().clone()
    assert all(p is not policy_layer for p in trainer.parameters)  # the optimizer never sees it
    queries, responses, scores = make_batch(4)
    trainer.step(queries, responses, scores)
    assert torch.equal(policy_layer, shared_before) and not torch.equal(top, top_before)
    assert torch.equal(trainer.ref_model.pretrained_model.transformer.h[1].mlp.c_fc.weight, top_before)
    with pytest.warns(UserWarning, match="num_shared_layers is ignored"):
        PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), make_model(), make_model(), num_shared_layers=1)


def greedy(model, query, new_tokens):
    return model.pretrained_model.generate(query[None], max_new_tokens=new_tokens, do_sample=False, pad_token_id=0,
                                           eos_token_id=2)[0]


def test_generate_single_query_is_one_2d_generate_call_with_the_prompt():
    model = make_model(summary_dropout_prob=0.0)
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), model)
    query = torch.tensor([5, 9, 11])
    out = trainer.generate(query, max_new_tokens=5, do_sample=False)
    expected = greedy(model, query, 5)
    assert out.dim() == 2 and torch.equal(out[0], expected)
    assert torch.equal(trainer.generate(query, return_prompt=False, max_new_tokens=5, do_sample=False)[0],
                       expected[3:])
    assert trainer.generate(query, length_sampler=lambda: 2, do_sample=False).shape[1] <= 5
    with pytest.raises(ValueError, match="shape"):
        trainer.generate(query[None])
    with pytest.raises(ValueError, match="empty list"):
        trainer.generate([])


def test_generate_list_keeps_prompts_cuts_after_eos_and_returns_reference_responses():
    model = make_model(summary_dropout_prob=0.0)
    reference = make_model(seed=3, summary_dropout_prob=0.0)
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), model, reference)
    queries = [torch.tensor([5, 9, 11]), torch.tensor([7]), torch.tensor([3, 4, 5, 6, 8])]
    responses, ref_responses = trainer.generate(queries, batch_size=2, generate_ref_response=True, max_new_tokens=6,
                                                do_sample=False, eos_token_id=11)
    for query, response, ref_response in zip(queries, responses, ref_responses):
        for got, lm in ((response, model), (ref_response, reference)):
            alone = greedy(lm, query, 6)[len(query):]
            if (alone == 11).any():
                alone = alone[: int((alone == 11).nonzero()[0]) + 1]
            # the prompt [5, 9, 11] ends in this eos id: TRL would cut there; rlcode cuts in the response only
            assert torch.equal(got, torch.cat([query, alone]))
    padded = trainer.generate(queries, batch_size=3, remove_padding=False, return_prompt=False, max_new_tokens=6,
                              do_sample=False, eos_token_id=11)
    assert {len(r) for r in padded} == {6}


def test_log_stats_writes_scalars_and_a_samples_table_to_jsonl(tmp_path):
    config = PPOConfig(batch_size=4, mini_batch_size=2, log_with="jsonl", project_kwargs={"logging_dir": str(tmp_path)},
                       tracker_project_name="proj")
    trainer = PPOTrainer(config, make_model())
    queries, responses, scores = make_batch(4)
    stats = trainer.step(queries, responses, scores)
    batch = {"query": ["a", "b", "c", "d"], "response": ["w", "x", "y", "z"], "input_ids": queries}
    trainer.log_stats(stats, batch, scores)
    record = json.loads((tmp_path / "proj" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 1 and record["ppo/loss/total"] == pytest.approx(stats["ppo/loss/total"])
    assert record["env/reward_mean"] == pytest.approx(float(torch.stack(scores).mean()))
    assert "env/reward_std" in record and "objective/kl_dist" not in record  # arrays are not scalars
    samples = [json.loads(line) for line in (tmp_path / "proj" / "samples.jsonl").read_text().splitlines()]
    assert [s["query"] for s in samples] == ["a", "b", "c", "d"]
    assert samples[2]["reward"] == pytest.approx(float(scores[2])) and samples[2]["step"] == 1
    with pytest.raises(ValueError, match="not in the batch"):
        trainer.log_stats(stats, {"query": ["a"] * 4}, scores, columns_to_log=("query", "label"))
    with pytest.warns(UserWarning, match="game logs"):
        trainer.log_stats(stats, {"input_ids": queries}, scores)


def test_log_stats_to_tensorboard_writes_event_files_with_scalars_and_text(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = PPOConfig(batch_size=4, mini_batch_size=2, log_with="tensorboard",
                       project_kwargs={"logging_dir": str(tmp_path)})
    trainer = PPOTrainer(config, make_model())
    queries, responses, scores = make_batch(4)
    stats = trainer.step(queries, responses, scores)
    trainer.log_stats(stats, {"query": list("abcd"), "response": list("wxyz")}, scores)
    trainer._logger.close()
    events = EventAccumulator(str(tmp_path / "trl" / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert "env/reward_mean" in tags["scalars"] and "ppo/loss/total" in tags["scalars"]
    assert "objective/kl_dist" in tags["histograms"]
    text = events.Tensors("samples/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| query | response | reward |" in text and "| a | w |" in text


def test_log_stats_to_a_fake_wandb_logs_a_table(monkeypatch, tmp_path):
    logged, inits = [], []

    class Run:
        def log(self, values, step=None):
            logged.append((step, values))

        def finish(self):
            pass

    fake = types.SimpleNamespace(init=lambda **kw: inits.append(kw) or Run(), Histogram=lambda v: ("hist", len(v)),
                                 Table=lambda columns, rows: ("table", columns, rows))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    config = PPOConfig(batch_size=4, mini_batch_size=2, log_with="wandb", tracker_project_name="p",
                       tracker_kwargs={"wandb": {"entity": "me"}}, project_kwargs={"logging_dir": str(tmp_path)})
    trainer = PPOTrainer(config, make_model())
    assert inits[0]["project"] == "p" and inits[0]["entity"] == "me"
    assert inits[0]["config"]["trl_ppo_trainer_config"]["batch_size"] == 4
    trainer.log_stats({"ppo/loss/total": 1.0}, {"query": list("abcd"), "response": list("wxyz")}, [1.0, 2, 3, 4])
    tables = [v["samples"] for _, v in logged if "samples" in v]
    assert tables == [("table", ["query", "response", "reward"],
                       [["a", "w", 1.0], ["b", "x", 2.0], ["c", "y", 3.0], ["d", "z", 4.0]])]
    assert any("env/reward_dist" in v for _, v in logged)

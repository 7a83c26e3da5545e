"""PPOTrainer's TRL phase methods against plain per-row loops, and step() built from them."""

import pytest
import torch

from rlcode.rlhf import PPOConfig, PPOTrainer

from .conftest import make_batch, make_model


def trainer_for(ref_model=None, **settings):
    config = dict(batch_size=4, mini_batch_size=2, seed=0) | settings
    return PPOTrainer(PPOConfig(**config), make_model(summary_dropout_prob=0.0), ref_model)


def test_prepare_model_inputs_right_pads_query_then_response():
    trainer = trainer_for()
    inputs = trainer.prepare_model_inputs([torch.tensor([5, 6]), torch.tensor([7])],
                                          [torch.tensor([8]), torch.tensor([9, 10, 11])])
    assert inputs["input_ids"].tolist() == [[5, 6, 8, 0], [7, 9, 10, 11]]
    assert inputs["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]


def test_batched_forward_pass_matches_one_forward_per_row():
    trainer = trainer_for()
    queries, responses, _ = make_batch(3)
    response_masks = [torch.ones(len(r), dtype=torch.long) for r in responses]
    response_masks[1][0] = 0
    inputs = trainer.prepare_model_inputs(queries, responses)
    with torch.no_grad():
        log_probs, logits, values, masks = trainer.batched_forward_pass(
            trainer.model, queries, responses, inputs, return_logits=True, response_masks=response_masks)
    width = inputs["input_ids"].shape[1]
    assert log_probs.shape == values.shape == masks.shape == (3, width - 1)
    assert logits.shape == (3, width - 1, trainer.model.vocab_size)
    lm = trainer.model.pretrained_model
    for row, (query, response) in enumerate(zip(queries, responses)):
        ids = torch.cat([query, response])[None]  # the row alone, no padding
        with torch.no_grad():
            out = lm(ids, output_hidden_states=True)
            row_values = trainer.model.v_head(out.hidden_states[-1])[0]
        n = ids.shape[1] - 1
        row_log_probs = out.logits[0, :-1].log_softmax(-1).gather(1, ids[0, 1:, None])[:, 0]
        torch.testing.assert_close(log_probs[row, :n], row_log_probs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(values[row, :n], row_values[:-1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits[row, :n], out.logits[0, :-1], atol=1e-5, rtol=1e-5)
        expected_mask = [0] * (width - 1)
        for t in range(len(query) - 1, len(query) - 1 + len(response)):  # position t predicts token t + 1
            expected_mask[t] = int(response_masks[row][t - len(query) + 1])
        assert masks[row].tolist() == expected_mask


def test_batched_forward_pass_accepts_left_padded_inputs():
    trainer = trainer_for()
    queries, responses = [torch.tensor([5, 6, 7]), torch.tensor([8])], [torch.tensor([9, 10]), torch.tensor([11])]
    ids = torch.tensor([[5, 6, 7, 9, 10], [0, 0, 0, 8, 11]])
    attention = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]])
    with torch.no_grad():
        _, _, _, masks = trainer.batched_forward_pass(trainer.model, queries, responses,
                                                      {"input_ids": ids, "attention_mask": attention})
    assert masks.tolist() == [[0, 0, 1, 1], [0, 0, 0, 1]]


def test_compute_rewards_is_minus_beta_kl_plus_the_score_on_the_last_masked_token():
    trainer = trainer_for(init_kl_coef=0.3)
    generator = torch.Generator().manual_seed(0)
    log_probs, ref_log_probs = torch.randn(2, 5, generator=generator), torch.randn(2, 5, generator=generator)
    masks = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 1, 1]])
    rewards, non_score, kls = trainer.compute_rewards([torch.tensor(2.0), torch.tensor(-1.0)], log_probs,
                                                      ref_log_probs, masks)
    for row, (score, last) in enumerate([(2.0, 2), (-1.0, 4)]):
        for t in range(5):
            kl = float(log_probs[row, t] - ref_log_probs[row, t])
            assert float(kls[row, t]) == pytest.approx(kl, abs=1e-6)
            assert float(non_score[row, t]) == pytest.approx(-0.3 * kl, abs=1e-6)
            assert float(rewards[row, t]) == pytest.approx(-0.3 * kl + (score if t == last else 0.0), abs=1e-6)


def test_compute_rewards_full_kl_takes_log_softmax_rows():
    trainer = trainer_for(kl_penalty="full", init_kl_coef=1.0)
    logits, ref_logits = torch.randn(1, 3, 6), torch.randn(1, 3, 6)
    _, _, kls = trainer.compute_rewards(torch.tensor([0.0]), logits.log_softmax(-1), ref_logits.log_softmax(-1),
                                        torch.ones(1, 3))
    p, q = logits.softmax(-1), ref_logits.softmax(-1)
    torch.testing.assert_close(kls, (p * (p.log() - q.log())).sum(-1), atol=1e-5, rtol=1e-5)


def test_compute_advantages_is_masked_gae_then_whitening():
    trainer = trainer_for(gamma=0.9, lam=0.8)
    generator = torch.Generator().manual_seed(1)
    values, rewards = torch.randn(2, 4, generator=generator), torch.randn(2, 4, generator=generator)
    mask = torch.tensor([[0.0, 1, 1, 1], [0, 1, 1, 0]])
    masked_values, advantages, returns = trainer.compute_advantages(values, rewards, mask)
    raw = torch.zeros(2, 4)
    for row in range(2):
        running = 0.0
        for t in reversed(range(4)):
            next_value = float(values[row, t + 1] * mask[row, t + 1]) if t < 3 else 0.0
            delta = float(rewards[row, t] * mask[row, t]) + 0.9 * next_value - float(values[row, t] * mask[row, t])
            running = delta + 0.9 * 0.8 * running
            raw[row, t] = running
    torch.testing.assert_close(masked_values, values * mask)
    torch.testing.assert_close(returns, raw + values * mask)
    kept = raw[mask > 0]
    torch.testing.assert_close(advantages[mask > 0], (kept - kept.mean()) / (kept.var() + 1e-8).sqrt())


def test_loss_matches_the_clipped_objectives_written_out():
    trainer = trainer_for(cliprange=0.2, cliprange_value=0.3, vf_coef=0.5)
    generator = torch.Generator().manual_seed(2)
    old, new = torch.randn(2, 3, generator=generator), torch.randn(2, 3, generator=generator)
    values, vpreds = torch.randn(2, 3, generator=generator), torch.randn(2, 3, generator=generator)
    advantages, returns = torch.randn(2, 3, generator=generator), torch.randn(2, 3, generator=generator)
    logits = torch.randn(2, 3, 7, generator=generator)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    policy_loss, value_part, stats = trainer.loss(old, values, logits, vpreds, new, mask, advantages, returns)
    cells = [(r, t) for r in range(2) for t in range(3) if mask[r, t]]
    pg, vf = [], []
    for r, t in cells:
        ratio = float((new[r, t] - old[r, t]).exp())
        a = float(advantages[r, t])
        pg.append(max(-a * ratio, -a * min(max(ratio, 0.8), 1.2)))
        clipped = min(max(float(vpreds[r, t]), float(values[r, t]) - 0.3), float(values[r, t]) + 0.3)
        vf.append(0.5 * max((float(vpreds[r, t]) - float(returns[r, t])) ** 2, (clipped - float(returns[r, t])) ** 2))
    assert float(policy_loss) == pytest.approx(sum(pg) / len(cells), rel=1e-5)
    assert float(value_part) == pytest.approx(0.5 * sum(vf) / len(cells), rel=1e-5)
    assert float(stats["loss/total"]) == pytest.approx(float(policy_loss + value_part), rel=1e-5)
    entropy = [float(-(logits[r, t].softmax(-1) * logits[r, t].log_softmax(-1)).sum()) for r, t in cells]
    assert float(stats["policy/entropy"]) == pytest.approx(sum(entropy) / len(cells), rel=1e-5)
    assert stats["policy/ratio"].shape == (2, 3) and len(stats) == 17


def test_loss_zeroes_a_minibatch_over_the_ratio_threshold():
    trainer = trainer_for(ratio_threshold=2.0)
    ones, mask = torch.ones(1, 2), torch.ones(1, 2)
    with pytest.warns(UserWarning, match="ratio_threshold"):
        policy_loss, value_part, _ = trainer.loss(ones * 0, ones, torch.zeros(1, 2, 3), ones * 3, ones * 5, mask,
                                                  ones, ones)
    assert float(policy_loss) == 0.0 and float(value_part) == 0.0


def test_step_runs_its_phases_and_agrees_with_them():
    queries, responses, scores = make_batch(4)
    phases = trainer_for(make_model(seed=1))  # a reference unlike the policy, so the KL is not 0
    inputs = phases.prepare_model_inputs(queries, responses)
    with torch.no_grad():
        log_probs, _, _, masks = phases.batched_forward_pass(phases.model, queries, responses, inputs)
        ref_log_probs, _, _, _ = phases.batched_forward_pass(phases.ref_model, queries, responses, inputs)
    _, non_score, kls = phases.compute_rewards(scores, log_probs, ref_log_probs, masks)
    stepped, calls = trainer_for(make_model(seed=1)), []
    for name in ("compute_rewards", "compute_advantages"):
        method = getattr(stepped, name)
        setattr(stepped, name, lambda *args, method=method, name=name: calls.append(name) or method(*args))
    stats = stepped.step(queries, responses, scores)
    assert calls == ["compute_rewards", "compute_advantages"]
    assert abs(stats["objective/kl"]) > 1e-3
    assert stats["objective/kl"] == pytest.approx(float((kls * masks).sum(1).mean()), abs=1e-6)
    expected_non_score = float((non_score * masks).sum() / masks.sum())
    assert stats["ppo/mean_non_score_reward"] == pytest.approx(expected_non_score, abs=1e-6)


# TRL's own compute_rewards / compute_advantages / loss, called unbound on a stand-in `self` that holds only what
# they read (config, kl_ctl, _kl_penalty), in TRL's venv (benchmarks/trl_env.py), on tensors saved here.
TRL_PHASES = """
import functools, sys, types, warnings
warnings.simplefilter("ignore")
from safetensors.torch import load_file, save_file
from trl import PPOConfig, PPOTrainer
t = load_file(sys.argv[1])
config = PPOConfig(gamma=0.9, lam=0.8, cliprange=0.2, cliprange_value=0.3, vf_coef=0.5, kl_penalty=sys.argv[3],
                   batch_size=2, mini_batch_size=2)
trainer = types.SimpleNamespace(config=config, kl_ctl=types.SimpleNamespace(value=0.3))
trainer._kl_penalty = functools.partial(PPOTrainer._kl_penalty, trainer)
rewards, non_score, kls = PPOTrainer.compute_rewards(trainer, t["scores"], t["log_probs"], t["ref_log_probs"], t["masks"])
values, advantages, returns = PPOTrainer.compute_advantages(trainer, t["values"], rewards, t["masks"])
policy_loss, value_part, stats = PPOTrainer.loss(trainer, t["old"], values, t["logits"], t["vpreds"], t["new"],
                                                 t["masks"], advantages, returns)
out = dict(rewards=rewards, non_score=non_score, kls=kls, values=values, advantages=advantages, returns=returns,
           policy_loss=policy_loss, value_part=value_part)
out.update({"stat/" + k: v.reshape(-1) for k, v in stats.items()})
save_file({k: v.detach().clone().contiguous() for k, v in out.items()}, sys.argv[2])
"""


@pytest.mark.slow
@pytest.mark.skipif(__import__("os").environ.get("RLCODE_SKIP_TRL") == "1", reason="RLCODE_SKIP_TRL=1")
@pytest.mark.parametrize("kind", ["kl", "abs"])
def test_phase_methods_equal_trl_0114s(tmp_path, kind):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file, save_file

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from trl_env import ensure_trl_venv

    python = os.environ.get("RLCODE_TRL_PYTHON") or str(ensure_trl_venv(quiet=True))
    generator = torch.Generator().manual_seed(3)
    inputs = {name: torch.randn(2, 6, generator=generator) for name in
              ("log_probs", "ref_log_probs", "values", "old", "new", "vpreds")}
    inputs |= {"scores": torch.tensor([1.5, -0.5]), "logits": torch.randn(2, 6, 9, generator=generator),
               "masks": torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]])}
    save_file(inputs, tmp_path / "in.safetensors")
    script = tmp_path / "trl_phases.py"
    script.write_text(TRL_PHASES)
    subprocess.run([python, str(script), str(tmp_path / "in.safetensors"), str(tmp_path / "out.safetensors"), kind],
                   check=True, timeout=300)
    trl = load_file(tmp_path / "out.safetensors")

    trainer = trainer_for(gamma=0.9, lam=0.8, cliprange=0.2, cliprange_value=0.3, vf_coef=0.5, init_kl_coef=0.3,
                          kl_penalty=kind)
    rewards, non_score, kls = trainer.compute_rewards(inputs["scores"], inputs["log_probs"], inputs["ref_log_probs"],
                                                      inputs["masks"])
    values, advantages, returns = trainer.compute_advantages(inputs["values"], rewards, inputs["masks"])
    policy_loss, value_part, stats = trainer.loss(inputs["old"], values, inputs["logits"], inputs["vpreds"],
                                                  inputs["new"], inputs["masks"], advantages, returns)
    ours = dict(rewards=rewards, non_score=non_score, kls=kls, values=values, advantages=advantages, returns=returns,
                policy_loss=policy_loss, value_part=value_part)
    ours |= {"stat/" + k: v.reshape(-1) for k, v in stats.items()}
    assert set(ours) == set(trl)
    for name, tensor in trl.items():
        torch.testing.assert_close(ours[name].float(), tensor.float(), atol=1e-5, rtol=1e-5, msg=name)

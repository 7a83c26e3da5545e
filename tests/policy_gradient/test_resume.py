"""Exact resume: N+M updates straight == N updates, save, load in a fresh process, M more. Bit for bit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from rlcode.policy_gradient.config import A2CConfig, PPOConfig
from rlcode.policy_gradient.train import train
from rlcode.run.checkpoints import load_checkpoint

CASES = {
    # natively vectorised CartPole, both normalisers on, several shuffled minibatches
    "ppo-cartpole": PPOConfig(num_envs=4, num_steps=16, minibatch_size=16, num_epochs=2, total_timesteps=4 * 16 * 7,
                              normalize_observations=True, normalize_rewards=True, seed=3),
    # SyncVectorEnv of a continuous env, RMSprop
    "a2c-pendulum": A2CConfig(env_id="Pendulum-v1", num_envs=3, num_steps=5, total_timesteps=3 * 5 * 9,
                              vector_mode="sync", normalize_observations=True, seed=4),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_in_a_fresh_process_is_bit_for_bit(tmp_path, case):
    config = CASES[case]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(config, run_dir=straight, quiet=True)
    train(config, run_dir=split, quiet=True, stop_after_updates=3)
    assert load_checkpoint(split).state["updates"] == 3
    script = textwrap.dedent(f"""
        from rlcode.policy_gradient.train import train
        train(None, run_dir={str(split)!r}, quiet=True, resume=True)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    a, b = load_checkpoint(straight, framework="torch"), load_checkpoint(split, framework="torch")
    assert a.state["updates"] == b.state["updates"] == config.num_updates
    for stem in ("model", "optimizer", "rng"):
        assert a.tensors[stem].keys() == b.tensors[stem].keys()
        for name, tensor in a.tensors[stem].items():
            assert torch.equal(tensor, b.tensors[stem][name]), f"{stem}/{name} differs after resume"
    for key in ("normalizer", "collector", "env"):
        assert a.state[key] == b.state[key], f"{key} differs after resume"
    assert a.state["result"]["mean_return"] == b.state["result"]["mean_return"]

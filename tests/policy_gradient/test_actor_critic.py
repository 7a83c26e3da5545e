"""The hand-written log-probabilities and entropies agree with torch.distributions."""

from __future__ import annotations

import pytest
import torch

from rlcode.policy_gradient.actor_critic import ActorCritic


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("shared_trunk", [False, True])
def test_evaluate_matches_torch_distributions(continuous, shared_trunk):
    torch.manual_seed(0)
    policy = ActorCritic(5, 3, continuous, hidden_sizes=(16, 16), activation="relu", shared_trunk=shared_trunk,
                         log_std_init=-0.5)
    observations = torch.randn(7, 5)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        actions = policy.act(observations, generator)
        log_probs, entropy, values = policy.evaluate(observations, actions)
        distribution, reference_values = policy(observations)
    torch.testing.assert_close(log_probs, distribution.log_prob(actions))
    torch.testing.assert_close(entropy, distribution.entropy())
    torch.testing.assert_close(values, reference_values)
    assert actions.shape == ((7, 3) if continuous else (7,))


def test_orthogonal_init_gains_and_shared_trunk_has_no_aliases():
    policy = ActorCritic(4, 2, False, shared_trunk=True)
    names = list(policy.state_dict())
    assert not any(name.startswith("critic_body") for name in names)
    head = policy.policy_head.weight
    # orthogonal rows scaled by 0.01: W Wᵀ = 0.01² I
    torch.testing.assert_close(head @ head.T, 1e-4 * torch.eye(2), atol=1e-9, rtol=0)


def test_deterministic_actions_are_the_mode():
    torch.manual_seed(0)
    policy = ActorCritic(4, 3, False)
    observations = torch.randn(6, 4)
    with torch.no_grad():
        assert torch.equal(policy.act(observations, deterministic=True), policy.policy_output(observations).argmax(-1))


def test_sampled_actions_follow_the_softmax():
    policy = ActorCritic(1, 3, False, orthogonal_init=False)
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.zero_()
        policy.policy_head.bias.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5])))
        actions = policy.act(torch.zeros(40_000, 1), torch.Generator().manual_seed(0))
    frequencies = torch.bincount(actions, minlength=3).float() / len(actions)
    torch.testing.assert_close(frequencies, torch.tensor([0.2, 0.3, 0.5]), atol=0.01, rtol=0)

"""RLHF tier: TRL 0.11's legacy ``PPOTrainer.step(queries, responses, scores)`` for causal LMs."""

from rlcode.rlhf.config import PPOConfig
from rlcode.rlhf.generation import generate_responses
from rlcode.rlhf.kl import AdaptiveKLController, FixedKLController, kl_penalty
from rlcode.rlhf.ppo_trainer import PPOTrainer, set_seed
from rlcode.rlhf.rewards import RunningMoments, processed_scores, token_advantages, token_rewards
from rlcode.rlhf.sequences import ResponseBatch, response_forward
from rlcode.rlhf.value_head import CausalLMWithValueHead, ValueHead

__all__ = [
    "AdaptiveKLController", "CausalLMWithValueHead", "FixedKLController", "PPOConfig", "PPOTrainer",
    "ResponseBatch", "RunningMoments", "ValueHead", "generate_responses", "kl_penalty", "processed_scores",
    "response_forward", "set_seed", "token_advantages", "token_rewards",
]

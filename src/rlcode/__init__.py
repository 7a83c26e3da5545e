"""rlcode: readable, verified and fast reinforcement learning, from a Q-table to PPO for language models."""

__version__ = "0.1.0"

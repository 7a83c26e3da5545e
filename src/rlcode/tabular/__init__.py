"""Tabular tier: Q-learning, SARSA and expected SARSA, checked against the exact optimum.

``config`` (dataclasses), ``td_learning`` (the one TD loop), ``fast`` (its numba kernels),
``planning`` (value iteration, finite-horizon optima), ``envs`` (env + transition table),
``train`` (train/evaluate/load_run). Nothing heavy is imported here.
"""

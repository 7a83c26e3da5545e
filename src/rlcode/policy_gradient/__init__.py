"""Policy-gradient tier: REINFORCE, A2C and PPO over gymnasium vector envs (Discrete and Box actions).

Import ``rlcode.policy_gradient.train`` for ``train``/``evaluate``; this package imports nothing heavy.
"""

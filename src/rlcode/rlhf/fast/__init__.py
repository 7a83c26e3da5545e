"""Speed settings of ``PPOTrainer.step``; none changes a result beyond float rounding.

* ``fused``: the model's Python tanh-GELU as one fused kernel during ``step()`` (``PPOConfig.fused_activations``, on by default).
* ``tied``: one gradient buffer for a tied input embedding / LM head (used by ``CausalLMWithValueHead``).
* ``allocator``: glibc malloc thresholds for the whole process (``PPOConfig.cpu_heap_cache``, off by default).
"""

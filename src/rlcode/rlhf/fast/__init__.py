"""Speed settings of ``PPOTrainer.step``; none changes a result beyond float rounding.

* ``fused``: the model's Python tanh-GELU as one fused kernel during ``step()`` (``PPOConfig.fused_activations``, on by default).
* ``onednn``: the model's linear layers through oneDNN's float32 matmul on CPU during ``step()`` and
  ``generate()`` (``PPOConfig.onednn_linear``, on by default; 2-3x MKL's speed on AMD Zen 5).
* ``lora``: plain LoRA layers without peft's per-call bookkeeping during ``step()`` and ``generate()``
  (always on: bit-identical to peft's forward).
* ``tied``: one gradient buffer for a tied input embedding / LM head (used by ``CausalLMWithValueHead``).
* ``allocator``: glibc malloc thresholds for the whole process (``PPOConfig.cpu_heap_cache``, off by default).
"""

import platform

import pytest

import rlcode.rlhf.ppo_trainer as ppo_trainer
from rlcode.rlhf import PPOConfig, PPOTrainer
from rlcode.rlhf.fast.allocator import keep_freed_memory

from .conftest import make_model


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_sets_the_glibc_thresholds():
    assert keep_freed_memory()
    assert keep_freed_memory()  # setting them again is harmless


@pytest.mark.parametrize("enabled", [True, False])
def test_trainer_keeps_freed_memory_only_when_configured(monkeypatch, enabled):
    calls = []
    monkeypatch.setattr(ppo_trainer, "keep_freed_memory", lambda: calls.append(1) or True)
    PPOTrainer(PPOConfig(batch_size=2, mini_batch_size=2, cpu_heap_cache=enabled), make_model())
    assert calls == ([1] if enabled else [])


def test_the_process_wide_heap_setting_is_off_unless_asked_for(monkeypatch):
    assert PPOConfig().cpu_heap_cache is False
    calls = []
    monkeypatch.setattr(ppo_trainer, "keep_freed_memory", lambda: calls.append(1) or True)
    PPOTrainer(PPOConfig(batch_size=2, mini_batch_size=2), make_model())
    assert calls == []

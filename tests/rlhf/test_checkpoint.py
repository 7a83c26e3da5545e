import pickle

import torch

from rlcode.rlhf import PPOConfig, PPOTrainer

from .conftest import assert_same_step, make_batch, make_model


def config():
    return PPOConfig(batch_size=4, mini_batch_size=2, learning_rate=1e-3, use_score_scaling=True,
                     use_score_norm=True, init_kl_coef=0.1, target=0.1, horizon=20.0, seed=3)


def test_resumed_trainer_makes_the_same_next_step(tmp_path, monkeypatch):
    batches = [make_batch(4, seed=s) for s in (1, 2, 3)]
    trainer = PPOTrainer(config(), make_model())
    trainer.step(*batches[0])
    trainer.step(*batches[1])
    trainer.save(tmp_path / "run")

    def no_pickle(*args, **kwargs):
        raise AssertionError("checkpoints must not unpickle")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    expected = trainer.step(*batches[2])
    torch.manual_seed(1234)  # the global RNGs are part of the checkpoint: disturb them
    import numpy as np

    np.random.seed(99)
    resumed = PPOTrainer.load(tmp_path / "run")
    assert resumed.current_step == 2
    assert_same_step(expected, resumed.step(*batches[2]), trainer.model, resumed.model)
    assert resumed.kl_controller.value == trainer.kl_controller.value
    assert resumed.score_moments.state_dict() == trainer.score_moments.state_dict()


def test_checkpoint_files_are_safetensors_and_json(tmp_path):
    trainer = PPOTrainer(config(), make_model())
    trainer.step(*make_batch(4))
    path = trainer.save(tmp_path)
    names = sorted(p.name for p in path.iterdir())
    assert names == ["config.json", "model.safetensors", "optimizer.safetensors", "ref_model.safetensors",
                     "rng.safetensors", "state.json"]


def test_a_trl_layout_model_resumes_exactly_as_its_own_class(tmp_path):
    """AutoModelForCausalLMWithValueHead.state_dict() drops the pretrained_model. prefix (TRL's layout); the
    checkpoint keeps nn.Module's layout for both classes and load() rebuilds the class that was saved."""
    import numpy as np
    from safetensors.torch import load_file

    from rlcode.rlhf.value_head import AutoModelForCausalLMWithValueHead

    batches = [make_batch(4, seed=s) for s in (1, 2)]
    trainer = PPOTrainer(config(), AutoModelForCausalLMWithValueHead(make_model().pretrained_model))
    trainer.step(*batches[0])
    path = trainer.save(tmp_path / "run")
    assert "pretrained_model.transformer.wte.weight" in load_file(str(path / "model.safetensors"))
    expected = trainer.step(*batches[1])
    resumed = PPOTrainer.load(tmp_path / "run")
    assert type(resumed.model) is AutoModelForCausalLMWithValueHead
    got = resumed.step(*batches[1])
    assert all(np.array_equal(np.asarray(v), np.asarray(got[k])) for k, v in expected.items() if "time/" not in k)
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_a_learning_rate_schedule_resumes_where_it_stopped(tmp_path):
    """TRL's lr_scheduler (stepped once per step()): load() restores its counters into the one passed in."""
    import pytest

    batches = [make_batch(4, seed=s) for s in (1, 2, 3)]

    def built(model):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))

    model = make_model()
    optimizer, scheduler = built(model)
    trainer = PPOTrainer(config(), model, optimizer=optimizer, lr_scheduler=scheduler)
    trainer.step(*batches[0])
    trainer.step(*batches[1])
    trainer.save(tmp_path / "run")
    expected = trainer.step(*batches[2])
    with pytest.raises(ValueError, match="lr_scheduler"):
        PPOTrainer.load(tmp_path / "run")
    model = make_model(seed=5)
    optimizer, scheduler = built(model)
    resumed = PPOTrainer.load(tmp_path / "run", model=model, optimizer=optimizer, lr_scheduler=scheduler)
    assert scheduler.last_epoch == 2 and optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 / 3)
    got = resumed.step(*batches[2])
    assert_same_step(expected, got, trainer.model, resumed.model)
    assert expected["ppo/learning_rate"] == got["ppo/learning_rate"] == pytest.approx(1e-3 / 3)


def test_a_reference_sharing_bottom_layers_resumes_exactly_and_still_shares(tmp_path):
    batches = [make_batch(4, seed=s) for s in (1, 2, 3)]
    trainer = PPOTrainer(config(), make_model(), num_shared_layers=1)
    trainer.step(*batches[0])
    trainer.save(tmp_path / "run")
    expected = trainer.step(*batches[1])
    resumed = PPOTrainer.load(tmp_path / "run")
    shared = resumed.model.pretrained_model.transformer.h[0].attn.c_attn.weight
    assert shared is resumed.ref_model.pretrained_model.transformer.h[0].attn.c_attn.weight
    assert resumed.model.pretrained_model.transformer.h[1].attn.c_attn.weight is not \
        resumed.ref_model.pretrained_model.transformer.h[1].attn.c_attn.weight
    assert_same_step(expected, resumed.step(*batches[1]), trainer.model, resumed.model)

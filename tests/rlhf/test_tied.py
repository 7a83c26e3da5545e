import torch

from rlcode.rlhf import PPOConfig, PPOTrainer
from rlcode.rlhf.fast.tied import tied_weight

from .conftest import make_batch, make_model


def _gradients(model, tied: bool, logits_in_loss: bool = True):
    model.tied_inputs = tied
    model.zero_grad(set_to_none=True)
    ids = torch.tensor([[3, 4, 3, 9, 3, 5], [7, 7, 8, 3, 1, 0]])  # repeated tokens: rows that sum several gradients
    attention = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    positions = torch.zeros(2, 6, dtype=torch.bool)
    positions[:, 2:5] = True
    logits, values = model.selected_outputs(ids, attention, positions)
    loss = values.sum() + (logits.log_softmax(-1)[:, 3].sum() if logits_in_loss else 0)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_tied_lookup_and_head_give_the_two_module_gradients():
    model = make_model().eval()
    assert tied_weight(model.pretrained_model) is model.pretrained_model.transformer.wte.weight
    assert model.tied_inputs
    for logits_in_loss in (True, False):  # without the head's part the lookup starts from zeros
        expected = _gradients(model, tied=False, logits_in_loss=logits_in_loss)
        tied = _gradients(model, tied=True, logits_in_loss=logits_in_loss)
        for name, gradient in expected.items():
            torch.testing.assert_close(tied[name], gradient, atol=1e-6, rtol=1e-6, msg=name)


def test_the_tied_inputs_check_is_dropout_proof():
    model = make_model(resid_pdrop=0.5, embd_pdrop=0.5).train()
    assert model.tied_inputs and model.pretrained_model.training


def test_untied_weights_take_the_plain_path():
    model = make_model(tie_word_embeddings=False)
    assert tied_weight(model.pretrained_model) is None and not model.tied_inputs


def test_step_with_the_tied_path_matches_the_plain_modules():
    queries, responses, scores = make_batch(8)
    results = []
    for tied in (False, True):
        model = make_model()
        model.tied_inputs = tied
        trainer = PPOTrainer(PPOConfig(batch_size=8, mini_batch_size=2, learning_rate=1e-3), model)
        for _ in range(2):
            trainer.step(queries, responses, scores)
        results.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
    # Adam divides by the gradient's scale, so a weight with a ~0 gradient may move by up to the learning
    # rate on rounding alone; a tenth of one Adam step bounds the rounding-level differences.
    for key, value in results[0].items():
        torch.testing.assert_close(results[1][key], value, atol=1e-4, rtol=0)

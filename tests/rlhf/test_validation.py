import pytest
import torch

from rlcode.rlhf import PPOConfig, PPOTrainer

from .conftest import make_batch, make_model


@pytest.fixture(scope="module")
def trainer():
    return PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), make_model())


def weights(trainer):
    return [p.detach().clone() for p in trainer.model.parameters()]


def bad_inputs():
    queries, responses, scores = make_batch(4)
    yield "length", (queries[:3], responses[:3], scores[:3]), "got 3 queries but expects PPOConfig.batch_size = 4"
    yield "responses length", (queries, responses[:2], scores), "got 2 responses"
    yield "scores length", (queries, responses, scores[:3]), "got 3 scores"
    yield "2-D query", ([queries[0][None]] + queries[1:], responses, scores), "queries\\[0\\] has shape"
    yield "not a list", (torch.stack([q[:1] for q in queries]), responses, scores), "must be a list"
    yield "float ids", (queries, [responses[0].float()] + responses[1:], scores), "integer token ids"
    yield "empty response", (queries, [responses[0][:0]] + responses[1:], scores), "responses\\[0\\] is empty"
    yield "vector score", (queries, responses, [torch.ones(2)] + scores[1:]), "scores\\[0\\] has shape"
    yield "nan score", (queries, responses, [torch.tensor(float("nan"))] + scores[1:]), "NaN or infinite"
    yield "inf score", (queries, responses, scores[:3] + [float("inf")]), "NaN or infinite"
    yield "id too large", ([torch.tensor([3, 50])] + queries[1:], responses, scores), "vocabulary is \\[0, 49\\]"
    yield "negative id", (queries, [torch.tensor([-1, 4])] + responses[1:], scores), "token ids range"


@pytest.mark.parametrize("case", list(bad_inputs()), ids=lambda case: case[0])
def test_bad_inputs_raise_before_any_weight_change(trainer, case):
    _, args, message = case
    before = weights(trainer)
    with pytest.raises(ValueError, match=message):
        trainer.step(*args)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(trainer)))
    assert trainer.current_step == 0


@pytest.mark.parametrize(
    ("masks", "message"),
    [
        ("wrong length", "response_masks\\[0\\] has shape"),
        ("all zero", "at least one 1"),
        ("too few", "list of 4"),
    ],
)
def test_bad_response_masks(trainer, masks, message):
    queries, responses, scores = make_batch(4)
    response_masks = [torch.ones(len(r)) for r in responses]
    if masks == "wrong length":
        response_masks[0] = torch.ones(len(responses[0]) + 1)
    elif masks == "all zero":
        response_masks[1] = torch.zeros(len(responses[1]))
    else:
        response_masks = response_masks[:2]
    before = weights(trainer)
    with pytest.raises(ValueError, match=message):
        trainer.step(queries, responses, scores, response_masks=response_masks)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(trainer)))


def test_scores_may_be_floats_one_element_tensors_or_a_vector(trainer):
    queries, responses, scores = make_batch(4)
    fresh = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=4, ppo_epochs=1), make_model())
    for form in ([float(s) for s in scores], [s.reshape(1) for s in scores], torch.stack(scores)):
        stats = fresh.step(queries, responses, form)
        assert stats["ppo/mean_scores"] == pytest.approx(float(torch.stack(scores).mean()), rel=1e-6)


def test_wrong_model_type_says_what_to_pass():
    with pytest.raises(TypeError, match="CausalLMWithValueHead"):
        PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=4), torch.nn.Linear(2, 2))


def test_a_single_trained_token_is_refused_before_any_state_changes():
    trainer = PPOTrainer(PPOConfig(batch_size=1, mini_batch_size=1, use_score_scaling=True), make_model())
    with pytest.raises(ValueError, match="at least 2"):
        trainer.step([torch.tensor([5, 6])], [torch.tensor([7])], [1.0])
    assert trainer.score_moments.count == 1e-24 and trainer.current_step == 0

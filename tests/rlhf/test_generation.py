import torch

from rlcode.rlhf import PPOConfig, PPOTrainer
from rlcode.rlhf.generation import _strip

from .conftest import make_model


def test_generate_equals_per_query_greedy_generation():
    model = make_model(summary_dropout_prob=0.0)
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=4), model)
    queries = [torch.tensor([5, 9, 11]), torch.tensor([7]), torch.tensor([3, 4, 5, 6, 8]), torch.tensor([10, 12])]
    kwargs = dict(max_new_tokens=6, do_sample=False)
    responses = trainer.generate(queries, return_prompt=False, **kwargs)
    for query, response in zip(queries, responses):
        alone = model.pretrained_model.generate(query[None], pad_token_id=0, eos_token_id=2, **kwargs)[0]
        alone = alone[len(query):]
        if (alone == 2).any():
            alone = alone[: int((alone == 2).nonzero()[0]) + 1]
        assert torch.equal(response, alone)
    with_prompt = trainer.generate(queries, batch_size=3, **kwargs)  # TRL's default keeps the prompt
    for query, response, full in zip(queries, responses, with_prompt):
        assert torch.equal(full, torch.cat([query, response]))
    single = trainer.generate(queries[0], return_prompt=False, **kwargs)  # TRL: [1, L], nothing cut
    assert single.shape[0] == 1 and torch.equal(single[0, : len(responses[0])], responses[0])
    again = trainer.generate(queries, return_prompt=False, pad_token_id=0, length_sampler=lambda: 6, do_sample=False)
    assert all(torch.equal(a, b) for a, b in zip(again, responses))


def test_strip_cuts_after_the_first_eos_and_drops_padding():
    eos = 2
    generated = torch.tensor([[5, 6, 2, 0, 0], [5, 2, 2, 2, 2], [7, 8, 9, 10, 11]])
    queries = [torch.tensor([1]), torch.tensor([1, 1]), torch.tensor([3])]
    rows = _strip(generated, queries, eos, return_prompt=False)
    assert [r.tolist() for r in rows] == [[5, 6, 2], [5, 2], [7, 8, 9, 10, 11]]
    rows = _strip(generated, queries, eos, return_prompt=True)
    assert rows[1].tolist() == [1, 1, 5, 2]


def test_inverse_cdf_sampler_draws_from_the_softmax_and_never_a_masked_token():
    from rlcode.rlhf.generation import InverseCdfSampler

    torch.manual_seed(0)
    logits = torch.tensor([2.0, 0.5, -float("inf"), 0.0, 1.0, -1.0])
    probs = torch.softmax(logits, -1)
    draws = 20000
    scores = InverseCdfSampler()(None, logits.expand(draws, -1).clone())
    assert ((scores == 0).sum(-1) == 1).all() and (scores[:, 2] == -float("inf")).all()
    counts = torch.bincount(scores.argmax(-1), minlength=6).double()
    expected = probs.double() * draws
    seen = expected > 0
    chi_square = float((((counts - expected) ** 2)[seen] / expected[seen]).sum())
    assert chi_square < 25.0  # 4 degrees of freedom: P(chi2 > 25) < 1e-4


def test_inverse_cdf_sampling_replaces_only_plain_sampling():
    from rlcode.rlhf.generation import inverse_cdf_sampling

    plain = inverse_cdf_sampling({"do_sample": True, "top_k": 0, "top_p": 1.0, "max_new_tokens": 4})
    assert plain["do_sample"] is False and plain["max_new_tokens"] == 4 and len(plain["logits_processor"]) == 1
    for kept in ({"do_sample": True, "top_k": 50}, {"do_sample": True, "temperature": 0.7}, {"do_sample": False},
                 {"do_sample": True, "num_beams": 2}):
        assert inverse_cdf_sampling(kept) == kept

import torch

from rlcode.rlhf import ResponseBatch, response_forward

from .conftest import make_batch, make_model


def naive_mask(queries, responses, response_masks, width):
    mask = torch.zeros(len(queries), width - 1)
    for row, (query, response) in enumerate(zip(queries, responses)):
        for i in range(len(response)):
            position = len(query) - 1 + i  # the logit at position p predicts token p+1
            mask[row, position] = 1.0 if response_masks is None else float(response_masks[row][i])
    return mask


def test_mask_covers_exactly_the_response_tokens():
    queries, responses, _ = make_batch(6)
    batch = ResponseBatch.pad(queries, responses, None, 0, "cpu")
    width = max(len(q) + len(r) for q, r in zip(queries, responses))
    assert batch.input_ids.shape == (6, width)
    assert torch.equal(batch.mask, naive_mask(queries, responses, None, width))
    for row, (query, response) in enumerate(zip(queries, responses)):
        length = len(query) + len(response)
        assert torch.equal(batch.input_ids[row, :length], torch.cat([query, response]))
        assert batch.attention_mask[row].sum() == length and batch.attention_mask[row, :length].all()
        labels = batch.input_ids[row, 1:][batch.mask[row] > 0]
        assert torch.equal(labels, response)


def test_response_masks_multiply_the_span():
    queries, responses, _ = make_batch(5)
    generator = torch.Generator().manual_seed(3)
    masks = [(torch.rand(len(r), generator=generator) > 0.4).long() for r in responses]
    for m in masks:
        m[0] = 1
    batch = ResponseBatch.pad(queries, responses, masks, 0, "cpu")
    width = batch.input_ids.shape[1]
    assert torch.equal(batch.mask, naive_mask(queries, responses, masks, width))


def test_rows_trim_padding():
    queries, responses, _ = make_batch(6)
    batch = ResponseBatch.pad(queries, responses, None, 0, "cpu")
    sub = batch.rows(batch.lengths.argsort()[:2])
    assert sub.input_ids.shape[1] == max(sub.lengths) < batch.input_ids.shape[1] or sub.size == 2


def test_response_forward_equals_log_softmax_of_the_full_logits():
    model = make_model().eval()
    queries, responses, _ = make_batch(4)
    batch = ResponseBatch.pad(queries, responses, None, 0, "cpu")
    with torch.no_grad():
        out = response_forward(model, batch, values=True, entropy=True, full=True)
        logits, values = model(batch.input_ids, batch.attention_mask)
    expected = []
    for row, (query, response) in enumerate(zip(queries, responses)):
        log_softmax = logits[row, len(query) - 1 : len(query) - 1 + len(response)].log_softmax(-1)
        expected.append(log_softmax.gather(1, response[:, None]).squeeze(1))
    torch.testing.assert_close(out.log_probs, torch.cat(expected), rtol=1e-5, atol=1e-5)
    positions = batch.mask > 0
    torch.testing.assert_close(out.values, values[:, :-1][positions], rtol=1e-5, atol=1e-5)
    probabilities = logits[:, :-1][positions].softmax(-1)
    entropy = -(probabilities * probabilities.log()).sum(-1)
    torch.testing.assert_close(out.entropy, entropy, rtol=1e-4, atol=1e-4)
    assert out.full_log_probs.shape == (int(positions.sum()), 50)

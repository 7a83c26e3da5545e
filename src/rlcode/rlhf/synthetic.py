"""A tiny language the project makes itself, so the RLHF demo needs no model hub.

Sentences such as "the movie was really good and quite loud ." are drawn from a small grammar
whose adjectives are one third positive, one third negative and one third neutral. A word-level
``transformers`` tokenizer (``PreTrainedTokenizerFast`` over a ``tokenizers`` WordLevel model) and a
small GPT-2 pre-trained on the stream give an ordinary causal LM: saved with ``save_pretrained`` it
loads back through ``from_pretrained`` like any model from the hub.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

SUBJECTS = ["the movie", "the food", "the book", "this song", "the weather", "my day", "the game", "the trip"]
VERBS = ["was", "is", "seems", "felt"]
ADVERBS = ["really", "very", "quite", "so", "rather"]
POSITIVE = ["good", "great", "happy", "wonderful", "lovely", "fun", "nice", "excellent"]
NEGATIVE = ["bad", "sad", "awful", "boring", "terrible", "dull", "poor", "ugly"]
NEUTRAL = ["long", "short", "loud", "quiet", "old", "new", "red", "big"]
SPECIAL_TOKENS = ["<pad>", "<unk>", "<eos>"]
PROMPTS = [f"{subject} {verb}" for subject in SUBJECTS for verb in VERBS]


def vocabulary() -> list[str]:
    words = [w for phrase in SUBJECTS for w in phrase.split()] + VERBS + ADVERBS + POSITIVE + NEGATIVE + NEUTRAL
    return SPECIAL_TOKENS + sorted(set(words) | {"and", "but", "."})


def sentence(rng: random.Random) -> str:
    """One sentence: SUBJECT VERB [ADVERB] ADJECTIVE ((and|but) [ADVERB] ADJECTIVE)* ."""
    words = [rng.choice(SUBJECTS), rng.choice(VERBS)]
    for position in range(rng.choice([1, 1, 2, 2, 3])):
        if position:
            words.append(rng.choice(["and", "and", "but"]))
        if rng.random() < 0.4:
            words.append(rng.choice(ADVERBS))
        words.append(rng.choice(rng.choice([POSITIVE, NEGATIVE, NEUTRAL])))
    return " ".join(words + ["."])


def corpus(n_sentences: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [sentence(rng) for _ in range(n_sentences)]


def sentiment_reward(text: str) -> float:
    """The demo's reward: positive minus negative words (a plain Python function of the text)."""
    words = text.replace(".", " ").split()
    return float(sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words))


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer, built offline; ``save_pretrained``/``AutoTokenizer`` round-trip it."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {word: index for index, word in enumerate(vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>", bos_token="<eos>"
    )


def build_model(tokenizer: PreTrainedTokenizerFast, n_layer: int = 2, n_embd: int = 64, seed: int = 0) -> GPT2LMHeadModel:
    """A small GPT-2 with random weights and no dropout (PPO's first ratio is then exactly 1)."""
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def next_token_loss(model: GPT2LMHeadModel, windows: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each next token: what ``model(input_ids=w, labels=w).loss`` returns.

    Written out because transformers 5 picks the loss by class name and warns on every run that
    ``GPT2LMHeadModel`` matches none (it then falls back to this same ``ForCausalLMLoss``).
    """
    logits = model(input_ids=windows).logits  # [B, T, V]
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), windows[:, 1:].reshape(-1)
    )


def pretrain(
    model: GPT2LMHeadModel,
    tokenizer: PreTrainedTokenizerFast,
    steps: int = 300,
    batch_size: int = 32,
    window: int = 24,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    """Next-token training on random windows of the synthetic sentence stream; returns the losses."""
    text = " ".join(corpus(4000, seed=seed))
    stream = torch.tensor(tokenizer(text)["input_ids"])  # [N]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0 - i / steps)
    model.train()
    losses = []
    for _ in range(steps):
        starts = torch.randint(0, len(stream) - window, (batch_size,), generator=generator)
        windows = torch.stack([stream[s : s + window] for s in starts.tolist()])  # [B, window]
        loss = next_token_loss(model, windows)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


def make_pretrained(directory: str | Path, steps: int = 300, seed: int = 0) -> tuple[Path, list[float]]:
    """Build, pre-train and ``save_pretrained`` model + tokenizer into ``directory``."""
    directory = Path(directory)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed=seed)
    losses = pretrain(model, tokenizer, steps=steps, seed=seed)
    model.save_pretrained(directory)  # safetensors is the default from transformers 4.35 on
    tokenizer.save_pretrained(directory)
    portable_tokenizer_class(directory)
    return directory, losses


def portable_tokenizer_class(directory: str | Path) -> None:
    """Name the saved tokenizer ``PreTrainedTokenizerFast`` so transformers 4.x loads it too.

    transformers 5 writes ``"tokenizer_class": "TokenizersBackend"``, a class 4.x lacks, so its
    ``AutoTokenizer`` refuses the directory (and the TRL 0.11.4 stack runs on 4.46.3). 5.x maps
    ``PreTrainedTokenizerFast`` back to ``TokenizersBackend``, so the one name loads on both.
    """
    path = Path(directory) / "tokenizer_config.json"
    if path.is_file():
        settings = json.loads(path.read_text())
        if settings.get("tokenizer_class") == "TokenizersBackend":
            settings["tokenizer_class"] = "PreTrainedTokenizerFast"
            path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")

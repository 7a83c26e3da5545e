"""Parity of rlcode's GRPOTrainer.step() with TRL 1.16.0's GRPOTrainer and RLOOTrainer, on the same weights and inputs.

    python benchmarks/grpo_parity.py [--scenario all] [--json OUT] [--workdir DIR]

The main venv builds a random tiny GPT-2 (float32, dropout 0), a frozen reference with other weights,
P prompts x G completions of ragged lengths and their rewards, and writes them into a work directory.
The TRL venv (``benchmarks/trl_env.py --trl 1.16``) runs this file with ``--trl-side DIR``: it builds
a real ``trl.GRPOTrainer``/``trl.RLOOTrainer`` on those weights, replaces only the sampling
(``_generate_single_turn`` returns the stored completions), and calls TRL's own
``_generate_and_score_completions`` (rewards, old/reference log-probs, advantages, ``num_items_in_batch``)
and ``compute_loss``, then ``backward()`` and one plain SGD step per optimizer step. rlcode runs
``GRPOTrainer.step()`` with the same SGD. Compared: advantages, per-token log-probs at the initial
weights, the loss of every optimizer step, every parameter's gradient at every step, the clipped
fraction and the weights at the end.

Prompts share one length: TRL left-pads prompts and gives GPT-2 the position ids of the padded row
(``arange``), rlcode right-pads, so with ragged prompts the two models see different positions
(``--ragged-prompts`` shows it; see the report at the bottom of ``print_report``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

VOCAB, PAD = 64, 63
MODEL = dict(n_layer=2, n_head=2, n_embd=32, vocab_size=VOCAB, n_positions=64, bos_token_id=PAD, eos_token_id=PAD,
             pad_token_id=PAD, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
PROMPTS, GENERATIONS, PROMPT_LENGTH, MAX_COMPLETION = 3, 4, 5, 10
# Harness keys: algorithm, optimizer_steps (optimizer steps per generation batch), learning_rate; the rest
# are GRPOConfig fields of both libraries (RLOO: scale_rewards="batch" is TRL's normalize_advantages).
COMMON = dict(algorithm="grpo", learning_rate=0.5, optimizer_steps=1, beta=0.0, num_iterations=1)
SCENARIOS = {
    "grpo": dict(loss_type="grpo"),
    "bnpo": dict(loss_type="bnpo"),
    "dr_grpo": dict(loss_type="dr_grpo"),
    "dapo": dict(loss_type="dapo"),
    "dapo-two-steps": dict(loss_type="dapo", optimizer_steps=2),
    "dapo-mu2-eps-high": dict(loss_type="dapo", num_iterations=2, epsilon=0.2, epsilon_high=0.28, learning_rate=4.0),
    "gspo-mu2": dict(loss_type="grpo", importance_sampling_level="sequence", num_iterations=2, learning_rate=4.0),
    "scale-batch": dict(loss_type="dapo", scale_rewards="batch"),
    "scale-none": dict(loss_type="dapo", scale_rewards="none"),
    "beta-k3": dict(loss_type="dapo", beta=0.2),
    "beta-k3-mu2-no-bias-correction": dict(loss_type="dapo", beta=0.2, num_iterations=2,
                                           use_bias_correction_kl=False, learning_rate=4.0),
    "rloo": dict(algorithm="rloo"),
    "rloo-beta": dict(algorithm="rloo", beta=0.2),
    "rloo-normalize-mu2": dict(algorithm="rloo", scale_rewards="batch", num_iterations=2, learning_rate=4.0),
}
QUANTITIES = ("advantages", "log_probs", "loss", "gradients", "weights")


def write_case(workdir: Path, scenario: dict, ragged_prompts: bool = False, seed: int = 0) -> None:
    """Policy and reference weights, a word-level tokenizer, prompts, completions, rewards and the case."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    GPT2LMHeadModel(GPT2Config(**MODEL)).save_pretrained(workdir / "policy")
    GPT2LMHeadModel(GPT2Config(**MODEL)).save_pretrained(workdir / "reference")
    backend = Tokenizer(models.WordLevel({str(i): i for i in range(VOCAB)}, unk_token="0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # "3 17 5" -> [3, 17, 5]
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=str(PAD), eos_token=str(PAD)).save_pretrained(
        workdir / "tokenizer")
    generator = torch.Generator().manual_seed(seed + 1)
    lengths = [int(torch.randint(2, 8, (), generator=generator)) if ragged_prompts else PROMPT_LENGTH
               for _ in range(PROMPTS)]
    prompts = [torch.randint(1, PAD, (n,), generator=generator).tolist() for n in lengths]
    completions = [torch.randint(1, PAD, (int(torch.randint(1, MAX_COMPLETION + 1, (), generator=generator)),),
                                 generator=generator).tolist() for _ in range(PROMPTS * GENERATIONS)]
    rewards = (torch.randn(PROMPTS * GENERATIONS, generator=generator) * 2).tolist()
    batch = PROMPTS * GENERATIONS
    # rlcode's first minibatch order: GRPOTrainer seeds numpy's global RNG, then step() draws one permutation
    order = np.random.RandomState(seed).permutation(batch).tolist()
    case = {"model": MODEL, "scenario": {**COMMON, **scenario}, "prompts": prompts, "completions": completions,
            "rewards": rewards, "generations": GENERATIONS, "max_completion_length": MAX_COMPLETION,
            "first_order": order, "seed": seed}
    (workdir / "case.json").write_text(json.dumps(case))


class RecordingSGD(torch.optim.SGD):
    """Plain SGD that keeps a copy of every parameter's gradient at each step (both sides use it)."""

    def __init__(self, named_parameters: list[tuple[str, torch.nn.Parameter]], lr: float) -> None:
        super().__init__([p for _, p in named_parameters], lr=lr)
        self.names = {id(p): name for name, p in named_parameters}
        self.gradients: list[dict[str, torch.Tensor]] = []

    def step(self, closure=None):  # type: ignore[override]
        self.gradients.append({self.names[id(p)]: p.grad.detach().clone()
                               for group in self.param_groups for p in group["params"] if p.grad is not None})
        return super().step(closure)


def named_trainable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]  # the tied lm_head once


def weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone().contiguous() for name, p in named_trainable(model)}


def save_side(workdir: Path, side: str, record: dict, gradients: list[dict], weights: dict) -> None:
    tensors = {f"step{s}.{name}": g.contiguous() for s, step in enumerate(gradients) for name, g in step.items()}
    tensors |= {f"final.{name}": w for name, w in weights.items()}
    save_file(tensors, workdir / f"{side}.tensors.safetensors")
    (workdir / f"{side}.json").write_text(json.dumps(record))


def trl_side(workdir: Path) -> None:
    """Runs in the TRL 1.16 venv: TRL's own scoring, advantages and loss on the stored completions."""
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer
    from trl.trainer.utils import split_tensor_dict  # noqa: F401  (the helper TRL splits a generation batch with)

    torch.set_num_threads(1)
    case = json.loads((workdir / "case.json").read_text())
    scenario, batch_size = case["scenario"], len(case["completions"])
    steps = scenario["optimizer_steps"]
    policy = GPT2LMHeadModel.from_pretrained(workdir / "policy")
    # TRL builds its reference with create_model_from_path(policy.config._name_or_path): point it at the
    # reference's weights, so TRL itself loads, freezes and prepares a reference that differs from the policy
    policy.config._name_or_path = str(workdir / "reference")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(workdir / "tokenizer")
    common = dict(output_dir=str(workdir / "trl-out"), per_device_train_batch_size=batch_size // steps,
                  steps_per_generation=steps, gradient_accumulation_steps=1, num_generations=case["generations"],
                  max_completion_length=case["max_completion_length"], learning_rate=scenario["learning_rate"],
                  beta=scenario["beta"], num_iterations=scenario["num_iterations"],
                  epsilon=scenario.get("epsilon", 0.2), epsilon_high=scenario.get("epsilon_high"),
                  use_cpu=True, bf16=False, report_to=[], disable_dropout=True, seed=case["seed"])
    if scenario["algorithm"] == "rloo":
        args = RLOOConfig(**common, normalize_advantages=scenario.get("scale_rewards") == "batch")
        trainer_class = RLOOTrainer
    else:
        args = GRPOConfig(**common, loss_type=scenario["loss_type"],
                          importance_sampling_level=scenario.get("importance_sampling_level", "token"),
                          scale_rewards=scenario.get("scale_rewards", "group"),
                          use_bias_correction_kl=scenario.get("use_bias_correction_kl", True),
                          top_entropy_quantile=1.0, entropy_coef=0.0, mask_truncated_completions=False)
        trainer_class = GRPOTrainer
    texts = [" ".join(map(str, p)) for p in case["prompts"]]

    def reward(completions, score, **kwargs):  # the stored reward of each completion, a dataset column
        return list(score)

    trainer = trainer_class(model=policy, reward_funcs=reward, args=args, processing_class=tokenizer,
                            train_dataset=Dataset.from_dict({"prompt": texts}))
    assert (trainer.ref_model is not None) == (scenario["beta"] != 0.0)

    def stored_completions(prompt_ids, *args, **kwargs):  # replaces sampling only
        expected = [p for p in case["prompts"] for _ in range(case["generations"])]
        assert [list(map(int, ids)) for ids in prompt_ids] == expected, "TRL tokenized the prompts differently"
        return case["completions"] if trainer_class is RLOOTrainer else (case["completions"], None)

    trainer._generate_single_turn = stored_completions
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # what Trainer's loop sets for each optimizer step
    optimizer = RecordingSGD(named_trainable(model), scenario["learning_rate"])
    inputs = [{"prompt": texts[i // case["generations"]], "score": r} for i, r in enumerate(case["rewards"])]
    generation_batch = trainer._generate_and_score_completions(inputs)
    ids = torch.cat([generation_batch["prompt_ids"], generation_batch["completion_ids"]], dim=1)
    attention = torch.cat([generation_batch["prompt_mask"], generation_batch["completion_mask"]], dim=1)
    width = generation_batch["completion_ids"].shape[1]
    with torch.no_grad():
        log_probs, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, attention, width)
    order = case["first_order"]
    losses = []
    for _ in range(scenario["num_iterations"]):
        for part in np.array_split(np.asarray(order), steps):  # rlcode's minibatches, in its order
            index = torch.as_tensor(part)
            inputs_part = {k: v[index] if torch.is_tensor(v) and v.dim() > 0 else v
                           for k, v in generation_batch.items()}
            loss = trainer.compute_loss(model, inputs_part)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
    mask = generation_batch["completion_mask"].bool()
    record = {"advantages": generation_batch["advantages"].tolist(), "log_probs": log_probs[mask].tolist(),
              "loss": losses, "clip_region": trainer._metrics["train"].get("clip_ratio/region_mean", []),
              "num_items_in_batch": float(generation_batch.get("num_items_in_batch", float("nan")))}
    save_side(workdir, "trl", record, optimizer.gradients, weights_of(model))


def rlcode_side(workdir: Path) -> None:
    """rlcode's GRPOTrainer.step() on the same case, recording what the trainer passes to its maths."""
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    import rlcode.rlhf.grpo_trainer as trainer_module
    from rlcode.rlhf import GRPOConfig, GRPOTrainer
    from rlcode.rlhf.sequences import ResponseBatch, response_forward, scatter_tokens

    torch.set_num_threads(1)
    case = json.loads((workdir / "case.json").read_text())
    scenario, batch_size = case["scenario"], len(case["completions"])
    policy = GPT2LMHeadModel.from_pretrained(workdir / "policy")
    reference = GPT2LMHeadModel.from_pretrained(workdir / "reference") if scenario["beta"] else None
    tokenizer = PreTrainedTokenizerFast.from_pretrained(workdir / "tokenizer")
    fields = {k: v for k, v in scenario.items() if k not in ("optimizer_steps",)}
    steps = scenario["optimizer_steps"]
    config = GRPOConfig(**fields, num_generations=case["generations"], max_grad_norm=None,
                        max_completion_length=case["max_completion_length"],
                        mini_batch_size=batch_size // steps if steps > 1 else None, seed=case["seed"])
    optimizer = RecordingSGD(named_trainable(policy), scenario["learning_rate"])
    trainer = GRPOTrainer(config, policy, ref_model=reference, tokenizer=tokenizer, optimizer=optimizer)
    queries = [torch.tensor(p) for p in case["prompts"]]
    responses = [torch.tensor(c) for c in case["completions"]]
    batch = ResponseBatch.pad([q for q in queries for _ in range(case["generations"])], responses, None, PAD, "cpu")
    with torch.no_grad():
        log_probs = scatter_tokens(response_forward(trainer.model, batch, values=False).log_probs, batch.mask)

    recorded: dict[str, list] = {"advantages": [], "loss": [], "clip_region": []}
    originals = {name: getattr(trainer_module, name) for name in ("group_advantages", "group_policy_loss",
                                                                  "rloo_policy_loss")}

    def advantages_spy(*args, **kwargs):
        advantages = originals["group_advantages"](*args, **kwargs)
        recorded["advantages"] = advantages.tolist()
        return advantages

    def loss_spy(name):
        def spy(*args, **kwargs):
            loss, stats = originals[name](*args, **kwargs)
            recorded["loss"].append(float(loss.detach()))
            recorded["clip_region"].append(stats["clip_ratio/region_mean"])
            return loss, stats
        return spy

    trainer_module.group_advantages = advantages_spy
    trainer_module.group_policy_loss, trainer_module.rloo_policy_loss = loss_spy("group_policy_loss"), loss_spy(
        "rloo_policy_loss")
    try:
        trainer.step(queries, responses, torch.tensor(case["rewards"]))
    finally:
        for name, function in originals.items():
            setattr(trainer_module, name, function)
    record = {**recorded, "log_probs": log_probs[batch.mask > 0].tolist()}
    save_side(workdir, "rlcode", record, optimizer.gradients, weights_of(policy))


def difference(trl: np.ndarray, ours: np.ndarray) -> tuple[float, float]:
    """Largest absolute difference, and it relative to the largest |TRL value| (the scale of that quantity)."""
    if trl.shape != ours.shape:
        raise RuntimeError(f"shapes differ: TRL {trl.shape}, rlcode {ours.shape}")
    absolute = float(np.abs(trl - ours).max(initial=0.0))
    return absolute, absolute / max(float(np.abs(trl).max(initial=0.0)), 1e-12)


def compare(workdir: Path) -> dict:
    trl, ours = (json.loads((workdir / f"{side}.json").read_text()) for side in ("trl", "rlcode"))
    trl_tensors, our_tensors = (load_file(workdir / f"{side}.tensors.safetensors") for side in ("trl", "rlcode"))
    initial = {k: v for k, v in load_file(workdir / "policy" / "model.safetensors").items()}
    result = {}
    for key in ("advantages", "log_probs", "loss"):
        a, r = difference(np.asarray(trl[key], np.float64), np.asarray(ours[key], np.float64))
        result[key] = {"abs": a, "rel": r}
    if sorted(trl_tensors) != sorted(our_tensors):
        raise RuntimeError(f"different tensors: {sorted(set(trl_tensors) ^ set(our_tensors))[:6]}")
    for key, prefix in (("gradients", "step"), ("weights", "final.")):
        names = [k for k in trl_tensors if k.startswith(prefix)]
        a = max(float((trl_tensors[k].double() - our_tensors[k].double()).abs().max()) for k in names)
        scale = max(float(trl_tensors[k].double().abs().max()) for k in names)
        result[key] = {"abs": a, "rel": a / scale}
    moved = max(float((trl_tensors[f"final.{k}"].double() - initial[k].double()).abs().max())
                for k in initial if f"final.{k}" in trl_tensors)
    result["weights"] |= {"rel": result["weights"]["abs"] / moved, "moved_by_trl": moved}  # relative to the update
    result["optimizer_steps"] = len([k for k in trl_tensors if k.startswith("step") and k.endswith(".wte.weight")])
    result["clip_region"] = {"trl": trl["clip_region"], "rlcode": ours["clip_region"],
                             "abs": difference(np.asarray(trl["clip_region"]), np.asarray(ours["clip_region"]))[0]}
    return result


def run_scenario(name: str, trl_python: Path, workdir: Path, ragged_prompts: bool = False) -> dict:
    write_case(workdir, SCENARIOS[name], ragged_prompts)
    started = time.perf_counter()
    environment = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    result = subprocess.run([str(trl_python), __file__, "--trl-side", str(workdir)], capture_output=True, text=True,
                            env=environment)
    if result.returncode != 0:
        raise RuntimeError(f"TRL side of {name} failed:\n{result.stderr[-4000:]}")
    trl_seconds = time.perf_counter() - started
    rlcode_side(workdir)
    scenario = json.loads((workdir / "case.json").read_text())["scenario"]
    return {"scenario": name, "settings": scenario, "ragged_prompts": ragged_prompts, "trl_seconds": trl_seconds,
            **compare(workdir)}


def print_report(reports: list[dict]) -> None:
    print(f"max |TRL 1.16 - rlcode| (in brackets: relative to the largest |TRL gradient|, and to TRL's largest weight update); {PROMPTS} prompts x "
          f"{GENERATIONS} completions of 1..{MAX_COMPLETION} tokens, float32")
    head = (f"{'scenario':<32} {'steps':>5} " + " ".join(f"{q:>10}" for q in QUANTITIES[:3]) + " "
            + " ".join(f"{q:>19}" for q in QUANTITIES[3:]) + f" {'clipped':>8}")
    print(head)
    print("-" * len(head))
    for r in reports:
        cells = " ".join(f"{r[q]['abs']:>10.1e}" for q in QUANTITIES[:3]) + " " + " ".join(
            f"{r[q]['abs']:>8.1e} ({r[q]['rel']:>7.1e})" for q in QUANTITIES[3:])
        clipped = max(r["clip_region"]["trl"], default=0.0)
        print(f"{r['scenario']:<32} {r['optimizer_steps']:>5} {cells} {clipped:>8.3f}")
    print("clipped: the largest fraction of tokens (sequences for RLOO/GSPO) TRL clipped in any step; "
          "steps: optimizer steps compared.")


def main() -> int:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bars in the table
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trl-side", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--ragged-prompts", action="store_true",
                        help="prompts of different lengths (TRL left-pads them: GPT-2 sees shifted positions)")
    parser.add_argument("--workdir", type=Path, help="keep the exchanged files here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="write the comparison as JSON")
    args = parser.parse_args()
    if args.trl_side:
        trl_side(args.trl_side)
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from trl_env import ensure_trl_venv

    trl_python = ensure_trl_venv(trl="1.16")
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    with tempfile.TemporaryDirectory() as temp:
        root = args.workdir or Path(temp)
        reports = [run_scenario(name, trl_python, root / name, args.ragged_prompts) for name in names]
    print_report(reports)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

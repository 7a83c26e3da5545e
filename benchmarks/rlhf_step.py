"""Time PPOTrainer.step() and generation: TRL 0.11.4 (its own venv) against rlcode, same models and inputs.

    python benchmarks/rlhf_step.py [--steps 9] [--warmup 1] [--out results.json]

Model A: GPT-2 2 layers, 4 heads, d 128, vocab 1000; model B: 4 layers, 4 heads, d 256, vocab 5000.
Batch 16, mini batch 4, 4 PPO epochs, query length 8, response lengths 16 and 48, default PPOConfig
otherwise. Each (framework, model, length) runs in its own process, so peak RSS is its own; each
process times ``step()`` and generating the 16 responses over ``--steps`` calls after ``--warmup``.
"CPU-s ratio" compares the process CPU time of step() (all threads), which a busy machine disturbs less
than wall time; the target is on wall time measured on a quiet machine.
rlcode's side runs with ``PPOConfig(cpu_heap_cache=True)``, the opt-in glibc malloc setting
(``rlcode.rlhf.fast.allocator``) that was its default when these tables were first measured;
``--cpu-heap-cache off`` measures the library default instead. Generation samples exactly L new tokens (min_new_tokens = max_new_tokens = L): TRL's generate() with
its default batch_size=4, rlcode's generate() on all 16 at once (batch_size=len(queries)), and plain ``model.generate`` on all 16 at once.
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
from safetensors.torch import load_file, save_file

from sides import run_meta, run_side  # benchmarks/ is on sys.path when a script runs

HERE = Path(__file__).resolve().parent
MAIN_PYTHON = sys.executable
MODELS = {
    "A": dict(n_layer=2, n_head=4, n_embd=128, vocab_size=1000),
    "B": dict(n_layer=4, n_head=4, n_embd=256, vocab_size=5000),
}
RESPONSE_LENGTHS = (16, 48)
BATCH, MINI_BATCH, EPOCHS, QUERY_LENGTH = 16, 4, 4, 8


def gpt2_config(name: str) -> dict:
    vocab = MODELS[name]["vocab_size"]
    return dict(MODELS[name], n_positions=128, bos_token_id=vocab - 1, eos_token_id=vocab - 1,
                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def write_case(workdir: Path, name: str, length: int, calls: int) -> None:
    """Weights (GPT-2 + value head, TRL's names), a tokenizer and the inputs of every timed call."""
    from tokenizers import Tokenizer, models
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from rlcode.rlhf.synthetic import portable_tokenizer_class

    workdir.mkdir(parents=True, exist_ok=True)
    config = gpt2_config(name)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**config))
    value_head = torch.nn.Linear(config["n_embd"], 1)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    state |= {"v_head.summary.weight": value_head.weight.detach(), "v_head.summary.bias": value_head.bias.detach()}
    save_file(state, workdir / "init.safetensors")
    pad = config["vocab_size"] - 1
    backend = Tokenizer(models.WordLevel({str(i): i for i in range(pad + 1)}, unk_token="0"))
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=str(pad), eos_token=str(pad)).save_pretrained(
        workdir / "tokenizer")
    portable_tokenizer_class(workdir / "tokenizer")  # TRL's side loads it on transformers 4.46.3
    generator = torch.Generator().manual_seed(1)
    save_file({
        "queries": torch.randint(0, pad, (calls, BATCH, QUERY_LENGTH), generator=generator),
        "responses": torch.randint(0, pad, (calls, BATCH, length), generator=generator),
        "scores": torch.randn(calls, BATCH, generator=generator),
    }, workdir / "inputs.safetensors")
    (workdir / "case.json").write_text(json.dumps({"model": config, "length": length}))


def load_weights(hf_model: torch.nn.Module, value_head: torch.nn.Linear, state: dict) -> None:
    hf_model.load_state_dict({k: v for k, v in state.items() if not k.startswith("v_head.")}, strict=False)
    with torch.no_grad():
        value_head.weight.copy_(state["v_head.summary.weight"])
        value_head.bias.copy_(state["v_head.summary.bias"])


def build(framework: str, workdir: Path, cpu_heap_cache: bool = True):
    """(trainer, hf_model, value_head, tokenizer) of either framework, loaded with the case's weights."""
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    case = json.loads((workdir / "case.json").read_text())
    tokenizer = PreTrainedTokenizerFast.from_pretrained(workdir / "tokenizer")
    ppo = dict(batch_size=BATCH, mini_batch_size=MINI_BATCH, ppo_epochs=EPOCHS, seed=0)
    base = GPT2LMHeadModel(GPT2Config(**case["model"]))
    if framework == "trl":
        import warnings

        warnings.filterwarnings("ignore")
        from trl import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer

        model = AutoModelForCausalLMWithValueHead.from_pretrained(base, summary_dropout_prob=0.0)
        hf_model, value_head = model.pretrained_model, model.v_head.summary
        load_weights(hf_model, value_head, load_file(workdir / "init.safetensors"))
        return PPOTrainer(PPOConfig(**ppo), model, None, tokenizer), hf_model, value_head, tokenizer
    sys.path.insert(0, str(HERE))
    from rlcode.rlhf import CausalLMWithValueHead, PPOConfig, PPOTrainer
    from trl_parity import rlcode_parts

    model = CausalLMWithValueHead(base)
    hf_model, value_head = rlcode_parts(model)
    load_weights(hf_model, value_head, load_file(workdir / "init.safetensors"))
    config = PPOConfig(**ppo, cpu_heap_cache=cpu_heap_cache)  # opt-in; off by default (process-wide mallopt)
    return PPOTrainer(config, model, tokenizer=tokenizer), hf_model, value_head, tokenizer


def timed(function, *args, **kwargs) -> float:
    started = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - started


def side(framework: str, workdir: Path, warmup: int, steps: int, threads: int, cpu_heap_cache: bool = True) -> dict:
    """One process's measurements: step() and generation times, peak RSS, first-step stats, final weights."""
    if threads:
        torch.set_num_threads(threads)
    trainer, hf_model, value_head, tokenizer = build(framework, workdir, cpu_heap_cache)
    inputs = load_file(workdir / "inputs.safetensors")
    length = json.loads((workdir / "case.json").read_text())["length"]
    sample = dict(min_new_tokens=length, max_new_tokens=length, do_sample=True, top_k=0, top_p=1.0,
                  pad_token_id=tokenizer.pad_token_id)
    step_times, step_cpu, generate_times, hf_times, first_stats = [], [], [], [], {}
    for call in range(warmup + steps):
        queries = list(inputs["queries"][call])
        if framework == "trl":
            seconds = timed(trainer.generate, queries, return_prompt=False, **sample)
        else:
            seconds = timed(trainer.generate, queries, return_prompt=False, batch_size=len(queries), **sample)
        batch = torch.stack(queries)  # [B, Lq], equal lengths: no padding needed
        hf_seconds = timed(hf_model.generate, batch, attention_mask=torch.ones_like(batch), **sample)
        responses, scores = list(inputs["responses"][call]), list(inputs["scores"][call])
        started, cpu_started = time.perf_counter(), time.process_time()
        stats = trainer.step(queries, responses, scores)
        step_seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        if call == 0:
            first_stats = {k: float(v) for k, v in stats.items() if not k.startswith("time/") and getattr(v, "ndim", 0) == 0}
        if call >= warmup:
            step_times.append(step_seconds)
            step_cpu.append(cpu_seconds)
            generate_times.append(seconds)
            hf_times.append(hf_seconds)
    save_file({k: v.contiguous() for k, v in hf_model.state_dict().items() if k != "lm_head.weight"}
              | {"v_head.summary.weight": value_head.weight.detach()}, workdir / f"{framework}.final.safetensors")
    return {
        "step_s": statistics.median(step_times), "generate_s": statistics.median(generate_times),
        "hf_generate_s": statistics.median(hf_times), "step_all_s": step_times,
        "step_cpu_s": statistics.median(step_cpu),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(), "first_stats": first_stats,
    }


def run_process(python: str, framework: str, workdir: Path, warmup: int, steps: int, threads: int,
                cpu_heap_cache: str = "on") -> dict:
    command = [python, __file__, "--side", framework, "--workdir", str(workdir), "--warmup", str(warmup),
               "--steps", str(steps), "--threads", str(threads), "--cpu-heap-cache", cpu_heap_cache]
    return run_side(command, framework)


def numerics(workdir: Path, trl: dict, ours: dict) -> dict:
    """How equal the two runs were: largest stat difference of the first step, largest weight difference at the end."""
    keys = [k for k in trl["first_stats"] if k in ours["first_stats"]]
    stat = max(abs(trl["first_stats"][k] - ours["first_stats"][k]) for k in keys) if keys else float("nan")
    a, b = load_file(workdir / "trl.final.safetensors"), load_file(workdir / "rlcode.final.safetensors")
    return {"first_step_stat_max_abs": stat, "final_weight_max_abs": max(float((a[k] - b[k]).abs().max()) for k in a)}


def print_table(rows: list[dict]) -> None:
    head = (f"{'model':<5} {'resp':>4} | {'TRL step':>9} {'rlcode':>8} {'ratio':>6} | {'TRL gen':>8} {'rlcode':>8} "
            f"{'HF x16':>8} | {'CPU-s ratio':>11} | {'TRL MB':>7} {'rlcode MB':>9} | {'Δstat':>8} {'Δweight':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        t, o = r["trl"], r["rlcode"]
        print(f"{r['model']:<5} {r['length']:>4} | {t['step_s']:>9.3f} {o['step_s']:>8.3f} {r['step_ratio']:>6.2f} | "
              f"{t['generate_s']:>8.3f} {o['generate_s']:>8.3f} {o['hf_generate_s']:>8.3f} | "
              f"{o['step_cpu_s'] / t['step_cpu_s']:>11.2f} | "
              f"{t['peak_rss_mb']:>7.0f} {o['peak_rss_mb']:>9.0f} | "
              f"{r['numerics']['first_step_stat_max_abs']:>8.1e} {r['numerics']['final_weight_max_abs']:>8.1e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=9, help="timed calls after warm-up (median is reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--models", default="A,B")
    parser.add_argument("--lengths", default=",".join(map(str, RESPONSE_LENGTHS)))
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of both sides (0: torch's default, one per core); on a busy machine "
                        "1 avoids OpenMP threads spinning while their partner is descheduled")
    parser.add_argument("--out", type=Path, help="write all measurements as JSON")
    parser.add_argument("--cpu-heap-cache", choices=["on", "off"], default="on",
                        help="rlcode's PPOConfig.cpu_heap_cache (default on, as first measured; off is the library default)")
    parser.add_argument("--side", choices=["trl", "rlcode"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        heap_cache = args.cpu_heap_cache == "on"
        print(json.dumps(side(args.side, args.workdir, args.warmup, args.steps, args.threads, heap_cache)))
        return 0
    sys.path.insert(0, str(HERE))
    from trl_env import ensure_trl_venv

    trl_python = str(ensure_trl_venv())
    start_load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        for name in args.models.split(","):
            for length in map(int, args.lengths.split(",")):
                workdir = Path(temp) / f"{name}-{length}"
                write_case(workdir, name, length, args.warmup + args.steps)
                trl = run_process(trl_python, "trl", workdir, args.warmup, args.steps, args.threads)
                ours = run_process(MAIN_PYTHON, "rlcode", workdir, args.warmup, args.steps, args.threads,
                                   args.cpu_heap_cache)
                rows.append({"model": name, "length": length, "trl": trl, "rlcode": ours,
                             "step_ratio": ours["step_s"] / trl["step_s"], "numerics": numerics(workdir, trl, ours)})
    print(f"median seconds over {args.steps} calls after {args.warmup} warm-up; batch {BATCH}, mini batch "
          f"{MINI_BATCH}, {EPOCHS} epochs, query length {QUERY_LENGTH}; torch threads {rows[0]['rlcode']['threads']}; "
          f"load average at start {start_load:.2f}, at end {os.getloadavg()[0]:.2f}")
    print_table(rows)
    if args.out:
        meta = run_meta(start_load, steps=args.steps, warmup=args.warmup)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

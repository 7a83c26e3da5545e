"""Create (once) and check a TRL reference environment: TRL 0.11.4 (PPO) or TRL 1.16.0 (GRPO, RLOO).

    python benchmarks/trl_env.py                 # TRL 0.11.4 in benchmarks/.venv-trl: create if missing or stale, smoke step()
    python benchmarks/trl_env.py --trl 1.16      # TRL 1.16.0 in benchmarks/.venv-trl116: one GRPOTrainer training step
    python benchmarks/trl_env.py --trl 1.16 --recreate

TRL removed the legacy ``PPOTrainer.step()`` after 0.11, and rlcode's GRPO tier follows TRL 1.16, so
each reference lives in its own venv with the pins of its requirements file (the same torch as
rlcode; 1.16 also the same transformers). A stamp file holds the hash of that requirements file; a
venv whose stamp differs is rebuilt. ``trl_parity.py``/``rlhf_step.py`` (0.11) and
``grpo_parity.py``/``grpo_step.py`` (1.16) run their TRL half in it as a subprocess and exchange only
safetensors and JSON.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAMP = "rlcode-trl-requirements.sha256"

SMOKE_011 = """
import torch, transformers, trl
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
from tokenizers import Tokenizer, models
from trl import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer
torch.manual_seed(0)
vocab = {str(i): i for i in range(100)}
tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="0")),
                                    pad_token="99", eos_token="99")
config = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=100, n_positions=32, eos_token_id=99)
model = AutoModelForCausalLMWithValueHead.from_pretrained(GPT2LMHeadModel(config))
trainer = PPOTrainer(PPOConfig(batch_size=2, mini_batch_size=1, seed=0), model, None, tokenizer)
queries = [torch.tensor([1, 2, 3]), torch.tensor([4, 5])]
responses = trainer.generate(queries, return_prompt=False, max_new_tokens=3, do_sample=True, pad_token_id=99)
stats = trainer.step(queries, list(responses), [torch.tensor(1.0), torch.tensor(-1.0)])
print(f"trl {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}: "
      f"step() returned {len(stats)} statistics")
"""

# GRPOTrainer on a 1-layer GPT-2 with a word-level tokenizer, a python reward and 4 plain-text prompts:
# two prompts x two generations per optimizer step, one step through trainer.train().
SMOKE_116 = """
import tempfile, torch, transformers, trl
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
from trl import GRPOConfig, GRPOTrainer
torch.manual_seed(0)
backend = Tokenizer(models.WordLevel({str(i): i for i in range(100)}, unk_token="0"))
backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="99", eos_token="99")
model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=100, n_positions=32,
                                   bos_token_id=99, eos_token_id=99, pad_token_id=99))
def reward(completions, **kwargs):  # sums the sampled ids, so the two completions of a group differ
    return [float(sum(int(t) for t in c.split())) for c in completions]
with tempfile.TemporaryDirectory() as out:
    args = GRPOConfig(output_dir=out, per_device_train_batch_size=4, num_generations=2, max_completion_length=4,
                      max_steps=1, learning_rate=1e-3, report_to=[], use_cpu=True, logging_steps=1, save_strategy="no",
                      disable_tqdm=True, bf16=False)
    data = Dataset.from_dict({"prompt": ["1 2 3", "4 5", "6 7 8", "9"]})
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data, processing_class=tokenizer)
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train()
moved = max(float((p.detach() - b).abs().max()) for p, b in zip(model.parameters(), before))
assert moved > 0, "one GRPO step left every weight unchanged"
print(f"trl {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}: "
      f"GRPOTrainer took {trainer.state.global_step} step, weights moved by up to {moved:.2e}")
"""


@dataclass(frozen=True)
class Reference:
    """One TRL release rlcode is compared with: its pins, its venv and a snippet that proves it works."""

    label: str
    requirements: Path
    venv: Path
    smoke: str


REFERENCES = {
    "0.11": Reference("TRL 0.11.4", HERE / "requirements-trl.txt", HERE / ".venv-trl", SMOKE_011),
    "1.16": Reference("TRL 1.16.0", HERE / "requirements-trl116.txt", HERE / ".venv-trl116", SMOKE_116),
}
DEFAULT_VENV = REFERENCES["0.11"].venv
REQUIREMENTS = REFERENCES["0.11"].requirements


def requirements_hash(trl: str = "0.11") -> str:
    return hashlib.sha256(REFERENCES[trl].requirements.read_bytes()).hexdigest()


def venv_python(path: Path = DEFAULT_VENV) -> Path:
    return path / "bin" / "python"


def is_ready(path: Path | None = None, trl: str = "0.11") -> bool:
    path = REFERENCES[trl].venv if path is None else Path(path)
    stamp = path / STAMP
    return venv_python(path).exists() and stamp.exists() and stamp.read_text().strip() == requirements_hash(trl)


def ensure_trl_venv(path: Path | None = None, recreate: bool = False, quiet: bool = False, trl: str = "0.11") -> Path:
    """Return the python of TRL ``trl``'s venv, creating it from its requirements file when needed (minutes)."""
    path = REFERENCES[trl].venv if path is None else Path(path)
    lock_name = f"rlcode-trl-venv-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}.lock"
    with open(Path(tempfile.gettempdir()) / lock_name, "w") as lock:  # two test runs must not build it at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if recreate or not is_ready(path, trl):
            _create(path, REFERENCES[trl], quiet)
    return venv_python(path)


def _create(path: Path, reference: Reference, quiet: bool) -> None:
    """Build the venv afresh: python -m venv, then pip install -r the reference's requirements file."""
    shutil.rmtree(path, ignore_errors=True)
    if not quiet:
        print(f"creating the {reference.label} reference venv in {path} (a few minutes) ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    command = [str(venv_python(path)), "-m", "pip", "install", "-q", "-r", str(reference.requirements)]
    environment = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"installing {reference.requirements.name} into {path} failed:\n{result.stderr[-3000:]}\n"
            "PyPI must be reachable; rerun with --recreate after fixing the network or pins."
        )
    (path / STAMP).write_text(hashlib.sha256(reference.requirements.read_bytes()).hexdigest() + "\n")


def smoke_test(python: Path, trl: str = "0.11") -> str:
    environment = dict(os.environ, WANDB_DISABLED="true", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run([str(python), "-W", "ignore", "-c", REFERENCES[trl].smoke], capture_output=True,
                            text=True, env=environment)
    if result.returncode != 0:
        raise RuntimeError(f"{REFERENCES[trl].label} smoke test failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trl", choices=list(REFERENCES), default="0.11", help="which TRL reference")
    parser.add_argument("--venv", type=Path, help="where the venv lives (default: the reference's own)")
    parser.add_argument("--recreate", action="store_true", help="delete and rebuild the venv")
    args = parser.parse_args()
    python = ensure_trl_venv(args.venv, recreate=args.recreate, trl=args.trl)
    print(smoke_test(python, args.trl))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Create (once) and check the TRL 0.11.4 reference environment in benchmarks/.venv-trl.

    python benchmarks/trl_env.py            # create if missing or stale, then run a smoke step()
    python benchmarks/trl_env.py --recreate

TRL removed the legacy ``PPOTrainer.step()`` after 0.11, so it lives in its own venv with the pins of
benchmarks/requirements-trl.txt (the same torch and transformers as rlcode). A stamp file holds the
hash of that requirements file; a venv whose stamp differs is rebuilt. ``trl_parity.py`` and
``rlhf_step.py`` run their TRL half in it as a subprocess and exchange only safetensors and JSON.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements-trl.txt"
DEFAULT_VENV = HERE / ".venv-trl"
STAMP = "rlcode-trl-requirements.sha256"

SMOKE = """
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


def requirements_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def venv_python(path: Path = DEFAULT_VENV) -> Path:
    return path / "bin" / "python"


def is_ready(path: Path = DEFAULT_VENV) -> bool:
    stamp = path / STAMP
    return venv_python(path).exists() and stamp.exists() and stamp.read_text().strip() == requirements_hash()


def ensure_trl_venv(path: Path = DEFAULT_VENV, recreate: bool = False, quiet: bool = False) -> Path:
    """Return the TRL venv's python, creating the venv from requirements-trl.txt when needed (~1 min)."""
    path = Path(path)
    lock_name = f"rlcode-trl-venv-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}.lock"
    with open(Path(tempfile.gettempdir()) / lock_name, "w") as lock:  # two test runs must not build it at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if recreate or not is_ready(path):
            _create(path, quiet)
    return venv_python(path)


def _create(path: Path, quiet: bool) -> None:
    """Build the venv afresh: python -m venv, then pip install -r requirements-trl.txt."""
    shutil.rmtree(path, ignore_errors=True)
    if not quiet:
        print(f"creating the TRL 0.11.4 reference venv in {path} (about a minute) ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    command = [str(venv_python(path)), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)]
    environment = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"installing {REQUIREMENTS.name} into {path} failed:\n{result.stderr[-3000:]}\n"
            "PyPI must be reachable; rerun with --recreate after fixing the network or pins."
        )
    (path / STAMP).write_text(requirements_hash() + "\n")


def smoke_test(python: Path) -> str:
    result = subprocess.run([str(python), "-W", "ignore", "-c", SMOKE], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"TRL smoke test failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="where the venv lives")
    parser.add_argument("--recreate", action="store_true", help="delete and rebuild the venv")
    args = parser.parse_args()
    python = ensure_trl_venv(args.venv, recreate=args.recreate)
    print(smoke_test(python))
    return 0


if __name__ == "__main__":
    sys.exit(main())

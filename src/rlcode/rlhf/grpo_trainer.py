"""GRPOTrainer: GRPO and RLOO for causal LMs, with a ``step(queries, responses, scores)`` like PPOTrainer's.

No value model: each prompt's G completions form a group whose scores give the advantages
(``group_advantages``); the loss is ``group_policy_loss`` (GRPO family) or ``rloo_policy_loss``,
following TRL 1.16. ``step`` reads as its phases: checks, no-grad forwards, advantages, updates.
"""

from __future__ import annotations

import os
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlcode.configs import config_to_dict
from rlcode.rlhf.distributed import is_distributed
from rlcode.rlhf.fast.fused import fused_activations
from rlcode.rlhf.group_advantages import group_advantages
from rlcode.rlhf.group_losses import aggregate_token_losses, group_policy_loss, rloo_policy_loss
from rlcode.rlhf.grpo_config import GRPOConfig
from rlcode.rlhf.kl_estimators import kl_estimate
from rlcode.rlhf.ppo_trainer import (
    as_value_model,
    check_scheduler,
    default_optimizer,
    fast_layers,
    max_positions,
    reference_for,
    set_seed,
    special_tokens,
)
from rlcode.rlhf.sequences import ResponseBatch, response_forward, scatter_tokens
from rlcode.rlhf.tracking import open_logger, write_logs
from rlcode.rlhf.update import optimizer_step
from rlcode.rlhf.validation import checked_inputs
from rlcode.rlhf.value_head import CausalLMWithValueHead
from rlcode.run.metrics import MetricsLogger


class GRPOTrainer:
    """Group-relative policy optimisation (``config.algorithm`` "grpo" or "rloo") with TRL 1.16's maths.

    ``model`` is a CausalLMWithValueHead or a plain transformers causal LM (wrapped; the value head is
    never used or trained). The reference is None when ``beta == 0`` (nothing is copied), else
    ``ref_model``, the policy with its adapters disabled (PEFT), or a frozen copy of the policy.
    """

    config_class = GRPOConfig
    checkpoint_name = "grpo"  # the key of the config in save()'s checkpoint

    def __init__(self, config: GRPOConfig, model: nn.Module, ref_model: nn.Module | None = None,
                 tokenizer: Any = None, optimizer: torch.optim.Optimizer | None = None,
                 lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> None:
        if not isinstance(config, GRPOConfig):
            raise TypeError(f"config must be a rlcode.rlhf.GRPOConfig, got {type(config).__name__}.")
        check_scheduler(lr_scheduler)
        if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun sets WORLD_SIZE
            raise RuntimeError("GRPOTrainer runs in one process; under torchrun use PPOTrainer, or run one "
                               "GRPO process per machine.")
        self.config = config
        set_seed(config.seed)
        self.model = as_value_model(model)
        self.model.eval()  # dropout off in generation and in every forward of step()
        self.ref_model = self._reference(ref_model)
        self.tokenizer = tokenizer
        self.pad_token_id, self.eos_token_id = special_tokens(self.model, tokenizer)
        # right padding is never attended to; any in-vocabulary id will do
        self._padding_id = self.pad_token_id if 0 <= self.pad_token_id < self.model.vocab_size else 0
        self.parameters = [p for p in self.model.pretrained_model.parameters() if p.requires_grad]
        self.optimizer = optimizer or default_optimizer(self.parameters, config.learning_rate)
        self.lr_scheduler = lr_scheduler
        self.first_ratios: torch.Tensor | None = None  # the last step's first-minibatch weights, for checks
        self.current_step = 0
        self._logger = self._open_logger()

    def _open_logger(self) -> MetricsLogger | None:
        config = self.config
        if config.report_to is None:
            return None
        from rlcode.run.run_dirs import create_default_run_dir

        directory = Path(config.logging_dir) if config.logging_dir is not None else create_default_run_dir(
            f"grpo-{config.algorithm}-seed{config.seed}")
        return open_logger(config.report_to, directory, "rlcode-grpo", {"grpo_config": config_to_dict(config)}, None)

    def _reference(self, ref_model: nn.Module | None) -> CausalLMWithValueHead | None:
        if self.config.beta == 0.0:
            if ref_model is not None:
                warnings.warn("ref_model is ignored with beta=0 (no KL term).", UserWarning, stacklevel=3)
            return None
        return reference_for(self.model, ref_model)

    def generate(self, queries: list[torch.Tensor], num_generations: int | None = None,
                 batch_size: int | None = None, **generation_kwargs: Any) -> list[torch.Tensor]:
        """P queries -> P·G responses (prompt not included), query-major: q0's G, then q1's G, ...

        Sampling defaults to the policy's own distribution (do_sample=True, top_k=0), as GRPO's ratio
        assumes, drawn by ``generation.inverse_cdf_sampling`` (the same distribution as transformers'
        multinomial, faster); each response is cut after its first eos (kept). ``num_generations`` overrides G here
        only (``step`` always groups by ``config.num_generations``).
        """
        from rlcode.rlhf.generation import check_queries, generate_responses, inverse_cdf_sampling

        size = self.config.num_generations if num_generations is None else num_generations
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"num_generations must be a whole number >= 1, got {size!r}.")
        repeated = [query for query in check_queries(queries) for _ in range(size)]
        pad = generation_kwargs.pop("pad_token_id", self._padding_id)
        eos = generation_kwargs.pop("eos_token_id", self.eos_token_id)
        if generation_kwargs.setdefault("do_sample", True):
            generation_kwargs.setdefault("top_k", 0)  # transformers' default is 50: not the policy's distribution
        generation_kwargs = inverse_cdf_sampling(generation_kwargs)
        with fast_layers(self.model, self.ref_model, self.config.onednn_linear):
            return generate_responses(self.model, repeated, pad, eos, batch_size, False, None, True,
                                      **generation_kwargs)

    def save(self, directory: str | Path) -> Path:
        """A pickle-free checkpoint (``directory/checkpoint``) from which ``GRPOTrainer.load`` resumes exactly."""
        from rlcode.rlhf.checkpoint import save_trainer

        return save_trainer(self, directory)

    @classmethod
    def load(cls, directory: str | Path, model: nn.Module | None = None, ref_model: nn.Module | None = None,
             tokenizer: Any = None, optimizer: torch.optim.Optimizer | None = None,
             lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> GRPOTrainer:
        """Rebuild a trainer saved with ``save`` (weights, optimizer, scheduler, step, RNG states); the
        model is rebuilt from its config when not given."""
        from rlcode.rlhf.checkpoint import load_trainer

        return load_trainer(cls, directory, model=model, ref_model=ref_model, tokenizer=tokenizer, optimizer=optimizer,
                            lr_scheduler=lr_scheduler)

    def save_pretrained(self, save_directory: str | Path) -> None:
        """The policy (no value head: GRPO has none; a PEFT policy's adapter) and the tokenizer, through
        transformers' ``save_pretrained``, as TRL 1.16 saves; ``AutoModelForCausalLM.from_pretrained`` reads it."""
        self.model.pretrained_model.save_pretrained(save_directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)

    def step(self, queries: list[torch.Tensor], responses: list[torch.Tensor],
             scores: list[float] | list[torch.Tensor] | torch.Tensor,
             response_masks: list[torch.Tensor] | None = None) -> dict[str, float]:
        """One generation batch: P·G responses with their scores, G = ``config.num_generations`` per prompt.

        ``queries`` is the P prompts or the P·G repeated list (equal within each group);
        ``response_masks`` (0/1 per response token) leave tokens out of the loss, e.g. tool outputs.
        Everything is checked before any weight changes. Returns TRL 1.16-like statistics ("kl" only
        when beta > 0). A ``lr_scheduler`` steps once at the end.
        """
        start = time.time()
        queries, responses, score_tensor, response_masks = self._checked(queries, responses, scores, response_masks)
        batch = ResponseBatch.pad(queries, responses, response_masks, self._padding_id, self.model.device)
        models = [m for m in (self.model, self.ref_model) if m is not None]
        activations = fused_activations(*models) if self.config.fused_activations else nullcontext()
        with activations, fast_layers(self.model, self.ref_model, self.config.onednn_linear), self.model.training_forwards():
            stats = self._step(batch, score_tensor)
        self.current_step += 1
        stats["time/total"] = time.time() - start
        if self._logger is not None:
            write_logs(self._logger, self.current_step, stats, self._completions_table(queries, responses, score_tensor))
        if self.lr_scheduler is not None:  # once per step(), after the statistics read the rate
            self.lr_scheduler.step()
        return stats

    def _completions_table(self, queries: list[torch.Tensor], responses: list[torch.Tensor],
                           scores: torch.Tensor) -> tuple[list[str], list[list[Any]]] | None:
        """TRL's ``log_completions``: one row per completion (decoded prompt, completion, score)."""
        if not self.config.log_completions or self.tokenizer is None:
            return None
        prompts = self.tokenizer.batch_decode(queries, skip_special_tokens=True)
        completions = self.tokenizer.batch_decode(responses, skip_special_tokens=True)
        return ["prompt", "completion", "reward"], [list(row) for row in zip(prompts, completions, scores.tolist())]

    def _checked(self, queries: Any, responses: Any, scores: Any, response_masks: Any,
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, list[torch.Tensor] | None]:
        size = self.config.num_generations
        if not isinstance(responses, (list, tuple)) or not responses or len(responses) % size:
            got = len(responses) if isinstance(responses, (list, tuple)) else type(responses).__name__
            raise ValueError(f"step() needs a list of P·G responses with G = num_generations = {size}, got {got}.")
        total = len(responses)
        if not isinstance(queries, (list, tuple)) or len(queries) not in (total // size, total):
            got = len(queries) if isinstance(queries, (list, tuple)) else type(queries).__name__
            raise ValueError(f"step() got {got} queries for {total} responses; pass the P = {total // size} "
                             f"prompts or the {total} repeated ones (G = {size} per prompt).")
        if len(queries) != total:
            queries = [query for query in queries for _ in range(size)]
        if not isinstance(scores, (list, tuple, torch.Tensor)) or len(scores) != total:
            got = len(scores) if isinstance(scores, (list, tuple, torch.Tensor)) else type(scores).__name__
            raise ValueError(f"step() got {got} scores for {total} responses; pass one score per response.")
        queries, responses, score_tensor, response_masks = checked_inputs(
            queries, responses, scores, response_masks, total, self.model.vocab_size, self.model.device,
            max_positions=max_positions(self.model))
        for first in range(0, total, size):
            if any(not torch.equal(queries[first], queries[i]) for i in range(first + 1, first + size)):
                raise ValueError(f"queries[{first}:{first + size}] differ; the G = {size} responses of a group "
                                 "must answer the same prompt (query-major order, as generate() returns).")
        limit = self.config.max_completion_length
        if limit is not None and max(len(r) for r in responses) > limit:
            raise ValueError(f"a response has {max(len(r) for r in responses)} tokens, more than "
                             f"GRPOConfig.max_completion_length={limit}.")
        if self.config.beta > 0 and self.ref_model is None and not self.model.is_peft_model:
            raise ValueError("beta > 0 needs a reference model, but trainer.ref_model is None; pass ref_model.")
        return queries, responses, score_tensor, response_masks

    def _step(self, batch: ResponseBatch, scores: torch.Tensor) -> dict[str, float]:
        config = self.config
        rows = config.mini_batch_size or batch.size
        first_order = np.random.permutation(batch.size)
        groups = [first_order[i : i + rows] for i in range(0, batch.size, rows)]
        # The first minibatch's old log-probs are its own training forward's, detached (no update has
        # happened yet), so its ratio is exactly 1 and that forward is not run twice (TRL 1.16 likewise
        # skips the whole no-grad pass when one optimizer step uses the generation batch once). The
        # KL in the reward needs every row's before training: then all come from the no-grad pass.
        reuse_first = not (config.reward_kl and config.beta > 0)
        with torch.no_grad():  # with epoch 0's shapes
            old_log_probs = self._log_probs(self.model, batch, groups[1:] if reuse_first else groups)  # [B, T-1]
            ref_log_probs = self._reference_log_probs(batch, groups)              # [B, T-1] or None
        rewards, stats = scores, {}
        if config.reward_kl and ref_log_probs is not None:  # TRL 1.16's RLOO: the KL in the reward
            sequence_kl = (kl_estimate(old_log_probs, ref_log_probs, config.kl_kind) * batch.mask).sum(-1)   # [B]
            rewards = scores - config.beta * sequence_kl
            stats["kl"] = float(sequence_kl.mean())
        advantages = group_advantages(rewards, config.advantage_estimator, config.scale_rewards,
                                      config.num_generations)                    # [B]
        tokens_per_step = float(batch.mask.sum()) * rows / batch.size  # TRL's "dapo" normaliser
        longest = config.max_completion_length or int(batch.response_lengths.max())
        logged: list[dict[str, float]] = []
        for iteration in range(config.num_iterations):
            order = first_order if iteration == 0 else np.random.permutation(batch.size)
            for start in range(0, batch.size, rows):
                index = order[start : start + rows]
                first = iteration == 0 and start == 0
                logged.append(self._minibatch_update(batch, index, old_log_probs, ref_log_probs, advantages,
                                                     tokens_per_step, longest, first, fill_old=first and reuse_first))
        grouped = scores.reshape(-1, config.num_generations)                     # [P, G]
        stats |= {key: float(np.mean([entry[key] for entry in logged])) for key in logged[0]}
        stats |= {
            "reward": float(scores.mean()),
            "reward_std": float(grouped.std(dim=1).mean()) if config.num_generations > 1 else 0.0,
            "frac_reward_zero_std": float((grouped.std(dim=1) == 0).float().mean()) if config.num_generations > 1
            else 1.0,
            "completions/mean_length": float(batch.response_lengths.mean()),
            "completions/min_length": float(batch.response_lengths.min()),
            "completions/max_length": float(batch.response_lengths.max()),
            "learning_rate": float(self.optimizer.param_groups[0]["lr"]),
        }
        return stats

    def _minibatch_update(self, batch: ResponseBatch, index: np.ndarray, old_log_probs: torch.Tensor,
                          ref_log_probs: torch.Tensor | None, advantages: torch.Tensor, tokens_per_step: float,
                          longest: int, first: bool, fill_old: bool = False) -> dict[str, float]:
        """Forward, loss, backward, clipped optimizer step of one minibatch; returns its statistics."""
        config = self.config
        rows = batch.rows(index)
        width = rows.mask.shape[1]
        where = torch.as_tensor(index, device=rows.mask.device)
        outputs = response_forward(self.model, rows, values=False, entropy=True)
        log_probs = scatter_tokens(outputs.log_probs, rows.mask)                 # [b, L-1]
        if fill_old:  # the rollout policy is still this one: its log-probs are the old ones
            old_log_probs[where, :width] = log_probs.detach()
        old = old_log_probs[where, :width]                                       # [b, L-1]
        ref = None if ref_log_probs is None else ref_log_probs[where, :width]
        if first:
            self.first_ratios = torch.exp(log_probs - old).detach()[rows.mask > 0]
        kl_in_loss = ref is not None and not config.reward_kl
        own_k3 = kl_in_loss and config.algorithm == "grpo" and config.kl_kind == "k3"  # group_policy_loss's term
        if config.algorithm == "rloo":
            loss, stats = rloo_policy_loss(log_probs, old, advantages[where], rows.mask, epsilon_low=config.epsilon,
                                           epsilon_high=config.epsilon_high)
        else:
            loss, stats = group_policy_loss(
                log_probs, old, advantages[where], rows.mask, loss_type=config.loss_type,
                importance_sampling_level=config.importance_sampling_level, epsilon_low=config.epsilon,
                epsilon_high=config.epsilon_high, ref_log_probs=ref if own_k3 else None,
                beta=config.beta if own_k3 else 0.0, max_completion_length=longest,
                num_items_in_batch=tokens_per_step, kl_importance_correction=config.use_bias_correction_kl)
        if kl_in_loss and not own_k3:  # any other estimator, with the loss's own aggregation (the loss is linear)
            assert ref is not None
            token_kl = kl_estimate(log_probs, ref, config.kl_kind) * rows.mask  # [b, L-1]
            if config.algorithm == "rloo":  # per sequence, like rloo_policy_loss
                loss = loss + config.beta * token_kl.sum(-1).mean()
            else:
                loss = loss + config.beta * aggregate_token_losses(token_kl, rows.mask, config.loss_type, longest,
                                                                   tokens_per_step)
            stats["kl"] = float(token_kl.detach().sum() / rows.mask.sum())
        loss.backward()
        stats["grad_norm"] = optimizer_step(self.optimizer, self.parameters, config.max_grad_norm,
                                            "Lower the learning rate or scale the scores down.")
        stats["loss"] = float(loss.detach())
        assert outputs.entropy is not None
        stats["entropy"] = float(outputs.entropy.mean())
        return stats

    def _log_probs(self, model: CausalLMWithValueHead, batch: ResponseBatch, groups: list[np.ndarray]) -> torch.Tensor:
        """No-grad log-probs [B, T-1] (0 off the responses), computed group by group with the training shapes."""
        log_probs = torch.zeros(batch.mask.shape, device=batch.mask.device)     # [B, T-1]
        for group in groups:
            rows = batch.rows(group)
            where = torch.as_tensor(group, device=batch.mask.device)
            outputs = response_forward(model, rows, values=False)
            log_probs[where, : rows.mask.shape[1]] = scatter_tokens(outputs.log_probs, rows.mask)
        return log_probs

    def _reference_log_probs(self, batch: ResponseBatch, groups: list[np.ndarray]) -> torch.Tensor | None:
        if self.config.beta == 0.0:
            return None
        if self.ref_model is not None:
            return self._log_probs(self.ref_model, batch, groups)
        with self.model.adapters_disabled():
            return self._log_probs(self.model, batch, groups)


class RLOOTrainer(GRPOTrainer):
    """``GRPOTrainer`` under TRL 1.16's other name; its config is an ``RLOOConfig`` (algorithm "rloo")."""

    def __init__(self, config: GRPOConfig, model: nn.Module, ref_model: nn.Module | None = None,
                 tokenizer: Any = None, optimizer: torch.optim.Optimizer | None = None,
                 lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> None:
        if isinstance(config, GRPOConfig) and config.algorithm != "rloo":
            raise ValueError(f"RLOOTrainer needs algorithm='rloo', got {config.algorithm!r}; use RLOOConfig "
                             "or GRPOTrainer.")
        super().__init__(config, model, ref_model, tokenizer, optimizer, lr_scheduler)

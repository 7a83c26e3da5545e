"""PPOTrainer: TRL 0.11's ``step(queries, responses, scores)`` for causal LMs, as a thin facade.

It holds the policy (with value head), the frozen reference, the optimizer, the KL controller and
the running score moments; ``step`` reads as its phases and calls plain functions for the maths.
Under torchrun/accelerate each process passes its ``batch_size / world_size`` share of the batch.
"""

from __future__ import annotations

import copy
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlcode.errors import TrainingDiverged
from rlcode.rlhf import phases
from rlcode.rlhf.accelerator import ProcessAccelerator
from rlcode.rlhf.config import PPOConfig
from rlcode.rlhf.data import prepare_dataloader
from rlcode.rlhf.distributed import (
    all_gather_cat,
    all_reduce_sum,
    check_divisible,
    ensure_process_group,
    is_distributed,
    is_main_process,
    rank,
    world_size,
)
from rlcode.rlhf.fast.allocator import keep_freed_memory
from rlcode.rlhf.fast.fused import fused_activations
from rlcode.rlhf.fast.lora import lean_lora_layers
from rlcode.rlhf.fast.onednn import onednn_linears
from rlcode.rlhf.kl import AdaptiveKLController, FixedKLController, kl_penalty
from rlcode.rlhf.rewards import RunningMoments, processed_scores, token_rewards
from rlcode.rlhf.sequences import ResponseBatch, ResponseOutputs, response_forward, scatter_tokens
from rlcode.rlhf.stats import step_stats
from rlcode.rlhf.tracking import log_stats, make_logger, write_logs
from rlcode.rlhf.trl_compat import create_reference_model
from rlcode.rlhf.update import Rollout, ppo_update
from rlcode.rlhf.validation import checked_inputs
from rlcode.rlhf.value_head import CausalLMWithValueHead


def check_scheduler(lr_scheduler: Any) -> None:
    """A trainer's ``lr_scheduler`` must be None or a torch scheduler (stepped once per ``step()``)."""
    if lr_scheduler is not None and not isinstance(lr_scheduler, torch.optim.lr_scheduler.LRScheduler):
        raise ValueError(f"lr_scheduler must be a torch.optim.lr_scheduler.LRScheduler, got "
                         f"{type(lr_scheduler).__name__}.")


def set_seed(seed: int) -> None:
    """Seed python, numpy's global RNG (the minibatch order) and torch, like TRL's ``set_seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def default_optimizer(parameters: list[nn.Parameter], learning_rate: float) -> torch.optim.Optimizer:
    """Adam like TRL's, but fused (one pass over memory per tensor; foreach where fused is missing).

    The optimizer step of a small model is memory-bound and a large share of a CPU ``step()``;
    the results equal the per-parameter loop's to float rounding.
    """
    try:
        return torch.optim.Adam(parameters, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(parameters, lr=learning_rate, foreach=True)


def as_value_model(model: nn.Module) -> CausalLMWithValueHead:
    if isinstance(model, CausalLMWithValueHead):
        return model
    output_embeddings = getattr(model, "get_output_embeddings", None)
    if hasattr(model, "config") and callable(output_embeddings) and output_embeddings() is None:
        raise TypeError(
            f"{type(model).__name__} has no language-modelling head (get_output_embeddings() is None), so it "
            "cannot generate or give token log-probs; load a causal LM (AutoModelForCausalLM / "
            "AutoModelForCausalLMWithValueHead.from_pretrained) instead of the bare backbone."
        )
    if hasattr(model, "config") and hasattr(model, "generate"):
        return CausalLMWithValueHead(model)
    raise TypeError(
        f"model must be a CausalLMWithValueHead or a transformers causal LM, got {type(model).__name__}; "
        "wrap it with CausalLMWithValueHead(model) or load one with CausalLMWithValueHead.from_pretrained(...)."
    )


def max_positions(model: CausalLMWithValueHead) -> int | None:
    """The longest query + response the model's position embeddings take (None: no such limit)."""
    config = model.config
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _check_finite(**tensors: torch.Tensor) -> None:
    """Refuse a step whose rewards or advantages overflowed, before any optimizer step."""
    for name, tensor in tensors.items():
        if not bool(torch.isfinite(tensor).all()):
            raise TrainingDiverged(
                f"step() refused: the {name} computed from these scores are not finite (scores this large "
                "overflow float32); no weights, optimizer state or score statistics changed. Scale the scores "
                "down (e.g. to about [-10, 10]) or set PPOConfig.score_clip."
            )


def special_tokens(model: CausalLMWithValueHead, tokenizer: Any) -> tuple[int, int | None]:
    """(pad id, eos id): the tokenizer's, else the generation config's, else the model config's; pad falls back
    to eos, then 0."""
    sources: tuple[Any, ...] = (tokenizer, getattr(model.pretrained_model, "generation_config", None), model.config)
    eos = next((getattr(s, "eos_token_id", None) for s in sources if getattr(s, "eos_token_id", None) is not None), None)
    if isinstance(eos, (list, tuple)):
        eos = eos[0] if eos else None
    pad = next((getattr(s, "pad_token_id", None) for s in sources if getattr(s, "pad_token_id", None) is not None), None)
    if pad is None:
        pad = eos if eos is not None else 0
    return int(pad), (None if eos is None else int(eos))


def reference_for(model: CausalLMWithValueHead, ref_model: nn.Module | None,
                  num_shared_layers: int | None = None) -> CausalLMWithValueHead | None:
    """The frozen reference of a trainer: ``ref_model`` frozen, None for a PEFT policy (the policy with its
    adapters disabled serves), else a frozen copy whose bottom ``num_shared_layers`` are the policy's own."""
    if ref_model is not None:
        reference = as_value_model(ref_model)
        reference.eval()
        reference.requires_grad_(False)
        return reference
    if model.is_peft_model:
        return None
    return as_value_model(create_reference_model(model, num_shared_layers))


@contextmanager
def fast_layers(model: nn.Module, ref_model: nn.Module | None, onednn: bool) -> Iterator[None]:
    """The models' linear layers through oneDNN on CPU (``onednn``; rlcode.rlhf.fast.onednn), and plain LoRA
    layers without peft's per-call bookkeeping (bit-identical; rlcode.rlhf.fast.lora)."""
    with onednn_linears(model, ref_model) if onednn else nullcontext(), lean_lora_layers(model, ref_model):
        yield


class PPOTrainer:
    """PPO for language models with TRL 0.11.4's numerics (see ``docs`` of each phase function)."""

    config_class = PPOConfig
    checkpoint_name = "ppo"  # the key of the config in save()'s checkpoint

    def __init__(
        self,
        config: PPOConfig,
        model: nn.Module,
        ref_model: nn.Module | None = None,
        tokenizer: Any = None,
        dataset: Any = None,
        optimizer: torch.optim.Optimizer | None = None,
        data_collator: Callable[[list[Any]], Any] | None = None,
        num_shared_layers: int | None = None,
        lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ) -> None:
        """TRL 0.11's arguments in TRL's order. Without ``ref_model`` the reference is a frozen copy of
        ``model`` whose first ``num_shared_layers`` layers are the policy's own (frozen) parameters, or, for a
        PEFT model, the policy with its adapters disabled. ``dataset`` gives ``self.dataloader``."""
        if not isinstance(config, PPOConfig):
            raise TypeError(f"config must be a rlcode.rlhf.PPOConfig, got {type(config).__name__}.")
        check_scheduler(lr_scheduler)
        self.config = config
        ensure_process_group()  # under torchrun/accelerate, join the other processes (no-op alone)
        self.local_batch_size = check_divisible(config.batch_size, "PPOConfig.batch_size")
        set_seed(config.seed)
        self.model = as_value_model(model)
        self.is_peft_model = bool(self.model.is_peft_model)
        self.is_encoder_decoder = False  # PPOConfig refuses is_encoder_decoder=True
        self.dataset = dataset
        self.dataloader = self._dataloader(dataset, data_collator)  # checks the rows before any copy is made
        self.ref_model = self._reference(ref_model, num_shared_layers)
        # kept for save()/load(): a resumed reference shares the same bottom layers again
        self.num_shared_layers = num_shared_layers if ref_model is None and self.ref_model is not None else None
        self.model.eval()  # dropout off: generation and every forward of step() (see training_forwards)
        if config.gradient_checkpointing:
            enable = getattr(self.model, "gradient_checkpointing_enable", None)
            (enable or self.model.pretrained_model.gradient_checkpointing_enable)()
        if config.cpu_heap_cache and self.model.device.type == "cpu":
            keep_freed_memory()
        self.tokenizer = tokenizer
        self.pad_token_id, self.eos_token_id = special_tokens(self.model, tokenizer)
        # Right padding is never attended to; any in-vocabulary id will do when the pad id is not one.
        self._padding_id = self.pad_token_id if 0 <= self.pad_token_id < self.model.vocab_size else 0
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = optimizer or default_optimizer(self.parameters, config.learning_rate)
        self.lr_scheduler = lr_scheduler
        if config.adap_kl_ctrl:
            self.kl_ctl: FixedKLController = AdaptiveKLController(config.init_kl_coef, config.target, config.horizon)
        else:
            self.kl_ctl = FixedKLController(config.init_kl_coef)
        self.score_moments = RunningMoments()
        self.current_step = 0
        self.current_device = self.model.device
        self.is_distributed = world_size() > 1
        self._logger = make_logger(config) if is_main_process() else None
        self.accelerator = ProcessAccelerator(self.current_device, log=self._log_scalars)
        if is_distributed():
            self._broadcast_weights()

    @property
    def kl_controller(self) -> FixedKLController:
        """The KL controller (TRL's name is ``kl_ctl``; both name the same object)."""
        return self.kl_ctl

    @kl_controller.setter
    def kl_controller(self, controller: FixedKLController) -> None:
        self.kl_ctl = controller

    def _dataloader(self, dataset: Any, data_collator: Callable[[list[Any]], Any] | None) -> Any:
        if dataset is None:  # the imperative loop: no warning (TRL 0.11 warns), step() checks each batch's size
            return None
        return prepare_dataloader(dataset, data_collator, self.config.batch_size, self.config.remove_unused_columns,
                                  self.model.forward, self.config.seed)

    def _reference(self, ref_model: nn.Module | None, num_shared_layers: int | None) -> CausalLMWithValueHead | None:
        """The frozen reference: the given one, a copy sharing the bottom layers, or None for a PEFT policy."""
        if ref_model is not None and num_shared_layers is not None:
            warnings.warn("num_shared_layers is ignored when ref_model is given: the two models share no "
                          "layers (TRL's behaviour).", UserWarning, stacklevel=3)
        return reference_for(self.model, ref_model, num_shared_layers)

    # ------------------------------------------------------------------------------------------
    def step(
        self,
        queries: list[torch.Tensor],
        responses: list[torch.Tensor],
        scores: list[torch.Tensor] | list[float] | torch.Tensor,
        response_masks: list[torch.Tensor] | None = None,
    ) -> dict[str, float | np.ndarray]:
        """One PPO iteration on (query, response, score) triples, with TRL 0.11 semantics.

        Pass ``batch_size`` triples (``batch_size / world_size`` per process under torchrun); scores are
        floats or scalar tensors; ``response_masks`` (0/1 per response token) exclude tokens from
        training. Returns TRL's 40 statistics (see ``rlcode.rlhf.stats`` for the array conventions).
        Unlike TRL 0.11: score scaling works, ``max_grad_norm`` clips every optimizer step, and every
        forward runs in eval mode (dropout-free), so the first minibatch's ratio is exactly 1. With
        ``PPOConfig.fused_activations`` (default) the model's Python tanh-GELU runs as one fused kernel
        during ``step()`` only (``rlcode.rlhf.fast.fused``; equal to float rounding).
        """
        start = time.time()
        queries, responses, score_tensor, response_masks = checked_inputs(
            queries, responses, scores, response_masks, self.local_batch_size, self.model.vocab_size,
            self.model.device, distributed=world_size() > 1, max_positions=max_positions(self.model),
        )
        self._check_trained_tokens(responses, response_masks)
        moments = copy.copy(self.score_moments)  # restored if the step is refused
        scores_used = processed_scores(
            score_tensor, self.score_moments, self.config.use_score_scaling, self.config.use_score_norm,
            self.config.score_clip,
        )
        batch = ResponseBatch.pad(queries, responses, response_masks, self._padding_id, self.model.device)
        models = [m for m in (self.model, self.ref_model) if m is not None]
        activations = fused_activations(*models) if self.config.fused_activations else nullcontext()
        try:
            # dropout off in every forward, so the first ratio is exactly 1 (see training_forwards)
            with activations, fast_layers(self.model, self.ref_model, self.config.onednn_linear), self.model.training_forwards():
                stats = self._step(batch, scores_used)
        except TrainingDiverged:
            self.score_moments = moments
            raise
        stats["time/ppo/total"] = time.time() - start
        return stats

    def _step(self, batch: ResponseBatch, scores_used: torch.Tensor) -> dict[str, float | np.ndarray]:
        """The forwards, rewards, advantages, PPO epochs and statistics of ``step()``."""
        timing = {}
        tick = time.time()
        full = self.config.kl_penalty == "full"
        # Epoch 0's minibatch order, drawn here rather than at the top of the first epoch: nothing in
        # between draws from numpy's global RNG, so the sequence of orders is TRL's.
        first_order = np.random.permutation(self.config.batch_size)
        groups = self._forward_groups(batch, first_order)
        with torch.no_grad():
            policy = self._forward(self.model, batch, groups, values=True, full=full)
            reference = self._reference_forward(batch, groups, full)
        timing["time/ppo/forward_pass"] = time.time() - tick

        tick = time.time()
        with torch.no_grad():
            # TRL's batched_forward_pass outputs at the response tokens, zero elsewhere: [B, T-1] each
            log_probs = scatter_tokens(policy.log_probs, batch.mask)
            ref_log_probs = scatter_tokens(reference.log_probs, batch.mask)
            assert policy.values is not None
            values = scatter_tokens(policy.values, batch.mask)
            kl_coef = self.kl_ctl.value
            if full:  # the KL over whole distributions, computed at the response tokens only ([N, V], not [B, T-1, V])
                assert policy.full_log_probs is not None and reference.full_log_probs is not None
                token_kls = kl_penalty(policy.full_log_probs, reference.full_log_probs, "full")
                kls = scatter_tokens(token_kls, batch.mask)
                rewards, non_score = token_rewards(scores_used, kls, batch.mask, kl_coef)
            else:
                rewards, non_score, kls = self.compute_rewards(scores_used, log_probs, ref_log_probs, batch.mask)
        timing["time/ppo/compute_rewards"] = time.time() - tick

        tick = time.time()
        with torch.no_grad():
            values, advantages, returns = self.compute_advantages(values, rewards, batch.mask)
            _check_finite(rewards=rewards, values=values, advantages=advantages, returns=returns)
        timing["time/ppo/compute_advantages"] = time.time() - tick

        tick = time.time()
        rollout = Rollout(batch, log_probs, values, advantages, returns)
        token_counts = all_gather_cat(batch.mask.sum(dim=1)).cpu().numpy()  # [batch_size]
        update = ppo_update(
            self.model, self.optimizer, self.parameters, rollout, token_counts,
            rank() * self.local_batch_size, self.config, first_order,
        )
        timing["time/ppo/optimize_step"] = time.time() - tick
        if update.skipped:
            warnings.warn(
                f"{update.skipped} minibatch(es) had a mean ratio above ratio_threshold="
                f"{self.config.ratio_threshold}; their loss was zeroed (TRL 0.11 behaviour).",
                stacklevel=3,  # the caller of step()
            )

        tick = time.time()
        stats, mean_kl = step_stats(
            scores=scores_used, log_probs=log_probs, ref_log_probs=ref_log_probs, kls=kls, non_score=non_score,
            mask=batch.mask, query_lengths=batch.query_lengths, response_lengths=batch.response_lengths,
            update=update, kl_coef=kl_coef, learning_rate=self.optimizer.param_groups[0]["lr"],
        )
        timing["time/ppo/calc_stats"] = time.time() - tick
        if mean_kl < -1.0:  # as TRL warns: the responses were likely not sampled from the policy
            warnings.warn(
                f"KL divergence is negative ({mean_kl:.2f}): were the responses generated by this policy with "
                "plain sampling (no top-k/top-p/min-length tricks)? Check the generation kwargs.",
                stacklevel=3,  # the caller of step()
            )
        self.kl_ctl.update(mean_kl, self.config.batch_size)
        self.current_step += 1
        stats.update(timing)
        if self.lr_scheduler is not None:  # once per step(), after the statistics read the rate (as TRL)
            self.lr_scheduler.step()
        return stats

    def _check_trained_tokens(self, responses: list[torch.Tensor], response_masks: list[torch.Tensor] | None) -> None:
        """Whitening needs two trained tokens in the global batch; say so before any state changes."""
        if response_masks is None:
            local = sum(len(r) for r in responses)
        else:
            local = int(torch.stack([m.sum() for m in response_masks]).sum())
        total = int(all_reduce_sum(torch.tensor(local, device=self.model.device)))
        if total < 2:
            raise ValueError(
                f"the batch has {total} trained response token(s); advantage whitening needs at least 2. "
                "Pass longer responses, more examples, or fewer zeros in response_masks."
            )

    def _forward_groups(self, batch: ResponseBatch, first_order: np.ndarray) -> list[np.ndarray]:
        """The row groups of the no-grad forwards: by default this process's rows of each of epoch 0's
        minibatches, in the order and trimmed width the training forward will see them. Each row is then
        computed with the same shapes, hence the same kernels and float sums, in both passes, so the
        ratios before the first optimizer step are exactly 1 on any CPU (a BLAS may pick its blocking by
        shape). ``no_grad_batch_size`` overrides this with plain chunks (ratios then 1 to float rounding)."""
        size = self.config.no_grad_batch_size
        if size is not None:
            return [np.arange(i, min(i + size, batch.size)) for i in range(0, batch.size, size)]
        offset, step = rank() * self.local_batch_size, self.config.mini_batch_size
        groups = [local[(local >= 0) & (local < batch.size)]
                  for local in (first_order[i : i + step] - offset for i in range(0, len(first_order), step))]
        return [group for group in groups if len(group)]

    def _reference_forward(self, batch: ResponseBatch, groups: list[np.ndarray], full: bool) -> ResponseOutputs:
        """The reference's log-probs: the frozen copy's, or the policy's own with its adapters disabled."""
        if self.ref_model is not None:
            return self._forward(self.ref_model, batch, groups, values=False, full=full)
        with self.model.adapters_disabled():
            return self._forward(self.model, batch, groups, values=False, full=full)

    def _forward(self, model: CausalLMWithValueHead, batch: ResponseBatch, groups: list[np.ndarray], values: bool,
                 full: bool) -> ResponseOutputs:
        """The no-grad pass over ``groups`` of rows (``_forward_groups``), joined back in the batch's
        row-major token order."""
        if len(groups) == 1 and np.array_equal(groups[0], np.arange(batch.size)):
            return response_forward(model, batch, values=values, full=full)
        # flat_index[b, t]: where token (b, t) sits in the batch's flat [N] order
        flat_index = torch.full(batch.mask.shape, -1, dtype=torch.long, device=batch.mask.device)  # [B, T-1]
        flat_index[batch.mask > 0] = torch.arange(int((batch.mask > 0).sum()), device=batch.mask.device)
        parts, where = [], []
        for group in groups:
            rows = batch.rows(group)
            parts.append(response_forward(model, rows, values, False, full))
            rows_index = flat_index[torch.as_tensor(group, device=flat_index.device), : rows.mask.shape[1]]
            where.append(rows_index[rows.mask > 0])
        order = torch.cat(where)  # the flat position of every computed token

        def joined(name: str) -> Any:
            pieces = [getattr(p, name) for p in parts]
            if pieces[0] is None:
                return None
            stacked = torch.cat(pieces)
            out = torch.empty_like(stacked)
            out[order] = stacked
            return out

        return ResponseOutputs(joined("log_probs"), joined("values"), None, joined("full_log_probs"))

    # ------------------------------------------------------------------------------------------
    def generate(
        self,
        query_tensor: torch.Tensor | list[torch.Tensor],
        length_sampler: Callable[[], int] | None = None,
        batch_size: int = 4,
        return_prompt: bool = True,
        generate_ref_response: bool = False,
        remove_padding: bool = True,
        **generation_kwargs: Any,
    ) -> Any:
        """TRL 0.11's ``generate``: a list of 1-D queries gives a list of responses, generated in left-padded
        chunks of ``batch_size``, each without padding and cut after its first eos (kept) when
        ``remove_padding``; one 1-D query gives the [1, L] output of a single ``generate`` call, nothing cut.
        The prompt is kept unless ``return_prompt=False``. ``generate_ref_response`` also returns the
        reference's responses: ``(responses, ref_responses)``. Unlike TRL, the eos cut never cuts the prompt.
        """
        from rlcode.rlhf.generation import check_queries, generate_responses, generate_single

        if isinstance(query_tensor, torch.Tensor):
            if query_tensor.dim() != 1:
                raise ValueError("query_tensor must be a tensor of shape (seq_len) or a list of tensors of shape "
                                 f"(seq_len); got a tensor of shape {tuple(query_tensor.shape)}. Pass list(batch).")
        else:
            query_tensor = check_queries(query_tensor)  # an empty list: a ValueError before any work
        pad = generation_kwargs.pop("pad_token_id", self._padding_id)
        eos = generation_kwargs.pop("eos_token_id", self.eos_token_id)

        def run(model: Any) -> Any:
            if isinstance(query_tensor, torch.Tensor):
                return generate_single(model, query_tensor, pad, eos, return_prompt, **generation_kwargs)
            return generate_responses(model, query_tensor, pad, eos, batch_size, return_prompt, length_sampler,
                                      remove_padding, **generation_kwargs)

        if isinstance(query_tensor, torch.Tensor) and length_sampler is not None:
            generation_kwargs["max_new_tokens"] = length_sampler()  # one draw, shared with the reference (TRL)
        with fast_layers(self.model, self.ref_model, self.config.onednn_linear):
            responses = run(self.model)
            if not generate_ref_response:
                return responses
            if self.ref_model is not None:
                return responses, run(self.ref_model)
            with self.model.adapters_disabled():
                return responses, run(self.model)

    # TRL 0.11's phases, with its signatures and [B, T-1] shapes (rlcode.rlhf.phases) ----------------
    def prepare_model_inputs(self, queries: list[torch.Tensor], responses: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Query + response per row, right-padded: ``{"input_ids", "attention_mask"}``, each [B, T]."""
        return phases.prepare_model_inputs(queries, responses, self._padding_id, self.current_device)

    def batched_forward_pass(
        self, model: nn.Module, queries: list[torch.Tensor], responses: list[torch.Tensor],
        model_inputs: dict[str, torch.Tensor], return_logits: bool = False,
        response_masks: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """(log-probs, logits or None, values, masks), [B, T-1] each, in chunks of mini_batch_size rows."""
        return phases.batched_forward_pass(as_value_model(model), queries, responses, model_inputs,
                                           self.config.mini_batch_size, return_logits, response_masks)

    def compute_rewards(self, scores: Any, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                        masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rewards, non-score rewards, KLs) [B, T-1] with the current KL coefficient and kl_penalty."""
        return phases.compute_rewards(scores, logprobs, ref_logprobs, masks, self.kl_ctl.value, self.config.kl_penalty)

    def compute_advantages(self, values: torch.Tensor, rewards: torch.Tensor,
                           mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(masked values, whitened advantages, returns) [B, T-1]: GAE with the config's gamma and lam."""
        return phases.compute_advantages(values, rewards, mask, self.config.gamma, self.config.lam,
                                         self.config.whiten_rewards)

    def loss(self, old_logprobs: torch.Tensor, values: torch.Tensor, logits: torch.Tensor, vpreds: torch.Tensor,
             logprobs: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor,
             returns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(policy loss, vf_coef * value loss, statistics) of one minibatch, as TRL's ``loss``."""
        return phases.ppo_loss(old_logprobs, values, logits, vpreds, logprobs, mask, advantages, returns, self.config)

    # ------------------------------------------------------------------------------------------
    def log_stats(self, stats: dict[str, Any], batch: dict[str, Any], rewards: Any,
                  columns_to_log: Iterable[str] = ("query", "response")) -> None:
        """Write ``stats`` and env/reward_mean, env/reward_std, env/reward_dist to the ``log_with`` loggers at
        step ``current_step``, with a table of the batch's ``columns_to_log`` and each row's reward."""
        log_stats(self._logger, self.accelerator, self.current_step, stats, batch, rewards, columns_to_log)

    def _log_scalars(self, values: Any, step: int | None) -> None:
        if self._logger is not None:
            write_logs(self._logger, self.current_step if step is None else step, values, None)

    def save_pretrained(self, save_directory: str | Path) -> None:
        """The policy (with its value head) and the tokenizer, as TRL's ``PPOTrainer.save_pretrained``."""
        self.model.save_pretrained(save_directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)

    # ------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """A pickle-free checkpoint from which ``PPOTrainer.load`` resumes exactly."""
        from rlcode.rlhf.checkpoint import save_trainer

        return save_trainer(self, directory)

    @classmethod
    def load(cls, directory: str | Path, model: nn.Module | None = None, ref_model: nn.Module | None = None,
             tokenizer: Any = None, optimizer: torch.optim.Optimizer | None = None,
             lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> PPOTrainer:
        """Rebuild a trainer saved with ``save``; the model is rebuilt from its config when not given. A run
        with a learning-rate scheduler passes the optimizer and a scheduler built on it, whose state is restored."""
        from rlcode.rlhf.checkpoint import load_trainer

        return load_trainer(cls, directory, model=model, ref_model=ref_model, tokenizer=tokenizer, optimizer=optimizer,
                            lr_scheduler=lr_scheduler)

    # ------------------------------------------------------------------------------------------
    def _broadcast_weights(self) -> None:
        """Start every process from rank 0's policy and reference weights."""
        import torch.distributed as dist

        with torch.no_grad():
            for module in (m for m in (self.model, self.ref_model) if m is not None):
                for tensor in list(module.parameters()) + list(module.buffers()):
                    dist.broadcast(tensor.data, src=0)

"""The trainer: one loop, the objective (``sft``, ``grpo``, ``gspo``) a setting.

Per optimizer step (the paper's section 3.3, restated in DESIGN.md section 4):

* ``grpo`` / ``gspo``: ``prompts_per_step`` fresh scenes, ``group_size``
  completions each from the current policy (the generation backend), rewards
  from the environment, advantages normalised within each group
  (:func:`training.objectives.group_advantages`), and the clipped surrogate of
  :func:`training.objectives.policy_loss` (token-level ratio for GRPO,
  sequence-level for GSPO), no KL term unless ``kl_coef > 0``. Groups whose
  rewards are all equal carry no signal and are skipped (and counted). The
  batch is used for ``num_iterations`` updates (PPO's mu; 1, the paper's, is
  on-policy). Old log-probabilities are the behaviour policy's: the ones the
  generation backend returned for the sampled tokens. With truncated
  importance sampling (``tis_correction``, on for vLLM) the ratio is taken to
  the learner's own log-probabilities before the update instead, and each
  token's term is weighted by ``min(pi_learner_old / pi_engine, tis_cap)``
  (TRL's ``vllm_importance_sampling_correction``), so the engine's numerics
  (another kernel, a 4-bit base the engine does not share) cannot bias it.
* ``sft``: ``prompts_per_step * group_size`` fresh scenes, cross-entropy on
  the oracle answer (``info["optimal_action"]``), completion tokens only.

Only the LoRA adapter trains (PEFT; the base stays bitwise unchanged). A backend
that reads adapters from disk (vLLM) gets every version as a PEFT folder before
it generates with it, the evaluation before training included; only the newest
folder is kept. A multi-task run (``env_mix``) is evaluated on every env of its
mix (:mod:`training.heldout`). Logs go to TensorBoard and ``metrics.jsonl`` under
``output_dir``; checkpoints (the adapter in PEFT format plus optimizer, scheduler
and RNG state) are written atomically and ``resume=True`` continues from the latest
one. Every step draws its scenes and sampling seed from ``(seed, step)``, so a
resumed CPU run ends at the same adapter weights as an uninterrupted one. Under
torchrun each rank takes a shard of the step (:mod:`training.distributed`); rank 0
alone evaluates and writes logs, checkpoints and results.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.backends.base import EVAL_BATCH_SIZE, SamplingParams
from envs.atomic import atomic_directory
from evaluation.evaluate import EvaluationResult

from . import distributed, heldout
from .checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint, truncate_metrics
from .config import TrainConfig
from .config_rules import check_world_size
from .demonstrations import oracle_demonstration
from .distributed import DistContext, all_reduce_sum, gather_to_main, shard
from .lora_targets import lora_target_regex
from .objectives import policy_loss, sft_loss_from_logprobs, tis_weights
from .policy_rows import policy_rows, rollout_metrics
from .rollouts import EnvPool, choose_envs, collect_trajectories

__all__ = ["Trainer", "TrainResult", "NothingToResumeError", "lora_target_regex"]


class NothingToResumeError(FileNotFoundError):
    """``resume=True`` but the run folder holds no complete checkpoint; the message says where it looked."""


@dataclass
class TrainResult:
    """What a run ends with: held-out evaluations before and after, and where its files are.

    ``before`` / ``after`` / ``baseline`` (the best constant answer's result) / ``baseline_answer``
    are the first evaluated env's (``env_id``, or the first env of ``env_mix``); ``per_env`` holds
    every evaluated env's rows: ``{env_id: {"before", "after", "constant_baseline",
    "random_baseline", "constant_answer"}}``.
    """

    output_dir: Path
    steps: int
    before: EvaluationResult | None
    after: EvaluationResult | None
    baseline: EvaluationResult | None
    baseline_answer: str | None = None
    per_env: dict[str, dict[str, Any]] = field(default_factory=dict)


def _pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D tensors (every completion has >= 1 token) to ``(B, T)``; returns values and a mask."""
    width = max(len(r) for r in rows)
    values = torch.stack([torch.nn.functional.pad(r.float(), (0, width - len(r))) for r in rows])
    mask = torch.stack([torch.nn.functional.pad(torch.ones(len(r)), (0, width - len(r))) for r in rows])
    return values, mask


class Trainer:
    """Train the LoRA adapter of a VLM policy on environment rollouts (see the module docstring).

    Args:
        config: the run (validated on construction).
        agent: a ready :class:`agents.VLMAgent` (tests pass one); default: loaded from ``config.model``.
    """

    def __init__(self, config: TrainConfig, agent: Any = None) -> None:
        self.config = config
        self.output_dir = Path(config.output_dir)
        self._agent = agent
        self.pool = EnvPool(config.env_kwargs)
        self.dist, self._per_prompt = DistContext(), config.rollout_seeding == "prompt"  # train() sets them

    # -- set-up --------------------------------------------------------------------------
    def _setup(self) -> None:
        from peft import LoraConfig
        from transformers import get_scheduler

        from agents.vlm import VLMAgent

        cfg = self.config
        torch.manual_seed(cfg.seed)
        if self._agent is None:
            kwargs = {**cfg.agent_kwargs(), **self.dist.agent_device(cfg.device)}  # under NCCL: one GPU per rank
            self._agent = VLMAgent.from_pretrained(cfg.model, **kwargs)
        agent = self._agent
        backend = agent.backend
        if cfg.load_in_4bit and getattr(backend, "needs_adapter_folder", False) and not getattr(
                backend, "quantization", None):
            warnings.warn("the learner's base is 4-bit but the generation engine serves the unquantised base "
                          "(vLLM quantises in flight on CUDA only): rollouts come from a slightly different "
                          "policy; truncated importance sampling corrects it"
                          + ("" if cfg.tis_enabled else " but is off (tis_correction=false)"), stacklevel=2)
        if cfg.init_adapter is not None:
            agent.load_adapter(cfg.init_adapter, name="default", trainable=True)
        else:
            agent.load_adapter(LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                          target_modules=lora_target_regex(cfg.target_modules, cfg.train_vision)),
                               name="default")
        self.model = agent.model
        for name, param in self.model.named_parameters():
            param.requires_grad_("lora_" in name)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        # One scheduler step per update: num_iterations of them per step of a grpo/gspo run.
        self.scheduler = get_scheduler(cfg.lr_schedule, self.optimizer, num_warmup_steps=cfg.warmup_steps,
                                       num_training_steps=cfg.max_steps * cfg.num_iterations)
        tok = agent.processor.tokenizer
        self._eos = tok.convert_tokens_to_ids("<|im_end|>")

    @property
    def agent(self) -> Any:
        return self._agent

    # -- one step ------------------------------------------------------------------------
    def _scenes(self, step: int, n: int) -> tuple[list[str], list[int], np.random.Generator]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, step])
        env_ids = choose_envs(cfg.env_id, cfg.env_mix, cfg.mix_schedule, step - 1, cfg.max_steps, n, rng)
        seeds = [int(s) for s in rng.integers(0, cfg.eval_seed, size=n)]
        return env_ids, seeds, rng

    def _backward(self, observations, token_ids, loss_fn, chunks=None) -> tuple[float, list[torch.Tensor]]:
        """Forward/backward in micro-batches (``chunks``: row indices of each; default ``grad_accum_steps``
        consecutive parts); ``loss_fn(logp, mask, idx)`` gives each micro-batch's share of the batch loss
        (the shares sum to it). Returns the loss and the detached log-probabilities of every row, in row order."""
        if chunks is None:
            chunks = np.array_split(np.arange(len(token_ids)), self.config.grad_accum_steps)
        loss_sum, all_logp = 0.0, [None] * len(token_ids)
        for idx in chunks:
            if len(idx) == 0:
                continue
            rows = self._agent.completion_logprobs([observations[i] for i in idx], [token_ids[i] for i in idx])
            logp, mask = _pad(rows)
            loss = loss_fn(logp, mask, idx)
            loss.backward()
            loss_sum += float(loss.detach())
            for i, r in zip(idx, rows):
                all_logp[i] = r.detach()
        return loss_sum, all_logp

    def _update(self) -> float:
        """One optimizer update from the accumulated gradients; returns the gradient norm before clipping
        (a non-finite norm skips the update). Several ranks first sum their gradients: each holds its share."""
        distributed.all_reduce_gradients(self.params, self.dist)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm))
        if math.isfinite(grad_norm):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return grad_norm

    def _normalisers(self, ids: list[list[int]], groups: list[int]) -> float | torch.Tensor:
        """The batch loss's denominator (:func:`training.objectives.policy_loss`), so that a micro-batch's
        loss is its exact share: ``tokens``: the batch's completion tokens; ``sequence``: its rows (both
        summed over the ranks); ``group_tokens``: per row ``(B,)``, the tokens of the row's group (a group
        lives on one rank) times the step's prompts (every prompt, skipped all-equal groups included, as in
        eq. 1: their advantages are zero)."""
        lengths = torch.tensor([float(len(i)) for i in ids])
        norm = self.config.loss_normalisation
        if norm == "tokens":
            return all_reduce_sum([lengths.sum()], self.dist)[0]
        if norm == "sequence":
            return all_reduce_sum([len(ids)], self.dist)[0]
        group_of = torch.tensor(groups, dtype=torch.long)
        per_group = torch.zeros(max(groups, default=-1) + 1).index_add_(0, group_of, lengths)
        return per_group[group_of] * self.config.prompts_per_step

    def _rl_step(self, step: int, metrics: dict[str, Any]) -> None:
        cfg = self.config
        env_ids, seeds, rng = self._scenes(step, cfg.prompts_per_step)
        params = cfg.sampling_params(seed=int(rng.integers(2**31 - 1)))
        self.model.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            groups = distributed.collect_shard(self._agent, self.pool, env_ids, seeds, params, self.dist,
                                               self._per_prompt, collect_trajectories)
        metrics["time_rollout_s"] = time.perf_counter() - t0
        if hasattr(self._agent.backend, "sleep"):
            self._agent.backend.sleep()  # a colocated engine frees its GPU memory for the update
        every = distributed.gather_groups(groups, self.dist)  # rank 0 logs the step's figures
        if every is not None:
            metrics.update(rollout_metrics(every, metrics["time_rollout_s"], cfg.return_type_for, cfg.gamma))
        rows = policy_rows(groups, cfg.advantage, cfg.return_type_for, cfg.gamma, cfg.skip_degenerate_groups)
        obs, ids, adv, engine_lp, groups_of = (rows.observations, rows.token_ids, rows.advantages,
                                               rows.engine_logprobs, rows.groups)
        n_rows, groups_used = all_reduce_sum([len(ids), rows.groups_used], self.dist)
        metrics["groups_used"] = int(groups_used)
        if not n_rows:  # every rank skips together
            metrics.update(loss=0.0, clip_fraction=0.0, logprob_gap=0.0, grad_norm=0.0)
            for _ in range(cfg.num_iterations):
                self.scheduler.step()  # the schedule counts updates, made or not
            return
        ref_rows = None
        if cfg.kl_coef > 0 and ids:
            # The reference is the base model: the same weights with the adapter switched off.
            with torch.no_grad(), self.model.disable_adapter():
                ref_rows = self._agent.completion_logprobs(obs, ids)
        self.model.train()
        adv_t = torch.tensor(adv)
        normalisers = self._normalisers(ids, groups_of)
        # GSPO's sequence is the trajectory: its rows pool one ratio (a single-step row is its own).
        sequences = torch.tensor(rows.trajectories)
        level = "sequence" if cfg.objective == "gspo" else "token"
        # Without TIS the ratio's denominator is the engine's log-prob of each sampled token; with it,
        # the learner's before the update (its first forward, detached), the engine gap going to the weights.
        old_rows: list[torch.Tensor] | None = None if cfg.tis_enabled else engine_lp
        stats_of: list[dict[str, float]] = []

        def loss_fn(logp, mask, idx):
            old = logp.detach() if old_rows is None else _pad([old_rows[i] for i in idx])[0]
            weights = None
            if cfg.tis_enabled:
                weights = tis_weights(old, _pad([engine_lp[i] for i in idx])[0], mask, cfg.tis_cap)
            ref = _pad([ref_rows[i] for i in idx])[0] if ref_rows is not None else None
            loss, stats = policy_loss(logp, old, adv_t[idx], mask, level=level,
                                      clip_eps_low=cfg.clip_eps_low, clip_eps_high=cfg.clip_eps_high,
                                      normalise_by=cfg.loss_normalisation,
                                      normaliser=normalisers[idx] if torch.is_tensor(normalisers) else normalisers,
                                      kl_coef=cfg.kl_coef, ref_logprobs=ref, is_weights=weights,
                                      sequence_ids=sequences[idx] if level == "sequence" else None)
            if weights is not None:
                real = mask.bool()
                stats["tis_weight_mean"] = float(weights[real].mean()) if real.any() else 1.0
                stats["tis_capped_fraction"] = float((weights[real] >= cfg.tis_cap).float().mean()) if real.any() else 0.0
            stats_of.append(stats)
            return loss

        losses, grad_norms = [], []
        for iteration in range(cfg.num_iterations):
            loss, trainer_lp = self._backward(obs, ids, loss_fn, rows.chunks(cfg.grad_accum_steps))
            if iteration == 0:
                gaps = gather_to_main([float((b - t).abs().mean()) for b, t in zip(engine_lp, trainer_lp) if len(b)],
                                      self.dist)
                metrics["logprob_gap"] = float(np.mean(gaps)) if gaps else 0.0
                if old_rows is None:
                    old_rows = trainer_lp
            losses.append(loss)
            grad_norms.append(self._update())
        metrics["loss"] = all_reduce_sum(losses[:1], self.dist)[0]
        metrics["grad_norm"] = float(np.mean(grad_norms))
        stats_of = gather_to_main(stats_of, self.dist) or []
        for key in ("clip_fraction", "ratio_max", "kl", "tis_weight_mean", "tis_capped_fraction"):
            values = [st[key] for st in stats_of if key in st]
            if values and (key != "kl" or cfg.kl_coef > 0):
                metrics[key] = float(np.max(values) if key == "ratio_max" else np.mean(values))

    def _sft_step(self, step: int, metrics: dict[str, Any]) -> None:
        cfg = self.config
        env_ids, seeds, rng = self._scenes(step, cfg.prompts_per_step * cfg.group_size)
        part = shard(len(env_ids), self.dist)  # this rank's scenes (global indices)
        episodes = []  # (env, reset observation, reset info) per scene
        for slot, i in enumerate(part):
            env = self.pool.get(env_ids[i], slot)
            episodes.append((env, *env.reset(seed=seeds[i])))
        # The training reward of SFT: one on-policy sample on each of the step's first
        # prompts_per_step scenes, scored before the update (SFT itself never samples).
        self.model.eval()
        params = cfg.sampling_params(seed=int(rng.integers(2**31 - 1)))
        scored = [i for i in part if i < cfg.prompts_per_step]
        with torch.no_grad():
            samples = distributed.sample(self._agent, [episodes[i - part.start][1] for i in scored], scored,
                                         params, self._per_prompt)
        rewards = gather_to_main([episodes[i - part.start][0].unwrapped.judge(group[0].text)[0]
                                  for i, group in zip(scored, samples)], self.dist)
        if rewards is not None:
            metrics["reward_mean"] = float(np.mean(rewards))
        multi = [getattr(env.unwrapped, "interaction", "single") != "single" for env, _, _ in episodes]
        attempts: list[str | None] = [None] * len(episodes)
        if cfg.sft_demonstrations == "corrective" and any(multi):
            attempts = self._base_attempts([o for (_, o, _), m in zip(episodes, multi) if m],
                                           [i for i, m in zip(part, multi) if m], params, multi)
        demos = []
        for (env, o, info), m, attempt in zip(episodes, multi, attempts):
            demos += oracle_demonstration(env, o, info, attempt) if m else [(o, info["optimal_action"])]
        tok = self._agent.processor.tokenizer
        obs = [o for o, _ in demos]
        ids = [tok.encode(answer, add_special_tokens=False) + [self._eos] for _, answer in demos]
        self.model.train()
        total, rows = all_reduce_sum([sum(len(i) for i in ids), len(ids)], self.dist)  # the step's, every rank's

        def loss_fn(logp, mask, idx):
            return sft_loss_from_logprobs(logp, mask) * (float(mask.sum()) / total)

        loss, _ = self._backward(obs, ids, loss_fn)
        metrics["loss"] = all_reduce_sum([loss], self.dist)[0]
        metrics["grad_norm"] = self._update()
        metrics["completion_length"] = total / rows

    def _base_attempts(self, observations, indices: list[int], params: SamplingParams,
                       multi: list[bool]) -> list[str | None]:
        """``corrective`` SFT: a first attempt on each multi-step scene (global indices ``indices``) drawn from
        the base model (the adapter switched off), None for single-step scenes."""
        active = self._agent.active_adapter
        self._agent.set_adapter(None)
        try:
            with torch.no_grad():
                drawn = iter(g[0].text for g in distributed.sample(
                    self._agent, observations, indices, dataclasses.replace(params, n=1), self._per_prompt))
        finally:
            self._agent.set_adapter(active)
        return [next(drawn) if m else None for m in multi]

    # -- evaluation ----------------------------------------------------------------------
    def eval_decoding(self) -> SamplingParams:
        """The held-out evaluation's decoding: the ``eval_*`` fields (default the paper's and every
        evaluation command's, :data:`agents.backends.base.EVAL_DECODING`), seeded with ``eval_seed``
        as ``cubeworld eval --seed`` seeds its agent, so ``cubeworld eval --agent vlm:MODEL --env ENV
        -n eval_episodes --seed eval_seed`` reproduces the "before" figure."""
        return self.config.eval_sampling_params()

    def evaluate_policy(self, env_id: str | None = None, n_episodes: int | None = None) -> EvaluationResult:
        """Held-out result of the current policy on ``env_id`` (default the first evaluated env) on the
        seeds from ``eval_seed``, with :meth:`eval_decoding`."""
        cfg = self.config
        env_id = env_id or heldout.eval_env_ids(cfg)[0]
        return self.evaluate_envs(n_episodes, [env_id])[env_id]

    def evaluate_envs(self, n_episodes: int | None = None,
                      env_ids: list[str] | None = None) -> dict[str, EvaluationResult]:
        """:meth:`evaluate_policy` on each env of the run (:func:`training.heldout.eval_env_ids`) or of ``env_ids``."""
        agent = self._agent
        saved = agent.sampling
        agent.sampling = self.eval_decoding()
        self.model.eval()
        try:
            return heldout.evaluate_envs(agent, self.config, env_ids=env_ids, n_episodes=n_episodes)
        finally:
            agent.sampling = saved

    def _log_trajectories(self, writer: Any, step: int, n: int = 2) -> None:
        """TensorBoard ``trajectories/ENV_ID``: ``n`` held-out episodes of each multi-step env as image strips
        (the images the policy saw, its answers, rewards and feedback; :func:`evaluation.strips.trajectory_strip`),
        played with the evaluation decoding, as TRL's and verl's completion tables show samples."""
        import gymnasium as gym

        from evaluation.strips import record_episode, trajectory_strip

        agent, saved = self._agent, self._agent.sampling
        agent.sampling = self.eval_decoding()
        self.model.eval()
        try:
            for env_id in heldout.eval_env_ids(self.config):
                env = gym.make(env_id, render_mode="rgb_array", **self.config.env_kwargs)
                if getattr(env.unwrapped, "interaction", "single") != "single":
                    strips = []
                    for k in range(n):
                        turns, final = record_episode(env, agent, self.config.eval_seed + k)
                        strips.append(trajectory_strip(turns, final_image=final))
                    width = max(st.shape[1] for st in strips)
                    padded = [np.pad(st, ((0, 0), (0, width - st.shape[1]), (0, 0)), constant_values=255)
                              for st in strips]
                    writer.add_image(f"trajectories/{env_id}", np.concatenate(padded, 0), step, dataformats="HWC")
                env.close()
        finally:
            agent.sampling = saved

    # -- the loop ------------------------------------------------------------------------
    def train(self, resume: bool = False, progress: bool = True) -> TrainResult:
        """Run (or continue, with ``resume``) the training loop; returns held-out results.

        Raises:
            FileExistsError: ``output_dir`` holds a previous run and ``resume`` is False.
            NothingToResumeError: ``resume`` is True but ``output_dir/checkpoints`` holds no complete
                checkpoint (a FileNotFoundError; nothing is loaded or written).
        """
        from torch.utils.tensorboard import SummaryWriter
        from tqdm.auto import tqdm

        cfg = self.config
        ckpt = latest_checkpoint(self.output_dir)
        if ckpt is not None and not resume:
            raise FileExistsError(f"{self.output_dir} already holds a run (checkpoint {ckpt.name}); "
                                  "pass resume=True (--resume) to continue it, or choose another output_dir")
        if ckpt is None and resume:
            where = self.output_dir / "checkpoints"
            raise NothingToResumeError(
                f"nothing to resume: {where} {'holds no complete checkpoint' if where.is_dir() else 'does not exist'}; "
                "give the output_dir (--output-dir) of the run to continue, or drop resume (--resume) to start a new run")
        self.dist = dist = distributed.from_env()
        check_world_size(cfg.prompts_per_step, cfg.rollout_seeding, dist.world_size)
        self._per_prompt = distributed.per_prompt(cfg.rollout_seeding, dist)
        self._setup()
        start, before = 0, None
        if ckpt is not None:  # every rank: the same adapter, optimizer, scheduler (and rank 0's RNG state)
            state = load_checkpoint(ckpt, self.model, self.optimizer, self.scheduler)
            start = int(state["step"])
            before = heldout.results_from_dict(state.get("extra_state", {}).get("before"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        metrics_path, writer = self.output_dir / "metrics.jsonl", None
        if dist.is_main:  # rank 0 alone writes the run's files and evaluates
            cfg.to_yaml(self.output_dir / "config.yaml")
            truncate_metrics(metrics_path, start)
            writer = SummaryWriter(str(self.output_dir / "tensorboard"))
        self._publish_adapter(start)  # before the first generation, the evaluation before training included
        if dist.is_main and before is None and cfg.eval_episodes > 0:
            before = self.evaluate_envs()
            self._log(writer, metrics_path, {"step": 0, **heldout.eval_metrics(before)})
            self._log_trajectories(writer, 0)
        bar = tqdm(total=cfg.max_steps, initial=start, desc=f"{cfg.objective} {cfg.env_id}", unit="step",
                   disable=not (progress and dist.is_main))
        step = start
        for step in range(start + 1, cfg.max_steps + 1):
            t0 = time.perf_counter()
            metrics: dict[str, Any] = {"step": step}
            (self._sft_step if cfg.objective == "sft" else self._rl_step)(step, metrics)
            metrics["lr"] = self.scheduler.get_last_lr()[0]
            self._publish_adapter(step)  # part of the step's cost with a disk-reading engine
            metrics["time_step_s"] = time.perf_counter() - t0
            if dist.is_main and cfg.eval_every and step % cfg.eval_every == 0 and step != cfg.max_steps:
                metrics.update(heldout.eval_metrics(self.evaluate_envs()))
                self._log_trajectories(writer, step)
            if dist.is_main and (step % max(cfg.log_every, 1) == 0 or "eval_reward" in metrics):
                self._log(writer, metrics_path, metrics)
            if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.max_steps:
                if dist.is_main:
                    save_checkpoint(self.output_dir, step, self.model, self.optimizer, self.scheduler,
                                    extra_state={"before": heldout.results_to_dict(before)})
                distributed.barrier(dist)
            bar.update(1)
            bar.set_postfix({k: round(metrics[k], 3) for k in ("reward_mean", "loss", "eval_reward")
                             if k in metrics})
        bar.close()
        after, per_env = None, {}
        if dist.is_main and cfg.eval_episodes > 0:
            after = self.evaluate_envs()
            self._log(writer, metrics_path, {"step": step, **heldout.eval_metrics(after)})
            self._log_trajectories(writer, step)
            base = heldout.baselines(cfg)
            heldout.write_result(self.output_dir / "result.json", step, before, after, base,
                                 decoding={**self.eval_decoding().to_dict(), "batch_size": EVAL_BATCH_SIZE})
            per_env = {env_id: {"before": (before or {}).get(env_id), "after": ev, **base[env_id]}
                       for env_id, ev in after.items()}
        if writer is not None:
            writer.close()
        self.pool.close()
        distributed.barrier(dist)  # the other ranks end when rank 0 has written the results
        distributed.close(dist)
        first = next(iter(per_env.values()), {})
        return TrainResult(self.output_dir, step, first.get("before", next(iter((before or {}).values()), None)),
                           first.get("after"), first.get("constant_baseline"), first.get("constant_answer"), per_env)

    def _publish_adapter(self, step: int) -> None:
        """Save the adapter as ``rollout_adapter/v{step}`` and hand it to a backend that reads adapters from
        disk (vLLM caches them by id: a new version gets a new id); older versions' folders are deleted."""
        if not getattr(self._agent.backend, "needs_adapter_folder", False):
            return
        root = self.output_dir / ("rollout_adapter" + (f"-rank{self.dist.rank}" if self.dist.distributed else ""))
        path = root / f"v{step}"
        with atomic_directory(path) as tmp:  # the engine never sees a half-written adapter
            self.model.save_pretrained(str(tmp))
        self._agent.mark_adapter_updated(path=path)
        for old in root.iterdir():
            if old != path and old.name.startswith("v"):
                shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def _log(writer: Any, path: Path, metrics: dict[str, Any]) -> None:
        step = int(metrics["step"])
        for key, value in metrics.items():
            if key != "step" and isinstance(value, (int, float)):
                writer.add_scalar(key, value, step)
        with open(path, "a") as f:
            f.write(json.dumps(metrics) + "\n")


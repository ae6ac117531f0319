"""The trainer: one loop, the objective (``sft``, ``grpo``, ``gspo``) a setting.

Per optimizer step (the paper's section 3.3, restated in DESIGN.md section 4):

* ``grpo`` / ``gspo``: ``prompts_per_step`` fresh scenes, ``group_size``
  completions each from the current policy (the generation backend), rewards
  from the environment, advantages normalised within each group
  (:func:`training.objectives.group_advantages`), and the clipped surrogate of
  :func:`training.objectives.policy_loss` (token-level ratio for GRPO,
  sequence-level for GSPO), no KL term unless ``kl_coef > 0``. Groups whose
  rewards are all equal carry no signal and are skipped (and counted).
  Old-policy log-probabilities are recomputed by the training model: one
  update per batch, so they equal the current log-probabilities detached (as
  in TRL with one iteration), and a backend mismatch cannot bias the ratio;
  the backend/trainer gap is logged instead.
* ``sft``: ``prompts_per_step * group_size`` fresh scenes, cross-entropy on
  the oracle answer (``info["optimal_action"]``), completion tokens only.

Only the LoRA adapter trains (PEFT; the base stays bitwise unchanged). Logs go
to TensorBoard and ``metrics.jsonl`` under ``output_dir``; checkpoints (the
adapter in PEFT format plus optimizer, scheduler and RNG state) are written
atomically and ``resume=True`` continues from the latest one. Every step draws
its scenes and sampling seed from ``(seed, step)``, so a resumed CPU run ends
at the same adapter weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.atomic import atomic_directory, write_text_atomic
from agents.backends.base import EVAL_BATCH_SIZE, SamplingParams
from agents.baselines import RandomAgent
from evaluation.evaluate import EvaluationResult, evaluate

from .checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .objectives import degenerate_groups, group_advantages, policy_loss, sft_loss_from_logprobs
from .rollouts import EnvPool, choose_envs, collect_rollouts

__all__ = ["Trainer", "TrainResult", "NothingToResumeError", "lora_target_regex"]


class NothingToResumeError(FileNotFoundError):
    """``resume=True`` but the run folder holds no complete checkpoint; the message says where it looked."""

_VISION_TARGETS = ("qkv", "attn.proj", "gate_proj", "up_proj", "down_proj")


def lora_target_regex(target_modules: list[str], train_vision: bool) -> str:
    """PEFT ``target_modules`` regex: the named language-model modules, and the vision encoder's if asked.

    Qwen-VL's vision blocks reuse names such as ``gate_proj``, so plain names would
    silently adapt the vision encoder too; the regex excludes ``visual`` unless
    ``train_vision`` (the paper's vision ablation).
    """
    names = "|".join(sorted(set(target_modules)))
    language = rf"^(?!.*visual).*\.({names})$"
    if not train_vision:
        return language
    vision = r"^.*visual.*\.(" + "|".join(m.replace(".", r"\.") for m in _VISION_TARGETS) + ")$"
    return f"(?:{language})|(?:{vision})"


@dataclass
class TrainResult:
    """What a run ends with: held-out evaluations before and after, and where its files are."""

    output_dir: Path
    steps: int
    before: EvaluationResult | None
    after: EvaluationResult | None
    baseline: EvaluationResult | None
    baseline_answer: str | None = None


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

    # -- set-up --------------------------------------------------------------------------
    def _setup(self) -> None:
        from peft import LoraConfig
        from transformers import get_scheduler

        from agents.vlm import VLMAgent

        cfg = self.config
        torch.manual_seed(cfg.seed)
        if self._agent is None:
            device = None if cfg.device == "auto" else cfg.device
            dtype = None if cfg.dtype == "auto" else cfg.dtype
            self._agent = VLMAgent.from_pretrained(cfg.model, load_in_4bit=cfg.load_in_4bit,
                                                   backend=cfg.backend, device=device, dtype=dtype)
        agent = self._agent
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=lora_target_regex(cfg.target_modules, cfg.train_vision))
        agent.load_adapter(lora, name="default")
        self.model = agent.model
        for name, param in self.model.named_parameters():
            param.requires_grad_("lora_" in name)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.scheduler = get_scheduler(cfg.lr_schedule, self.optimizer, num_warmup_steps=cfg.warmup_steps,
                                       num_training_steps=cfg.max_steps)
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

    def _backward(self, observations, token_ids, loss_fn, total: float) -> tuple[float, list[torch.Tensor]]:
        """Forward/backward in ``grad_accum_steps`` micro-batches; ``loss_fn(logp, mask, idx)`` gives
        (loss, weight) per micro-batch, weights summing to 1 over the batch."""
        chunks = np.array_split(np.arange(len(token_ids)), self.config.grad_accum_steps)
        loss_sum, all_logp = 0.0, []
        for idx in chunks:
            if len(idx) == 0:
                continue
            rows = self._agent.completion_logprobs([observations[i] for i in idx], [token_ids[i] for i in idx])
            logp, mask = _pad(rows)
            loss, weight = loss_fn(logp, mask, idx)
            (loss * weight).backward()
            loss_sum += float(loss.detach()) * weight
            all_logp.extend(r.detach() for r in rows)
        return loss_sum, all_logp

    def _rl_step(self, step: int, metrics: dict[str, Any]) -> None:
        cfg = self.config
        env_ids, seeds, rng = self._scenes(step, cfg.prompts_per_step)
        params = cfg.sampling_params(seed=int(rng.integers(2**31 - 1)))
        self.model.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            batch = collect_rollouts(self._agent, self.pool, env_ids, seeds, params)
        metrics["time_rollout_s"] = time.perf_counter() - t0
        rewards = torch.as_tensor(batch.rewards, dtype=torch.float32)
        advantages = group_advantages(rewards)
        degenerate = degenerate_groups(rewards)
        lengths = batch.completion_lengths
        metrics.update(reward_mean=float(rewards.mean()), reward_std=float(rewards.std()),
                       legal_rate=float(batch.legal.mean()), completion_length=float(lengths.mean()),
                       degenerate_fraction=float(degenerate.float().mean()),
                       completions_per_s=rewards.numel() / max(metrics["time_rollout_s"], 1e-9),
                       tokens_per_s=float(lengths.sum()) / max(metrics["time_rollout_s"], 1e-9))
        keep = [p for p in range(len(batch.completions)) if not (cfg.skip_degenerate_groups and degenerate[p])]
        obs, ids, adv, backend_lp = [], [], [], []
        for p in keep:
            for g, completion in enumerate(batch.completions[p]):
                obs.append(batch.observations[p])
                ids.append(list(completion.token_ids))
                adv.append(float(advantages[p, g]))
                backend_lp.append(completion.logprobs)
        metrics["groups_used"] = len(keep)
        if not keep:
            metrics.update(loss=0.0, clip_fraction=0.0, logprob_gap=0.0)
            return
        ref_rows = None
        if cfg.kl_coef > 0:
            # The reference is the base model: the same weights with the adapter switched off.
            self.model.eval()
            with torch.no_grad(), self.model.disable_adapter():
                ref_rows = self._agent.completion_logprobs(obs, ids)
        self.model.train()
        adv_t = torch.tensor(adv)
        norm = cfg.loss_normalisation
        kls = []
        total = float(sum(len(i) for i in ids)) if norm == "tokens" else float(len(ids))
        clip_fracs = []

        def loss_fn(logp, mask, idx):
            ref = _pad([ref_rows[i] for i in idx])[0] if ref_rows is not None else None
            loss, stats = policy_loss(logp, logp.detach(), adv_t[idx], mask,
                                      level="sequence" if cfg.objective == "gspo" else "token",
                                      clip_eps_low=cfg.clip_eps_low, clip_eps_high=cfg.clip_eps_high,
                                      normalise_by=norm, kl_coef=cfg.kl_coef, ref_logprobs=ref)
            clip_fracs.append(float(stats["clip_fraction"]))
            kls.append(float(stats["kl"]))
            part = float(mask.sum()) if norm == "tokens" else float(len(idx))
            return loss, part / max(total, 1.0)

        metrics["loss"], trainer_lp = self._backward(obs, ids, loss_fn, total)
        metrics["clip_fraction"] = float(np.mean(clip_fracs))
        if ref_rows is not None:
            metrics["kl"] = float(np.mean(kls))
        gaps = [abs(a - b) for row_b, row_t in zip(backend_lp, trainer_lp) for a, b in zip(row_b, row_t.tolist())]
        metrics["logprob_gap"] = float(np.mean(gaps)) if gaps else 0.0

    def _sft_step(self, step: int, metrics: dict[str, Any]) -> None:
        cfg = self.config
        env_ids, seeds, rng = self._scenes(step, cfg.prompts_per_step * cfg.group_size)
        obs, ids = [], []
        tok = self._agent.processor.tokenizer
        for slot, (env_id, seed) in enumerate(zip(env_ids, seeds)):
            o, info = self.pool.get(env_id, slot).reset(seed=seed)
            obs.append(o)
            ids.append(tok.encode(info["optimal_action"], add_special_tokens=False) + [self._eos])
        # The training reward of SFT: one on-policy sample on each of the step's first
        # prompts_per_step scenes, scored before the update (SFT itself never samples).
        self.model.eval()
        params = cfg.sampling_params(seed=int(rng.integers(2**31 - 1)))
        with torch.no_grad():
            samples = self._agent.sample(obs[:cfg.prompts_per_step], params=params)
        rewards = [self.pool.get(env_ids[i], i).unwrapped.judge(group[0].text)[0] for i, group in enumerate(samples)]
        metrics["reward_mean"] = float(np.mean(rewards))
        self.model.train()
        total = float(sum(len(i) for i in ids))

        def loss_fn(logp, mask, idx):
            return sft_loss_from_logprobs(logp, mask), float(mask.sum()) / total

        metrics["loss"], _ = self._backward(obs, ids, loss_fn, total)
        metrics["completion_length"] = total / len(ids)

    # -- evaluation ----------------------------------------------------------------------
    def eval_decoding(self) -> SamplingParams:
        """The held-out evaluation's decoding: the ``eval_*`` fields (default the paper's and every
        evaluation command's, :data:`agents.backends.base.EVAL_DECODING`), seeded with ``eval_seed``
        as ``cubeworld eval --seed`` seeds its agent, so ``cubeworld eval --agent vlm:MODEL --env ENV
        -n eval_episodes --seed eval_seed`` reproduces the "before" figure."""
        return self.config.eval_sampling_params()

    def evaluate_policy(self, n_episodes: int | None = None) -> EvaluationResult:
        """Held-out mean reward of the current policy on seeds from ``eval_seed`` (:meth:`eval_decoding`)."""
        cfg = self.config
        agent = self._agent
        saved = agent.sampling
        agent.sampling = self.eval_decoding()
        self.model.eval()
        try:
            return evaluate(agent, cfg.env_id, n_episodes=n_episodes or cfg.eval_episodes, seed=cfg.eval_seed,
                            batch_size=EVAL_BATCH_SIZE, env_kwargs=cfg.env_kwargs)
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
        self._setup()
        start, before = 0, None
        if ckpt is not None:
            state = load_checkpoint(ckpt, self.model, self.optimizer, self.scheduler)
            start = int(state["step"])
            if state.get("extra_state", {}).get("before"):
                before = EvaluationResult.from_dict(state["extra_state"]["before"])
        self.output_dir.mkdir(parents=True, exist_ok=True)
        cfg.to_yaml(self.output_dir / "config.yaml")
        metrics_path = self.output_dir / "metrics.jsonl"
        _truncate_metrics(metrics_path, start)
        writer = SummaryWriter(str(self.output_dir / "tensorboard"))
        if before is None and cfg.eval_episodes > 0:
            before = self.evaluate_policy()
            self._log(writer, metrics_path, {"step": 0, "eval_reward": before.mean_reward,
                                             "eval_ci_low": before.ci95[0], "eval_ci_high": before.ci95[1],
                                             "eval_legal_rate": before.legal_rate})
        bar = tqdm(total=cfg.max_steps, initial=start, desc=f"{cfg.objective} {cfg.env_id}", unit="step",
                   disable=not progress)
        step = start
        for step in range(start + 1, cfg.max_steps + 1):
            t0 = time.perf_counter()
            metrics: dict[str, Any] = {"step": step}
            (self._sft_step if cfg.objective == "sft" else self._rl_step)(step, metrics)
            metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm))
            if math.isfinite(metrics["grad_norm"]):
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            metrics["lr"] = self.scheduler.get_last_lr()[0]
            metrics["time_step_s"] = time.perf_counter() - t0
            if cfg.backend == "vllm":
                self._publish_adapter(step)
            if cfg.eval_every and step % cfg.eval_every == 0 and step != cfg.max_steps:
                ev = self.evaluate_policy()
                metrics.update(eval_reward=ev.mean_reward, eval_ci_low=ev.ci95[0], eval_ci_high=ev.ci95[1],
                               eval_legal_rate=ev.legal_rate)
            if step % max(cfg.log_every, 1) == 0 or "eval_reward" in metrics:
                self._log(writer, metrics_path, metrics)
            if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.max_steps:
                save_checkpoint(self.output_dir, step, self.model, self.optimizer, self.scheduler,
                                extra_state={"before": before.to_dict() if before else None})
            bar.update(1)
            bar.set_postfix({k: round(metrics[k], 3) for k in ("reward_mean", "loss", "eval_reward")
                             if k in metrics})
        bar.close()
        after = baseline = baseline_answer = None
        if cfg.eval_episodes > 0:
            after = self.evaluate_policy()
            self._log(writer, metrics_path, {"step": step, "eval_reward": after.mean_reward,
                                             "eval_ci_low": after.ci95[0], "eval_ci_high": after.ci95[1],
                                             "eval_legal_rate": after.legal_rate})
            baseline_answer, baseline = _constant_baseline(cfg)
            random = evaluate(RandomAgent(seed=cfg.seed), cfg.env_id, n_episodes=cfg.eval_episodes,
                              seed=cfg.eval_seed, env_kwargs=cfg.env_kwargs)
            _write_result(self.output_dir / "result.json", step, {
                "before": before, "after": after, "constant_baseline": baseline, "random_baseline": random},
                constant_answer=baseline_answer, decoding={**self.eval_decoding().to_dict(),
                                                           "batch_size": EVAL_BATCH_SIZE})
        writer.close()
        self.pool.close()
        return TrainResult(self.output_dir, step, before, after, baseline, baseline_answer)

    def _publish_adapter(self, step: int) -> None:
        # vLLM reads adapters from disk and caches them by id: save each version, bump the id.
        path = self.output_dir / "rollout_adapter" / f"v{step}"
        with atomic_directory(path) as tmp:  # the engine never sees a half-written adapter
            self.model.save_pretrained(str(tmp))
        self._agent.mark_adapter_updated(path=path)

    @staticmethod
    def _log(writer: Any, path: Path, metrics: dict[str, Any]) -> None:
        step = int(metrics["step"])
        for key, value in metrics.items():
            if key != "step" and isinstance(value, (int, float)):
                writer.add_scalar(key, value, step)
        with open(path, "a") as f:
            f.write(json.dumps(metrics) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines after ``step``: a resumed run rewrites what the killed run logged past its checkpoint.

    Rewritten atomically: a crash during the resume leaves the old log whole."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    write_text_atomic(path, "".join(ln + "\n" for ln in lines))


def _constant_baseline(cfg: TrainConfig) -> tuple[str, EvaluationResult]:
    """The image-blind shortcut: the best constant answer chosen on the held-out seeds themselves
    (:func:`evaluation.best_constant_answer`; choosing on the test seeds makes the bar stricter),
    and its evaluation there."""
    from agents.baselines import ConstantAgent
    from evaluation.best_constant import best_constant_answer

    best = best_constant_answer(cfg.env_id, n_episodes=cfg.eval_episodes, seed=cfg.eval_seed,
                                env_kwargs=cfg.env_kwargs)
    return best.answer, evaluate(ConstantAgent(best.answer), cfg.env_id, n_episodes=cfg.eval_episodes,
                                 seed=cfg.eval_seed, env_kwargs=cfg.env_kwargs)


def _write_result(path: Path, step: int, results: dict[str, EvaluationResult | None], **extra: Any) -> None:
    """``result.json``: the held-out summaries (no episodes) and ``extra``, written atomically."""
    summary: dict[str, Any] = {"steps": step, **extra}
    for name, res in results.items():
        if res is not None:
            summary[name] = {k: v for k, v in res.to_dict().items() if k != "episodes"}
    write_text_atomic(path, json.dumps(summary, indent=1) + "\n")

"""A run's held-out evaluation: every env it trains on, before and after, against two baselines.

A single-task run evaluates ``env_id``; a multi-task run (``env_mix``) evaluates every env of
the mix, one row each (the paper's A.9.4 reports each task of a mixture). Each env is
evaluated on the held-out seeds ``eval_seed .. eval_seed + eval_episodes - 1`` with the
evaluation decoding (:meth:`training.config.TrainConfig.eval_sampling_params`), and compared
with the image-blind shortcut (the best constant answer, chosen on those same seeds, so the bar
is stricter) and a uniformly random legal answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agents.backends.base import EVAL_BATCH_SIZE
from envs.atomic import write_text_atomic
from evaluation.evaluate import EvaluationResult, evaluate

from .config import TrainConfig

__all__ = ["eval_env_ids", "evaluate_envs", "baselines", "eval_metrics", "write_result", "results_to_dict",
           "results_from_dict"]


def eval_env_ids(cfg: TrainConfig) -> list[str]:
    """The envs a run is evaluated on: every env of ``env_mix`` in its order, else ``[env_id]``."""
    return list(cfg.env_mix) if cfg.env_mix else [cfg.env_id]


def evaluate_envs(agent: Any, cfg: TrainConfig, env_ids: list[str] | None = None,
                  n_episodes: int | None = None) -> dict[str, EvaluationResult]:
    """The agent's held-out result on each of ``env_ids`` (default :func:`eval_env_ids`), on
    ``n_episodes`` (default ``eval_episodes``) seeds from ``eval_seed``; the agent's sampling as
    the caller set it."""
    return {env_id: evaluate(agent, env_id, n_episodes=n_episodes or cfg.eval_episodes, seed=cfg.eval_seed,
                             batch_size=EVAL_BATCH_SIZE, env_kwargs=cfg.env_kwargs)
            for env_id in (env_ids or eval_env_ids(cfg))}


def baselines(cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """Per env: ``{"constant_answer": str, "constant_baseline": EvaluationResult, "random_baseline": ...}``.

    The constant is :func:`evaluation.best_constant.best_constant_answer` on the held-out seeds
    (None, both, where no constant applies: TowerBuild-v0's ``COLOUR, X``); the random agent is
    seeded with ``cfg.seed``."""
    from agents.baselines import ConstantAgent, RandomAgent
    from evaluation.best_constant import CONSTANT_FORMATS, answer_format, best_constant_answer

    out = {}
    for env_id in eval_env_ids(cfg):
        kwargs = dict(n_episodes=cfg.eval_episodes, seed=cfg.eval_seed, env_kwargs=cfg.env_kwargs)
        row: dict[str, Any] = {"constant_answer": None, "constant_baseline": None}
        if answer_format(env_id, cfg.env_kwargs) in CONSTANT_FORMATS:
            best = best_constant_answer(env_id, **kwargs)
            row = {"constant_answer": best.answer,
                   "constant_baseline": evaluate(ConstantAgent(best.answer), env_id, **kwargs)}
        out[env_id] = {**row, "random_baseline": evaluate(RandomAgent(seed=cfg.seed), env_id, **kwargs)}
    return out


def eval_metrics(results: dict[str, EvaluationResult]) -> dict[str, float]:
    """Log scalars: ``eval_reward``, ``eval_ci_low/high``, ``eval_legal_rate`` (multi-step envs also
    ``eval_success_at_1``, ``eval_success_at_k``, ``eval_auccess``; ``eval_reward`` is then the mean
    summed return) of a single env; with several, the same per env under ``/ENV_ID`` and
    ``eval_reward`` the unweighted mean over envs."""
    def scalars(ev: EvaluationResult, suffix: str = "") -> dict[str, float]:
        out = {f"eval_reward{suffix}": ev.mean_reward, f"eval_ci_low{suffix}": ev.ci95[0],
               f"eval_ci_high{suffix}": ev.ci95[1], f"eval_legal_rate{suffix}": ev.legal_rate}
        if ev.success_at_k is not None:  # multi-step: the return is a sum; success is the headline
            out.update({f"eval_success_at_1{suffix}": ev.success_at_k[0],
                        f"eval_success_at_k{suffix}": ev.success_at_k[-1], f"eval_auccess{suffix}": ev.auccess})
        return out

    if len(results) == 1:
        return scalars(next(iter(results.values())))
    out: dict[str, float] = {}
    for env_id, ev in results.items():
        out.update(scalars(ev, f"/{env_id}"))
    out["eval_reward"] = sum(ev.mean_reward for ev in results.values()) / len(results)
    return out


def results_to_dict(results: dict[str, EvaluationResult] | None) -> dict[str, Any] | None:
    """JSON-ready ``{env_id: EvaluationResult.to_dict()}`` (for the checkpoint's extra state)."""
    return None if results is None else {env_id: ev.to_dict() for env_id, ev in results.items()}


def results_from_dict(data: dict[str, Any] | None) -> dict[str, EvaluationResult] | None:
    """Inverse of :func:`results_to_dict`; also reads a single result (checkpoints before multi-env runs)."""
    if not data:
        return None
    if "mean_reward" in data:
        ev = EvaluationResult.from_dict(data)
        return {ev.env_id: ev}
    return {env_id: EvaluationResult.from_dict(d) for env_id, d in data.items()}


def _summary(ev: EvaluationResult | None) -> dict[str, Any] | None:
    return None if ev is None else {k: v for k, v in ev.to_dict().items() if k != "episodes"}


def write_result(path: Path, step: int, before: dict[str, EvaluationResult] | None,
                 after: dict[str, EvaluationResult], base: dict[str, dict[str, Any]], **extra: Any) -> None:
    """``result.json``, written atomically: ``steps``, ``extra`` (e.g. ``decoding``), and per env
    (``"envs": {env_id: {before, after, constant_baseline, random_baseline, constant_answer}}``,
    summaries without episodes); the first env's rows also at the top level (single-task runs)."""
    envs = {}
    for env_id, ev in after.items():
        envs[env_id] = {"before": _summary((before or {}).get(env_id)), "after": _summary(ev),
                        "constant_baseline": _summary(base[env_id]["constant_baseline"]),
                        "random_baseline": _summary(base[env_id]["random_baseline"]),
                        "constant_answer": base[env_id]["constant_answer"]}
    first = next(iter(envs.values()))
    summary = {"steps": step, **extra, **{k: v for k, v in first.items() if v is not None}, "envs": envs}
    write_text_atomic(path, json.dumps(summary, indent=1) + "\n")

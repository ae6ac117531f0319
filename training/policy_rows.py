"""From a step's trajectories to the rows the policy loss sees, and the step's rollout metrics.

One row is one turn's generated tokens (exactly as sampled), conditioned on the observation
of that turn (its history is context, not loss). A single-step batch gives today's rows in
today's order: group by group, completion by completion, the same advantages
(:func:`training.objectives.group_advantages` of the rewards), so the one-turn case of the
multi-turn loop trains exactly as the single-step trainer did.

Row order within a micro-batch: every trajectory's first turn first, in trajectory order (so
a group's first turns, which share one observation object, stay consecutive and their
prompt is scored once), then the later turns. Micro-batches split the step's trajectories,
never a trajectory, so a sequence-level ratio (GSPO over a trajectory's tokens) sees all of
its rows at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from envs.rewards import ILLEGAL_OUTCOMES

from .credit import trajectory_advantages, trajectory_return, turn_advantages
from .objectives import degenerate_groups
from .rollouts import Trajectory

__all__ = ["PolicyRows", "policy_rows", "rollout_metrics"]


@dataclass
class PolicyRows:
    """The loss's rows (one per generated turn) of the kept groups.

    Attributes:
        observations, token_ids, advantages, engine_logprobs: one entry per row
            (``engine_logprobs``: float32 ``(len(token_ids[i]),)``, the backend's).
        groups: the row's group (scene) index, for ``group_tokens`` normalisation.
        trajectories: the row's trajectory index (``p * G + g``), for GSPO's trajectory ratio.
        turns: the row's turn index (0-based).
        groups_used: groups kept (not degenerate, or ``skip_degenerate_groups`` off).
    """

    observations: list[dict[str, Any]] = field(default_factory=list)
    token_ids: list[list[int]] = field(default_factory=list)
    advantages: list[float] = field(default_factory=list)
    engine_logprobs: list[torch.Tensor] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    trajectories: list[int] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    groups_used: int = 0

    def chunks(self, n: int) -> list[np.ndarray]:
        """Row indices of ``n`` micro-batches: the trajectories split in order, first turns first."""
        ids = list(dict.fromkeys(self.trajectories))  # in row order
        out = []
        for part in np.array_split(np.array(ids, dtype=np.int64), n):
            members = set(part.tolist())
            rows = [i for i, t in enumerate(self.trajectories) if t in members]
            out.append(np.array(sorted(rows, key=lambda i: (self.turns[i] > 0, i)), dtype=np.int64))
        return out


ReturnType = str | Callable[[str], str]


def _type(return_type: ReturnType, group: list[Trajectory]) -> str:
    return return_type(group[0].env_id) if callable(return_type) else return_type


def _returns(groups: list[list[Trajectory]], return_type: ReturnType, gamma: float) -> torch.Tensor:
    # float32, as the single-step trainer held its rewards: same advantages bit for bit.
    return torch.tensor([[trajectory_return(t.rewards, _type(return_type, g), gamma) for t in g] for g in groups],
                        dtype=torch.float32)


def policy_rows(groups: list[list[Trajectory]], advantage: str = "trajectory", return_type: ReturnType = "sum",
                gamma: float = 1.0, skip_degenerate: bool = True) -> PolicyRows:
    """The rows of ``groups`` (``P`` lists of ``G`` trajectories) with their advantages.

    ``return_type``: a :data:`training.credit.RETURN_TYPES` name, or a function of the group's env id
    giving one (:meth:`training.config.TrainConfig.return_type_for`).
    ``advantage="trajectory"``: each trajectory's group-normalised return on all its rows;
    ``"turn"``: each turn's group-normalised return-to-go (:mod:`training.credit`). A group is
    degenerate (skipped with ``skip_degenerate``) when every advantage of it is zero.

    Raises:
        ValueError: an unknown ``advantage``, or as :func:`training.credit.returns_to_go`.
    """
    if advantage not in ("trajectory", "turn"):
        raise ValueError(f"advantage must be 'trajectory' or 'turn', got {advantage!r}")
    adv = []  # [p][i][turn]
    for g in groups:
        rewards, kind = [t.rewards for t in g], _type(return_type, g)
        if advantage == "trajectory":
            adv.append([[a] * len(r) for a, r in zip(trajectory_advantages([rewards], kind, gamma)[0], rewards)])
        else:
            adv.append(turn_advantages([rewards], kind, gamma)[0])
    # group_advantages zeroes a degenerate group exactly, and only it (turn level: every turn index).
    degenerate = [all(a == 0.0 for traj in g for a in traj) for g in adv]
    rows = PolicyRows()
    size = len(groups[0]) if groups else 0
    for p, group in enumerate(groups):
        if skip_degenerate and degenerate[p]:
            continue
        rows.groups_used += 1
        for i, traj in enumerate(group):
            for k, turn in enumerate(traj.turns):
                rows.observations.append(turn.observation)
                rows.token_ids.append(list(turn.completion.token_ids))
                rows.advantages.append(float(adv[p][i][k]))
                rows.engine_logprobs.append(torch.tensor(turn.completion.logprobs, dtype=torch.float32))
                rows.groups.append(p)
                rows.trajectories.append(p * size + i)
                rows.turns.append(k)
    return rows


def rollout_metrics(groups: list[list[Trajectory]], seconds: float, return_type: ReturnType = "sum",
                    gamma: float = 1.0) -> dict[str, float]:
    """The step's rollout figures for ``metrics.jsonl``: single-step keys as before, plus, for
    multi-turn batches, ``turns_per_trajectory``, ``success_rate`` and ``reward_turn_k`` (mean
    reward of turn k over the trajectories that made one)."""
    returns = _returns(groups, return_type, gamma)
    turns = [t for g in groups for traj in g for t in traj.turns]
    lengths = np.array([len(t.completion.token_ids) for t in turns])
    legal = np.array([t.outcome not in ILLEGAL_OUTCOMES for t in turns])
    out = {"reward_mean": float(returns.mean()), "reward_std": float(returns.std()),
           "legal_rate": float(legal.mean()), "completion_length": float(lengths.mean()),
           "degenerate_fraction": float(degenerate_groups(returns).float().mean()),
           "completions_per_s": len(turns) / max(seconds, 1e-9),
           "tokens_per_s": float(lengths.sum()) / max(seconds, 1e-9)}
    trajectories = [traj for g in groups for traj in g]
    longest = max(len(t.turns) for t in trajectories)
    if longest > 1:
        out["turns_per_trajectory"] = float(np.mean([len(t.turns) for t in trajectories]))
        out["success_rate"] = float(np.mean([t.success for t in trajectories]))
        for k in range(longest):
            out[f"reward_turn_{k + 1}"] = float(np.mean([t.turns[k].reward for t in trajectories
                                                         if len(t.turns) > k]))
    return out

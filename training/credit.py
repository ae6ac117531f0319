"""Credit for multi-turn trajectories: returns and group-normalised advantages (pure, table-tested).

A GRPO group is ``G`` trajectories from one initial scene (DESIGN.md section 4); trajectory
``i`` is its per-turn rewards ``r_1 .. r_{T_i}`` (lengths differ: a success ends a retry early).

Returns (``return_type``), at turn ``t`` (the return-to-go; the trajectory's return is ``t = 1``):

* ``sum``: ``G_t = sum_{k >= t} r_k``, the undiscounted return.
* ``final``: ``G_t = r_T``, the last turn's reward (the outcome the episode ended on).
* ``discounted``: ``G_t = sum_{k >= t} gamma^(k - t) r_k``.

Advantages (``advantage``):

* ``trajectory`` (VAGEN's and RAGEN's trajectory-level GRPO): ``A_i = (G^i_1 - mean) / (std + eps)``
  over the group's ``G`` returns (:func:`training.objectives.group_advantages`), applied to every
  generated token of trajectory ``i``.
* ``turn``: at each turn index ``t``, the return-to-go ``G^i_t`` normalised over the group's
  trajectories that made a ``t``-th turn, applied to that turn's tokens; a turn index only one
  trajectory reached gets 0 (nothing to compare with), as a group of one does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .objectives import group_advantages

__all__ = ["RETURN_TYPES", "ADVANTAGES", "returns_to_go", "trajectory_return", "trajectory_advantages",
           "turn_advantages"]

RETURN_TYPES = ("sum", "final", "discounted")
ADVANTAGES = ("trajectory", "turn")


def _check(return_type: str, gamma: float) -> None:
    if return_type not in RETURN_TYPES:
        raise ValueError(f"return_type must be one of {RETURN_TYPES}, got {return_type!r}")
    if not (isinstance(gamma, (int, float)) and 0 <= gamma <= 1):
        raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")


def returns_to_go(rewards: Sequence[float], return_type: str = "sum", gamma: float = 1.0) -> list[float]:
    """``[G_1, ..., G_T]`` of one trajectory's per-turn ``rewards`` (see the module docstring).

    Raises:
        ValueError: no rewards, a non-finite reward, an unknown ``return_type`` or ``gamma`` outside [0, 1].
    """
    _check(return_type, gamma)
    rewards = [float(r) for r in rewards]
    if not rewards or not all(math.isfinite(r) for r in rewards):
        raise ValueError(f"a trajectory needs >= 1 finite reward, got {rewards!r}")
    if return_type == "final":
        return [rewards[-1]] * len(rewards)
    discount = 1.0 if return_type == "sum" else float(gamma)
    out, running = [], 0.0
    for r in reversed(rewards):
        running = r + discount * running
        out.append(running)
    return out[::-1]


def trajectory_return(rewards: Sequence[float], return_type: str = "sum", gamma: float = 1.0) -> float:
    """``G_1``: the return of one trajectory."""
    return returns_to_go(rewards, return_type, gamma)[0]


def trajectory_advantages(groups: Sequence[Sequence[Sequence[float]]], return_type: str = "sum",
                          gamma: float = 1.0) -> list[list[float]]:
    """``A[p][i]``: trajectory ``i`` of group ``p``'s group-normalised return (every group has ``G`` trajectories).

    Raises:
        ValueError: groups of different sizes, or as :func:`returns_to_go`.
    """
    sizes = {len(g) for g in groups}
    if len(sizes) > 1:
        raise ValueError(f"every group needs the same number of trajectories, got sizes {sorted(sizes)}")
    # float32, as the single-step trainer held its rewards: the same advantages bit for bit.
    returns = torch.tensor([[trajectory_return(t, return_type, gamma) for t in g] for g in groups],
                           dtype=torch.float32)
    return group_advantages(returns).tolist()


def turn_advantages(groups: Sequence[Sequence[Sequence[float]]], return_type: str = "sum",
                    gamma: float = 1.0) -> list[list[list[float]]]:
    """``A[p][i][t]``: the group-normalised return-to-go of turn ``t`` of trajectory ``i`` in group ``p``.

    Raises:
        ValueError: as :func:`returns_to_go`.
    """
    out = []
    for group in groups:
        togo = [returns_to_go(t, return_type, gamma) for t in group]
        adv = [[0.0] * len(t) for t in togo]
        for t in range(max(len(x) for x in togo)):
            members = [i for i, x in enumerate(togo) if len(x) > t]
            if len(members) < 2:
                continue
            norm = group_advantages(torch.tensor([[togo[i][t] for i in members]], dtype=torch.float32))[0]
            for i, a in zip(members, norm.tolist()):
                adv[i][t] = a
        out.append(adv)
    return out

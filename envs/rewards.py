"""Reward functions of the block-tower tasks: pure, table-tested.

The reward schedule is the paper's (Schulze Buschoff et al. 2026, section 3.2,
restated in DESIGN.md section 2). ``d`` is always a distance in block edges
between where the answer put the moved cube and the optimal (centred) position.

=====================  ===========================  =================
task                   outcome                      reward
=====================  ===========================  =================
binary                 correct / incorrect          1 / 0
binary                 unparseable                  -1
x-only                 unparseable, out_of_range    -5
x-only                 stable                       20 exp(-d^2)
x-only                 unstable                     2 exp(-d^2) - 2
x-y                    unparseable, out_of_range    -5
x-y                    below_floor                  -4
x-y                    inside_tower                 2 exp(-d^2) - 4
x-y                    unstable (no taller tower)   2 exp(-d^2) - 2
x-y                    stable (taller tower)        20 exp(-d^2)
=====================  ===========================  =================
"""

from __future__ import annotations

import math

__all__ = ["OUTCOMES", "ILLEGAL_OUTCOMES", "LEGAL_OUTCOMES", "binary_reward", "placement_reward", "ILLEGAL_REWARD"]

OUTCOMES = (
    "stable",
    "unstable",
    "unparseable",
    "out_of_range",
    "below_floor",
    "inside_tower",
    "correct",
    "incorrect",
)

ILLEGAL_OUTCOMES = ("unparseable", "out_of_range", "below_floor")
"""Outcomes of an answer that is not legal (it did not parse, or its numbers are out of range or
below the floor: :class:`envs.answers.ParsedAnswer` ``outcome``); an episode with one of them
counts against the legal-answer rate."""
LEGAL_OUTCOMES = tuple(o for o in OUTCOMES if o not in ILLEGAL_OUTCOMES)
"""The other outcomes: the answer was legal and was simulated (or, binary, judged)."""

ILLEGAL_REWARD = {"unparseable": -5.0, "out_of_range": -5.0, "below_floor": -4.0}


def binary_reward(outcome: str) -> float:
    """Reward of a binary (Yes/No) episode: correct 1, incorrect 0, unparseable -1.

    Raises:
        ValueError: ``outcome`` is not one of ``correct``, ``incorrect``, ``unparseable``.
    """
    table = {"correct": 1.0, "incorrect": 0.0, "unparseable": -1.0}
    if outcome not in table:
        raise ValueError(f"binary outcome must be one of {sorted(table)}, got {outcome!r}")
    return table[outcome]


def placement_reward(outcome: str, distance: float | None = None) -> float:
    """Reward of an x-only or x-y episode.

    Args:
        outcome: one of ``stable``, ``unstable``, ``inside_tower`` (need ``distance``)
            or ``unparseable``, ``out_of_range``, ``below_floor``.
        distance: ``d`` in block edges, >= 0.

    Raises:
        ValueError: unknown ``outcome``, or a distance-based outcome without a
            finite non-negative ``distance``.
    """
    if outcome in ILLEGAL_REWARD:
        return ILLEGAL_REWARD[outcome]
    shaped = {"stable": (20.0, 0.0), "unstable": (2.0, -2.0), "inside_tower": (2.0, -4.0)}
    if outcome not in shaped:
        raise ValueError(
            f"placement outcome must be one of {sorted(shaped) + sorted(ILLEGAL_REWARD)}, "
            f"got {outcome!r}"
        )
    if distance is None or not math.isfinite(distance) or distance < 0:
        raise ValueError(f"outcome {outcome!r} needs a finite distance >= 0, got {distance!r}")
    scale, shift = shaped[outcome]
    return scale * math.exp(-(distance**2)) + shift

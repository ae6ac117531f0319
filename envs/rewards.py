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
build                  unparseable, out_of_range,   -5
                       unknown_colour
build                  unstable (a collapse)        -1
build                  stable                       gain in tower height, cubes
=====================  ===========================  =================

The build rows are DESIGN.md section 7's (``TowerBuild-v0``), ours rather than the paper's.

Binary polarity (:func:`binary_outcome`): what ``Yes`` asserts. The 2026 paper's stability
prompts ask whether the tower is stable (``yes_means="stable"``); the ICML 2025 Cubeworld
pre-prompt of ``TowerStability-v0`` asks whether it will fall (``yes_means="falls"``). The
rewards are the same 1 / 0 / -1 either way. ``labels`` names a format's two answers
(``("Yes", "No")``, or ``("True", "False")`` for ``ShapeStacksStability-v0``:
:data:`envs.answers.BINARY_LABELS`); ``yes_means`` is what the first asserts.
"""

from __future__ import annotations

import math

__all__ = ["OUTCOMES", "ILLEGAL_OUTCOMES", "LEGAL_OUTCOMES", "binary_reward", "placement_reward", "build_reward",
           "ILLEGAL_REWARD", "COLLAPSE_REWARD", "YES_MEANS", "binary_truth", "binary_outcome"]

OUTCOMES = (
    "stable",
    "unstable",
    "unparseable",
    "out_of_range",
    "below_floor",
    "inside_tower",
    "correct",
    "incorrect",
    "unknown_colour",
)

ILLEGAL_OUTCOMES = ("unparseable", "out_of_range", "below_floor", "unknown_colour")
"""Outcomes of an answer that is not legal (it did not parse, or its numbers are out of range or
below the floor: :class:`envs.answers.ParsedAnswer` ``outcome``); an episode with one of them
counts against the legal-answer rate."""
LEGAL_OUTCOMES = tuple(o for o in OUTCOMES if o not in ILLEGAL_OUTCOMES)
"""The other outcomes: the answer was legal and was simulated (or, binary, judged)."""

ILLEGAL_REWARD = {"unparseable": -5.0, "out_of_range": -5.0, "below_floor": -4.0, "unknown_colour": -5.0}
COLLAPSE_REWARD = -1.0
YES_MEANS = ("stable", "falls")
"""What a binary task's ``Yes`` asserts about the tower (see the module docstring)."""


def binary_truth(stable: bool, yes_means: str = "stable", labels: tuple[str, str] = ("Yes", "No")) -> str:
    """The correct answer (``labels[0]``, ``"Yes"``, or ``labels[1]``, ``"No"``) for a tower whose
    simulated verdict is ``stable``, when the first answer asserts ``yes_means``.

    Raises:
        ValueError: ``yes_means`` is not one of :data:`YES_MEANS`.
    """
    if yes_means not in YES_MEANS:
        raise ValueError(f"yes_means must be one of {YES_MEANS}, got {yes_means!r}")
    return labels[0] if bool(stable) == (yes_means == "stable") else labels[1]


def binary_outcome(answer: str | None, stable: bool, yes_means: str = "stable",
                   labels: tuple[str, str] = ("Yes", "No")) -> str:
    """``correct``, ``incorrect`` or ``unparseable`` (``answer`` None) for a parsed answer of ``labels``.

    Raises:
        ValueError: ``yes_means`` is not one of :data:`YES_MEANS`.
    """
    truth = binary_truth(stable, yes_means, labels)
    if answer is None:
        return "unparseable"
    return "correct" if answer == truth else "incorrect"


def binary_reward(outcome: str) -> float:
    """Reward of a binary (Yes/No) episode: correct 1, incorrect 0, unparseable -1.

    Raises:
        ValueError: ``outcome`` is not one of ``correct``, ``incorrect``, ``unparseable``.
    """
    table = {"correct": 1.0, "incorrect": 0.0, "unparseable": -1.0}
    if outcome not in table:
        raise ValueError(f"binary outcome must be one of {sorted(table)}, got {outcome!r}")
    return table[outcome]


def build_reward(outcome: str, gain: int | None = None) -> float:
    """Reward of one ``TowerBuild-v0`` move.

    Args:
        outcome: ``stable`` (needs ``gain``), ``unstable`` (a collapse: -1), or
            ``unparseable``, ``out_of_range``, ``unknown_colour`` (-5).
        gain: stable tower height after the move minus before, in cubes (an int >= 0).

    Raises:
        ValueError: unknown ``outcome``, or ``stable`` without an int ``gain`` >= 0.
    """
    if outcome in ("unparseable", "out_of_range", "unknown_colour"):
        return ILLEGAL_REWARD[outcome]
    if outcome == "unstable":
        return COLLAPSE_REWARD
    if outcome != "stable":
        raise ValueError(f"build outcome must be one of stable, unstable, unparseable, out_of_range, "
                         f"unknown_colour; got {outcome!r}")
    if isinstance(gain, bool) or not isinstance(gain, int) or gain < 0:
        raise ValueError(f"a stable move needs its height gain, an int >= 0 (cubes), got {gain!r}")
    return float(gain)


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

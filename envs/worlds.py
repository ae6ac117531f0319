"""What each scene family brings to a :class:`envs.tower_env.TowerEnv` episode (DESIGN.md sections 2 and 8).

One table, :data:`FAMILY_SPECS`: for each family, its seeded generator, the physics world
that simulates it, the generator kwargs an env accepts, and, for the worlds of DESIGN.md
section 8, the question's ground truth and the ``info`` keys the world adds. A new world
adds a row here and a task row in :data:`WORLD_TASKS`; :class:`~envs.tower_env.TowerEnv`
itself does not change.

The ground truth of a binary question (:attr:`FamilySpec.question`) is a boolean
``stable``: whether the tower (or, for a counterfactual, the rest of it) stands. The
task's :data:`YES_MEANS` entry says which answer asserts it (``"stable"``: the first of
the format's two answers means it stands; ``"falls"``: the first means it falls), so
:func:`envs.rewards.binary_truth` turns it into the correct answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import pyramids, shapestacks, stability_towers
from . import scenes as scene_lib
from .answers import BINARY_LABELS
from .physics import Verdict, World
from .scenes import Scene

__all__ = ["FamilySpec", "FAMILY_SPECS", "WORLD_TASKS", "YES_MEANS", "WORLD_KWARGS", "polarity", "env_polarity"]

Question = Callable[[World, Scene, Verdict], tuple[bool, dict[str, Any]]]


def _as_shown(world: World, scene: Scene, initial: Verdict) -> tuple[bool, dict[str, Any]]:
    """The question is about the scene as shown: its simulated verdict, no extra keys."""
    return initial.stable, {}


@dataclass(frozen=True)
class FamilySpec:
    """One scene family.

    Attributes:
        generate: ``generate(rng, block_range, **kwargs) -> Scene``; raises ValueError on a bad range or kwarg.
        make_world: the physics world that simulates the family (one per env).
        kwargs: generator kwargs beyond the range an env accepts (names of :data:`WORLD_KWARGS`).
        range_kwarg: the env kwarg that gives the generator's ``(min, max)`` range
            (``n_blocks``; ``rows`` for pyramids, ``height`` for ShapeStacks stacks).
        question: ``question(world, scene, initial) -> (stable, extra_info)``, called at reset
            after ``initial = world.settle()`` of the scene as shown (the world may load other
            scenes; nothing reads it afterwards before the next load).
        info: ``info(scene) -> dict`` of JSON-serialisable keys the family adds from reset on.
    """

    generate: Callable[..., Scene]
    make_world: Callable[[], World] = World
    kwargs: tuple[str, ...] = ()
    range_kwarg: str = "n_blocks"
    question: Question = _as_shown
    info: Callable[[Scene], dict[str, Any]] | None = field(default=None)


FAMILY_SPECS: dict[str, FamilySpec] = {
    "top_block": FamilySpec(scene_lib.top_block),
    "side_block": FamilySpec(scene_lib.side_block),
    "build": FamilySpec(scene_lib.tower_build, kwargs=("sizes",)),
    stability_towers.FAMILY: FamilySpec(stability_towers.stability_tower, stability_towers.StabilityWorld,
                                        info=stability_towers.tower_info),
    pyramids.FAMILY: FamilySpec(pyramids.pyramid, pyramids.PyramidWorld, range_kwarg="rows",
                                question=pyramids.counterfactual, info=pyramids.pyramid_info),
    shapestacks.FAMILY: FamilySpec(shapestacks.shape_stack, shapestacks.ShapeStacksWorld, kwargs=("difficulty",),
                                   range_kwarg="height", info=shapestacks.stack_info),
}

# The tasks of DESIGN.md section 8's worlds: task -> (family, answer format, default range).
WORLD_TASKS: dict[str, tuple[str, str, tuple[int, int]]] = {
    "tower_stability": (stability_towers.FAMILY, "binary", stability_towers.N_BLOCKS_LIMITS),
    "pyramid_counterfactual": (pyramids.FAMILY, "binary", pyramids.ROWS_LIMITS),
    "shapestacks_stability": (shapestacks.FAMILY, "true_false", shapestacks.HEIGHT_LIMITS),
}
# What the first answer of each binary task asserts (envs.rewards.YES_MEANS): the ICML 2025
# pre-prompts ask "Will the tower fall?" and "would any other blocks fall?".
YES_MEANS: dict[str, str] = {"top_block_stability": "stable", "tower_stability": "falls",
                             "pyramid_counterfactual": "falls", "shapestacks_stability": "stable"}
# Every world kwarg an env takes (None: not given). The range kwargs are the families' range_kwarg.
WORLD_KWARGS = ("n_blocks", "rows", "height", "sizes", "difficulty")


def polarity(task: str | None, answer_format: str | None = None) -> tuple[tuple[str, str], str]:
    """``(labels, yes_means)`` of a binary task: its two answers and what the first asserts.

    ``task`` is ``info["task"]`` (or a registered id's ``task`` kwarg); any task that is not a
    world of :data:`WORLD_TASKS` (``top_block_stability``, ``real_tower_stability``, None) is
    the 2026 paper's ``(("Yes", "No"), "stable")``, its labels those of ``answer_format`` when
    given (a task known only by its format, e.g. an unknown prompt asking True or False).
    """
    fmt = WORLD_TASKS[task][1] if task in WORLD_TASKS else (answer_format or "binary")
    return BINARY_LABELS.get(fmt, BINARY_LABELS["binary"]), YES_MEANS.get(task, "stable")


def env_polarity(env_id: str) -> tuple[tuple[str, str], str]:
    """:func:`polarity` of a registered id's task (ids without a ``task`` kwarg, such as the real
    photos, or not registered: the 2026 paper's ``(("Yes", "No"), "stable")``)."""
    import gymnasium as gym

    try:
        task = gym.spec(env_id).kwargs.get("task")
    except gym.error.Error:
        task = None
    return polarity(task)

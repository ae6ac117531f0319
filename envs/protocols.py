"""Episode protocols (DESIGN.md section 7): how many answers an episode takes, and what each turn shows.

One :class:`~envs.tower_env.TowerEnv` holds the scene, the physics and the rewards; a
protocol only sequences its turns, so every turn is judged by the same code as a
single-step episode (``TowerEnv.judge``) and earns exactly the single-step reward of
that answer on that state.

=============  ==========================================  ======================================
protocol       one step is                                 the episode ends (terminated / truncated)
=============  ==========================================  ======================================
``single``     the one answer                              after it (terminated)
``retry``      an attempt on the *initial* scene (PHYRE)   on success / after ``max_turns`` attempts
``sequential`` a move of the target cube from wherever     on success / after ``max_turns`` moves
               the last simulation left it
``build``      ``COLOUR, X``: lift a floor cube, set it    success (all cubes stacked), a collapse or
               down (``TowerBuild-v0``, :mod:`envs.build`) no cube left to lift / ``max_turns`` moves
=============  ==========================================  ======================================

Success (``info["success"]``): retry and sequential, the tower stands (outcome ``stable``)
with the moved cube within ``success_distance`` block edges of the optimum (default 0.25:
reward >= 20 exp(-0.0625) = 18.8 of 20); build, a stable tower of every cube.
Hitting the turn limit without ending is ``truncated`` (Gymnasium's time-limit flag).

Feedback (``feedback``): the next turn's image is the last answer's result simulated to
rest (``"outcome"``, ``"image"``) or the first turn's image again (``"none"``: nothing new
is shown); its prompt is :func:`envs.prompts.next_turn_prompt`, after one sentence of what
happened (:func:`envs.prompts.feedback_sentence`) for ``"outcome"`` only. The state the
next turn acts on is ``info["scene_now"]``: the initial scene (retry), or the poses the
simulation left (sequential, build; unchanged when nothing was moved: an illegal answer,
an x-y answer inside the tower, an unknown colour).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from gymnasium import spaces

from .answers import completion_space
from .prompts import feedback_sentence, next_turn_prompt

if TYPE_CHECKING:
    from .tower_env import TowerEnv

__all__ = ["INTERACTIONS", "FEEDBACK_MODES", "PROTOCOL_TASKS", "DEFAULT_TURNS", "SUCCESS_DISTANCE",
           "EpisodeProtocol", "check_protocol"]

INTERACTIONS = ("single", "retry", "sequential", "build")
FEEDBACK_MODES = ("outcome", "image", "none")
# Which tasks each protocol serves: retry needs a placement answer with a shaped reward; sequential a
# cube that can be moved again from anywhere (the top-block cube slides at its own height, so it cannot).
PROTOCOL_TASKS = {
    "single": ("top_block_stability", "top_block_x_only", "side_block_x_only", "side_block_xy", "tower_stability",
               "pyramid_counterfactual", "shapestacks_stability"),
    "retry": ("top_block_x_only", "side_block_x_only", "side_block_xy"),
    "sequential": ("side_block_x_only", "side_block_xy"),
    "build": ("tower_build",),
}
DEFAULT_TURNS = {"single": 1, "retry": 3, "sequential": 3, "build": 6}
SUCCESS_DISTANCE = 0.25  # block edges
# Outcomes after which nothing in the world moved: the next turn acts on the same state.
_UNMOVED = ("unparseable", "out_of_range", "below_floor", "inside_tower", "unknown_colour")


def check_protocol(task: str, interaction: str | None, max_attempts: int | None, max_moves: int | None,
                   feedback: str, success_distance: float) -> tuple[str, int]:
    """Validate the protocol kwargs of a task; returns ``(interaction, max_turns)``.

    ``interaction=None`` is the task's own protocol (``build`` for ``tower_build``, else
    ``single``). ``max_attempts`` belongs to ``retry``, ``max_moves`` to ``sequential``
    and ``build``; unset, they default to :data:`DEFAULT_TURNS`.

    Raises:
        ValueError: an unknown protocol or feedback mode, a protocol the task does not
            serve, a turn limit for another protocol or below 1, a bad success distance.
    """
    if interaction is None:
        interaction = "build" if task in PROTOCOL_TASKS["build"] else "single"
    if interaction not in INTERACTIONS:
        raise ValueError(f"interaction must be one of {INTERACTIONS}, got {interaction!r}")
    if task not in PROTOCOL_TASKS[interaction]:
        serving = [i for i, tasks in PROTOCOL_TASKS.items() if task in tasks]
        raise ValueError(f"interaction={interaction!r} does not apply to task {task!r} (it serves "
                         f"{list(PROTOCOL_TASKS[interaction])}); {task!r} takes interaction in {serving}")
    if feedback not in FEEDBACK_MODES:
        raise ValueError(f"feedback must be one of {FEEDBACK_MODES}, got {feedback!r}")
    if not (isinstance(success_distance, (int, float)) and math.isfinite(success_distance)
            and success_distance > 0):
        raise ValueError(f"success_distance must be a finite number > 0 (block edges), got {success_distance!r}")
    limits = {"max_attempts": (max_attempts, ("retry",)), "max_moves": (max_moves, ("sequential", "build"))}
    turns = DEFAULT_TURNS[interaction]
    for name, (value, owners) in limits.items():
        if value is None:
            continue
        if interaction not in owners:
            raise ValueError(f"{name} applies to interaction in {list(owners)}, not {interaction!r}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        turns = value
    return interaction, turns


def history_space(image_space: spaces.Box, prompt_space: spaces.Text) -> spaces.Sequence:
    """``Sequence(Dict(image, prompt, answer))``: the earlier turns of an episode, oldest first."""
    turn = spaces.Dict({"image": image_space, "prompt": prompt_space, "answer": completion_space()})
    return spaces.Sequence(turn, stack=False)


class EpisodeProtocol:
    """The turn bookkeeping of one multi-step episode of a :class:`~envs.tower_env.TowerEnv`.

    Args:
        interaction: ``retry``, ``sequential`` or ``build``.
        max_turns: the turn limit K.
        feedback: one of :data:`FEEDBACK_MODES`.
        success_distance: block edges (retry, sequential).
    """

    def __init__(self, interaction: str, max_turns: int, feedback: str, success_distance: float) -> None:
        self.interaction = interaction
        self.max_turns = max_turns
        self.feedback = feedback
        self.success_distance = float(success_distance)
        self.turn = 0
        self.history: list[dict[str, Any]] = []
        self.success = False

    def reset(self) -> None:
        self.turn, self.history, self.success = 0, [], False

    def info(self, env: TowerEnv) -> dict[str, Any]:
        """The keys section 7 adds to ``info``, for the state the next turn acts on."""
        return {"interaction": self.interaction, "max_turns": self.max_turns, "attempt": self.turn,
                "success": self.success, "scene_now": env.state.to_dict()}

    def observation(self, image, prompt: str) -> dict[str, Any]:
        """``{"image", "prompt", "history"}`` (copies: callers may keep and mutate observations)."""
        history = tuple({"image": t["image"].copy(), "prompt": t["prompt"], "answer": t["answer"]}
                        for t in self.history)
        return {"image": image.copy(), "prompt": prompt, "history": history}

    def _succeeded(self, env: TowerEnv, info: dict[str, Any]) -> bool:
        if info["outcome"] != "stable":
            return False
        if self.interaction == "build":
            return bool(info["tower_height"] == len(env.state.cubes))
        return info["distance"] is not None and info["distance"] <= self.success_distance

    def step(self, env: TowerEnv, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """Judge ``action`` on the current state, move to the next state, build the next turn."""
        current = env.current_observation()
        reward, info = env.judge(action)
        self.turn += 1
        self.history.append({"image": current["image"], "prompt": current["prompt"],
                             "answer": action if isinstance(action, str) else repr(action)})
        moved = info["outcome"] not in _UNMOVED
        if self.interaction == "retry":
            image = env.result_frame() if self.feedback != "none" else None
        elif moved:
            image = env.result_frame() if self.feedback != "none" else env.settle_result()
            env.set_state(env.world_state())
        else:  # nothing moved: the state, and so its picture, is the one this turn showed
            image = current["image"]
        self.success = self._succeeded(env, info)
        terminated = self.success or (self.interaction == "build" and (
            info["outcome"] == "unstable" or not env.movable_colours()))
        truncated = not terminated and self.turn >= self.max_turns
        if self.feedback == "none":
            image = self.history[0]["image"]
        sentence = None
        if self.feedback == "outcome":
            sentence = feedback_sentence(info["outcome"], reward, simulated=info.get("stable_after") is not None)
        prompt = next_turn_prompt(self.interaction, sentence, env.movable_colours())
        env.set_observation({"image": image, "prompt": prompt})
        info.update(self.info(env), optimal_action=env.optimal_action())
        if self.interaction == "build":
            info["movable_colours"] = env.movable_colours()
        return self.observation(image, prompt), float(reward), terminated, truncated, info

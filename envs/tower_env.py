"""The block-tower environment: one class, whose variants are the paper's four tasks and our worlds."""

from __future__ import annotations

import math
import string
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from . import build as build_lib
from .answers import BINARY_LABELS, completion_space, is_binary, parse_answer
from .physics import Verdict
from .prompts import prompt_for, reasoning_variant, tower_build_prompt
from .protocols import SUCCESS_DISTANCE, EpisodeProtocol, check_protocol, history_space
from .rewards import (
    ILLEGAL_REWARD,
    binary_outcome,
    binary_reward,
    binary_truth,
    build_reward,
    placement_reward,
)
from .scenes import Scene
from .styles import Styler
from .worlds import FAMILY_SPECS, WORLD_KWARGS, WORLD_TASKS, YES_MEANS

__all__ = ["TowerEnv", "TASKS", "ALL_TASKS", "YES_MEANS"]

# The paper's four tasks: task -> (scene family, answer format, default n_blocks range of the tower).
# Code that loops over the paper's tasks (the tiny base's format training) reads TASKS, so it stays four.
TASKS: dict[str, tuple[str, str, tuple[int, int]]] = {
    "top_block_stability": ("top_block", "binary", (2, 4)),
    "top_block_x_only": ("top_block", "x", (2, 4)),
    "side_block_x_only": ("side_block", "x", (1, 3)),
    "side_block_xy": ("side_block", "xy", (1, 3)),
}
# Every task a TowerEnv takes: the paper's, TowerBuild-v0 (ours) and the worlds of DESIGN.md section 8
# (envs.worlds, which also holds YES_MEANS: what the first answer of each binary task asserts).
ALL_TASKS: dict[str, tuple[str, str, tuple[int, int]]] = {
    **TASKS, "tower_build": ("build", "colour_x", (2, 4)), **WORLD_TASKS,
}

# Block edges: resting cubes of a simulated state interpenetrate by up to ~1e-4 (measured: 2e-5 per
# contact); placements on such a state treat that as touching, not as overlap.
SETTLED_CONTACT_TOL = 1e-3


class TowerEnv(gym.Env):
    """A block-tower task: look at a rendered tower, answer in text, get rewarded; one turn or several.

    ## Description

    Each episode shows one seeded scene of a family (:mod:`envs.scenes`, :mod:`envs.worlds`):
    a tower whose top cube is displaced (``top_block``), a tower with a red cube on the floor
    beside it (``side_block``), a grey base cube with coloured cubes on the floor (``build``),
    or a world of DESIGN.md section 8 (towers, pyramids, shape stacks). The agent answers in text,
    inside ``<answer>...</answer>``; the answer is simulated in pybullet
    (:mod:`envs.physics`). A single-step episode ends there; a multi-step one
    (``interaction``, :mod:`envs.protocols`) goes on for up to ``max_turns`` turns.
    Units: 100 answer units are one block edge.

    ## Tasks (``task`` kwarg; one registered id each)

    * ``top_block_stability`` (``TopBlockStability-v0``): is the tower stable? ``Yes``/``No``.
    * ``top_block_x_only`` (``TopBlockXOnly-v0``): move the top cube by x in [-600, 600];
      it keeps its height, so a cube slid off the tower falls.
    * ``side_block_x_only`` (``SideBlockXOnly-v0``): move the red cube by x in [-600, 600];
      it is set on top of the tower at its new x (and falls if it misses).
    * ``side_block_xy`` (``SideBlockXY-v0``): move the red cube by x in [-600, 600] and
      up in [0, 1000]; it then comes to rest on whatever is below that point.
    * ``tower_build`` (``TowerBuild-v0``, always multi-step): ``COLOUR, X`` lifts that
      floor cube and sets it down at X in [-600, 600] from the base cube's centre
      (:mod:`envs.build`).
    * the worlds, single-step: ``tower_stability`` (``TowerStability-v0``, will it fall? Yes =
      falls), ``pyramid_counterfactual`` (``PyramidCounterfactual-v0``, would others fall without
      the red block? Yes = they fall), ``shapestacks_stability`` (``ShapeStacksStability-v0``,
      ``True`` = balanced); their modules :mod:`envs.stability_towers`, :mod:`envs.pyramids`,
      :mod:`envs.shapestacks` give scenes, splits and rules.

    ## Action Space

    ``Text`` of up to 2**17 printable characters (:func:`envs.answers.completion_space`): the
    whole completion, 32k tokens of reasoning included. Any ``str`` is accepted and judged (model
    output can hold any character, at any length); the answer is the last ``<answer>...</answer>``
    block (:func:`envs.answers.parse_answer`). Bad answers are outcomes, never errors.

    ## Observation Space

    Single-step: ``Dict(image=Box(0, 255, (image_size, image_size, 3), uint8), prompt=Text)``;
    ``step`` returns the observation of ``reset`` (the result is in ``info`` and ``render()``).
    Multi-step adds ``history``: a tuple of the earlier turns, each ``Dict(image, prompt, answer)``,
    oldest first, so one observation rebuilds the chat (:mod:`envs.protocols`).

    ## Rewards

    The table of :mod:`envs.rewards`: binary 1 / 0 / -1 (which answer is correct:
    :data:`envs.worlds.YES_MEANS`); x-only 20 exp(-d^2) if the tower stands, 2 exp(-d^2) - 2
    if anything falls, -5 for unparseable or out-of-range answers; x-y adds -4 below the
    floor and 2 exp(-d^2) - 4 inside the tower (``d``: block edges between the moved cube, as
    answered, and the centred position on top of the tower). Build: the gain in stable tower
    height (cubes), -1 for a collapse, -5 for an illegal answer or an unknown colour. Every
    turn of a multi-step episode earns the reward of its answer on the state it acts on.

    ## Episode End

    Single-step: ``terminated=True`` after the one answer; ``truncated`` is always False. Multi-step:
    ``terminated`` on success (and, build, on a collapse or when no cube is left to lift), ``truncated``
    after ``max_turns`` turns otherwise. :meth:`judge` scores an answer on the current state without
    taking a turn, so a group of answers to one state (GRPO) costs one reset.

    ## Info

    After ``reset``: ``task`` and ``answer_format`` (``binary``, ``x``, ``xy`` or ``colour_x``), ``scene``
    (the initial scene, JSON-serialisable; ``reset(options={"scene": ...})`` replays it exactly), ``offset``
    (target cube's x offset from the tower axis, block edges; None for build), ``n_blocks`` (cubes in the
    tower; build: coloured cubes), ``optimal_action`` (the answer text an oracle gives for the state the
    next answer acts on; read from the privileged scene), and ``stable_initially`` (simulated verdict of the
    scene as shown). After ``step`` also: ``parsed_action``, ``parse_error``, ``outcome`` (see
    :data:`envs.rewards.OUTCOMES`), ``distance`` (``d``, or None), ``stable_after`` (verdict after the
    answer, or None when nothing was simulated) and ``sim_steps``. Multi-step, after ``reset`` and every
    ``step``: ``interaction``, ``max_turns``, ``attempt`` (turns answered, 1-based; 0 after reset),
    ``success``, ``scene_now`` (the state the next turn acts on); build adds ``movable_colours`` and, after
    a step, ``tower_height`` and ``gain``. The worlds of DESIGN.md section 8 add ``yes_means`` and ``falls``
    (the question's simulated truth: the tower, or for a counterfactual the rest of it, falls) and their own
    keys (:mod:`envs.worlds`; ``tower_stability``: :func:`envs.stability_towers.tower_info`, where
    ``offset`` is the top cube's x offset from the cube below).

    ## Arguments

    * ``task``: one of :data:`ALL_TASKS`.
    * ``render_mode``: None or ``"rgb_array"`` (the current state; after a step, the answer's result at rest).
    * ``prompt``: replaces the task's (first turn's) prompt, used verbatim; ``reasoning``: its long-reasoning variant.
    * ``image_size``: side of the square image, pixels (default 256).
    * ``style`` (``"plain"``, ``"lerer"``) and ``randomise`` (bool or dict): the images' look, once
      per episode (:mod:`envs.styles`); scenes, verdicts and rewards are the same under every look.
    * ``n_blocks``: ``(min, max)`` cubes in the tower (build: coloured cubes, within [1, 4];
      ``tower_stability``: within [2, 7], default ``(2, 7)``).
    * ``interaction``: ``"single"`` (default), ``"retry"``, ``"sequential"``; build is
      always ``"build"`` (:mod:`envs.protocols` says which task takes which).
    * ``max_attempts`` (retry) / ``max_moves`` (sequential, build): the turn limit K
      (defaults 3, 3, 6).
    * ``feedback``: ``"outcome"`` (default), ``"image"`` or ``"none"``.
    * ``success_distance``: block edges from the optimum that count as success (0.25).
    * ``sizes``: build only, ``(min, max)`` edge of the coloured cubes (default ``(1, 1)``).
    * ``rows`` (pyramids), ``height`` (ShapeStacks stacks), ``difficulty``: the world kwargs of
      DESIGN.md section 8; each task takes the ones :data:`envs.worlds.FAMILY_SPECS` lists, and
      any other given raises ValueError.

    ## Version History

    * v0: first version; multi-step protocols, TowerBuild-v0 and TowerStability-v0 added
      without changing any episode of the other ids.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        task: str,
        render_mode: str | None = None,
        prompt: str | None = None,
        reasoning: bool = False,
        image_size: int = 256,
        n_blocks: tuple[int, int] | None = None,
        interaction: str | None = None,
        max_attempts: int | None = None,
        max_moves: int | None = None,
        feedback: str = "outcome",
        success_distance: float = SUCCESS_DISTANCE,
        sizes: tuple[float, float] | None = None,
        rows: tuple[int, int] | None = None,
        height: tuple[int, int] | None = None,
        difficulty: str | None = None,
        style: str = "plain", randomise: bool | dict[str, float] = False,
    ) -> None:
        if task not in ALL_TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {sorted(ALL_TASKS)}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if not isinstance(image_size, int) or not 16 <= image_size <= 2048:
            raise ValueError(f"image_size must be an int in [16, 2048], got {image_size!r}")
        self.task = task
        self.family, self.answer_format, default_blocks = ALL_TASKS[task]
        self.interaction, self.max_turns = check_protocol(task, interaction, max_attempts, max_moves,
                                                          feedback, success_distance)
        self.feedback = feedback
        self.yes_means = YES_MEANS.get(task)
        self._spec = FAMILY_SPECS[self.family]
        given = dict(zip(WORLD_KWARGS, (n_blocks, rows, height, sizes, difficulty)))
        accepted = (self._spec.range_kwarg, *self._spec.kwargs)
        for name, value in given.items():
            if value is not None and name not in accepted:
                raise ValueError(f"{name}={value!r} does not apply to task {task!r}, which takes "
                                 f"{' and '.join(accepted)}")
        block_range = given[self._spec.range_kwarg]
        self.n_blocks = _block_range(block_range) if block_range is not None else default_blocks
        self._generator_kwargs = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in given.items() if k in self._spec.kwargs and v is not None}
        # Fail now, not at the first reset, on a bad range.
        self._spec.generate(np.random.default_rng(0), self.n_blocks, **self._generator_kwargs)
        self.render_mode = render_mode
        self.image_size = image_size
        self.styler = Styler(style, randomise, self.family)
        self.reasoning = reasoning
        # The build prompt names the episode's colours: made at reset unless given.
        self._prompt_override = prompt
        self.prompt = prompt if prompt is not None or self.family == "build" else prompt_for(task, reasoning)
        charset = "".join(sorted(set(string.printable) | set(self.prompt or "")))
        image_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        prompt_space = spaces.Text(max_length=max(4096, len(self.prompt or "")), charset=charset)
        obs_spaces = {"image": image_space, "prompt": prompt_space}
        self._protocol: EpisodeProtocol | None = None
        if self.interaction != "single":
            obs_spaces["history"] = history_space(image_space, prompt_space)
            self._protocol = EpisodeProtocol(self.interaction, self.max_turns, feedback, success_distance)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = completion_space()
        self._world = self._spec.make_world()
        self._start: Scene | None = None  # the episode's initial scene
        self._scene: Scene | None = None  # the state the next answer acts on
        self._obs: dict[str, Any] | None = None
        self._initial: Verdict | None = None
        # The binary question's truth (envs.worlds.FamilySpec.question) and the keys it adds to info.
        self._question: tuple[bool, dict[str, Any]] = (True, {})
        self._done = True
        # After an answer: (scene that render() shows, simulate it to rest first?); None before.
        self._result: tuple[Scene, bool] | None = None
        self._result_loaded = False
        self._result_settled = False
        self._frame: np.ndarray | None = None

    # -- Gymnasium API ---------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode: a new seeded scene, or ``options["scene"]`` replayed exactly.

        Raises:
            ValueError: ``options["scene"]`` is not a scene of this task's family.
        """
        super().reset(seed=seed)
        self.styler.new_episode(self.np_random)  # leaves np_random as it was: the scene draws below are unchanged
        if options and options.get("scene") is not None:
            scene = Scene.from_dict(options["scene"])
            if scene.family != self.family:
                raise ValueError(
                    f"options['scene'] is a {scene.family!r} scene; {self.task!r} needs {self.family!r}"
                )
        else:
            scene = self._spec.generate(self.np_random, self.n_blocks, **self._generator_kwargs)
        self._start = self._scene = scene
        self._world.load(scene)
        image = self.styler.render(self._world, self.image_size)
        initial = self._world.settle()
        self._initial = initial
        self._question = self._spec.question(self._world, scene, initial)
        self._done = False
        prompt = self.prompt
        if self.family == "build" and self._prompt_override is None:
            prompt = tower_build_prompt(self.movable_colours())
            prompt = reasoning_variant(prompt) if self.reasoning else prompt
        self._obs = {"image": image, "prompt": prompt}
        # Nothing answered yet: render() shows the observation. The world holds the initial scene.
        self._result, self._result_loaded, self._frame = None, True, None
        info = self._episode_info()
        if self._protocol is None:
            return self._copy_obs(), info
        self._protocol.reset()
        info.update(self._protocol.info(self))
        if self.family == "build":
            info["movable_colours"] = self.movable_colours()
        return self._protocol.observation(image, prompt), info

    def step(self, action: str) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """Judge ``action`` (any ``str``) on the current state and simulate its result: the one
        turn of a single-step episode, or the next turn of a multi-step one.

        Raises:
            RuntimeError: called before ``reset`` or after the episode ended.
        """
        if self._protocol is None:
            reward, info = self.judge(action)
            self._done = True
            return self._copy_obs(), reward, True, False, info
        obs, reward, terminated, truncated, info = self._protocol.step(self, action)
        self._done = terminated or truncated
        return obs, reward, terminated, truncated, info

    def judge(self, action: str) -> tuple[float, dict[str, Any]]:
        """Reward and ``info`` of ``action`` on the current state, without taking a turn.

        ``step`` is ``judge`` plus the turn (and the end of a single-step episode).
        Scoring a group of answers to one state (a GRPO group) calls ``judge`` once
        per answer: the scene is neither regenerated nor rendered again. Each call is
        independent of the others; ``render()`` afterwards shows the last one.

        Raises:
            RuntimeError: called before ``reset`` or after the episode ended.
        """
        if self._done or self._scene is None:
            raise RuntimeError("the episode has ended (or never started): call reset() first")
        self._frame = None
        parsed = parse_answer(action, self.answer_format)
        info = self._episode_info()
        info.update(parsed_action=parsed.value, parse_error=parsed.error, distance=None,
                    stable_after=None, sim_steps=0)
        self._result, self._result_loaded, self._result_settled = (self._scene, True), False, False
        if is_binary(self.answer_format):
            reward, outcome = self._judge_binary(parsed.value)
        elif not parsed.legal:
            reward, outcome = ILLEGAL_REWARD[parsed.outcome], parsed.outcome
        elif self.answer_format == "colour_x":
            reward, outcome, extra = self._judge_build(parsed.value)
            info.update(extra)
        else:
            reward, outcome, extra = self._judge_placement(parsed.value)
            info.update(extra)
        info["outcome"] = outcome
        return float(reward), info

    def render(self) -> np.ndarray | None:
        """``(image_size, image_size, 3)`` uint8 of the current state, or None without a render mode.

        Before the first answer: the scene as observed. After an answer: its result,
        simulated until everything is at rest.
        """
        if self.render_mode is None:
            gym.logger.warn("render() needs render_mode='rgb_array' (gym.make(..., render_mode='rgb_array'))")
            return None
        if self._obs is None:
            raise RuntimeError("render() before reset()")
        if self._result is None:
            return self._obs["image"].copy()
        return self.result_frame().copy()

    def close(self) -> None:
        self._world.close()
        self.styler.close()

    # -- the state, for the protocols (envs.protocols) --------------------
    @property
    def state(self) -> Scene:
        """The scene the next answer acts on (the initial scene until a move changes it)."""
        assert self._scene is not None
        return self._scene

    def set_state(self, scene: Scene) -> None:
        self._scene = scene

    def current_observation(self) -> dict[str, Any]:
        """This turn's ``{"image", "prompt"}`` (not copied)."""
        assert self._obs is not None
        return self._obs

    def set_observation(self, obs: dict[str, Any]) -> None:
        self._obs = obs

    def settle_result(self) -> None:
        """Simulate the last answer's result until everything is at rest (at most once per answer)."""
        assert self._result is not None
        scene, simulate = self._result
        if not self._result_loaded:
            self._world.load(scene)
            self._result_loaded = True
        if simulate and not self._result_settled:
            self._world.run_to_rest()
        self._result_settled = True

    def result_frame(self) -> np.ndarray:
        """The last answer's result at rest, ``(image_size, image_size, 3)`` uint8 (cached; not a copy)."""
        if self._frame is None:
            self.settle_result()
            self._frame = self.styler.render(self._world, self.image_size)
        return self._frame

    def world_state(self) -> Scene:
        """The settled result as a scene: the poses the simulation left (side block: tower bottom to
        top by height, then the red cube, so that ``Scene.tower`` and ``Scene.target`` keep their meaning)."""
        scene = self._world.scene_now()
        if scene.family != "side_block":
            return scene
        tower = sorted(scene.tower, key=lambda c: c.z)
        return Scene(scene.family, (*tower, scene.cubes[scene.target]), len(tower))

    def movable_colours(self) -> list[str]:
        """Build: the colours of the cubes a move can lift now (:func:`envs.build.movable`); else []."""
        if self.family != "build":
            return []
        return [build_lib.colour_name(self.state.cubes[i].color) for i in build_lib.movable(self.state)]

    def optimal_action(self) -> str:
        """The oracle's answer for the current state."""
        return self._optimal_action(self.state)

    # -- judging ---------------------------------------------------------
    def _judge_binary(self, value: str | None) -> tuple[float, str]:
        outcome = binary_outcome(value, self._question[0], self.yes_means, BINARY_LABELS[self.answer_format])
        return binary_reward(outcome), outcome

    def _simulate(self, scene: Scene) -> Verdict:
        self._world.load(scene)
        self._result, self._result_loaded = (scene, True), True
        return self._world.settle()

    def _judge_build(self, value: tuple[str, int]) -> tuple[float, str, dict[str, Any]]:
        colour, x = value
        scene = self.state
        free = {build_lib.colour_name(scene.cubes[i].color): i for i in build_lib.movable(scene)}
        before = len(build_lib.tower_stack(scene))
        extra: dict[str, Any] = {"tower_height": before, "gain": 0}
        if colour not in free:
            extra["parse_error"] = (f"no block of colour {colour!r} can be lifted from the floor "
                                    f"(movable: {sorted(free) or 'none'})")
            return build_reward("unknown_colour"), "unknown_colour", extra
        placed = build_lib.place(scene, free[colour], x / 100.0)
        verdict = self._simulate(placed)
        extra.update(stable_after=verdict.stable, sim_steps=verdict.steps)
        if not verdict.stable:
            return build_reward("unstable"), "unstable", extra
        after = len(build_lib.tower_stack(placed))
        extra.update(tower_height=after, gain=after - before)
        return build_reward("stable", after - before), "stable", extra

    def _judge_placement(self, value: int | tuple[int, int]) -> tuple[float, str, dict[str, Any]]:
        scene = self.state
        target = scene.cubes[scene.target]
        if self.answer_format == "x":
            x = target.x + value / 100.0
            # top block: the cube slides at its own height; side block: it is set on the tower.
            z = target.z if self.family == "top_block" else scene.goal_z
            distance = abs(x - scene.axis)
            verdict = self._simulate(scene.with_target_at(x, z))
            outcome = "stable" if verdict.stable else "unstable"
            return placement_reward(outcome, distance), outcome, _verdict_info(distance, verdict)
        dx, up = value
        x, z = target.x + dx / 100.0, target.z + up / 100.0
        distance = math.hypot(x - scene.axis, z - scene.goal_z)
        requested = scene.with_target_at(x, z)
        # A state a simulation left has its resting contacts sunk by ~1e-4 edges: within that, touching.
        tol = 1e-6 if scene is self._start else SETTLED_CONTACT_TOL
        if any(requested.cubes[requested.target].overlaps(c, eps=tol)
               for i, c in enumerate(requested.cubes) if i != requested.target):
            self._result, self._result_loaded = (requested, False), False
            return placement_reward("inside_tower", distance), "inside_tower", {"distance": distance}
        rest_z = scene.resting_z(x, below=z, tol=1e-9 if scene is self._start else SETTLED_CONTACT_TOL)
        placed = scene.with_target_at(x, rest_z)
        if abs(rest_z - scene.goal_z) > 1e-6:
            # It rests on the floor (or lower than the top): no taller tower, whatever the physics.
            self._result, self._result_loaded = (placed, True), False
            return placement_reward("unstable", distance), "unstable", {"distance": distance}
        verdict = self._simulate(placed)
        outcome = "stable" if verdict.stable else "unstable"
        return placement_reward(outcome, distance), outcome, _verdict_info(distance, verdict)

    def _episode_info(self) -> dict[str, Any]:
        # Built anew on every call: callers keep and mutate infos.
        start = self._start
        build = self.family == "build"
        info = {
            "task": self.task,
            "answer_format": self.answer_format,
            "scene": start.to_dict(),
            "offset": None if build else start.offset,
            "n_blocks": len(start.cubes) - 1 if build else start.n_blocks,
            "stable_initially": self._initial.stable,
            "optimal_action": self._optimal_action(self.state),
        }
        if self.task in WORLD_TASKS:
            info.update(yes_means=self.yes_means, falls=not self._question[0], **self._question[1])
        if self._spec.info is not None:
            info.update(self._spec.info(start))
        return info

    def _optimal_action(self, scene: Scene) -> str:
        if is_binary(self.answer_format):
            truth = binary_truth(self._question[0], self.yes_means, BINARY_LABELS[self.answer_format])
            return f"<answer>{truth}</answer>"
        if self.answer_format == "colour_x":
            return build_lib.optimal_answer(scene)
        dx = int(np.clip(round(-scene.offset * 100), -600, 600))
        if self.answer_format == "x":
            return f"<answer>{dx}</answer>"
        up = int(np.clip(round((scene.goal_z - scene.cubes[scene.target].z) * 100), 0, 1000))
        return f"<answer>{dx}, {up}</answer>"

    def _copy_obs(self) -> dict[str, Any]:
        assert self._obs is not None
        return {"image": self._obs["image"].copy(), "prompt": self._obs["prompt"]}


def _block_range(n_blocks: Any) -> tuple[int, int]:
    try:
        return tuple(n_blocks)  # the generators check the bounds
    except TypeError:
        raise ValueError(f"n_blocks must be a (min, max) pair of ints, got {n_blocks!r}") from None


def _verdict_info(distance: float, verdict: Verdict) -> dict[str, Any]:
    return {"distance": distance, "stable_after": verdict.stable, "sim_steps": verdict.steps}

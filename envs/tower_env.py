"""The block-tower environment: one class, the four tasks of the paper as variants."""

from __future__ import annotations

import math
import string
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from . import scenes as scene_lib
from .answers import completion_space, parse_answer
from .physics import Verdict, World
from .prompts import prompt_for
from .rewards import ILLEGAL_REWARD, binary_reward, placement_reward
from .scenes import Scene

__all__ = ["TowerEnv", "TASKS"]

# task -> (scene family, answer format, default n_blocks range of the tower)
TASKS: dict[str, tuple[str, str, tuple[int, int]]] = {
    "top_block_stability": ("top_block", "binary", (2, 4)),
    "top_block_x_only": ("top_block", "x", (2, 4)),
    "side_block_x_only": ("side_block", "x", (1, 3)),
    "side_block_xy": ("side_block", "xy", (1, 3)),
}

_GENERATORS = {"top_block": scene_lib.top_block, "side_block": scene_lib.side_block}


class TowerEnv(gym.Env):
    """A single-step block-tower task: look at a rendered tower, answer in text, get rewarded.

    ## Description

    Each episode shows one seeded scene (:mod:`envs.scenes`): a tower whose top
    cube is displaced (``top_block``), or a tower with a red cube on the floor
    beside it (``side_block``). The agent answers once, in text, inside
    ``<answer>...</answer>``; the answer is simulated in pybullet
    (:mod:`envs.physics`) and the episode ends. Units: 100 answer units are one
    block edge.

    ## Tasks (``task`` kwarg; one registered id each)

    * ``top_block_stability`` (``TopBlockStability-v0``): is the tower stable? ``Yes``/``No``.
    * ``top_block_x_only`` (``TopBlockXOnly-v0``): move the top cube by x in [-600, 600];
      it keeps its height, so a cube slid off the tower falls.
    * ``side_block_x_only`` (``SideBlockXOnly-v0``): move the red cube by x in [-600, 600];
      it is set on top of the tower at its new x (and falls if it misses).
    * ``side_block_xy`` (``SideBlockXY-v0``): move the red cube by x in [-600, 600] and
      up in [0, 1000]; it then comes to rest on whatever is below that point.

    ## Action Space

    ``Text`` of up to 2**17 printable characters, newlines included
    (:func:`envs.answers.completion_space`): the action is the whole completion,
    and a reasoning completion runs to thousands of tokens before its answer, so
    the declared space holds 32k tokens' worth. Any ``str`` is accepted and judged
    all the same (model output can hold any character, at any length); the answer
    is read from the last ``<answer>...</answer>`` block
    (:func:`envs.answers.parse_answer`). Bad answers are outcomes, never errors.

    ## Observation Space

    ``Dict(image=Box(0, 255, (image_size, image_size, 3), uint8), prompt=Text)``.
    The observation returned by ``step`` is the one from ``reset`` (the episode
    has ended); the simulated result is in ``info`` and in ``render()``.

    ## Rewards

    See :mod:`envs.rewards`: binary 1 / 0 / -1; x-only 20 exp(-d^2) if the tower
    stands, 2 exp(-d^2) - 2 if anything falls, -5 for unparseable or
    out-of-range answers; x-y adds -4 below the floor and 2 exp(-d^2) - 4 inside
    the tower. ``d``: block edges between the moved cube (as answered) and the
    centred position on top of the tower.

    ## Episode End

    ``terminated=True`` after the one answer; ``truncated`` is always False.
    :meth:`judge` scores an answer without ending the episode, so a group of
    answers to one scene (GRPO) costs one reset.

    ## Info

    After ``reset``: ``task`` and ``answer_format`` (``binary``, ``x`` or ``xy``),
    ``scene`` (JSON-serialisable; ``reset(options={"scene": ...})``
    replays it exactly), ``offset`` (target cube's x offset from the tower axis,
    block edges), ``n_blocks`` (cubes in the tower), ``optimal_action`` (the
    answer text an oracle gives; read from the privileged scene), and
    ``stable_initially`` (simulated verdict of the scene as shown). After
    ``step`` also: ``parsed_action``, ``parse_error``, ``outcome`` (see
    :data:`envs.rewards.OUTCOMES`), ``distance`` (``d``, or None),
    ``stable_after`` (verdict after the answer, or None when nothing was
    simulated) and ``sim_steps``.

    ## Arguments

    * ``task``: one of :data:`TASKS`.
    * ``render_mode``: None or ``"rgb_array"`` (the current state; after a step,
      the answer's result simulated to rest).
    * ``prompt``: replaces the task's prompt (used verbatim).
    * ``reasoning``: use the long-reasoning prompt variant.
    * ``image_size``: side of the square image, pixels (default 256).
    * ``n_blocks``: ``(min, max)`` cubes in the tower.

    ## Version History

    * v0: first version.
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
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if not isinstance(image_size, int) or not 16 <= image_size <= 2048:
            raise ValueError(f"image_size must be an int in [16, 2048], got {image_size!r}")
        self.task = task
        self.family, self.answer_format, default_blocks = TASKS[task]
        self.n_blocks = tuple(n_blocks) if n_blocks is not None else default_blocks
        # Fail now, not at the first reset, on a bad range.
        _GENERATORS[self.family](np.random.default_rng(0), self.n_blocks)
        self.render_mode = render_mode
        self.image_size = image_size
        self.prompt = prompt if prompt is not None else prompt_for(task, reasoning)
        charset = "".join(sorted(set(string.printable) | set(self.prompt)))
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
                "prompt": spaces.Text(max_length=max(4096, len(self.prompt)), charset=charset),
            }
        )
        self.action_space = completion_space()
        self._world = World()
        self._scene: Scene | None = None
        self._obs: dict[str, Any] | None = None
        self._initial: Verdict | None = None
        self._done = True
        # After an answer: (scene that render() shows, simulate it to rest first?); None before.
        self._result: tuple[Scene, bool] | None = None
        self._result_loaded = False
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
        if options and options.get("scene") is not None:
            scene = Scene.from_dict(options["scene"])
            if scene.family != self.family:
                raise ValueError(
                    f"options['scene'] is a {scene.family!r} scene; {self.task!r} needs {self.family!r}"
                )
        else:
            scene = _GENERATORS[self.family](self.np_random, self.n_blocks)
        self._scene = scene
        self._world.load(scene)
        image = self._world.render(self.image_size, self.image_size)
        initial = self._world.settle()
        self._obs = {"image": image, "prompt": self.prompt}
        self._initial = initial
        self._done = False
        # Nothing answered yet: render() shows the observation. The world holds the initial scene.
        self._result, self._result_loaded, self._frame = None, True, None
        return self._copy_obs(), self._episode_info()

    def step(self, action: str) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """Judge ``action`` (any ``str``), simulate its result, end the episode.

        Raises:
            RuntimeError: called before ``reset`` or after the episode ended.
        """
        reward, info = self.judge(action)
        self._done = True
        return self._copy_obs(), reward, True, False, info

    def judge(self, action: str) -> tuple[float, dict[str, Any]]:
        """Reward and ``info`` of ``action`` on this episode's scene, without ending the episode.

        ``step`` is ``judge`` plus the end of the episode. Scoring a group of
        answers to one scene (a GRPO group) calls ``judge`` once per answer: the
        scene is neither regenerated nor rendered again. Each call is
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
        self._result, self._result_loaded = (self._scene, True), False
        if self.answer_format == "binary":
            reward, outcome = self._judge_binary(parsed.value)
        elif not parsed.legal:
            reward, outcome = ILLEGAL_REWARD[parsed.outcome], parsed.outcome
        else:
            reward, outcome, extra = self._judge_placement(parsed.value)
            info.update(extra)
        info["outcome"] = outcome
        return float(reward), info

    def render(self) -> np.ndarray | None:
        """``(image_size, image_size, 3)`` uint8 of the current state, or None without a render mode.

        Before the answer: the scene as observed. After it: the answer's result,
        simulated until everything is at rest.
        """
        if self.render_mode is None:
            gym.logger.warn("render() needs render_mode='rgb_array' (gym.make(..., render_mode='rgb_array'))")
            return None
        if self._obs is None:
            raise RuntimeError("render() before reset()")
        if self._result is None:
            return self._obs["image"].copy()
        if self._frame is None:
            scene, simulate = self._result
            if not self._result_loaded:
                self._world.load(scene)
                self._result_loaded = True
            if simulate:
                self._world.settle(stop_on_motion=False)
            self._frame = self._world.render(self.image_size, self.image_size)
        return self._frame.copy()

    def close(self) -> None:
        self._world.close()

    # -- judging ---------------------------------------------------------
    def _judge_binary(self, value: str | None) -> tuple[float, str]:
        if value is None:
            outcome = "unparseable"
        else:
            outcome = "correct" if (value == "Yes") == self._initial.stable else "incorrect"
        return binary_reward(outcome), outcome

    def _simulate(self, scene: Scene) -> Verdict:
        self._world.load(scene)
        self._result, self._result_loaded = (scene, True), True
        return self._world.settle()

    def _judge_placement(self, value: int | tuple[int, int]) -> tuple[float, str, dict[str, Any]]:
        scene = self._scene
        assert scene is not None
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
        if any(requested.cubes[requested.target].overlaps(c)
               for i, c in enumerate(requested.cubes) if i != requested.target):
            self._result, self._result_loaded = (requested, False), False
            return placement_reward("inside_tower", distance), "inside_tower", {"distance": distance}
        rest_z = scene.resting_z(x, below=z)
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
        scene = self._scene
        return {
            "task": self.task,
            "answer_format": self.answer_format,
            "scene": scene.to_dict(),
            "offset": scene.offset,
            "n_blocks": scene.n_blocks,
            "stable_initially": self._initial.stable,
            "optimal_action": self._optimal_action(scene, self._initial),
        }

    def _optimal_action(self, scene: Scene, initial: Verdict) -> str:
        if self.answer_format == "binary":
            return f"<answer>{'Yes' if initial.stable else 'No'}</answer>"
        dx = int(round(-scene.offset * 100))
        if self.answer_format == "x":
            return f"<answer>{dx}</answer>"
        up = int(round((scene.goal_z - scene.cubes[scene.target].z) * 100))
        return f"<answer>{dx}, {up}</answer>"

    def _copy_obs(self) -> dict[str, Any]:
        assert self._obs is not None
        return {"image": self._obs["image"].copy(), "prompt": self._obs["prompt"]}


def _verdict_info(distance: float, verdict: Verdict) -> dict[str, Any]:
    return {"distance": distance, "stable_after": verdict.stable, "sim_steps": verdict.steps}

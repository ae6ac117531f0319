"""A stable-baselines3 baseline: a PPO CNN policy that learns the tasks from pixels alone.

The paper asks whether a vision-language model learns intuitive physics from
interaction; this module asks the same of a learner without language. SB3
has no ``Text`` spaces, so :class:`TextActionWrapper` turns a cubeworld env
into an ordinary pixels-in, continuous-action-out env: the observation is the
image alone (the prompt is constant per task, so nothing is lost) and the
action is a ``Box`` in ``[-1, 1]`` that the wrapper writes as the text answer
the env judges, so rewards come from the env's own reward code.

Action mapping (:func:`action_to_answer`), one row per answer format:

===========  ==========  ====================================================
format       action      answer
===========  ==========  ====================================================
``binary``,  ``(1,)``    the label asserting "stable" if ``a[0] > 0``, else the other
``true_false``           (``Yes`` on the 2026 paper's tasks, ``No`` on ``TowerStability-v0``)
``x``        ``(1,)``    ``round(600 * a[0])``, units (100 = one block edge)
``xy``       ``(2,)``    x as above, up ``round(500 * (a[1] + 1))`` in [0, 1000]
===========  ==========  ====================================================

A binary action means the same on every binary task: positive asserts the scene is stable.
The label written follows the task's polarity (:func:`envs.worlds.polarity`), so a policy
trained on ``TowerStability-v0`` ("Will the tower fall?", ``Yes`` = falls) answers the photos'
"Is this tower stable?" by meaning, not by label.

Actions are clipped to ``[-1, 1]`` first; a non-finite action is written as
``<answer>nan</answer>``, which the env judges unparseable (bad model output is
an outcome, not an error).

Requires the ``sb3`` extra (``pip install "cubeworld[sb3]"``) for training and
:class:`SB3Agent`; the wrapper and the mapping need only gymnasium.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from PIL import Image

import envs  # noqa: F401  (registers the env ids with Gymnasium)
from envs.answers import BINARY_LABELS, is_binary
from envs.atomic import atomic_path

from .base import Observation, polarity_of, task_of

__all__ = [
    "TextActionWrapper", "SB3Agent", "action_to_answer", "preprocess_image", "make_sb3_env",
    "make_ppo", "train_ppo", "episode_rewards", "X_SCALE", "FIXED_UP",
]

X_SCALE = 600  # action 1.0 -> +600 units: the whole legal x range, whatever the task
UP_RANGE = (0, 1000)
# Up written for an x-only (1-D) policy answering SideBlockXY-v0: the height of the
# tallest side-block tower (3 cubes), the lowest up that never lands inside a tower.
FIXED_UP = 300
_FORMATS = ("binary", "true_false", "x", "xy")


def _require_sb3():
    try:
        import stable_baselines3
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "agents.sb3 needs stable-baselines3: pip install 'cubeworld[sb3]' "
            "(or pip install 'stable-baselines3>=2.3')"
        ) from exc
    return stable_baselines3


def action_to_answer(action: Any, answer_format: str, fixed_up: int = FIXED_UP,
                     yes_means: str = "stable") -> str:
    """Write a ``[-1, 1]`` action as the answer text of ``answer_format`` (table in the module doc).

    Args:
        action: array-like of floats, shape ``(1,)`` or ``(2,)`` (extra entries are
            ignored; a 1-D action answering ``xy`` gets ``up = fixed_up``).
        answer_format: ``"binary"``, ``"true_false"``, ``"x"`` or ``"xy"``.
        fixed_up: up in answer units for a 1-D action in the ``xy`` format.
        yes_means: binary formats: what the first label asserts, ``"stable"`` or ``"falls"``
            (``env.yes_means``; :func:`agents.base.polarity_of` of an observation).

    Raises:
        ValueError: unknown ``answer_format`` or an empty action (programming errors).
    """
    if answer_format not in _FORMATS:
        raise ValueError(f"answer_format must be one of {_FORMATS}, got {answer_format!r}")
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError("action is empty; expected shape (1,) or (2,)")
    if not np.all(np.isfinite(a[: 2 if answer_format == "xy" else 1])):
        return "<answer>nan</answer>"
    a = np.clip(a, -1.0, 1.0)
    if is_binary(answer_format):
        first, second = BINARY_LABELS[answer_format]
        stable = bool(a[0] > 0)
        return f"<answer>{first if stable == (yes_means == 'stable') else second}</answer>"
    x = int(np.rint(X_SCALE * a[0]))
    if answer_format == "x":
        return f"<answer>{x}</answer>"
    span = UP_RANGE[1] - UP_RANGE[0]
    up = int(np.rint(UP_RANGE[0] + span * (a[1] + 1.0) / 2.0)) if a.size >= 2 else int(fixed_up)
    return f"<answer>{x}, {up}</answer>"


def preprocess_image(image: Any, size: int) -> np.ndarray:
    """The image as ``(size, size, 3)`` uint8 RGB; resized with PIL bilinear when it differs.

    Training (:class:`TextActionWrapper`) and acting (:class:`SB3Agent`) both call
    this, so a policy sees the same pixels in both. Non-square images (photos)
    are squashed to a square, not cropped.
    """
    array = np.asarray(image)
    if array.shape == (size, size, 3) and array.dtype == np.uint8:
        return array
    return np.asarray(Image.fromarray(array).convert("RGB").resize((size, size), Image.BILINEAR))


class TextActionWrapper(gym.Wrapper):
    """A cubeworld env with an image-only observation and a ``[-1, 1]`` Box action.

    ## Observation Space

    ``Box(0, 255, (image_size, image_size, 3), uint8)``: the env's image, resized
    with :func:`preprocess_image` when ``image_size`` differs from the render size.

    ## Action Space

    ``Box(-1, 1, (2,), float32)`` for ``xy`` tasks, ``Box(-1, 1, (1,), float32)``
    otherwise; written as text by :func:`action_to_answer`.

    ## Rewards, Episode End

    The wrapped env's: single-step episodes, ``terminated=True`` after the answer.
    ``info`` is the env's, plus ``answer`` (the text that was judged).

    Args:
        env: a cubeworld env (``env.unwrapped.answer_format`` must exist).
        image_size: side of the observation, pixels; None keeps the env's.

    Raises:
        ValueError: ``env`` is not a cubeworld env, or ``image_size`` < 1.
    """

    def __init__(self, env: gym.Env, image_size: int | None = None) -> None:
        super().__init__(env)
        answer_format = getattr(env.unwrapped, "answer_format", None)
        if answer_format not in _FORMATS:
            raise ValueError(f"{env!r} is not a cubeworld env (no answer_format); wrap a TowerEnv")
        if image_size is None:
            image_size = int(env.observation_space["image"].shape[0])
        if image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.answer_format = answer_format
        self.yes_means = getattr(env.unwrapped, "yes_means", None) or "stable"
        self.image_size = int(image_size)
        self.observation_space = spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        dim = 2 if answer_format == "xy" else 1
        self.action_space = spaces.Box(-1.0, 1.0, (dim,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return preprocess_image(obs["image"], self.image_size), info

    def step(self, action: Any):
        answer = action_to_answer(action, self.answer_format, yes_means=self.yes_means)
        obs, reward, terminated, truncated, info = self.env.step(answer)
        info["answer"] = answer
        return preprocess_image(obs["image"], self.image_size), float(reward), terminated, truncated, info


def make_sb3_env(env_id: str, image_size: int = 64, render_size: int | None = None,
                 **env_kwargs: Any) -> TextActionWrapper:
    """``gym.make(env_id)`` wrapped in :class:`TextActionWrapper`.

    Args:
        env_id: a registered id, e.g. ``"TopBlockXOnly-v0"``.
        image_size: observation side, pixels (SB3's NatureCNN needs >= 36).
        render_size: the env's render side; None renders at the env default
            (256) and downscales with PIL, exactly as :class:`SB3Agent` sees a
            standard env (rendering at 64 directly is a little faster but its
            pixels differ by up to ~120 levels at cube edges).
        env_kwargs: further ``TowerEnv`` kwargs.
    """
    if render_size is not None:
        env_kwargs["image_size"] = render_size
    return TextActionWrapper(gym.make(env_id, **env_kwargs), image_size=image_size)


def make_ppo(
    env_id: str,
    seed: int = 0,
    image_size: int = 64,
    *,
    n_envs: int = 8,
    n_steps: int = 32,
    batch_size: int = 64,
    n_epochs: int = 4,
    learning_rate: float = 3e-4,
    log_std_init: float = -2.0,
    render_size: int | None = None,
    subprocess: bool = False,
    verbose: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    **ppo_kwargs: Any,
):
    """An untrained PPO ``CnnPolicy`` on the pixels of ``env_id`` (train it with ``.learn``).

    Episodes are single-step (a contextual bandit), so a rollout of ``n_steps``
    per env is ``n_steps * n_envs`` independent episodes; discounting and GAE do
    nothing (every step is terminal: ``gamma=0``) and the advantage is the
    reward minus the value baseline. ``log_std_init=-2`` starts the Gaussian at
    std 0.14 (about 80 answer units, under one block edge): at std 1 most
    samples clip to +-600 and every tower falls, so the first updates see no
    signal. Every env is wrapped in SB3's ``Monitor`` (:func:`episode_rewards`).
    Images are scaled to [0, 1] by the policy (``normalize_images=True``).

    Args:
        env_id: registered cubeworld id.
        seed: seeds PPO (torch, numpy) and env ``i`` with ``seed + i``.
        image_size: observation side in pixels (>= 36 for SB3's NatureCNN).
        render_size: see :func:`make_sb3_env`.
        subprocess: step the envs in worker processes (``SubprocVecEnv``).
        env_kwargs: further ``gym.make`` kwargs of every env, e.g. ``{"style": "lerer", "randomise": True}``.
        ppo_kwargs: passed to ``stable_baselines3.PPO`` (override anything above).

    Raises:
        ValueError: ``image_size`` < 36 or ``batch_size`` > ``n_steps * n_envs``.
        ImportError: stable-baselines3 is not installed (names the extra).
    """
    _require_sb3()
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    if image_size < 36:
        raise ValueError(f"image_size {image_size} < 36: SB3's NatureCNN needs at least 36x36 pixels")
    if batch_size > n_steps * n_envs:
        raise ValueError(f"batch_size {batch_size} > n_steps * n_envs = {n_steps * n_envs}; lower it")
    venv = make_vec_env(
        make_sb3_env, n_envs=n_envs, seed=seed,
        env_kwargs={"env_id": env_id, "image_size": image_size, "render_size": render_size, **(env_kwargs or {})},
        vec_env_cls=SubprocVecEnv if subprocess else DummyVecEnv,
    )
    kwargs: dict[str, Any] = dict(
        n_steps=n_steps, batch_size=batch_size, n_epochs=n_epochs, learning_rate=learning_rate,
        gamma=0.0, gae_lambda=1.0, ent_coef=0.0, seed=seed, verbose=verbose, device="cpu",
        policy_kwargs={"log_std_init": log_std_init, "normalize_images": True},
    )
    kwargs.update(ppo_kwargs)
    model = PPO("CnnPolicy", venv, **kwargs)
    if not verbose:
        from stable_baselines3.common.logger import Logger

        # SB3's default logger makes an empty $TMPDIR/SB3-<date> folder per run; this one writes nothing.
        model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def train_ppo(env_id: str, total_timesteps: int, seed: int = 0, image_size: int = 64, **kwargs: Any):
    """:func:`make_ppo` then ``learn(total_timesteps)``; returns the trained ``PPO`` model.

    ``total_timesteps`` counts env steps, which are episodes here. Keyword
    arguments go to :func:`make_ppo`.
    """
    model = make_ppo(env_id, seed, image_size, **kwargs)
    model.learn(total_timesteps=total_timesteps)
    return model


def episode_rewards(model) -> np.ndarray:
    """Training episode rewards of ``model``'s envs in time order, ``(n_episodes,)`` float64.

    Reads each env's ``Monitor``. With single-step episodes, episode ``k`` of
    env ``i`` is global step ``k * n_envs + i``, so interleaving is exact.
    """
    returns = model.get_env().get_attr("episode_returns")
    n = min(len(r) for r in returns)
    return np.stack([np.asarray(r[:n], dtype=np.float64) for r in returns], axis=1).reshape(-1)


class SB3Agent:
    """An :class:`agents.Agent` around a trained SB3 model: image in, text answer out.

    Each observation's ``image`` (``(H, W, 3)`` uint8, any size) is resized to
    the model's input with :func:`preprocess_image`; the model acts (deterministic
    by default: the Gaussian's mean) and :func:`action_to_answer` writes the
    text. Only the image decides the action; the prompt (or ``info``) only
    names the answer format when ``answer_format`` is None.

    Args:
        model: a trained SB3 model with an RGB image observation space and a Box action.
        answer_format: the format to write, or None: each observation's own
            (:func:`agents.base.task_of`), so one agent answers every task. A 1-D
            model answering ``xy`` writes ``up = fixed_up``; a 2-D model
            answering ``x`` or ``binary`` uses only its first component.
        fixed_up: see above, answer units (default :data:`FIXED_UP`).
        deterministic: act with the policy's mean (True) or sample.

    Raises:
        ValueError: unknown ``answer_format``, or a model that is not image-in, Box-out.
    """

    def __init__(self, model, answer_format: str | None = None, *, fixed_up: int = FIXED_UP,
                 deterministic: bool = True) -> None:
        if answer_format is not None and answer_format not in _FORMATS:
            raise ValueError(f"answer_format must be None or one of {_FORMATS}, got {answer_format!r}")
        shape = tuple(model.observation_space.shape or ())
        if len(shape) != 3 or not (shape[0] == 3 or shape[-1] == 3):
            raise ValueError(f"model observation space {shape} is not an RGB image; train with train_ppo")
        if not isinstance(model.action_space, spaces.Box):
            raise ValueError(f"model action space {model.action_space} is not a Box; train with train_ppo")
        self.model = model
        self.answer_format = answer_format
        self.fixed_up = fixed_up
        self.deterministic = deterministic
        # SB3 stores image spaces channel-first (VecTransposeImage) once trained.
        self.image_size = int(shape[1] if shape[0] == 3 else shape[0])

    def act(self, observations: Sequence[Observation]) -> list[str]:
        """One ``<answer>...</answer>`` text per observation, in order."""
        if len(observations) == 0:
            return []
        batch = np.stack([preprocess_image(o["image"], self.image_size) for o in observations])
        actions, _ = self.model.predict(batch, deterministic=self.deterministic)
        actions = np.asarray(actions).reshape(len(observations), -1)
        return [
            action_to_answer(a, self.answer_format or task_of(o)[0], self.fixed_up, polarity_of(o)[1])
            for a, o in zip(actions, observations)
        ]

    def save(self, path: str | os.PathLike) -> None:
        """Save the model with SB3, atomically (a ``.zip``; the suffix is appended when missing, as SB3 does)."""
        path = pathlib.Path(path)
        if path.suffix == "":
            path = path.with_name(path.name + ".zip")
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            self.model.save(f)

    @classmethod
    def load(cls, path: str, answer_format: str | None = None, *, algorithm=None,
             **kwargs: Any) -> SB3Agent:
        """Load a model saved by :meth:`save` onto the CPU (``algorithm``: its SB3 class, default PPO).

        Raises:
            FileNotFoundError: no model at ``path`` (SB3's error).
            ImportError: stable-baselines3 is not installed.
        """
        _require_sb3()
        if algorithm is None:
            from stable_baselines3 import PPO as algorithm
        return cls(algorithm.load(path, device="cpu"), answer_format, **kwargs)

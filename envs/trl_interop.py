"""The TRL-facing interface: the environments' rewards as a TRL reward function, their scenes as a dataset.

TRL (https://github.com/huggingface/trl; this project pins ``trl==1.16.0``, the ``trl``
extra) trains from a fixed dataset and scores completions with reward functions; the
environments here score an answer by simulating it. The two meet in two pieces:

* :func:`export_dataset` (``cubeworld export-dataset``) writes seeded scenes as a Hugging
  Face ``datasets`` dataset, one row per scene, with the columns both ``GRPOTrainer`` and
  ``SFTTrainer`` read for a vision-language model (see "Columns" below);
* :func:`reward_function` returns a callable with TRL's custom reward-function signature,
  ``(prompts, completions, **kwargs) -> list[float]``
  (https://huggingface.co/docs/trl/main/en/grpo_trainer#using-a-custom-reward-function):
  ``GRPOTrainer`` passes every dataset column as a keyword argument, one value per
  completion, and the callable replays each row's ``scene`` column in the environment and
  returns the reward ``env.step(completion)`` would give on that scene.

Columns of an exported dataset (one row per scene; seeds ``seed .. seed + n - 1``):

=================  ====================================  =====================================================
column             feature                               content
=================  ====================================  =====================================================
``image``          ``datasets.Image()`` (PIL when read)  the observation's image, ``image_size`` pixels square,
                                                         RGB, stored as PNG
``prompt``         ``List({role, content: string})``     ``[{"role": "user", "content": obs["prompt"]}]``
``completion``     ``List({role, content: string})``     ``[{"role": "assistant", "content": optimal_answer}]``
``scene``          ``string``                            ``json.dumps(info["scene"])``: what the reward replays
``optimal_answer`` ``string``                            ``info["optimal_action"]``, e.g. ``"<answer>-37</answer>"``
``env_id``         ``string``                            e.g. ``"TopBlockXOnly-v0"``
``seed``           ``int64``                             the ``reset(seed=...)`` that drew the scene
=================  ====================================  =====================================================

Why these columns, read off TRL 1.16's source: with an ``image`` column, ``GRPOTrainer``
(``_generate_and_score_completions``) requires a *conversational* ``prompt`` and calls
``trl.data_utils.prepare_multimodal_messages``, which puts one ``{"type": "image"}``
block before the text of the first user message whose content is a string; so the
prompt is stored as plain text content and TRL places the image, as
:func:`agents.chat.chat_messages` does (image, then text). ``SFTTrainer`` detects a
vision dataset by the ``image`` column and, given ``prompt`` and ``completion``, trains
on the completion only (``DataCollatorForVisionLanguageModeling``, prompt-completion
type): ``completion`` is the oracle answer, so SFT on it learns the oracle's answers,
as the project's ``sft`` objective does. ``GRPOTrainer`` ignores ``completion`` (it never reaches a reward
function) and keeps the other columns (``remove_unused_columns=False``, its default),
which is how ``scene`` reaches the reward. ``SFTTrainer`` drops the columns it does
not use. ``scene`` is a JSON string rather than a nested feature so that it round-trips
bit for bit (floats included) and one schema serves both scene families.

Nothing here imports torch; ``datasets`` is imported only by :func:`export_dataset`.
"""

from __future__ import annotations

import difflib
import io
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .atomic import atomic_directory

__all__ = ["reward_function", "export_dataset", "EnvReward", "completion_text", "COLUMNS"]

COLUMNS = ("image", "prompt", "completion", "scene", "optimal_answer", "env_id", "seed")
"""The columns of an :func:`export_dataset` dataset, in order."""

_INSTALL_HINT = "pip install 'cubeworld[trl]'"


def _check_env_id(env_id: str) -> str:
    """``env_id`` without an ``envs:`` prefix, when it is single-step: one of :data:`envs.ENV_IDS` or
    :data:`envs.WORLD_ENV_IDS`.

    Raises:
        ValueError: another id (with the closest known ones, and why the real-photo id is not one).
    """
    from . import ENV_IDS as PAPER_IDS  # here: envs/__init__ imports this module
    from . import MULTI_STEP_ENV_IDS, REAL_ENV_IDS, WORLD_ENV_IDS

    ENV_IDS = PAPER_IDS + WORLD_ENV_IDS
    name = _bare(env_id)
    if name in ENV_IDS:
        return name
    if name in MULTI_STEP_ENV_IDS:
        raise ValueError(f"{name} is a multi-step env; TRL's trainers score one completion per prompt, so use a "
                         f"single-step id (one of {', '.join(ENV_IDS)})")
    if name in REAL_ENV_IDS:
        raise ValueError(f"{name!r} has no scenes to simulate (its reward is a photo's label); "
                         f"use one of {', '.join(ENV_IDS)}")
    lowered = {i.lower(): i for i in ENV_IDS}
    close = [lowered[m] for m in difflib.get_close_matches(str(name).lower(), lowered, n=3, cutoff=0.75)]
    hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    raise ValueError(f"unknown env id {env_id!r}{hint}; known ids: {', '.join(ENV_IDS)}")


def _bare(env_id: Any) -> Any:
    """``env_id`` without the ``envs:`` module prefix that ``gym.make`` accepts."""
    return env_id[len("envs:"):] if isinstance(env_id, str) and env_id.startswith("envs:") else env_id


def completion_text(completion: Any) -> str:
    """The text of one completion as TRL passes it: a ``str``, or conversational messages.

    Args:
        completion: a ``str`` (standard prompts), or a list of message dicts (conversational
            prompts; TRL 1.16 gives ``[{"role": "assistant", "content": text}]``), whose
            ``content`` is a ``str``, ``None`` (a tool-call-only turn) or a list of blocks
            (``{"type": "text", "text": ...}``; other blocks carry no text), or one such dict.

    Returns:
        The text the model wrote: a string as is; otherwise the text of every assistant
        message (of every message if none is the assistant's), joined by newlines. The answer is read
        from the last ``<answer>`` block, so a multi-turn completion is judged on its final answer.

    Raises:
        TypeError: ``completion`` is none of these forms (a caller's bug, not model output).
    """
    if isinstance(completion, str):
        return completion
    messages = [completion] if isinstance(completion, dict) else completion
    if not isinstance(messages, (list, tuple)) or not all(isinstance(m, dict) for m in messages):
        raise TypeError(f"a completion must be a str or a list of message dicts (TRL's conversational form), "
                        f"got {type(completion).__name__}: {completion!r:.200}")
    spoken = [m for m in messages if m.get("role") == "assistant"] or list(messages)
    texts = []
    for message in spoken:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, (list, tuple)):
            texts.append("".join(block.get("text") or "" for block in content
                                 if isinstance(block, dict) and block.get("type", "text") == "text"))
    return "\n".join(texts)


class EnvReward:
    """A TRL reward function that scores completions in one environment: see :func:`reward_function`.

    Calls hold a lock (one environment, one pybullet client). Pickling (multiprocessing,
    ``datasets.map``) drops the environment; the copy, like a forked child, makes its own
    on its first call, because a pybullet client belongs to the process that connected it.
    """

    def __init__(self, env_id: str, env_kwargs: dict[str, Any]) -> None:
        self.env_id = _check_env_id(env_id)
        self.env_kwargs = dict(env_kwargs)
        self.__name__ = f"cubeworld_{self.env_id}"  # TRL logs rewards/<__name__>/mean
        self._lock = threading.Lock()
        self._env: Any = None
        self._pid: int | None = None
        self._loaded: Any = None
        _check_single_step(self._environment(), self.env_id)  # bad env_kwargs fail here, not at the first step

    def _environment(self) -> Any:
        if self._env is None or self._pid != os.getpid():
            import gymnasium as gym

            self._env = gym.make(self.env_id, **self.env_kwargs)
            self._pid, self._loaded = os.getpid(), None
        return self._env

    def __call__(self, prompts: Sequence[Any] | None, completions: Sequence[Any],
                 scene: Sequence[str | dict[str, Any]] | None = None, env_id: Sequence[str] | None = None,
                 **kwargs: Any) -> list[float | None]:
        if scene is None:
            raise ValueError(f"{self.__name__} needs the dataset's 'scene' column (TRL passes columns as keyword "
                             "arguments); export the dataset with envs.export_dataset / cubeworld export-dataset, "
                             "and keep GRPOConfig(remove_unused_columns=False), TRL's default")
        if isinstance(scene, (str, dict)) or len(scene) != len(completions):
            got = "one scene" if isinstance(scene, (str, dict)) else f"{len(scene)} scenes"
            raise ValueError(f"{self.__name__}: {got} for {len(completions)} completions; pass one scene per "
                             "completion (TRL repeats each row's columns for its num_generations completions)")
        if env_id is not None and len(env_id) != len(completions):
            raise ValueError(f"{self.__name__}: {len(env_id)} env ids for {len(completions)} completions")
        rewards: list[float | None] = []
        outcomes: list[str | None] = []
        with self._lock:
            env = self._environment()
            for i, (completion, row_scene) in enumerate(zip(completions, scene)):
                text = completion_text(completion)
                if env_id is not None and _bare(env_id[i]) != self.env_id:
                    # TRL's multi-task convention: None for a row another reward function scores.
                    rewards.append(None)
                    outcomes.append(None)
                    continue
                self._load(env, row_scene, i)
                reward, info = env.unwrapped.judge(text)
                rewards.append(float(reward))
                outcomes.append(info["outcome"])
        self._log(kwargs, outcomes)
        return rewards

    def _load(self, env: Any, row_scene: str | dict[str, Any], row: int) -> None:
        # TRL repeats a row for its num_generations completions back to back: reset once per group.
        key = row_scene if isinstance(row_scene, str) else json.dumps(row_scene, sort_keys=True)
        if key == self._loaded:
            return
        if isinstance(row_scene, str):
            try:
                row_scene = json.loads(row_scene)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.__name__}: scene {row} is not JSON ({exc}); the 'scene' column holds "
                                 "json.dumps(info['scene'])") from exc
        self._loaded = None  # a failed reset leaves nothing to reuse
        env.reset(options={"scene": row_scene})
        self._loaded = key

    def _log(self, kwargs: dict[str, Any], outcomes: list[str | None]) -> None:
        # TRL >= 1.x passes log_metric / log_extra to reward functions; plain callers do not.
        from .rewards import ILLEGAL_OUTCOMES

        judged = [o for o in outcomes if o is not None]
        if callable(kwargs.get("log_metric")) and judged:
            kwargs["log_metric"](f"{self.__name__}/legal_rate",
                                 sum(o not in ILLEGAL_OUTCOMES for o in judged) / len(judged))
        if callable(kwargs.get("log_extra")):
            kwargs["log_extra"](f"{self.__name__}/outcome", outcomes)

    def close(self) -> None:
        """Close the environment (its pybullet client); a later call makes a new one."""
        with self._lock:
            if self._env is not None and self._pid == os.getpid():
                self._env.close()
            self._env, self._loaded = None, None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_lock=None, _env=None, _pid=None, _loaded=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        kwargs = "".join(f", {k}={v!r}" for k, v in self.env_kwargs.items())
        return f"reward_function({self.env_id!r}{kwargs})"


def _check_single_step(env: Any, env_id: str) -> None:
    interaction = getattr(env.unwrapped, "interaction", "single")
    if interaction != "single":
        raise ValueError(f"{env_id} is a multi-step env (interaction={interaction!r}); TRL's trainers score one "
                         "completion per prompt, so use a single-step id (e.g. TopBlockXOnly-v0)")


def reward_function(env_id: str, **env_kwargs: Any) -> Callable[..., list[float | None]]:
    """A TRL reward function that scores each completion by simulating it in ``env_id``.

    The returned callable has TRL's custom reward-function signature
    (https://huggingface.co/docs/trl/main/en/grpo_trainer#using-a-custom-reward-function,
    TRL 1.16): ``f(prompts, completions, **kwargs) -> list[float]``, where ``kwargs`` holds
    the dataset's columns, one value per completion. It reads ``scene`` (the column of
    :func:`export_dataset`: ``json.dumps(info["scene"])``, or the dict itself), replays it
    with ``reset(options={"scene": ...})`` and judges the completion's text
    (:func:`completion_text`): the reward is exactly that of ``env.step(text)`` after the
    ``env.reset(seed)`` that drew the scene. Any text is an answer (an unparseable one
    earns the env's illegal-answer reward, e.g. -5 or -1); nothing a model writes raises.

    One environment (one pybullet client) per callable and process, reset once per run of
    equal consecutive scenes (a GRPO group), so a call costs one reset per prompt plus one
    simulation per completion (milliseconds each). ``prompts`` and the other columns are
    ignored, except ``env_id``: where a dataset has one, rows of another environment get
    ``None`` (TRL's convention for multi-task datasets: give ``reward_funcs`` one
    function per environment). Under TRL it also logs ``<name>/legal_rate`` (``log_metric``)
    and an ``<name>/outcome`` completions-table column (``log_extra``).

    Args:
        env_id: one of :data:`envs.ENV_IDS` or :data:`envs.WORLD_ENV_IDS` (an ``envs:`` prefix is accepted).
        **env_kwargs: passed to ``gym.make`` (e.g. ``reasoning=True``); they do not change
            the reward of a given scene and answer.

    Returns:
        An :class:`EnvReward`: ``__name__`` is ``"cubeworld_<env_id>"`` (TRL logs
        ``rewards/<name>/mean``); rewards are Python floats in the env's units.

    Raises:
        ValueError: unknown ``env_id`` (with close matches); at call time, no ``scene``
            column, one whose length is not that of ``completions``, a scene that is not JSON
            or not of the env's scene family.
        TypeError: bad ``env_kwargs`` (from the environment), or a completion that is neither
            a ``str`` nor a list of message dicts.
    """
    return EnvReward(env_id, env_kwargs)


def export_dataset(env_id: str, n: int, seed: int, out_dir: str | os.PathLike, **env_kwargs: Any) -> Path:
    """Write ``n`` scenes of ``env_id`` (seeds ``seed .. seed + n - 1``) as a ``datasets`` dataset.

    The rows are the observations and privileged info of ``env.reset(seed=s)`` for each
    seed, the scenes ``cubeworld eval --env ENV --seed SEED -n N`` shows; columns:
    :data:`COLUMNS`, described in this module's docstring (``image``, conversational
    ``prompt`` and ``completion``, ``scene``, ``optimal_answer``, ``env_id``, ``seed``),
    ready for TRL's ``GRPOTrainer`` (with :func:`reward_function`) and ``SFTTrainer``.
    The project's trainer holds out seeds from ``eval_seed`` (default 1,000,000) up; keep
    training exports below them.

    Saved with ``Dataset.save_to_disk`` through :func:`envs.atomic.atomic_directory` (a temporary sibling folder
    ``.tmp-NAME-...``, renamed to ``out_dir`` once complete), so a crash never
    leaves a partial dataset there. Read it back with ``datasets.load_from_disk(out_dir)``.

    Args:
        env_id: one of :data:`envs.ENV_IDS` or :data:`envs.WORLD_ENV_IDS`.
        n: rows, >= 1.
        seed: first seed, >= 0.
        out_dir: a folder that does not exist yet (or is empty); its parents are created.
        **env_kwargs: passed to ``gym.make`` (``image_size``, ``reasoning``, ``prompt``, ``n_blocks``).

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ValueError: unknown ``env_id`` (with close matches), ``n`` < 1 or ``seed`` < 0.
        FileExistsError: ``out_dir`` exists and is not an empty folder.
        ImportError: ``datasets`` is not installed (names the ``trl`` extra).
        TypeError: bad ``env_kwargs`` (from the environment).
    """
    env_id = _check_env_id(env_id)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (rows) must be an int >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    out = Path(out_dir)
    _check_free(out)
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(f"export_dataset needs the 'datasets' library: {_INSTALL_HINT}") from exc
    import gymnasium as gym
    from PIL import Image

    messages = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})
    features = datasets.Features({
        "image": datasets.Image(), "prompt": messages, "completion": messages, "scene": datasets.Value("string"),
        "optimal_answer": datasets.Value("string"), "env_id": datasets.Value("string"),
        "seed": datasets.Value("int64"),
    })
    env = gym.make(env_id, **env_kwargs)
    _check_single_step(env, env_id)
    rows = []
    try:
        for s in range(seed, seed + n):
            obs, info = env.reset(seed=s)
            png = io.BytesIO()
            Image.fromarray(obs["image"]).save(png, format="PNG")  # lossless; rows stay small in memory
            rows.append({
                "image": {"bytes": png.getvalue(), "path": None},
                "prompt": [{"role": "user", "content": obs["prompt"]}],
                "completion": [{"role": "assistant", "content": info["optimal_action"]}],
                "scene": json.dumps(info["scene"]),
                "optimal_answer": info["optimal_action"],
                "env_id": env_id,
                "seed": s,
            })
    finally:
        env.close()
    kwargs = "".join(f", {k}={v!r}" for k, v in env_kwargs.items())
    info = datasets.DatasetInfo(
        description=f"cubeworld {env_id}{kwargs}: scenes of seeds {seed}..{seed + n - 1} "
        "(envs.export_dataset; score completions with envs.reward_function)",
        features=features,
    )
    dataset = datasets.Dataset.from_list(rows, info=info)
    _save_atomically(dataset, out)
    return out


def _check_free(out: Path) -> None:
    if out.is_dir() and not any(out.iterdir()):
        return
    if out.exists() or out.is_symlink():
        what = "folder" if out.is_dir() else "file"
        raise FileExistsError(f"{str(out)!r} exists and is a non-empty {what}; choose a new output folder "
                              "or delete that one first")


def _save_atomically(dataset: Any, out: Path) -> None:
    if out.is_dir():
        out.rmdir()  # empty (checked by _check_free); a folder filled meanwhile raises, and is kept
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out, overwrite=False) as tmp:
        dataset.save_to_disk(str(tmp))

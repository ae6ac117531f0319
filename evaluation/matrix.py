"""The generalisation matrix: every agent evaluated on every environment (the paper's Fig. 2 / Table A.2).

Schulze Buschoff et al. (2026) train one adapter per task and evaluate each on
every task; a cell far above the image-blind baseline on a task the adapter was
not trained on is transfer. :func:`evaluate_matrix` runs :func:`evaluation.evaluate`
for every (agent, env) pair on the same seeds, and per environment three
reference points on those seeds:

* ``random``: :class:`agents.RandomAgent` (uniform legal answers; seed ``seed``),
* ``optimum``: :class:`agents.OracleAgent` (the optimal answer from the scene),
* ``constant``: the best constant answer (:func:`evaluation.best_constant.best_constant_answer`),
  the image-blind shortcut: cells near it show no transfer.

Multi-step environments (``interaction`` other than ``"single"``, e.g. ``TopBlockXOnly-Retry-v0``)
have no best-constant baseline: the candidate search judges one answer on the initial scene,
which is not a multi-step episode's return (a retry episode repeats a failing constant up to K
times; a sequential one moves from wherever the last move left the cube). Their ``constant`` is
marked not applicable (:func:`not_applicable_constant`: answer ``"n/a"``, NaN mean; blank in
``baselines.csv``, null in ``matrix.json``, ``-`` in the summary); random and optimum still set
the column's scale, and every cell's ``mean_reward`` there is the mean return.

Reward scales differ per environment (1 for the binary task, 20 for placements),
so the heatmap (:mod:`evaluation.matrix_plot`) colours each column by
``(mean - random) / (optimum - random)`` (:meth:`MatrixResult.normalised`).

Files (:meth:`MatrixResult.save`): ``matrix.csv`` (one row per cell), ``baselines.csv``
(one row per env), ``matrix.json`` (everything, per-episode records included) and
``matrix.png``; each written atomically.
"""

from __future__ import annotations

import csv
import gc
import io
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.backends.base import EVAL_BATCH_SIZE
from agents.base import Agent
from envs.answers import extract_answer
from envs.atomic import write_json_atomic, write_text_atomic

from .best_constant import DEFAULT_X_STEP, DEFAULT_XY_STEP, ConstantBaseline, best_constant_answer
from .evaluate import EvaluationResult, evaluate, json_default

__all__ = ["evaluate_matrix", "MatrixResult", "EnvBaselines", "parse_named_spec", "MATRIX_CSV_COLUMNS",
           "not_applicable_constant", "NO_CONSTANT_ANSWER", "csv_text"]

NO_CONSTANT_ANSWER = "n/a"
"""The ``answer`` of a constant baseline that does not apply (a multi-step environment)."""

MATRIX_CSV_COLUMNS = ("agent", "env", "mean_reward", "ci95_low", "ci95_high", "legal_rate",
                      "legal_mean_reward", "accuracy", "normalised", "n_episodes", "seed")
BASELINES_CSV_COLUMNS = ("env", "random_mean_reward", "optimum_mean_reward", "best_constant_answer",
                         "best_constant_mean_reward", "best_constant_ci95_low", "best_constant_ci95_high",
                         "n_candidates", "n_episodes", "seed")

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def parse_named_spec(text: str) -> tuple[str, str]:
    """``"NAME=SPEC"`` -> ``(NAME, SPEC)``; a bare ``"SPEC"`` -> ``(SPEC, SPEC)``.

    NAME is letters, digits, ``_``, ``.``, ``-`` only, so the ``=`` of an adapter
    spec (``vlm:tiny-base+adapter=PATH``) is never taken for the NAME separator.

    Raises:
        ValueError: an empty NAME or SPEC.
    """
    name, sep, spec = text.partition("=")
    if sep and _NAME.fullmatch(name):
        if not spec:
            raise ValueError(f"agent {text!r} has an empty spec; write NAME=SPEC, e.g. base=vlm:tiny-base")
        return name, spec
    if not text:
        raise ValueError("empty agent spec; write NAME=SPEC, e.g. base=vlm:tiny-base")
    return text, text


@dataclass
class EnvBaselines:
    """Reference points of one environment on the matrix's seeds: random, optimum, best constant.

    ``constant`` is :func:`not_applicable_constant` for a multi-step environment (see the module docstring).
    """

    env_id: str
    random: EvaluationResult
    optimum: EvaluationResult
    constant: ConstantBaseline

    @property
    def has_constant(self) -> bool:
        """False where the best constant does not apply (a multi-step environment)."""
        return len(self.constant.candidates) > 0  # a searched constant has at least one candidate

    def normalise(self, mean_reward: float) -> float:
        """``(mean_reward - random) / (optimum - random)``: 0 at the random baseline, 1 at the optimum.

        NaN when the optimum does not exceed the random baseline (no scale).
        """
        lo, hi = self.random.mean_reward, self.optimum.mean_reward
        return float((mean_reward - lo) / (hi - lo)) if hi > lo else float("nan")


@dataclass
class MatrixResult:
    """Agents x environments evaluation results and per-environment baselines.

    Attributes:
        agents: agent names, the matrix's rows in order.
        env_ids: environment ids, its columns in order.
        results: ``(agent, env_id) -> EvaluationResult``.
        baselines: ``env_id -> EnvBaselines``.
        specs: ``agent -> spec string`` (``repr`` of the object for agents given ready-made).
    """

    agents: list[str]
    env_ids: list[str]
    n_episodes: int
    seed: int
    results: dict[tuple[str, str], EvaluationResult] = field(default_factory=dict)
    baselines: dict[str, EnvBaselines] = field(default_factory=dict)
    specs: dict[str, str] = field(default_factory=dict)

    def cell(self, agent: str, env_id: str) -> EvaluationResult:
        """The result of ``agent`` on ``env_id``. Raises KeyError naming the known agents and envs."""
        try:
            return self.results[(agent, env_id)]
        except KeyError:
            raise KeyError(f"no cell ({agent!r}, {env_id!r}); agents: {self.agents}, envs: {self.env_ids}") from None

    def normalised(self, agent: str, env_id: str) -> float:
        """The cell's mean reward on the column's scale: 0 random baseline, 1 optimum (see :class:`EnvBaselines`)."""
        return self.baselines[env_id].normalise(self.cell(agent, env_id).mean_reward)

    def mean_rewards(self) -> np.ndarray:
        """float64 array ``(len(agents), len(env_ids))`` of mean rewards."""
        return np.array([[self.cell(a, e).mean_reward for e in self.env_ids] for a in self.agents])

    def rows(self) -> list[dict[str, Any]]:
        """One dict per cell with :data:`MATRIX_CSV_COLUMNS` (None where a value does not apply)."""
        out = []
        for a in self.agents:
            for e in self.env_ids:
                r = self.cell(a, e)
                out.append({"agent": a, "env": e, "mean_reward": r.mean_reward, "ci95_low": r.ci95[0],
                            "ci95_high": r.ci95[1], "legal_rate": r.legal_rate,
                            "legal_mean_reward": r.legal_mean_reward, "accuracy": r.accuracy,
                            "normalised": self.normalised(a, e), "n_episodes": r.n_episodes, "seed": r.seed})
        return out

    def baseline_rows(self) -> list[dict[str, Any]]:
        """One dict per environment with the baselines' columns (``baselines.csv``)."""
        out = []
        for e in self.env_ids:
            b = self.baselines[e]
            c = b.constant
            constant = ({"best_constant_answer": c.answer, "best_constant_mean_reward": c.mean_reward,
                         "best_constant_ci95_low": c.ci95[0], "best_constant_ci95_high": c.ci95[1],
                         "n_candidates": len(c.candidates)} if b.has_constant
                        else dict.fromkeys(("best_constant_answer", "best_constant_mean_reward",
                                            "best_constant_ci95_low", "best_constant_ci95_high", "n_candidates")))
            out.append({"env": e, "random_mean_reward": b.random.mean_reward,
                        "optimum_mean_reward": b.optimum.mean_reward, **constant,
                        "n_episodes": c.n_episodes, "seed": c.seed})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "agents": self.agents, "env_ids": self.env_ids, "n_episodes": self.n_episodes, "seed": self.seed,
            "specs": self.specs,
            "cells": [{"agent": a, "env": e, **self.cell(a, e).to_dict()} for a in self.agents for e in self.env_ids],
            "baselines": {e: {"random": b.random.to_dict(), "optimum": b.optimum.to_dict(),
                              "constant": b.constant.to_dict() if b.has_constant else None}
                          for e, b in self.baselines.items()},
        }

    def save(self, out_dir: str | os.PathLike, plot: bool = True) -> dict[str, Path]:
        """Write ``matrix.csv``, ``baselines.csv``, ``matrix.json``, (``plot``) ``matrix.png`` and, when rows
        are named ``CONDITION-sSEED``, ``seeds.csv`` (:mod:`evaluation.seeds`) into ``out_dir``.

        Returns:
            ``{"csv", "baselines", "json", "png", "seeds"}`` -> written paths (those written).
        """
        out = Path(out_dir)
        paths = {
            "csv": write_text_atomic(out / "matrix.csv", csv_text(MATRIX_CSV_COLUMNS, self.rows())),
            "baselines": write_text_atomic(out / "baselines.csv", csv_text(BASELINES_CSV_COLUMNS, self.baseline_rows())),
            "json": write_json_atomic(out / "matrix.json", self.to_dict(), indent=1, default=json_default),
        }
        from .seeds import SEEDS_CSV_COLUMNS, seed_rows

        pooled = seed_rows(self)
        if pooled:  # rows named CONDITION-sSEED: each condition's mean and range over its seeds
            paths["seeds"] = write_text_atomic(out / "seeds.csv", csv_text(SEEDS_CSV_COLUMNS, pooled))
        if plot:
            from .matrix_plot import plot_matrix

            paths["png"] = plot_matrix(self, out / "matrix.png")
        return paths

    def summary(self) -> str:
        """A readable table: mean reward (multi-step: mean return) per cell, then the baselines' rows,
        then, for multi-step columns, success within 1 and K turns and AUCCESS per agent."""
        width = max([len(a) for a in self.agents] + [len("best constant")]) + 2
        cols = [e.removesuffix("-v0") for e in self.env_ids]
        cw = max(12, *(len(c) + 2 for c in cols))
        lines = [" " * width + "".join(f"{c:>{cw}}" for c in cols)]
        for a in self.agents:
            lines.append(f"{a:<{width}}" + "".join(f"{self.cell(a, e).mean_reward:>{cw}.3f}" for e in self.env_ids))
        lines.append("-" * (width + cw * len(cols)))
        for label, get in (("random", lambda b: f"{b.random.mean_reward:.3f}"),
                           ("best constant", lambda b: f"{b.constant.mean_reward:.3f}" if b.has_constant else "-"),
                           ("  answer", lambda b: _inner(b.constant.answer) if b.has_constant else "-"),
                           ("optimum", lambda b: f"{b.optimum.mean_reward:.3f}")):
            lines.append(f"{label:<{width}}" + "".join(f"{get(self.baselines[e]):>{cw}}" for e in self.env_ids))
        from .seeds import seed_rows

        pooled = seed_rows(self)
        if pooled:
            lines.append("")
            lines.append("over training seeds (rows CONDITION-sSEED): mean [min, max] of the seeds' mean rewards")
            lines.append(" " * width + "".join(f"{c:>{cw + 10}}" for c in cols))
            for group in dict.fromkeys(r["group"] for r in pooled):
                cells = [r for r in pooled if r["group"] == group]
                texts = ["{:.2f} [{:.2f}, {:.2f}]".format(r["mean_reward"], r["min_reward"], r["max_reward"])
                         for r in cells]
                lines.append(f"{group:<{width}}" + "".join(f"{t:>{cw + 10}}" for t in texts))
        multi = [e for e in self.env_ids if self.cell(self.agents[0], e).interaction is not None]
        if multi:  # multi-step columns: mean return above; success within 1 and K turns, and AUCCESS
            lines.append("")
            lines.append("success@1 / success@K / AUCCESS (multi-step columns; K = the env's max_turns)")
            mcols = [e.removesuffix("-v0") for e in multi]
            mw = max(17, *(len(c) + 2 for c in mcols))
            lines.append(" " * width + "".join(f"{c:>{mw}}" for c in mcols))
            for a in self.agents:
                cells = [self.cell(a, e) for e in multi]
                lines.append(f"{a:<{width}}" + "".join(
                    f"{f'{r.success_at_k[0]:.3f}/{r.success_at_k[-1]:.3f}/{r.auccess:.3f}':>{mw}}" for r in cells))
        return "\n".join(lines)


def _inner(answer: str) -> str:
    """``"<answer>50, 300</answer>"`` -> ``"50, 300"`` (:func:`envs.answers.extract_answer`; no block: unchanged)."""
    content = extract_answer(answer)
    return answer if content is None else content


def csv_text(columns: Sequence[str], rows: list[dict[str, Any]]) -> str:
    """``rows`` as CSV text with a header of ``columns``: None as an empty cell, floats as ``repr``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # Floats as repr: the shortest text that reads back to the same float (the CSV equals evaluate()).
        writer.writerow({k: ("" if row[k] is None else repr(float(row[k])) if isinstance(row[k], float) else row[k])
                         for k in columns})
    return buf.getvalue()


def not_applicable_constant(env_id: str, n_episodes: int, seed: int) -> ConstantBaseline:
    """The constant baseline of an environment where none applies: answer ``"n/a"``, NaN mean, no candidates."""
    nan = float("nan")
    return ConstantBaseline(env_id=env_id, seed=seed, n_episodes=int(n_episodes), answer=NO_CONSTANT_ANSWER,
                            mean_reward=nan, ci95=(nan, nan), candidates=(), candidate_means=np.zeros(0),
                            rewards=np.zeros((int(n_episodes), 0)))


def _is_multi_step(env_id: str, env_kwargs: Mapping[str, Any]) -> bool:
    env = gym.make(env_id, **env_kwargs)
    try:
        return getattr(env.unwrapped, "interaction", "single") != "single"
    finally:
        env.close()


def env_baselines(env_id: str, n_episodes: int, seed: int, batch_size: int = EVAL_BATCH_SIZE,
                  x_step: int = DEFAULT_X_STEP, xy_step: tuple[int, int] = DEFAULT_XY_STEP,
                  env_kwargs: Mapping[str, Any] | None = None) -> EnvBaselines:
    """Random, optimum and best-constant reference points of ``env_id`` on seeds ``seed .. seed + n_episodes - 1``.

    A multi-step environment (also a single-step id made multi-step by ``env_kwargs``, e.g.
    ``interaction="retry"``) gets :func:`not_applicable_constant` (see the module docstring).
    """
    from agents.baselines import OracleAgent, RandomAgent

    kw = dict(env_kwargs or {})
    random = evaluate(RandomAgent(seed=seed), env_id, n_episodes, seed, batch_size, env_kwargs=kw)
    optimum = evaluate(OracleAgent(), env_id, n_episodes, seed, batch_size, env_kwargs=kw)
    if _is_multi_step(env_id, kw):
        constant = not_applicable_constant(env_id, n_episodes, seed)
    else:
        constant = best_constant_answer(env_id, n_episodes, seed, x_step=x_step, xy_step=xy_step, env_kwargs=kw)
    return EnvBaselines(env_id, random, optimum, constant)


# Spec kinds whose agents are loaded once per row (model weights); every other spec is loaded afresh
# for each cell. Their answers do not depend on earlier calls (VLM sampling is re-seeded on every call).
_LOAD_ONCE = ("vlm", "vlm-logprob", "sb3")


def _load(spec: str, seed: int, sampling: Any = None, max_history_turns: int | None = None) -> Agent:
    from agents.factory import load_agent

    return load_agent(spec, seed=seed, sampling=sampling, max_history_turns=max_history_turns)


def evaluate_matrix(
    agents: Mapping[str, Agent | str],
    env_ids: Sequence[str],
    n_episodes: int = 64,
    seed: int = 0,
    batch_size: int = EVAL_BATCH_SIZE,
    out_dir: str | os.PathLike | None = None,
    x_step: int = DEFAULT_X_STEP,
    xy_step: tuple[int, int] = DEFAULT_XY_STEP,
    sampling: Any = None,
    env_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    max_history_turns: int | None = None,
    columns: Mapping[str, str] | None = None,
) -> MatrixResult:
    """Evaluate every agent on every environment, same seeds, plus each environment's baselines.

    Args:
        agents: ``name -> agent``: a ready :class:`agents.base.Agent`, or a spec string for
            :func:`agents.factory.load_agent` (e.g. ``"vlm:tiny-base+adapter=runs/x/checkpoints/step-000100"``),
            loaded with ``seed=seed``: model specs (``vlm:``, ``vlm-logprob:``, ``sb3:``) once when the row
            starts, released after it (one model in memory at a time); other specs afresh for every cell, so
            each cell equals ``evaluate(load_agent(spec, seed=seed), env_id, n_episodes, seed, batch_size)``.
            A ready agent is used as given in every cell (internal state, such as an RNG, carries over).
        env_ids: the columns: registered environment ids, or names of ``columns``.
        n_episodes: episodes per cell, seeds ``seed .. seed + n_episodes - 1`` in every cell.
        batch_size: observations per ``act`` call (default :data:`agents.backends.base.EVAL_BATCH_SIZE`).
        sampling: decoding of spec-loaded ``vlm:`` agents (default :data:`agents.backends.base.EVAL_DECODING`),
            recorded in each cell's result.
        out_dir: when given, :meth:`MatrixResult.save` writes the CSVs, JSON and PNG there.
        x_step, xy_step: candidate spacing of the best-constant search (:func:`~evaluation.best_constant.constant_candidates`).
        env_kwargs: ``env_id -> gym.make kwargs`` (e.g. ``data_dir`` of ``RealTowerStability-v0``).
        progress: a progress bar per cell.
        log: called with one line per finished cell (e.g. ``print``).
        max_history_turns: earlier turns spec-loaded ``vlm:`` agents replay in a multi-step chat (None: all).
        columns: ``column name -> registered id``, for columns that are one id under different
            ``env_kwargs`` (a split: ``{"towers-5-7": "TowerStability-v0"}`` with ``env_kwargs``
            ``{"towers-5-7": {"n_blocks": [5, 7]}}``); results and baselines are keyed by the name.

    Returns:
        A :class:`MatrixResult`.

    Raises:
        gymnasium.error.Error: an unknown env id (Gymnasium names close matches), before any evaluation.
        ValueError: no agents or envs, a duplicate env id, ``n_episodes`` < 1, or a bad agent spec.
    """
    if not agents:
        raise ValueError("agents is empty; give at least one name -> agent (or spec), e.g. {'random': 'random'}")
    env_ids = list(env_ids)
    if not env_ids:
        raise ValueError("env_ids is empty; give at least one id, e.g. ['TopBlockXOnly-v0']")
    dupes = sorted({e for e in env_ids if env_ids.count(e) > 1})
    if dupes:
        raise ValueError(f"env ids listed more than once: {dupes}")
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, (int, np.integer)) or n_episodes < 1:
        raise ValueError(f"n_episodes must be an int >= 1, got {n_episodes!r}")
    columns = dict(columns or {})
    for e in env_ids:
        gym.spec(columns.get(e, e))  # fail fast on a typo, with Gymnasium's close-match hint
    from agents.factory import check_agent_spec

    for agent in agents.values():
        if isinstance(agent, str):
            check_agent_spec(agent)  # a bad spec or adapter path fails before any evaluation
    env_kwargs = dict(env_kwargs or {})
    log = log or (lambda _line: None)
    result = MatrixResult(agents=list(agents), env_ids=env_ids, n_episodes=int(n_episodes), seed=seed)
    for e in env_ids:
        result.baselines[e] = env_baselines(columns.get(e, e), n_episodes, seed, batch_size, x_step, xy_step,
                                            env_kwargs.get(e))
        b = result.baselines[e]
        log(f"{e}: random {b.random.mean_reward:.3f}, optimum {b.optimum.mean_reward:.3f}, best constant "
            + (f"{b.constant.answer} {b.constant.mean_reward:.3f}" if b.has_constant else "n/a (multi-step)"))
    for name, agent in agents.items():
        spec = agent if isinstance(agent, str) else None
        result.specs[name] = spec if spec is not None else repr(agent)
        if spec is not None and spec.partition(":")[0] in _LOAD_ONCE:
            agent = _load(spec, seed, sampling, max_history_turns)
        for e in env_ids:
            if isinstance(agent, str):  # a cheap agent, afresh per cell (a RandomAgent's RNG restarts)
                cell_agent = _load(agent, seed, sampling, max_history_turns)
            else:
                cell_agent = agent
            r = evaluate(cell_agent, columns.get(e, e), n_episodes, seed, batch_size, env_kwargs=env_kwargs.get(e),
                         progress=progress)
            r.agent = name
            result.results[(name, e)] = r
            log(f"{name} on {e}: mean reward {r.mean_reward:.3f} [{r.ci95[0]:.3f}, {r.ci95[1]:.3f}], "
                f"legal {r.legal_rate:.3f}")
        del agent, cell_agent
        gc.collect()
    if out_dir is not None:
        result.save(out_dir)
    return result

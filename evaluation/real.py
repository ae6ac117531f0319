"""Real-photo evaluation with human alignment, and T_pref bias scores of binary evaluations.

``evaluate_real`` runs an agent through ``RealTowerStability-v0`` with
:func:`evaluation.evaluate` (the environment's own reward and parsing, one
episode per photo: seeds ``0 .. n_photos - 1``) and scores the answers with
:mod:`evaluation.agreement`. ``bias_scores`` reads the records of any binary
:class:`~evaluation.evaluate.EvaluationResult` (``TopBlockStability-v0``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.backends.base import EVAL_BATCH_SIZE
from agents.base import Agent
from envs.atomic import write_json_atomic
from envs.real import RealTowerDataset, episode_photo
from envs.worlds import env_polarity

from .agreement import (
    DIFFICULTY_EDGES,
    WORLD_DIFFICULTY_EDGES,
    BiasScore,
    accuracy_with_ci,
    bias_by_group,
    bias_score,
    cohen_kappa,
    difficulty_bins,
    human_accuracy,
    mean_kappa_bootstrap_ci,
    mean_kappa_vs_participants,
    mean_pairwise_kappa,
    offset_difficulty,
    verdicts,
)
from .evaluate import EvaluationResult, bootstrap_ci, describe_decoding, evaluate
from .in_sample import in_sample_note

__all__ = ["evaluate_real", "RealEvaluationResult", "PhotoAnswer", "bias_scores", "BiasReport"]

ENV_ID = "RealTowerStability-v0"


def _save_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write JSON atomically (:func:`envs.atomic.write_json_atomic`); nan becomes null."""
    write_json_atomic(path, _nan_to_none(data), indent=1)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _f(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.000"


def _ci(ci: tuple[float, float] | None) -> str:
    if ci is None or any(v is None or math.isnan(v) for v in ci):
        return ""
    return f"  95% CI [{_f(ci[0])}, {_f(ci[1])}]"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows])


def _none_if_nan(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


@dataclass(frozen=True)
class PhotoAnswer:
    """One photo's answer. ``parsed``: ``"Yes"``, ``"No"`` or None (illegal); ``falls``: the label."""

    image: str
    n_blocks: int
    falls: bool
    answer: str
    parsed: str | None
    correct: bool
    human_p_falls: float | None = None


@dataclass
class RealEvaluationResult:
    """An agent on a folder of real photos, against the labels and the human participants.

    Attributes (kappas are Cohen's, :mod:`evaluation.agreement`; intervals 95%):
        accuracy, accuracy_ci95: fraction of photos answered correctly (illegal
            answers are wrong); percentile bootstrap over photos (scipy).
        legal_rate: fraction of answers that were Yes or No.
        kappa_truth: kappa of the agent's verdicts against the labels.
        bias: T_pref and its parts (positive class: stable), as a dict of
            :class:`~evaluation.agreement.BiasScore`.
        human_accuracy, human_accuracy_ci95: mean over photos of the fraction
            of participants who were right (None without human data).
        n_participants: columns of ``human_responses.csv`` (0 without it).
        kappa_humans, kappa_humans_ci95: mean over participants of the agent's
            kappa against each; percentile bootstrap over photos (seeded numpy).
        human_kappa_truth: mean over participants of their kappa against the labels.
        human_human_kappa: mean kappa over pairs of participants (the ceiling
            for ``kappa_humans``).
        by_n_blocks: ``{n_blocks: {"photos", "accuracy", "human_accuracy",
            "t_pref", "recall", "specificity"}}``.
        photos: per-photo answers, in ``labels.csv`` order.
        decoding: the agent's decoding (:attr:`evaluation.evaluate.EvaluationResult.decoding`).
        prompt: the question asked when it was not the Lerer prompt (``envs.prompts.LERER``), else None.
        in_sample_note, in_sample_photos: set when the agent declares it was tuned on
            photos and this folder holds them (:func:`evaluation.in_sample.in_sample_note`):
            the accuracy is then in-sample; ``in_sample_photos`` is None when unknown.
    """

    data_dir: str
    agent: str
    n_photos: int
    image_size: int
    accuracy: float
    accuracy_ci95: tuple[float, float]
    legal_rate: float
    kappa_truth: float | None
    bias: dict[str, Any]
    human_accuracy: float | None = None
    human_accuracy_ci95: tuple[float, float] | None = None
    n_participants: int = 0
    kappa_humans: float | None = None
    kappa_humans_ci95: tuple[float, float] | None = None
    human_kappa_truth: float | None = None
    human_human_kappa: float | None = None
    by_n_blocks: dict[int, dict[str, Any]] = field(default_factory=dict)
    photos: list[PhotoAnswer] = field(default_factory=list)
    decoding: dict[str, Any] | None = None
    prompt: str | None = None
    in_sample_note: str | None = None
    in_sample_photos: int | None = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RealEvaluationResult:
        data = dict(data)
        for key in ("accuracy_ci95", "human_accuracy_ci95", "kappa_humans_ci95"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        data["by_n_blocks"] = {int(k): v for k, v in data.get("by_n_blocks", {}).items()}
        data["photos"] = [PhotoAnswer(**p) for p in data.get("photos", [])]
        return cls(**data)

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (temporary file, then rename); undefined values (nan) become null."""
        _save_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> RealEvaluationResult:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def summary(self) -> str:
        """The headline numbers, then accuracy and T_pref by number of blocks, as text tables."""
        b = self.bias
        rows = [
            ("data", f"{self.data_dir} ({self.n_photos} photos, {self.n_participants} participants)"),
            ("agent", self.agent or "-"),
            ("decoding", describe_decoding(self.decoding)),
            *([("prompt", self.prompt)] if self.prompt else []),
            ("accuracy", f"{_f(self.accuracy)}{_ci(self.accuracy_ci95)}"),
            ("human accuracy", f"{_f(self.human_accuracy)}{_ci(self.human_accuracy_ci95)}"),
            ("legal answers", _f(self.legal_rate)),
            ("kappa vs humans", f"{_f(self.kappa_humans)}{_ci(self.kappa_humans_ci95)}  (mean over participants; "
                                f"human-human {_f(self.human_human_kappa)})"),
            ("kappa vs truth", f"{_f(self.kappa_truth)}  (humans {_f(self.human_kappa_truth)})"),
            ("T_pref", f"{_f(b['t_pref'])}  (recall {_f(b['recall'])}, specificity {_f(b['specificity'])}; "
                       "positive = stable)"),
        ]
        width = max(len(k) for k, _ in rows)
        head = "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
        if self.in_sample_note:
            head += f"\n{self.in_sample_note}"
        table = _table(("n_blocks", "photos", "accuracy", "humans", "T_pref"), [
            (str(n), str(r["photos"]), _f(r["accuracy"]), _f(r["human_accuracy"]), _f(r["t_pref"]))
            for n, r in sorted(self.by_n_blocks.items())
        ])
        return f"{head}\n\n{table}"


def evaluate_real(agent: Agent, data_dir: str | os.PathLike, image_size: int = 256, batch_size: int = EVAL_BATCH_SIZE,
                  seed: int = 0, n_resamples: int = 9999, progress: bool = False,
                  agent_name: str = "", prompt: str | None = None) -> RealEvaluationResult:
    """Run ``agent`` once on every photo of ``data_dir`` and measure accuracy and human alignment.

    Args:
        agent: any :class:`agents.base.Agent`.
        data_dir: a folder laid out like ``../shared/data/lerer-dev`` (:mod:`envs.real`).
        image_size: side of the square images the agent sees, pixels.
        batch_size: observations per ``agent.act`` call.
        seed: seed of the bootstrap intervals (the photo order is fixed: seeds 0 .. n - 1).
        n_resamples: bootstrap resamples of the kappa interval.
        progress: show a progress bar.
        agent_name: recorded in the result (default: the agent's class name).
        prompt: ask this text instead of the Lerer prompt, verbatim (e.g. the training task's
            prompt, to tell a shift of question from a shift of images). The answers are judged
            as the Lerer question's, ``Yes`` = stable: a prompt whose ``Yes`` means "falls" would
            be scored inverted (``cubeworld eval-real --prompt`` refuses those by task name).

    Returns:
        :class:`RealEvaluationResult`; human fields are None without human data.

    Raises:
        FileNotFoundError, ValueError: a bad dataset folder (:class:`envs.real.RealTowerDataset`).
    """
    dataset = RealTowerDataset(data_dir, image_size)
    n = len(dataset)
    env_kwargs = {"data_dir": str(data_dir), "image_size": image_size}
    if prompt is not None:
        env_kwargs["prompt"] = prompt
    result = evaluate(agent, ENV_ID, n_episodes=n, seed=0, batch_size=batch_size, progress=progress,
                      env_kwargs=env_kwargs)
    by_photo = {episode_photo(r.seed, n): r for r in result.episodes}
    if sorted(by_photo) != list(range(n)):  # pragma: no cover - episode_photo's guarantee
        raise RuntimeError("seeds 0 .. n-1 did not cover every photo once")
    records = [by_photo[i] for i in range(n)]
    photos = [PhotoAnswer(p.name, p.n_blocks, p.falls, r.answer, r.parsed_action, r.outcome == "correct",
                          p.human_p_falls) for p, r in zip(dataset.photos, records)]
    truth = dataset.falls.astype(np.float64)
    said = verdicts([p.parsed for p in photos])
    correct = np.array([p.correct for p in photos], dtype=np.float64)
    accuracy, accuracy_ci = accuracy_with_ci(correct, seed=seed)
    n_blocks = [p.n_blocks for p in photos]
    bias = bias_by_group(truth, said, n_blocks)
    p_falls = [p.human_p_falls for p in dataset.photos]
    has_p = all(p is not None for p in p_falls)
    human_correct = 1 - np.abs(np.array(p_falls, dtype=np.float64) - truth) if has_p else None
    by_n = {}
    for k, score in bias.items():
        sel = np.array([x == k for x in n_blocks])
        by_n[int(k)] = {"photos": int(sel.sum()), "accuracy": float(correct[sel].mean()),
                        "human_accuracy": float(human_correct[sel].mean()) if has_p else None,
                        "t_pref": score.t_pref, "recall": score.recall, "specificity": score.specificity}
    out = RealEvaluationResult(
        data_dir=str(data_dir), agent=agent_name or type(agent).__name__, n_photos=n, image_size=image_size,
        accuracy=accuracy, accuracy_ci95=accuracy_ci, legal_rate=result.legal_rate,
        kappa_truth=_none_if_nan(cohen_kappa(said, truth)), bias=bias_score(truth, said).to_dict(),
        by_n_blocks=by_n, photos=photos, decoding=result.decoding, prompt=prompt,
    )
    out.in_sample_note, out.in_sample_photos = in_sample_note(agent, [p.path for p in dataset.photos])
    if has_p:
        out.human_accuracy = human_accuracy(p_falls, truth)
        out.human_accuracy_ci95 = bootstrap_ci(human_correct, seed=seed)
    h = dataset.human_responses
    if h is not None:
        out.n_participants = h.shape[1]
        out.kappa_humans = _none_if_nan(mean_kappa_vs_participants(said, h))
        out.kappa_humans_ci95 = mean_kappa_bootstrap_ci(said, h, n_resamples=n_resamples, seed=seed)
        human_truth = np.array([cohen_kappa(h[:, j], truth) for j in range(h.shape[1])])
        out.human_kappa_truth = _none_if_nan(float(np.nanmean(human_truth))
                                             if np.isfinite(human_truth).any() else math.nan)
        out.human_human_kappa = _none_if_nan(mean_pairwise_kappa(h))
    return out


@dataclass
class BiasReport:
    """T_pref of a binary evaluation, overall, by number of blocks and by difficulty.

    Attributes:
        overall: a :class:`~evaluation.agreement.BiasScore` as a dict.
        by_n_blocks: ``{n_blocks: BiasScore dict}`` (blocks in the scene; a ShapeStacks stack's height).
        by_difficulty: ``{bin label: BiasScore dict}`` over ``difficulty`` (empty when episodes
            carry none, e.g. real photos).
        by_level: ``{difficulty level: BiasScore dict}`` (``easy`` / ``hard`` of ShapeStacks;
            empty for worlds without levels).
        difficulty: what the bins measure: ``"||offset| - 0.5|"`` (``TopBlockStability-v0``) or
            ``"|com_margin|"`` (the worlds of DESIGN.md section 8), block edges; None without bins.
        yes_means: what the task's first answer asserts (``"stable"``; ``"falls"`` for the ICML
            2025 pre-prompts): T_pref's positive class is always "stable", whatever the wording.
    """

    env_id: str
    agent: str
    n_episodes: int
    overall: dict[str, Any]
    by_n_blocks: dict[int, dict[str, Any]]
    by_difficulty: dict[str, dict[str, Any]]
    edges: tuple[float, ...] = DIFFICULTY_EDGES
    decoding: dict[str, Any] | None = None
    by_level: dict[str, dict[str, Any]] = field(default_factory=dict)
    difficulty: str | None = None
    yes_means: str = "stable"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically; undefined values (nan) become null."""
        _save_json(path, self.to_dict())

    def summary(self) -> str:
        """Text tables: overall, by number of blocks, by difficulty (block edges from the threshold)."""
        def rows(groups: dict[Any, dict[str, Any]]) -> list[tuple[str, ...]]:
            return [(str(k), str(s["n"]), str(s["n_stable"]), _f(s["accuracy"]), _f(s["recall"]),
                     _f(s["specificity"]), _f(s["t_pref"])) for k, s in groups.items()]

        header = ("group", "episodes", "stable", "accuracy", "recall", "specificity", "T_pref")
        body = rows({"all": self.overall}) + rows({f"{k} blocks": v for k, v in self.by_n_blocks.items()})
        body += rows({f"d {k}": v for k, v in self.by_difficulty.items()})
        body += rows({f"level {k}": v for k, v in self.by_level.items()})
        d = f"; d = {self.difficulty} block edges" if self.difficulty else ""
        return (f"{self.env_id}, agent {self.agent or '-'}, {self.n_episodes} episodes; positive class = stable "
                f"(the first answer means {self.yes_means}){d}\n" + _table(header, body))


def bias_scores(result: EvaluationResult, edges: tuple[float, ...] | None = None) -> BiasReport:
    """T_pref of a binary task's :class:`EvaluationResult` by number of blocks, by difficulty and by level.

    Reads each record's ``parsed_action``, its truth (``falls`` where the world records it, as
    the worlds of DESIGN.md section 8 do, else ``not stable_initially``), ``n_blocks``, and for
    the bins ``difficulty`` (a world's ``|com_margin|``, in :data:`WORLD_DIFFICULTY_EDGES` by
    default) or else ``offset`` (``TopBlockStability-v0``: :func:`offset_difficulty`, in
    :data:`DIFFICULTY_EDGES`), and ``difficulty_level``. The answers are read in the task's
    polarity (:func:`envs.worlds.polarity`; ``Yes`` = falls on ``TowerStability-v0``), so
    T_pref's positive class is "stable" on every id.

    Raises:
        ValueError: the result is not of a binary task (records lack their truth or hold
            answers of neither label), or a difficulty falls outside ``edges``.
    """
    episodes = result.episodes
    labels, yes_means = env_polarity(result.env_id)
    if not episodes or any(e.truth_falls is None or e.parsed_action not in (*labels, None) for e in episodes):
        raise ValueError(f"bias_scores needs the episodes of a binary task (answers {' / '.join(labels)}), "
                         f"got {result.env_id!r} with {len(episodes)} episodes")
    truth = np.array([float(e.truth_falls) for e in episodes])
    said = verdicts([e.parsed_action for e in episodes], labels, yes_means)
    by_n = bias_by_group(truth, said, [e.n_blocks for e in episodes])
    by_d: dict[str, BiasScore] = {}
    difficulty = None
    if all(e.difficulty is not None for e in episodes):
        difficulty, edges = "|com_margin|", tuple(edges or WORLD_DIFFICULTY_EDGES)
        by_d = bias_by_group(truth, said, difficulty_bins([e.difficulty for e in episodes], edges))
    elif all(e.offset is not None for e in episodes):
        difficulty, edges = "||offset| - 0.5|", tuple(edges or DIFFICULTY_EDGES)
        by_d = bias_by_group(truth, said, difficulty_bins(offset_difficulty([e.offset for e in episodes]), edges))
    levels = [e.difficulty_level for e in episodes]
    by_level = bias_by_group(truth, said, levels) if all(lv is not None for lv in levels) else {}
    return BiasReport(
        env_id=result.env_id, agent=result.agent, n_episodes=len(episodes),
        overall=bias_score(truth, said).to_dict(),
        by_n_blocks={int(k): v.to_dict() for k, v in by_n.items()},
        by_difficulty={k: v.to_dict() for k, v in by_d.items()}, edges=tuple(edges or DIFFICULTY_EDGES),
        decoding=result.decoding, by_level={str(k): v.to_dict() for k, v in by_level.items()},
        difficulty=difficulty, yes_means=yes_means,
    )


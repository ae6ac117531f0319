"""Leave-one-out accuracy of a setting that was chosen on the very photos it is reported on.

A setting picked among candidates by its accuracy on an evaluation set reports
an in-sample accuracy (DESIGN.md section 9). Leave-one-out (LOO) takes the
choice out of the sample: for each photo ``i``, the candidate with the highest
accuracy on the other ``n - 1`` photos is chosen (ties go to the candidate
listed first, by convention the shipped setting), and photo ``i`` is answered
with it; the LOO accuracy is the mean over ``i`` of those answers' correctness
(Hastie, Tibshirani & Friedman, *The Elements of Statistical Learning*, 2nd
ed., section 7.10, on why the selection must sit inside the fold).

Each candidate runs once on every photo (:func:`evaluation.real.evaluate_real`:
the environment's own parsing and scoring, so the per-candidate accuracies are
the figures ``cubeworld eval-real`` prints), and the folds only re-read those
answers, so the cost is one evaluation per candidate.

The 95% interval is :func:`evaluation.evaluate.bootstrap_ci` (percentile,
``scipy.stats.bootstrap``) over photos of the LOO correctness, with the fold
choices held fixed: it does not redo the selection inside each resample.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from agents.base import Agent
from envs.atomic import write_text_atomic

from .evaluate import bootstrap_ci
from .real import evaluate_real

__all__ = ["leave_one_out_accuracy", "leave_one_out_choices", "LeaveOneOutResult"]


def leave_one_out_choices(correct: Mapping[str, Sequence[bool]]) -> tuple[list[str], np.ndarray]:
    """Per-photo LOO choice and its correctness, from each candidate's ``(n,)`` correctness.

    Args:
        correct: ``{candidate: (n,) bool or 0/1}``, in tie-break order (first wins a tie).

    Returns:
        ``(choices, loo_correct)``: the candidate chosen for each photo from the other
        ``n - 1``, and ``(n,)`` bool, whether that candidate answered the photo correctly.

    Raises:
        ValueError: no candidates, fewer than 2 photos, or candidates of different lengths.
    """
    if not correct:
        raise ValueError("leave-one-out needs at least one candidate; give {name: correctness}")
    names = list(correct)
    c = [np.asarray(correct[k], dtype=bool) for k in names]
    if any(x.ndim != 1 or x.size != c[0].size for x in c):
        raise ValueError(f"candidates must have one correctness value per photo each, got lengths "
                         f"{[x.size for x in c]} for {names}")
    if c[0].size < 2:
        raise ValueError(f"leave-one-out needs at least 2 photos, got {c[0].size}")
    matrix = np.stack(c)  # (candidates, photos)
    rest = matrix.sum(1, keepdims=True) - matrix  # correct answers on the other photos, per fold
    picked = rest.argmax(0)  # argmax keeps the first maximum: the documented tie-break
    return [names[k] for k in picked], matrix[picked, np.arange(matrix.shape[1])]


@dataclass
class LeaveOneOutResult:
    """Leave-one-out accuracy of choosing among ``candidates`` on the photos of ``data_dir``.

    Attributes:
        candidates: names, in tie-break order; ``default`` is the first (the tuned setting as shipped;
            for the perceive agent, its legacy photo-developed constants).
        candidate_accuracy: each candidate's accuracy on all photos (in-sample for the chosen one).
        in_sample_accuracy: ``default``'s accuracy on all photos (the figure reported before LOO).
        accuracy, accuracy_ci95: the LOO accuracy and its 95% percentile bootstrap interval over photos.
        images, choices, correct: per photo, in ``labels.csv`` order: the file name, the candidate
            chosen on the other photos, and whether its answer was right.
    """

    data_dir: str
    n_photos: int
    candidates: list[str]
    default: str
    candidate_accuracy: dict[str, float]
    in_sample_accuracy: float
    accuracy: float
    accuracy_ci95: tuple[float, float]
    images: list[str] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)

    def choice_counts(self) -> dict[str, int]:
        """``{candidate: folds that chose it}`` for every candidate, in tie-break order."""
        return {k: self.choices.count(k) for k in self.candidates}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (:func:`envs.atomic.write_text_atomic`)."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1))

    def summary(self) -> str:
        """Each candidate's accuracy, the LOO accuracy with its interval, and the folds' choices."""
        lo, hi = self.accuracy_ci95
        lines = [f"leave-one-out over {len(self.candidates)} candidate settings, {self.n_photos} photos "
                 f"(each photo answered by the candidate best on the other {self.n_photos - 1}; "
                 f"ties: {self.default})"]
        lines += [f"  {k}: accuracy {v:.3f}{' (default)' if k == self.default else ''}"
                  for k, v in self.candidate_accuracy.items()]
        counts = ", ".join(f"{k} {n}" for k, n in self.choice_counts().items())
        lines.append(f"  in-sample accuracy (default) {self.in_sample_accuracy:.3f}; leave-one-out accuracy "
                     f"{self.accuracy:.3f}  95% CI [{lo:.3f}, {hi:.3f}]")
        lines.append(f"  folds' choices: {counts}")
        return "\n".join(lines)


def leave_one_out_accuracy(candidates: Mapping[str, Agent], data_dir: str | os.PathLike, image_size: int = 256,
                           batch_size: int | None = None, seed: int = 0,
                           progress: bool = False) -> LeaveOneOutResult:
    """LOO accuracy of choosing one of ``candidates`` by accuracy on the photos of ``data_dir``.

    Args:
        candidates: ``{name: agent}``, the settings the tuning compared, shipped one first
            (e.g. :meth:`agents.perceive.PerceiveSimulateAgent.photo_candidates`).
        data_dir: a folder laid out like ``../shared/data/lerer-dev`` (:mod:`envs.real`).
        image_size, batch_size: as :func:`evaluation.real.evaluate_real` (None: its default batch).
        seed: seed of the bootstrap interval.
        progress: show a progress bar per candidate.

    Returns:
        :class:`LeaveOneOutResult`.

    Raises:
        ValueError: no candidates, fewer than 2 photos, or a bad dataset folder.
        FileNotFoundError: a bad dataset folder (:class:`envs.real.RealTowerDataset`).
    """
    if not candidates:
        raise ValueError("leave_one_out_accuracy needs at least one candidate agent; give {name: agent}")
    extra = {} if batch_size is None else {"batch_size": batch_size}
    # n_resamples=1: the kappa interval is not part of this result, so it is not worth bootstrapping.
    runs = {name: evaluate_real(agent, data_dir, image_size=image_size, seed=seed, n_resamples=1,
                                progress=progress, agent_name=name, **extra)
            for name, agent in candidates.items()}
    correct = {name: [p.correct for p in r.photos] for name, r in runs.items()}
    choices, loo = leave_one_out_choices(correct)
    default = next(iter(runs))
    return LeaveOneOutResult(
        data_dir=str(data_dir), n_photos=len(loo), candidates=list(runs), default=default,
        candidate_accuracy={k: r.accuracy for k, r in runs.items()}, in_sample_accuracy=runs[default].accuracy,
        accuracy=float(loo.mean()), accuracy_ci95=bootstrap_ci(loo.astype(np.float64), seed=seed),
        images=[p.image for p in runs[default].photos], choices=choices, correct=[bool(x) for x in loo],
    )

"""Agreement with humans and ground truth, and the T_pref bias score: pure functions.

Coding used by every function here (the coding of ``labels.csv`` and
``human_responses.csv``): a verdict is a float, **1.0 = "falls"** (answer
``No``), **0.0 = "stable"** (answer ``Yes``), ``nan`` = no verdict (an illegal
answer, or a participant who did not see the photo). Arrays are float64 of
shape ``(n_photos,)`` for one rater and ``(n_photos, n_participants)`` for the
participants. :func:`verdicts` turns answers into this coding, in either polarity (the
ICML 2025 pre-prompts ask "will it fall?", so there ``Yes`` is 1.0: :func:`envs.worlds.polarity`).

Sources:

* Cohen's kappa: J. Cohen (1960), "A coefficient of agreement for nominal
  scales", Educ. Psychol. Meas. 20(1); computed by
  ``sklearn.metrics.cohen_kappa_score``. ``kappa = (p_o - p_e) / (1 - p_e)``,
  ``p_o`` the observed agreement and ``p_e`` the agreement expected from each
  rater's own base rates.
* Human alignment as kappa against every participant, averaged, and kappa
  against the ground truth: Schulze Buschoff et al., "Testing the limits of
  fine-tuning to improve reasoning in vision language models" (ICML 2025;
  arXiv 2502.15678), and the block-tower paper this project reproduces
  (Schulze Buschoff et al. 2026, arXiv 2602.06033).
* T_pref: the bias score of the ShapeStacks stability study (SFT then RL),
  ``T_pref = tanh((recall - specificity) / specificity)`` with the positive
  class "stable" (see :func:`t_pref`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .evaluate import bootstrap_ci

__all__ = [
    "verdicts", "cohen_kappa", "kappa_vs_participants", "mean_kappa_vs_participants",
    "mean_kappa_bootstrap_ci", "mean_pairwise_kappa", "human_accuracy", "accuracy_with_ci",
    "accuracy_by_group", "t_pref", "BiasScore", "bias_score", "bias_by_group",
    "offset_difficulty", "difficulty_bins", "DIFFICULTY_EDGES", "WORLD_DIFFICULTY_EDGES", "STABILITY_THRESHOLD",
]

STABILITY_THRESHOLD = 0.5
"""|offset| (block edges) at which a top cube on an aligned tower tips over (centre-of-mass rule)."""
DIFFICULTY_EDGES = (0.0, 0.1, 0.2, 0.3, 0.5)
"""Bin edges of :func:`offset_difficulty`, block edges (TopBlockStability |offset| lies in [0.05, 0.95))."""
WORLD_DIFFICULTY_EDGES = (0.0, 0.05, 0.1, 0.2, math.inf)
"""Bin edges of the worlds' ``info["difficulty"]`` (block edges between the centre-of-mass rule and
its threshold; unbounded above). The first bin, within 0.05, holds the scenes where rule and
simulation can part (DESIGN.md section 8)."""


def _sklearn_kappa():
    try:
        from sklearn.metrics import cohen_kappa_score
    except ImportError as exc:  # pragma: no cover - scikit-learn ships with the train extra
        raise ImportError("Cohen's kappa needs scikit-learn: pip install 'cubeworld[train]'") from exc
    return cohen_kappa_score


def verdicts(answers: Sequence[Any], labels: tuple[str, str] = ("Yes", "No"),
             yes_means: str = "stable") -> np.ndarray:
    """``(n,)`` float64 verdicts from parsed binary answers, else nan.

    ``labels[0]`` asserts ``yes_means``: by default (the 2026 paper's question, "is it stable?")
    ``"No"`` -> 1.0 (falls), ``"Yes"`` -> 0.0; with ``yes_means="falls"`` (the ICML 2025
    pre-prompts) ``"Yes"`` -> 1.0; ``labels=("True", "False")`` for ShapeStacks' True = stable.

    Raises:
        ValueError: ``yes_means`` is neither ``"stable"`` nor ``"falls"``.
    """
    if yes_means not in ("stable", "falls"):
        raise ValueError(f"yes_means must be 'stable' or 'falls', got {yes_means!r}")
    first = 0.0 if yes_means == "stable" else 1.0
    table = {labels[0]: first, labels[1]: 1.0 - first}
    return np.array([table.get(a, np.nan) if isinstance(a, str) else np.nan for a in answers], dtype=np.float64)


def _as_verdicts(values: Any, name: str, ndim: int = 1) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array of 0/1/nan verdicts, got shape {a.shape}")
    ok = np.isnan(a) | (a == 0) | (a == 1)
    if not ok.all():
        raise ValueError(f"{name} must hold 1 (falls), 0 (stable) or nan, got {a[~ok][:3].tolist()}")
    return a


def cohen_kappa(rater_a: Any, rater_b: Any) -> float:
    """Cohen's kappa of two raters' binary verdicts, by ``sklearn.metrics.cohen_kappa_score``.

    Args:
        rater_a, rater_b: ``(n,)`` verdicts (1 falls, 0 stable, nan none); items
            where either is nan are left out.

    Returns:
        kappa in [-1, 1]; nan when it is undefined: no common item, or both
        raters gave one and the same verdict to every item (``p_e = 1``).

    Raises:
        ValueError: different lengths or values other than 0, 1, nan.
    """
    a, b = _as_verdicts(rater_a, "rater_a"), _as_verdicts(rater_b, "rater_b")
    if a.shape != b.shape:
        raise ValueError(f"raters must judge the same items: shapes {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep].astype(int), b[keep].astype(int)
    if a.size == 0 or (np.ptp(a) == 0 and np.ptp(b) == 0 and a[0] == b[0]):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(_sklearn_kappa()(a, b, labels=[0, 1]))


def kappa_vs_participants(agent: Any, responses: Any) -> np.ndarray:
    """``(n_participants,)`` kappa of ``agent`` (``(n,)``) against each column of ``responses`` (``(n, m)``)."""
    a, h = _as_verdicts(agent, "agent"), _as_verdicts(responses, "responses", 2)
    if h.shape[0] != a.shape[0]:
        raise ValueError(f"responses has {h.shape[0]} rows for {a.shape[0]} agent verdicts; one row per photo")
    return np.array([cohen_kappa(a, h[:, j]) for j in range(h.shape[1])], dtype=np.float64)


def mean_kappa_vs_participants(agent: Any, responses: Any) -> float:
    """Mean over participants of :func:`cohen_kappa` (agent, participant); undefined kappas are skipped.

    Returns nan when no participant's kappa is defined.
    """
    k = kappa_vs_participants(agent, responses)
    return float(np.nanmean(k)) if np.isfinite(k).any() else float("nan")


def _binary_kappa(a: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Vectorised Cohen's kappa: ``a`` ``(b, n)``, ``h`` ``(b, n, m)`` verdicts -> ``(b, m)``.

    The same formula as ``cohen_kappa_score`` for two labels (tests check they
    agree); nan where undefined (no common item or ``p_e = 1``).
    """
    w = (~np.isnan(a))[:, :, None] & ~np.isnan(h)
    a0, h0 = np.nan_to_num(a), np.where(w, np.nan_to_num(h), 0.0)
    wf = w.astype(np.float64)
    n = wf.sum(1)
    a1 = np.einsum("bn,bnm->bm", a0, wf)
    h1 = h0.sum(1)
    both = np.einsum("bn,bnm->bm", a0, h0)
    with np.errstate(invalid="ignore", divide="ignore"):
        po = (n - a1 - h1 + 2 * both) / n
        pa, ph = a1 / n, h1 / n
        pe = pa * ph + (1 - pa) * (1 - ph)
        kappa = (po - pe) / (1 - pe)
    return np.where((n > 0) & (pe < 1 - 1e-12), kappa, np.nan)


def _nanmean_rows(k: np.ndarray) -> np.ndarray:
    """Row means of ``(b, m)`` ignoring nan; nan for a row with no finite value."""
    defined = np.isfinite(k)
    count = defined.sum(1)
    return np.where(count > 0, np.where(defined, k, 0.0).sum(1) / np.maximum(count, 1), np.nan)


def mean_kappa_bootstrap_ci(agent: Any, responses: Any, n_resamples: int = 9999, seed: int = 0,
                            confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`mean_kappa_vs_participants`, resampling photos.

    ``scipy.stats.bootstrap(..., paired=True)`` draws each resample's ``n`` photo indices
    with replacement (``rng=numpy.random.default_rng(seed)``) and keeps the paired rows of
    ``agent`` and ``responses``; each resample's mean kappa over participants is a
    vectorised two-label kappa (equal to ``cohen_kappa_score``). Resamples whose mean is
    undefined (every participant's kappa undefined) are dropped, and the interval is the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the rest
    (``numpy.nanpercentile`` of scipy's bootstrap distribution: scipy's own interval would
    be nan as soon as one resample is undefined). One photo: the degenerate interval of its
    kappa (every resample is that photo).

    Returns:
        ``(low, high)``; ``(nan, nan)`` when no resample is defined.

    Raises:
        ValueError: shapes or values as in :func:`kappa_vs_participants`, or
            ``n_resamples < 1``, or ``confidence`` outside (0, 1).
        ImportError: scipy is missing (``pip install 'cubeworld[train]'``).
    """
    a, h = _as_verdicts(agent, "agent"), _as_verdicts(responses, "responses", 2)
    if h.shape[0] != a.shape[0]:
        raise ValueError(f"responses has {h.shape[0]} rows for {a.shape[0]} agent verdicts; one row per photo")
    if n_resamples < 1 or not 0 < confidence < 1:
        raise ValueError(f"need n_resamples >= 1 and 0 < confidence < 1, got {n_resamples}, {confidence}")
    n, m = h.shape
    if n < 2:  # scipy needs two observations; one photo resamples to itself
        s = _nanmean_rows(_binary_kappa(a[None], h[None])) if n else np.array([np.nan])
        return (float(s[0]), float(s[0])) if np.isfinite(s[0]) else (float("nan"), float("nan"))
    try:
        from scipy.stats import bootstrap
    except ImportError as exc:  # pragma: no cover - scipy ships with the train extra
        raise ImportError("bootstrap intervals need scipy: pip install 'cubeworld[train]'") from exc

    def mean_kappa(a_b: np.ndarray, h_b: np.ndarray, axis: int = -1) -> np.ndarray:
        # scipy moves the photo axis last: a_b, h_b (m, batch, n); the agent's column is repeated m times
        return _nanmean_rows(_binary_kappa(a_b[0], np.moveaxis(h_b, 0, -1)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns of a nan interval; ours drops the undefined resamples
        # scipy broadcasts the samples against each other except along the photo axis: agent as (n, 1)
        res = bootstrap((a[:, None], h), mean_kappa, paired=True, vectorized=True, axis=0, n_resamples=n_resamples,
                        batch=max(1, 2_000_000 // max(1, n * m)), method="percentile",
                        confidence_level=confidence, rng=np.random.default_rng(seed))
    s = np.asarray(res.bootstrap_distribution, dtype=np.float64)
    if not np.isfinite(s).any():
        return (float("nan"), float("nan"))
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(s, [tail, 100 - tail])
    return (float(low), float(high))


def mean_pairwise_kappa(responses: Any) -> float:
    """Mean Cohen's kappa over all pairs of participants (columns of ``(n, m)`` ``responses``).

    The human-human agreement: the ceiling an agent's mean kappa against
    participants can be read against. Undefined pairs are skipped; nan when
    ``m < 2`` or no pair is defined.
    """
    h = _as_verdicts(responses, "responses", 2)
    m = h.shape[1]
    if m < 2:
        return float("nan")
    # Participant j as the "agent" row against every participant; a chunk of rows at a time.
    chunk = max(1, 2_000_000 // max(1, h.size))
    k = np.concatenate([_binary_kappa(h.T[j:j + chunk], np.broadcast_to(h, (len(h.T[j:j + chunk]),) + h.shape))
                        for j in range(0, m, chunk)])
    pairs = k[np.triu_indices(m, 1)]
    pairs = pairs[np.isfinite(pairs)]
    return float(pairs.mean()) if pairs.size else float("nan")


def human_accuracy(p_falls: Any, truth_falls: Any) -> float:
    """Mean over photos of the fraction of participants who were right: ``mean(1 - |p_falls - falls|)``.

    Args:
        p_falls: ``(n,)`` fraction of participants who said "falls" per photo.
        truth_falls: ``(n,)`` ground truth, 1 falls / 0 stable.

    Each photo weighs the same, as for an agent's accuracy.
    """
    p, t = np.asarray(p_falls, dtype=np.float64), _as_verdicts(truth_falls, "truth_falls")
    if p.shape != t.shape or np.isnan(t).any():
        raise ValueError(f"p_falls {p.shape} and truth_falls {t.shape} must be equal-length, truth without nan")
    return float(np.mean(1 - np.abs(p - t)))


def accuracy_with_ci(correct: Any, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Accuracy of ``(n,)`` bool/0-1 ``correct`` and its 95% percentile bootstrap interval.

    The interval is :func:`evaluation.evaluate.bootstrap_ci` (``scipy.stats.bootstrap``,
    9,999 resamples, ``seed``).
    """
    c = np.asarray(correct, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"correct must be a non-empty 1-D array, got shape {c.shape}")
    return float(c.mean()), bootstrap_ci(c, seed=seed)


def accuracy_by_group(correct: Any, groups: Sequence[Hashable]) -> dict[Hashable, tuple[float, int]]:
    """``{group: (accuracy, count)}`` of ``(n,)`` ``correct`` per value of ``groups`` (e.g. n_blocks), sorted."""
    c = np.asarray(correct, dtype=np.float64)
    if len(groups) != c.size:
        raise ValueError(f"{len(groups)} group labels for {c.size} items; give one per item")
    out = {}
    for g in sorted(set(groups)):
        sel = np.array([x == g for x in groups])
        out[g] = (float(c[sel].mean()), int(sel.sum()))
    return out


def t_pref(recall: float, specificity: float) -> float:
    """The bias score ``T_pref = tanh((recall - specificity) / specificity)``.

    Positive class: **stable** (answer ``Yes``). ``recall`` is the fraction of
    stable towers answered "stable"; ``specificity`` the fraction of falling
    towers answered "falls". T_pref > 0: a preference for "stable"; < 0: for
    "falls"; 0: none (recall = specificity). Range: ``[tanh(-1), 1]`` =
    ``[-0.762, 1]`` (always "falls" gives tanh(-1); always "stable" gives 1).

    Specificity 0 (no falling tower called "falls"): the ratio is +inf when
    ``recall > 0``, and T_pref is its limit, 1.0; with ``recall == 0`` too it
    is 0/0 and T_pref is nan. Either input nan (a class with no legal answer)
    gives nan.
    """
    if math.isnan(recall) or math.isnan(specificity):
        return float("nan")
    if specificity == 0:
        return 1.0 if recall > 0 else float("nan")
    return float(math.tanh((recall - specificity) / specificity))


@dataclass(frozen=True)
class BiasScore:
    """T_pref and its parts for one set of binary episodes (positive class: stable).

    Attributes:
        n: episodes; n_stable / n_falls: by ground truth; n_illegal: answers
            that were neither Yes nor No (left out of recall and specificity,
            counted wrong in ``accuracy``).
        recall: P(answer "stable" | stable), over legal answers (nan if none).
        specificity: P(answer "falls" | falls), over legal answers (nan if none).
        t_pref: :func:`t_pref` (recall, specificity).
        accuracy: fraction of all ``n`` episodes answered correctly.
    """

    n: int
    n_stable: int
    n_falls: int
    n_illegal: int
    recall: float
    specificity: float
    t_pref: float
    accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bias_score(truth_falls: Any, said_falls: Any) -> BiasScore:
    """:class:`BiasScore` of ``(n,)`` verdicts ``said_falls`` (nan = illegal) against ``truth_falls``.

    Raises:
        ValueError: different lengths, nan in the truth, or values other than 0, 1, nan.
    """
    t, s = _as_verdicts(truth_falls, "truth_falls"), _as_verdicts(said_falls, "said_falls")
    if t.shape != s.shape or np.isnan(t).any():
        raise ValueError(f"truth_falls {t.shape} and said_falls {s.shape} must be equal-length, truth without nan")
    legal = ~np.isnan(s)
    stable, falls = (t == 0) & legal, (t == 1) & legal
    recall = float((s[stable] == 0).mean()) if stable.any() else float("nan")
    specificity = float((s[falls] == 1).mean()) if falls.any() else float("nan")
    return BiasScore(
        n=int(t.size), n_stable=int((t == 0).sum()), n_falls=int((t == 1).sum()),
        n_illegal=int((~legal).sum()), recall=recall, specificity=specificity,
        t_pref=t_pref(recall, specificity), accuracy=float((s == t).mean()) if t.size else float("nan"),
    )


def bias_by_group(truth_falls: Any, said_falls: Any, groups: Sequence[Hashable]) -> dict[Hashable, BiasScore]:
    """``{group: BiasScore}`` per value of ``groups`` (one label per episode), sorted by group."""
    t, s = np.asarray(truth_falls, dtype=np.float64), np.asarray(said_falls, dtype=np.float64)
    if len(groups) != t.size:
        raise ValueError(f"{len(groups)} group labels for {t.size} episodes; give one per episode")
    out = {}
    for g in sorted(set(groups)):
        sel = np.array([x == g for x in groups])
        out[g] = bias_score(t[sel], s[sel])
    return out


def offset_difficulty(offset: Any) -> np.ndarray:
    """``||offset| - 0.5|``: block edges between the top cube's offset and the tipping threshold.

    ``offset``: ``(n,)`` top-cube x offsets from the cube below, block edges
    (``info["offset"]`` of ``TopBlockStability-v0``, whose towers are aligned
    below the top cube, so the centre-of-mass rule tips the top cube at
    ``|offset| = 0.5``). Small values are hard (near the threshold), large easy.
    """
    return np.abs(np.abs(np.asarray(offset, dtype=np.float64)) - STABILITY_THRESHOLD)


def difficulty_bins(difficulty: Any, edges: Sequence[float] = DIFFICULTY_EDGES) -> list[str]:
    """Bin label (``"[0.00, 0.10)"``; the last bin closed) of each ``(n,)`` difficulty value.

    Raises:
        ValueError: edges not increasing, or a value outside ``[edges[0], edges[-1]]``.
    """
    e = np.asarray(edges, dtype=np.float64)
    d = np.asarray(difficulty, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
        raise ValueError(f"edges must be increasing with at least 2 values, got {list(edges)}")
    if d.size and (np.isnan(d).any() or d.min() < e[0] or d.max() > e[-1]):
        raise ValueError(f"difficulty values must lie in [{e[0]}, {e[-1]}], got range "
                         f"[{np.nanmin(d):.3f}, {np.nanmax(d):.3f}]; widen edges")
    idx = np.clip(np.searchsorted(e, d, side="right") - 1, 0, e.size - 2)
    labels = [f"[{e[i]:.2f}, {e[i + 1]:.2f}{']' if i == e.size - 2 else ')'}" for i in range(e.size - 1)]
    return [labels[i] for i in idx]

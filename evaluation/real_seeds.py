"""Training seeds of one condition on the real photos, pooled: mean and range of ``eval-real`` results.

A learning claim holds over several training seeds (README conventions), so each trained agent
of a condition is scored on the photos once (``cubeworld eval-real --out real-COND-sSEED.json``)
and the results are summarised here per condition, as :mod:`evaluation.seeds` does for the
generalisation matrix: the mean rate of legal answers (an illegal answer is wrong); the mean,
minimum and maximum over seeds of accuracy, of Cohen's kappa against the human participants (mean
over participants, :mod:`evaluation.agreement`) and of T_pref (:func:`evaluation.agreement.t_pref`,
positive class "stable"); how many seeds beat the photos' majority answer (by accuracy, and with
the seed's 95% interval above it); and how often the seeds agree: the fraction of photos that
every seed answers alike (seeds that barely moved a shared base, sampled with one seed, answer
alike whatever they learned).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .real import RealEvaluationResult, _f
from .seeds import SEED_NAME

__all__ = ["REAL_SEEDS_COLUMNS", "result_name", "real_seed_rows", "format_real_seed_rows"]

REAL_SEEDS_COLUMNS = ("condition", "n_seeds", "legal_rate", "accuracy", "accuracy_min", "accuracy_max", "kappa_humans",
                      "kappa_humans_min", "kappa_humans_max", "t_pref", "t_pref_min", "t_pref_max",
                      "majority_accuracy", "seeds_above_majority", "seeds_ci_above_majority", "seeds_agree")


def result_name(path: str | os.PathLike) -> str:
    """The row name of a result file: its stem less a leading ``real-`` (``real-ppo-rand-s0.json`` ->
    ``ppo-rand-s0``)."""
    stem = Path(path).stem
    return stem[len("real-"):] if stem.startswith("real-") else stem


def _stats(values: list[float | None]) -> tuple[float | None, float | None, float | None]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if len(finite) < len(values) or not finite:
        return None, None, None  # a seed without the value (e.g. T_pref of an all-one-answer agent)
    return sum(finite) / len(finite), min(finite), max(finite)


def real_seed_rows(results: dict[str, RealEvaluationResult]) -> list[dict[str, Any]]:
    """One dict of :data:`REAL_SEEDS_COLUMNS` per condition, in first-seen order.

    Args:
        results: ``{name: result}``; names ``COND-sSEED`` are pooled per ``COND``, any other name
            is a condition of one (so a baseline sits in the same table).

    Raises:
        ValueError: results of one condition scored different photo sets (different
            ``data_dir`` or photo lists), which cannot be pooled.
    """
    groups: dict[str, list[str]] = {}
    for name in results:
        m = SEED_NAME.fullmatch(name)
        groups.setdefault(m["group"] if m else name, []).append(name)
    rows = []
    for condition, names in groups.items():
        rs = [results[n] for n in names]
        photos = [[p.image for p in r.photos] for r in rs]
        if any(p != photos[0] for p in photos):
            raise ValueError(f"condition {condition!r}: {', '.join(names)} scored different photos; "
                             "pool only results of one photo folder")
        n = rs[0].n_photos
        falls = sum(p.falls for p in rs[0].photos)
        majority = max(falls, n - falls) / n if n else math.nan
        acc, acc_min, acc_max = _stats([r.accuracy for r in rs])
        kap, kap_min, kap_max = _stats([r.kappa_humans for r in rs])
        tp, tp_min, tp_max = _stats([r.bias.get("t_pref") for r in rs])
        answers = list(zip(*[[p.parsed for p in r.photos] for r in rs]))
        rows.append({
            "condition": condition, "n_seeds": len(rs), "legal_rate": sum(r.legal_rate for r in rs) / len(rs),
            "accuracy": acc, "accuracy_min": acc_min, "accuracy_max": acc_max,
            "kappa_humans": kap, "kappa_humans_min": kap_min, "kappa_humans_max": kap_max,
            "t_pref": tp, "t_pref_min": tp_min, "t_pref_max": tp_max,
            "majority_accuracy": majority,
            "seeds_above_majority": sum(r.accuracy > majority for r in rs),
            "seeds_ci_above_majority": sum(r.accuracy_ci95[0] > majority for r in rs),
            "seeds_agree": sum(len(set(a)) == 1 for a in answers) / len(answers) if answers else math.nan,
        })
    return rows


def format_real_seed_rows(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`real_seed_rows`: mean [min, max] per measure."""
    def rng(row: dict[str, Any], key: str) -> str:
        if row["n_seeds"] == 1 or row[key] is None:
            return _f(row[key])
        return f"{_f(row[key])} [{_f(row[key + '_min'])}, {_f(row[key + '_max'])}]"

    lines = ["| condition | seeds | legal | accuracy, mean [min, max] | κ vs humans | T_pref | seeds > majority (CI) "
             "| seeds agree |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['condition']} | {r['n_seeds']} | {_f(r['legal_rate'])} | {rng(r, 'accuracy')} | {rng(r, 'kappa_humans')} | "
                     f"{rng(r, 't_pref')} | {r['seeds_above_majority']} ({r['seeds_ci_above_majority']}) | "
                     f"{_f(r['seeds_agree']) if r['n_seeds'] > 1 else '-'} |")
    majority = {round(r["majority_accuracy"], 6) for r in rows}
    if len(majority) == 1:
        lines.append(f"\nmajority answer's accuracy on these photos: {_f(rows[0]['majority_accuracy'])}")
    return "\n".join(lines)

"""Training seeds of one condition, pooled: the mean and range of an eval-matrix's rows named ``NAME-sSEED``.

A learning claim holds over several training seeds, so the generalisation matrix is run with
one row per seed (``--agent retry-grpo-s0=... --agent retry-grpo-s1=...``) and summarised here
per condition (``retry-grpo``): for each column, the mean over seeds of the rows' mean rewards,
their minimum and maximum, the mean normalised score (0 random, 1 optimum), and how many seeds
beat the column's best constant answer, by mean and with 95% intervals apart (the image-blind
shortcut of ``evaluation.best_constant``; none for multi-step columns). Multi-step columns add
the mean success within K turns (``success_at_k``).
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["SEED_NAME", "SEEDS_CSV_COLUMNS", "seed_groups", "seed_rows"]

SEED_NAME = re.compile(r"(?P<group>.+)-s(?P<seed>\d+)")
"""An agent name of one training seed: ``CONDITION-sSEED`` (``retry-grpo-s0``)."""

SEEDS_CSV_COLUMNS = ("group", "env", "n_seeds", "mean_reward", "min_reward", "max_reward", "normalised",
                     "seeds_above_constant", "seeds_ci_above_constant", "success_at_k")


def seed_groups(agents: list[str]) -> dict[str, list[str]]:
    """``{condition: [agent names of its seeds, in row order]}`` for conditions with >= 2 seed rows.

    >>> seed_groups(["base", "grpo-s0", "grpo-s1", "sft-s0"])
    {'grpo': ['grpo-s0', 'grpo-s1']}
    """
    groups: dict[str, list[str]] = {}
    for name in agents:
        m = SEED_NAME.fullmatch(name)
        if m:
            groups.setdefault(m["group"], []).append(name)
    return {g: names for g, names in groups.items() if len(names) >= 2}


def seed_rows(result: Any) -> list[dict[str, Any]]:
    """One dict per (condition, column) with :data:`SEEDS_CSV_COLUMNS`, from a
    :class:`evaluation.matrix.MatrixResult` (None where a value does not apply)."""
    out = []
    for group, names in seed_groups(result.agents).items():
        for env_id in result.env_ids:
            cells = [result.cell(n, env_id) for n in names]
            means = [c.mean_reward for c in cells]
            base = result.baselines[env_id]
            above = above_ci = None
            if base.has_constant:
                above = sum(m > base.constant.mean_reward for m in means)
                above_ci = sum(c.ci95[0] > base.constant.ci95[1] for c in cells)
            norm = [result.normalised(n, env_id) for n in names]
            success = [c.success_at_k[-1] for c in cells if c.success_at_k is not None]
            out.append({"group": group, "env": env_id, "n_seeds": len(names),
                        "mean_reward": sum(means) / len(means), "min_reward": min(means), "max_reward": max(means),
                        "normalised": (sum(norm) / len(norm)) if not any(math.isnan(v) for v in norm) else None,
                        "seeds_above_constant": above, "seeds_ci_above_constant": above_ci,
                        "success_at_k": sum(success) / len(success) if success else None})
    return out

"""Heatmap of a generalisation matrix (the paper's Fig. 2): rows agents, columns environments.

Each cell is annotated with its mean reward. Reward scales differ per environment,
so each column is coloured by the normalised reward ``(mean - random) /
(optimum - random)`` (0: the random baseline, white; 1: the optimum, blue; below
random, red; clipped to [-1, 1]), as the figure's colour bar says. Below the
agents, separated by a line, three reference rows per column: the random
baseline, the best constant answer (the image-blind shortcut; its answer is
printed in the cell) and the optimum. A dashed box marks every agent cell whose
95% interval reaches down to the best constant's mean (``ci95_low <=
constant``): no evidence of more than the image-blind shortcut, i.e. no transfer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from envs.answers import extract_answer
from envs.atomic import save_figure_atomic

__all__ = ["plot_matrix"]


def _short(answer: str, width: int = 14) -> str:
    text = extract_answer(answer)
    text = answer if text is None else text
    return text if len(text) <= width else text[: width - 3] + "..."


def plot_matrix(result: Any, path: str | os.PathLike, title: str | None = None, dpi: int = 120) -> Path:
    """Draw ``result`` as a heatmap PNG at ``path`` (written atomically, ``dpi`` dots per inch); returns the path.

    ``result`` is an :class:`evaluation.matrix.MatrixResult`. It is not imported here:
    :meth:`~evaluation.matrix.MatrixResult.save` calls this function, so the import
    would make the two modules a cycle.

    Raises:
        ImportError: matplotlib is missing (``pip install 'cubeworld[train]'``).
    """
    try:
        import matplotlib
        from matplotlib.colors import TwoSlopeNorm
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
    except ImportError as exc:  # pragma: no cover - matplotlib ships with the train extra
        raise ImportError("the matrix heatmap needs matplotlib: pip install 'cubeworld[train]'") from exc

    agents, envs = result.agents, result.env_ids
    n_rows, n_cols = len(agents) + 3, len(envs)  # + random, best constant, optimum
    values = np.full((n_rows, n_cols), np.nan)
    text = [["" for _ in envs] for _ in range(n_rows)]
    for j, e in enumerate(envs):
        b = result.baselines[e]
        for i, a in enumerate(agents):
            r = result.cell(a, e)
            values[i, j] = b.normalise(r.mean_reward)
            text[i][j] = f"{r.mean_reward:.2f}\n[{r.ci95[0]:.2f}, {r.ci95[1]:.2f}]"
        k = len(agents)
        values[k, j] = b.normalise(b.random.mean_reward)
        text[k][j] = f"{b.random.mean_reward:.2f}"
        if b.has_constant:
            values[k + 1, j] = b.normalise(b.constant.mean_reward)
            text[k + 1][j] = f"{b.constant.mean_reward:.2f}\n{_short(b.constant.answer)}"
        else:  # multi-step column: no fixed answer stands for an image-blind policy (grey cell)
            text[k + 1][j] = "n/a\n(multi-step)"
        values[k + 2, j] = b.normalise(b.optimum.mean_reward)
        text[k + 2][j] = f"{b.optimum.mean_reward:.2f}"

    # A bare Figure (Agg canvas): no pyplot state, whatever backend the caller uses.
    fig = Figure(figsize=(2.0 * n_cols + 3.2, 0.62 * n_rows + 2.0))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="lightgrey")
    norm = TwoSlopeNorm(vmin=-1.0, vcenter=0.0, vmax=1.0)
    image = ax.imshow(np.ma.masked_invalid(np.clip(values, -1, 1)), cmap=cmap, norm=norm, aspect="auto")
    for i in range(n_rows):
        for j in range(n_cols):
            v = values[i, j]
            dark = np.isfinite(v) and abs(v) > 0.6
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7.5,
                    color="white" if dark else "black", fontweight="bold" if i < len(agents) else "normal")
    # Cells whose interval reaches the best constant's mean: no evidence of transfer.
    for j, e in enumerate(envs):
        if not result.baselines[e].has_constant:
            continue
        constant = result.baselines[e].constant.mean_reward
        for i, a in enumerate(agents):
            if result.cell(a, e).ci95[0] <= constant:
                ax.add_patch(Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False, linestyle="--",
                                       linewidth=1.2, edgecolor="black"))
    ax.axhline(len(agents) - 0.5, color="black", linewidth=2.0)
    ax.set_xticks(range(n_cols), [e.removesuffix("-v0") for e in envs], rotation=20, ha="right")
    ax.set_yticks(range(n_rows), list(agents) + ["random (baseline)", "best constant (image-blind)",
                                                 "optimum (oracle)"])
    ax.set_xlabel("evaluation environment")
    ax.set_ylabel("agent")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, ticks=[-1, 0, 1])
    bar.ax.set_yticklabels(["<= -1", "0 random", "1 optimum"])
    bar.set_label("colour: (mean - random) / (optimum - random), per column")
    ax.set_title(title or f"Mean reward, {result.n_episodes} episodes per cell (seeds {result.seed}.."
                 f"{result.seed + result.n_episodes - 1}); cell: mean [95% CI]", fontsize=10)
    fig.text(0.01, 0.005, "Colour is normalised per column between the random baseline (0) and the optimum (1). "
             "Dashed box: 95% CI low <= best constant answer's mean (the image-blind shortcut): no transfer shown.",
             fontsize=7, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save_figure_atomic(fig, path, dpi=dpi)

"""Reward landscapes: the reward of every answer on a grid, for one scene (the paper's Figs. 7-8).

For one seeded scene of a placement task, every answer on a grid is scored by the
environment's own reward code (:meth:`envs.tower_env.TowerEnv.judge`, one
``reset`` and then one judgement per grid point; nothing is re-implemented):

* ``TopBlockXOnly-v0`` and ``SideBlockXOnly-v0``: reward against the x answer, a
  1-D curve over ``[-600, 600]``;
* ``SideBlockXY-v0``: a 2-D map over x in ``[-600, 600]`` and up in ``[0, 1000]``
  (the legal range).

:func:`plot_landscapes` draws them with a linear and a symmetric-log
(``symlog``, linear within +-1) reward scale: the 20 exp(-d^2) peak dominates a
linear scale, the symlog scale shows the -2 / -4 / -5 plateaus and the small
2 exp(-d^2) bumps of falling placements. Units: answer units, 100 = one block edge.

Cost: about 3 ms per simulated grid point; the default step of 10 units
(121 x-points, 121 x 101 x-y points) takes about 15 s for the three tasks on one core.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the ids)
from envs.answers import UP_RANGE, X_RANGE, parse_answer
from envs.atomic import save_figure_atomic
from envs.rewards import ILLEGAL_OUTCOMES

__all__ = ["Landscape", "reward_landscape", "plot_landscapes", "landscape_figure", "answer_text",
           "LANDSCAPE_ENV_IDS"]

LANDSCAPE_ENV_IDS = ("TopBlockXOnly-v0", "SideBlockXOnly-v0", "SideBlockXY-v0")

# Reward range of the placement tasks (DESIGN.md section 2): the colour limits of every map.
_REWARD_LIMITS = (-5.0, 20.0)


def answer_text(x: int, up: int | None = None) -> str:
    """The answer text of a move: ``"<answer>x</answer>"`` or ``"<answer>x, up</answer>"``."""
    return f"<answer>{int(x)}</answer>" if up is None else f"<answer>{int(x)}, {int(up)}</answer>"


@dataclass
class Landscape:
    """Rewards of a grid of answers to one scene.

    Attributes:
        env_id, seed: the scene (``reset(seed=seed)``).
        xs: int64, shape ``(nx,)``: x answers, answer units (100 = one block edge).
        ups: int64, shape ``(nu,)``: up answers (x-y task), or None (x-only tasks).
        rewards: float64, shape ``(nx,)`` (x-only) or ``(nu, nx)`` (x-y; row ``i`` is ``ups[i]``).
        outcomes: the environment's ``info["outcome"]`` per grid point, same shape (str objects).
        optimal_action: ``info["optimal_action"]`` of the scene (the oracle's answer text).
        optimal: that answer parsed: ``(x,)`` or ``(x, up)``.
        image: the observation, (H, W, 3) uint8.
    """

    env_id: str
    seed: int
    xs: np.ndarray
    ups: np.ndarray | None
    rewards: np.ndarray
    outcomes: np.ndarray
    optimal_action: str
    optimal: tuple[int, ...]
    image: np.ndarray = field(repr=False)

    @property
    def answer_format(self) -> str:
        return "x" if self.ups is None else "xy"

    def best(self) -> tuple[str, float]:
        """The grid's best answer text and its reward (the first grid point on a tie)."""
        flat = int(np.argmax(self.rewards))
        if self.ups is None:
            return answer_text(self.xs[flat]), float(self.rewards[flat])
        i, j = np.unravel_index(flat, self.rewards.shape)
        return answer_text(self.xs[j], self.ups[i]), float(self.rewards[i, j])


def _grid(values: Sequence[int] | np.ndarray | None, step: int, lo: int, hi: int, name: str) -> np.ndarray:
    if values is None:
        return np.arange(lo, hi + 1, step, dtype=np.int64)
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be a non-empty 1-D sequence of ints (answer units), got {values!r}")
    return arr.astype(np.int64)


def reward_landscape(env_id: str, seed: int = 0, step: int = 10, xs: Sequence[int] | None = None,
                     ups: Sequence[int] | None = None) -> Landscape:
    """Score every answer of a grid on the scene of ``reset(seed=seed)`` with ``TowerEnv.judge``.

    Args:
        env_id: an x-only or x-y task (:data:`LANDSCAPE_ENV_IDS`).
        step: grid spacing in answer units when ``xs`` / ``ups`` are not given: x over
            ``X_RANGE`` [-600, 600], up over ``UP_RANGE`` [0, 1000].
        xs, ups: explicit grids (ints; ``ups`` for the x-y task only).

    Raises:
        gymnasium.error.Error: unknown ``env_id`` (Gymnasium names close matches).
        ValueError: a binary task, ``ups`` for an x-only task, or a bad ``step`` / grid.
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be a positive int (answer units; 100 = one block edge), got {step!r}")
    env = gym.make(env_id)
    try:
        base = env.unwrapped
        obs, info = env.reset(seed=seed)
        fmt = info.get("answer_format")
        if fmt not in ("x", "xy") or not hasattr(base, "judge"):
            raise ValueError(f"{env_id!r} has answer format {fmt!r}: a reward landscape needs an x-only or x-y "
                             f"placement task, one of {list(LANDSCAPE_ENV_IDS)}")
        if fmt == "x" and ups is not None:
            raise ValueError(f"{env_id!r} answers x only; ups= applies to SideBlockXY-v0")
        grid_x = _grid(xs, int(step), *X_RANGE, "xs")
        grid_up = _grid(ups, int(step), *UP_RANGE, "ups") if fmt == "xy" else None
        shape = (grid_x.size,) if grid_up is None else (grid_up.size, grid_x.size)
        rewards = np.zeros(shape, dtype=np.float64)
        outcomes = np.empty(shape, dtype=object)
        for idx in np.ndindex(shape):
            text = (answer_text(grid_x[idx[0]]) if grid_up is None
                    else answer_text(grid_x[idx[1]], grid_up[idx[0]]))
            reward, judged = base.judge(text)
            rewards[idx], outcomes[idx] = reward, judged["outcome"]
        optimal = parse_answer(info["optimal_action"], fmt).value
        optimal = (int(optimal),) if fmt == "x" else tuple(int(v) for v in optimal)
        return Landscape(env_id, seed, grid_x, grid_up, rewards, outcomes, info["optimal_action"], optimal,
                         np.asarray(obs["image"]))
    finally:
        env.close()


_OUTCOME_COLOURS = {"stable": "tab:green", "unstable": "tab:orange", "inside_tower": "tab:red",
                    **dict.fromkeys(ILLEGAL_OUTCOMES, "tab:grey")}


def plot_landscapes(landscapes: Sequence[Landscape], path: str | os.PathLike, dpi: int = 120) -> Path:
    """One column per landscape: the scene, then its rewards on a linear and on a symlog scale.

    x-only tasks: reward against the x answer (points coloured by outcome); x-y:
    a heat map over (x, up) with a linear and a ``SymLogNorm`` (linthresh 1)
    colour scale, both over the task's reward range [-5, 20]. The star / dashed
    line is ``info["optimal_action"]``. Written atomically (``dpi`` dots per inch); returns the path.

    Raises:
        ValueError: no landscapes.
        ImportError: matplotlib is missing (``pip install 'cubeworld[train]'``).
    """
    if not landscapes:
        raise ValueError("landscapes is empty; compute some with reward_landscape(env_id, seed)")
    try:
        import matplotlib
        from matplotlib.colors import Normalize, SymLogNorm
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError as exc:  # pragma: no cover - matplotlib ships with the train extra
        raise ImportError("landscape plots need matplotlib: pip install 'cubeworld[train]'") from exc

    n = len(landscapes)
    fig = Figure(figsize=(5.0 * n, 12.0))
    axes = fig.subplots(3, n, squeeze=False, gridspec_kw={"height_ratios": [1.0, 1.1, 1.1]})
    lo, hi = _REWARD_LIMITS
    scales = (("linear", Normalize(vmin=lo, vmax=hi)), ("symlog", SymLogNorm(linthresh=1.0, vmin=lo, vmax=hi)))
    cmap = matplotlib.colormaps["viridis"]
    for col, land in enumerate(landscapes):
        ax = axes[0, col]
        ax.imshow(land.image)
        ax.set_axis_off()
        ax.set_title(f"{land.env_id}, seed {land.seed}\noptimal answer {land.optimal_action}", fontsize=10)
        for row, (scale, norm) in enumerate(scales, start=1):
            ax = axes[row, col]
            if land.ups is None:
                ax.plot(land.xs, land.rewards, color="0.6", linewidth=0.8, zorder=1)
                colours = [_OUTCOME_COLOURS.get(o, "black") for o in land.outcomes]
                ax.scatter(land.xs, land.rewards, c=colours, s=9, zorder=2)
                ax.axvline(land.optimal[0], color="black", linestyle="--", linewidth=1.0)
                if scale == "symlog":
                    ax.set_yscale("symlog", linthresh=1.0)
                ax.set_ylim(lo - 0.5 if scale == "linear" else lo * 1.2, hi * 1.15)
                ax.set_xlabel("x answer (100 = one block edge)")
                ax.set_ylabel(f"reward ({scale} scale)")
                ax.grid(alpha=0.3)
                handles = [Line2D([], [], marker="o", linestyle="", color=c, label=o)
                           for o, c in _OUTCOME_COLOURS.items() if o in set(land.outcomes.tolist())]
                handles.append(Line2D([], [], color="black", linestyle="--", label="optimal answer"))
                ax.legend(handles=handles, fontsize=7, loc="upper left")
            else:
                dx = (land.xs[-1] - land.xs[0]) / max(1, land.xs.size - 1) / 2
                du = (land.ups[-1] - land.ups[0]) / max(1, land.ups.size - 1) / 2
                extent = (land.xs[0] - dx, land.xs[-1] + dx, land.ups[0] - du, land.ups[-1] + du)
                im = ax.imshow(land.rewards, origin="lower", extent=extent, aspect="auto", cmap=cmap, norm=norm,
                               interpolation="nearest")
                ax.plot(*land.optimal, marker="*", markersize=14, color="red", markeredgecolor="white",
                        linestyle="", label="optimal answer")
                ax.set_xlabel("x answer (100 = one block edge)")
                ax.set_ylabel("up answer")
                ax.legend(fontsize=7, loc="upper left")
                bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
                bar.set_label(f"reward ({scale} colour scale)")
            ax.set_title(f"{land.env_id.removesuffix('-v0')}: reward, {scale} scale", fontsize=10)
    fig.suptitle("Reward landscapes: every answer on a grid, scored by TowerEnv.judge (one scene per task)",
                 fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return save_figure_atomic(fig, path, dpi=dpi)


def landscape_figure(path: str | os.PathLike, seed: int = 0, step: int = 10,
                     env_ids: Sequence[str] = LANDSCAPE_ENV_IDS) -> list[Landscape]:
    """Compute :func:`reward_landscape` of ``seed`` for each of ``env_ids`` and plot them to ``path``.

    Raises:
        ValueError / gymnasium.error.Error: as :func:`reward_landscape`.
    """
    landscapes = [reward_landscape(e, seed=seed, step=step) for e in env_ids]
    plot_landscapes(landscapes, path)
    return landscapes

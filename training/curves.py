"""Training curves of finished runs: training and held-out reward against step, baselines drawn.

Reads what :class:`training.trainer.Trainer` writes into each run folder:
``metrics.jsonl`` (one JSON object per logged step: ``reward_mean`` is the mean
reward of the step's on-policy samples, the training reward; ``eval_reward`` with
``eval_ci_low``/``eval_ci_high`` the held-out reward and its 95% bootstrap
interval) and ``result.json`` (the constant-answer and random baselines on the same
held-out seeds). ``cubeworld curves --run GRPO=runs/grpo --run SFT=runs/sft --out
docs/training_curves.png`` (alias: ``python -m training.curves``) draws them (matplotlib, Agg backend).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from envs.atomic import save_figure_atomic
from evaluation.evaluate import describe_decoding

__all__ = ["read_metrics", "plot_training_curves", "add_arguments", "run", "main"]


def read_metrics(run_dir: str | os.PathLike) -> tuple[list[dict], dict]:
    """``(metrics rows, result.json or {})`` of a run folder.

    Raises:
        FileNotFoundError: the folder has no ``metrics.jsonl`` (not a training run).
    """
    run = Path(run_dir)
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass the output_dir of a `cubeworld train` run")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    result = json.loads((run / "result.json").read_text()) if (run / "result.json").is_file() else {}
    return rows, result


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    cums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (cums[idx] - cums[lo]) / (idx - lo)


def plot_training_curves(runs: dict[str, str | os.PathLike], out: str | os.PathLike, smooth: int = 10,
                         title: str | None = None) -> Path:
    """One PNG, two panels: training reward (moving average over ``smooth`` steps, raw values faint)
    and held-out reward (with 95% intervals) against step, one colour per run; the constant-answer
    and random baselines of the first run that has them drawn as horizontal bands.

    Args:
        runs: label -> run folder.
        out: PNG path (written atomically).
        smooth: moving-average window of the training reward, in steps (>= 1).

    Raises:
        ValueError: no runs, or ``smooth`` < 1.
        FileNotFoundError: a folder is not a run (see :func:`read_metrics`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not runs or smooth < 1:
        raise ValueError(f"need at least one run and smooth >= 1, got {len(runs)} runs, smooth={smooth}")
    fig, (ax_train, ax_eval) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    baselines: dict = {}
    decodings: list[str] = []
    for i, (label, run) in enumerate(runs.items()):
        rows, result = read_metrics(run)
        decodings.append(describe_decoding(result.get("decoding")) if result.get("decoding") else "")
        colour = f"C{i}"
        train = [(r["step"], r["reward_mean"]) for r in rows if "reward_mean" in r]
        if train:
            steps, values = map(np.asarray, zip(*train))
            ax_train.plot(steps, values, color=colour, alpha=0.2, lw=0.8)
            ax_train.plot(steps, _smooth(values, smooth), color=colour, lw=2, label=label)
        evals = sorted({r["step"]: r for r in rows if "eval_reward" in r}.values(), key=lambda r: r["step"])
        if evals:
            steps = np.array([r["step"] for r in evals])
            mean = np.array([r["eval_reward"] for r in evals])
            ax_eval.plot(steps, mean, "o-", color=colour, lw=2, label=label)
            if all("eval_ci_low" in r for r in evals):
                ax_eval.fill_between(steps, [r["eval_ci_low"] for r in evals], [r["eval_ci_high"] for r in evals],
                                     color=colour, alpha=0.2)
        for key in ("constant_baseline", "random_baseline"):
            if key in result and key not in baselines:
                baselines[key] = result[key]
                if key == "constant_baseline":
                    answer = result.get("constant_answer", "").replace("<answer>", "").replace("</answer>", "")
                    constant_label = f"best constant answer {answer} (image-blind)"
    styles = {"constant_baseline": ("k", "--", constant_label if "constant_baseline" in baselines else ""),
              "random_baseline": ("grey", ":", "random legal answer")}
    for key, res in baselines.items():
        colour, ls, name = styles[key]
        for ax in (ax_train, ax_eval):
            ax.axhline(res["mean_reward"], color=colour, ls=ls, lw=1.2, label=name)
            ax.axhspan(res["ci95"][0], res["ci95"][1], color=colour, alpha=0.08)
    ax_train.set(title=f"training reward\n(on-policy samples, {smooth}-step average)", xlabel="step",
                 ylabel="mean episode reward")
    # The decoding is part of the number: name it when every run shares one (result.json "decoding").
    shared = decodings[0].split(", <=")[0] if decodings and len(set(decodings)) == 1 and decodings[0] else ""
    ax_eval.set(title=f"held-out reward, 95% CI\n({shared or 'decodings differ: see result.json'})", xlabel="step")
    for ax in (ax_train, ax_eval):
        ax.grid(alpha=0.3)
    ax_eval.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = save_figure_atomic(fig, out, dpi=110)
    plt.close(fig)
    return out


def _run_spec(item: str) -> tuple[str, str]:
    label, sep, path = item.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"--run must be LABEL=DIR (e.g. GRPO=runs/grpo), got {item!r}")
    return label, path


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``cubeworld curves`` (and ``python -m training.curves``)."""
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=DIR", type=_run_spec,
                        help="a run folder with its label, e.g. GRPO=runs/grpo (repeatable)")
    parser.add_argument("--out", default="docs/training_curves.png", help="PNG to write (default: %(default)s)")
    parser.add_argument("--smooth", type=int, default=10, help="moving-average window, steps (default: 10)")
    parser.add_argument("--title", default=None, help="figure title (default: none)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Draw the curves that parsed :func:`add_arguments` options describe.

    Raises:
        FileNotFoundError: a ``--run`` folder is not a training run (see :func:`read_metrics`).
    """
    print(f"wrote {plot_training_curves(dict(args.run), args.out, smooth=args.smooth, title=args.title)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.curves", description=__doc__.split("\n")[0])
    return run(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

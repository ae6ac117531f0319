"""Layer-wise linear probes of stability and offset from a VLM's hidden states (the paper's A.6, Fig. 11).

Schulze Buschoff et al. (2026, Appendix A.6) ask where in a VLM the physics of a
scene is linearly readable: for every layer, a cross-validated L2 logistic
regression predicts whether the tower stands (accuracy) and a Bayesian linear
regression predicts the top cube's x offset (R^2). This module does the same in
two separate steps, so the probe fitting can be tested on planted signals:

1. :func:`extract_features` (model -> array): run the model over the scenes of
   :func:`probe_scenes` and return one feature vector per layer and scene,
   ``(n_layers, n_scenes, hidden)`` float32.
2. :func:`fit_probes` (arrays -> :class:`ProbeResult`): pure scikit-learn on arrays.

:func:`plot_probe_curves` draws the per-layer curves of several models (two panels, as
the paper's Fig. 11); :func:`save_probe_results` writes them with a JSON file
(``cubeworld probe`` does all of it: :mod:`cubeworld.cli_probe`).

    >>> data = probe_scenes(600, seed=2_000_000)
    >>> feats = extract_features(agent.model, agent.processor, data.observations)   # (L+1, 600, hidden)
    >>> result = fit_probes(feats, data.stability, data.offset, label="tiny-base")
    >>> result.stability_mean, result.offset_mean                                   # per layer

Differences from the paper: it does not say how the token sequence is reduced to
one vector per layer; here it is the mean over the image tokens (see
:func:`extract_features` for why), and ``pool="last_token"`` gives the other
common choice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from envs.atomic import save_figure_atomic, write_text_atomic

__all__ = ["ProbeData", "ProbeResult", "probe_scenes", "extract_features", "fit_probes", "plot_probe_curves",
           "save_probe_results", "DEFAULT_PROBE_SEED"]

# Held out from training (scene seeds below TrainConfig.eval_seed = 1,000,000) and from the
# trainer's default held-out evaluation seeds (1,000,000 and up, a few hundred of them).
DEFAULT_PROBE_SEED = 2_000_000
_POOLS = ("image_mean", "last_token")


@dataclasses.dataclass
class ProbeData:
    """Scenes for the probes and their ground truth.

    Attributes:
        observations: ``n_scenes`` observations ``{"image": (H, W, 3) uint8, "prompt": str}``.
        stability: ``(n_scenes,)`` bool, ``info["stable_initially"]`` (the tower stands as shown).
        offset: ``(n_scenes,)`` float64, ``info["offset"]``: the top cube's signed x offset from the
            tower axis, in block edges.
        n_blocks: ``(n_scenes,)`` int64, cubes in the tower.
        seeds: ``(n_scenes,)`` int64, the ``reset`` seed of each scene.
        env_id: the environment the scenes (and their prompt) come from.
    """

    observations: list[dict[str, Any]]
    stability: np.ndarray
    offset: np.ndarray
    n_blocks: np.ndarray
    seeds: np.ndarray
    env_id: str


def probe_scenes(n_scenes: int = 600, seed: int = DEFAULT_PROBE_SEED,
                 env_id: str = "TopBlockStability-v0") -> ProbeData:
    """The scenes of seeds ``seed, ..., seed + n_scenes - 1`` of ``env_id``, with stability and offset.

    ``TopBlockStability-v0`` and ``TopBlockXOnly-v0`` draw the same scene from a seed (only the
    prompt differs), so one set of scenes serves both probe targets.

    Raises:
        ValueError: ``n_scenes < 2`` or ``seed < 0``.
        gymnasium.error.Error: unknown ``env_id``.
    """
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)

    if n_scenes < 2:
        raise ValueError(f"n_scenes must be >= 2 (the probes cross-validate), got {n_scenes}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    env = gym.make(env_id)
    observations, stability, offset, n_blocks = [], [], [], []
    try:
        for s in range(seed, seed + n_scenes):
            obs, info = env.reset(seed=s)
            observations.append(obs)
            stability.append(bool(info["stable_initially"]))
            offset.append(float(info["offset"]))
            n_blocks.append(int(info["n_blocks"]))
    finally:
        env.close()
    return ProbeData(observations, np.asarray(stability, dtype=bool), np.asarray(offset, dtype=np.float64),
                     np.asarray(n_blocks, dtype=np.int64), np.arange(seed, seed + n_scenes, dtype=np.int64), env_id)


def extract_features(model: Any, processor: Any, observations: Sequence[Mapping[str, Any]],
                     batch_size: int = 32, pool: str = "image_mean") -> np.ndarray:
    """Per-layer hidden states of the language model, pooled to one vector per scene.

    Each observation is chat-templated as the agent sees it (image, then prompt, then the
    assistant's generation prompt) and run through the model once under ``torch.no_grad()``
    with ``output_hidden_states=True``, ``batch_size`` scenes per forward (left padded).
    Layer 0 is the embedding output (over the image tokens: the vision tower's merged
    output), layer ``l`` the output of decoder layer ``l``; the last one is after the
    model's final norm (transformers' convention for ``hidden_states[-1]``).

    Pooling. ``"image_mean"`` (default) averages the hidden states over the
    ``<|image_pad|>`` positions. Why: the probe targets are properties of the image, and
    these positions hold what the model has made of it at every layer, including the
    embedding layer where the text positions know nothing of the image; the mean has a
    fixed size whatever the image's token count (64 for ``tiny``, hundreds for Qwen), and
    keeps the probe small (``hidden`` features for a few hundred scenes; concatenating the
    tokens would give ``64 x hidden`` and overfit). What it loses is where in the grid a
    feature sits, unless the features themselves encode it (the vision tower's rotary
    positions let them). ``"last_token"`` takes the last prompt position instead, where
    the answer is read out (text-side information, empty at layer 0).

    Args:
        model: a Qwen-VL ``...ForConditionalGeneration``, or a ``peft.PeftModel`` wrapping
            one (the active adapter is used).
        processor: its processor.
        observations: ``{"image", "prompt"}`` mappings (e.g. :attr:`ProbeData.observations`).
        batch_size: scenes per forward pass.
        pool: ``"image_mean"`` or ``"last_token"``.

    Returns:
        float32 array ``(n_layers, n_scenes, hidden)``, ``n_layers = num_hidden_layers + 1``.

    Raises:
        ValueError: empty ``observations``, ``batch_size < 1``, unknown ``pool``, or a
            processor without ``<|image_pad|>``.
    """
    import torch

    from agents.backends.hf import processor_inputs
    from agents.chat import chat_prompt

    if not observations:
        raise ValueError("observations is empty; pass at least one {'image', 'prompt'} observation")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if pool not in _POOLS:
        raise ValueError(f"pool must be one of {_POOLS}, got {pool!r}")
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    if image_id is None or image_id == processor.tokenizer.unk_token_id:
        raise ValueError("the processor's tokenizer has no <|image_pad|> token; probes need a Qwen-VL processor")
    device = next(model.parameters()).device
    chunks: list[np.ndarray] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(observations), batch_size):
                batch = observations[start:start + batch_size]
                prompts = [chat_prompt(processor, o["prompt"]) for o in batch]
                inputs = processor_inputs(processor, prompts, [o["image"] for o in batch], device)
                hidden = model(**inputs, use_cache=False, output_hidden_states=True).hidden_states
                if pool == "image_mean":
                    mask = (inputs["input_ids"] == image_id).unsqueeze(-1).float()
                    if (mask.sum(1) == 0).any():
                        raise ValueError("a prompt has no image tokens; observations must carry an image")
                    layers = [(h.float() * mask).sum(1) / mask.sum(1) for h in hidden]
                else:  # left padding: the last position is every row's last prompt token
                    layers = [h[:, -1].float() for h in hidden]
                chunks.append(torch.stack(layers).cpu().numpy())
                del hidden
    finally:
        model.train(was_training)
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False)


@dataclasses.dataclass
class ProbeResult:
    """Cross-validated probe scores per layer.

    Attributes:
        label: the model's name in tables and plots.
        stability_folds: ``(n_layers, n_folds)`` accuracy of the stability probe on each test fold.
        offset_folds: ``(n_layers, n_folds)`` R^2 of the offset probe on each test fold.
        chance_accuracy: majority-class accuracy, ``max(p, 1 - p)`` with ``p`` the stable fraction.
        chance_r2: 0.0: the R^2 of predicting the test fold's mean (a constant).
        n_scenes, n_folds, seed: data size, folds, and the seed of the fold shuffles.
        meta: free-form provenance (model, adapter, env id, pooling, scene seeds...).
    """

    label: str
    stability_folds: np.ndarray
    offset_folds: np.ndarray
    chance_accuracy: float
    chance_r2: float = 0.0
    n_scenes: int = 0
    n_folds: int = 0
    seed: int = 0
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def layers(self) -> np.ndarray:
        """``(n_layers,)`` int: 0 the embedding output, ``l`` decoder layer ``l``."""
        return np.arange(self.stability_folds.shape[0])

    @property
    def stability_mean(self) -> np.ndarray:
        """``(n_layers,)`` mean accuracy over folds."""
        return self.stability_folds.mean(axis=1)

    @property
    def stability_std(self) -> np.ndarray:
        """``(n_layers,)`` standard deviation of the accuracy over folds (ddof=0)."""
        return self.stability_folds.std(axis=1)

    @property
    def offset_mean(self) -> np.ndarray:
        """``(n_layers,)`` mean R^2 over folds."""
        return self.offset_folds.mean(axis=1)

    @property
    def offset_std(self) -> np.ndarray:
        """``(n_layers,)`` standard deviation of R^2 over folds (ddof=0)."""
        return self.offset_folds.std(axis=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, chance levels, per-layer means and stds, and the per-fold scores."""
        return {
            "label": self.label, "n_scenes": self.n_scenes, "n_folds": self.n_folds, "seed": self.seed,
            "chance": {"stability_accuracy": self.chance_accuracy, "offset_r2": self.chance_r2},
            "layers": self.layers.tolist(),
            "stability_accuracy_mean": self.stability_mean.tolist(),
            "stability_accuracy_std": self.stability_std.tolist(),
            "offset_r2_mean": self.offset_mean.tolist(),
            "offset_r2_std": self.offset_std.tolist(),
            "stability_accuracy_folds": self.stability_folds.tolist(),
            "offset_r2_folds": self.offset_folds.tolist(),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbeResult:
        """Inverse of :meth:`to_dict`."""
        return cls(label=d["label"], stability_folds=np.asarray(d["stability_accuracy_folds"], dtype=np.float64),
                   offset_folds=np.asarray(d["offset_r2_folds"], dtype=np.float64),
                   chance_accuracy=float(d["chance"]["stability_accuracy"]),
                   chance_r2=float(d["chance"]["offset_r2"]), n_scenes=int(d["n_scenes"]),
                   n_folds=int(d["n_folds"]), seed=int(d["seed"]), meta=dict(d.get("meta", {})))

    def table(self) -> str:
        """Per-layer text table: layer, accuracy mean +- std, R^2 mean +- std, with the chance levels."""
        lines = [f"{self.label}: {self.n_scenes} scenes, {self.n_folds}-fold CV; chance: accuracy "
                 f"{self.chance_accuracy:.3f}, R^2 {self.chance_r2:.1f}",
                 f"{'layer':>5}  {'stability acc':>15}  {'offset R^2':>16}"]
        for i in self.layers:
            lines.append(f"{i:>5}  {self.stability_mean[i]:.3f} +- {self.stability_std[i]:.3f}  "
                         f"{self.offset_mean[i]:7.3f} +- {self.offset_std[i]:.3f}")
        return "\n".join(lines)


def fit_probes(features: np.ndarray, stability: np.ndarray, offset: np.ndarray, n_folds: int = 10,
               seed: int = 0, C: float = 1.0, label: str = "model",
               meta: Mapping[str, Any] | None = None) -> ProbeResult:
    """Cross-validate a stability probe and an offset probe on every layer's features.

    Method (the paper's A.6, with scikit-learn): per layer, a pipeline
    ``StandardScaler -> LogisticRegression`` (L2 penalty, inverse strength ``C``) scored by
    accuracy over ``StratifiedKFold(n_folds, shuffle=True, random_state=seed)`` (stratified:
    every fold keeps the stable fraction), and ``StandardScaler -> BayesianRidge`` (Bayesian
    linear regression; MacKay's evidence maximisation sets the weight and noise
    precisions) scored by R^2 over ``KFold(n_folds, shuffle=True, random_state=seed)``.
    All layers use the same folds. The scaler is fitted inside each training fold.

    Args:
        features: ``(n_layers, n_scenes, n_features)`` float array (e.g. from :func:`extract_features`).
        stability: ``(n_scenes,)`` bool (or 0/1) labels.
        offset: ``(n_scenes,)`` float regression targets (block edges).
        n_folds: cross-validation folds, >= 2.
        seed: seed of the fold shuffles.
        C: inverse L2 strength of the logistic regression (scikit-learn's ``C``).
        label, meta: stored in the result.

    Returns:
        :class:`ProbeResult` with per-fold scores, means and stds per layer, and chance levels.

    Raises:
        ValueError: shapes that disagree, non-finite values, ``n_folds < 2``, or fewer than
            ``n_folds`` scenes of either stability class (stratified folds need one of each per fold).
    """
    from sklearn.linear_model import BayesianRidge, LogisticRegression
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features)
    stability = np.asarray(stability).astype(int)
    offset = np.asarray(offset, dtype=np.float64)
    if features.ndim != 3:
        raise ValueError(f"features must be (n_layers, n_scenes, n_features), got shape {features.shape}")
    n_layers, n_scenes, _ = features.shape
    if stability.shape != (n_scenes,) or offset.shape != (n_scenes,):
        raise ValueError(f"stability {stability.shape} and offset {offset.shape} must both be ({n_scenes},), "
                         f"one value per scene of features {features.shape}")
    if not np.isfinite(features).all() or not np.isfinite(offset).all():
        raise ValueError("features and offset must be finite (found NaN or inf)")
    if not set(np.unique(stability)) <= {0, 1}:
        raise ValueError(f"stability must be bool or 0/1, got values {np.unique(stability)[:5]}")
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    minority = int(min(stability.sum(), n_scenes - stability.sum()))
    if minority < n_folds:
        raise ValueError(f"only {minority} scenes of the rarer stability class for {n_folds} folds; "
                         f"use more scenes or fewer folds (n_folds <= {max(minority, 2)})")
    class_folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    reg_folds = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    stab = np.empty((n_layers, n_folds))
    off = np.empty((n_layers, n_folds))
    for layer in range(n_layers):
        x = features[layer].astype(np.float64)
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
        stab[layer] = cross_val_score(classifier, x, stability, cv=class_folds, scoring="accuracy")
        regressor = make_pipeline(StandardScaler(), BayesianRidge())
        off[layer] = cross_val_score(regressor, x, offset, cv=reg_folds, scoring="r2")
    p = float(stability.mean())
    return ProbeResult(label=label, stability_folds=stab, offset_folds=off, chance_accuracy=max(p, 1 - p),
                       chance_r2=0.0, n_scenes=n_scenes, n_folds=n_folds, seed=seed, meta=dict(meta or {}))


def plot_probe_curves(results: Sequence[ProbeResult] | Mapping[str, ProbeResult],
                      path: str | os.PathLike | None = None, title: str | None = None):
    """Per-layer stability accuracy (left) and offset R^2 (right) of several models, mean +- std over folds.

    Chance levels are dashed grey lines (the first result's majority-class accuracy; R^2 0).
    Uses matplotlib's Agg backend (no display needed).

    Returns:
        The ``matplotlib.figure.Figure``; written to ``path`` (PNG, 150 dpi) when given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    results = list(results.values()) if isinstance(results, Mapping) else list(results)
    if not results:
        raise ValueError("no probe results to plot")
    fig, (ax_acc, ax_r2) = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    for r in results:
        for ax, mean, std in ((ax_acc, r.stability_mean, r.stability_std), (ax_r2, r.offset_mean, r.offset_std)):
            line, = ax.plot(r.layers, mean, marker="o", ms=3, label=r.label)
            ax.fill_between(r.layers, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    ax_acc.axhline(results[0].chance_accuracy, color="grey", ls="--", lw=1, label="chance (majority)")
    ax_r2.axhline(0.0, color="grey", ls="--", lw=1, label="chance")
    ax_acc.set(xlabel="layer (0 = embeddings)", ylabel="accuracy", title="stability (logistic regression)")
    ax_r2.set(xlabel="layer (0 = embeddings)", ylabel="R$^2$", title="top-cube x offset (Bayesian ridge)")
    ax_r2.set_ylim(bottom=max(-0.5, min(ax_r2.get_ylim()[0], -0.05)), top=1.0)
    for ax in (ax_acc, ax_r2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    if path is not None:
        save_figure_atomic(fig, path, dpi=150)
    plt.close(fig)
    return fig


def save_probe_results(results: Mapping[str, ProbeResult], out_dir: str | os.PathLike,
                       settings: Mapping[str, Any] | None = None) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``probes.json`` (``{"settings", "models": {label: ProbeResult.to_dict()}}``) and
    ``probes.png`` (:func:`plot_probe_curves`) into ``out_dir`` (created). Returns both paths."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "probes.json", out / "probes.png"
    payload = {"settings": dict(settings or {}), "models": {k: r.to_dict() for k, r in results.items()}}
    write_text_atomic(json_path, json.dumps(payload, indent=1) + "\n")
    first = next(iter(results.values()), None)
    title = (f"{first.n_scenes} scenes, {first.n_folds}-fold CV" if first is not None else None)
    plot_probe_curves(results, png_path, title=title)
    return json_path, png_path

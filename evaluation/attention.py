"""Attention maps: where the last prompt token looks in the image, per layer (the paper's A.7).

Schulze Buschoff et al. (2026, Appendix A.7) show, layer by layer, how much the
position that produces the answer attends to each part of the image, for a base
and a fine-tuned model. :func:`attention_maps` computes it: the attention
weights from the last prompt token (the assistant's generation prompt, whose
output predicts the first answer token) to every image token, averaged over
heads, reshaped to the image-token grid. :func:`plot_attention_grid` overlays
the maps on the image, one row per model and one column per layer.

    >>> maps = attention_maps(agent.model, agent.processor, obs)   # AttentionMaps
    >>> maps.maps.shape                                            # (n_layers, 8, 8) for tiny
    >>> plot_attention_grid({"base": maps, "adapted": maps2}, "attention.png")

Attention weights need the eager attention implementation (SDPA and flash
attention never form them); :func:`eager_attention` switches a model to it for
the duration and back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from envs.atomic import save_figure_atomic

__all__ = ["AttentionMaps", "attention_maps", "eager_attention", "upsample_map", "plot_attention_grid",
           "default_layers"]


@dataclasses.dataclass
class AttentionMaps:
    """Attention of the last prompt token to the image tokens of one observation.

    Attributes:
        maps: ``(n_layers, grid_h, grid_w)`` float32; ``maps[l - 1]`` is decoder layer ``l``
            (numbered 1..L as in :mod:`evaluation.probes`, whose layer 0 is the embedding
            output, which has no attention): the head-averaged attention weight on
            each image token (row-major over the merged patch grid, as the vision tower
            emits its tokens). Each layer's map is >= 0 and sums to <= 1: the rest of the
            softmax mass goes to the text tokens.
        image: the observation's ``(H, W, 3)`` uint8 image.
        grid: ``(grid_h, grid_w)``: ``image_grid_thw``'s (h, w) in patches divided by the spatial merge size.
    """

    maps: np.ndarray
    image: np.ndarray
    grid: tuple[int, int]

    @property
    def image_mass(self) -> np.ndarray:
        """``(n_layers,)`` float32: the total attention on the image tokens per layer."""
        return self.maps.sum(axis=(1, 2))


def _base_model(model: Any) -> Any:
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) and hasattr(model, "peft_config") else model


@contextlib.contextmanager
def eager_attention(model: Any) -> Iterator[Any]:
    """Run the body with ``model`` (or the model a ``peft.PeftModel`` wraps) on eager attention, then restore.

    Uses transformers' ``PreTrainedModel.set_attn_implementation`` (checked on transformers 5.23),
    which switches the model and its sub-models (text, vision); the previous implementation
    (usually ``"sdpa"``) is set back on exit. Yields ``model``.

    Raises:
        ValueError: the model cannot switch its attention implementation.
    """
    base = _base_model(model)
    previous = getattr(base.config, "_attn_implementation", None)
    if previous == "eager":
        yield model
        return
    if not callable(getattr(base, "set_attn_implementation", None)):
        raise ValueError(f"{type(base).__name__} has no set_attn_implementation; load it with "
                         "attn_implementation='eager' to get attention weights")
    base.set_attn_implementation("eager")
    try:
        yield model
    finally:
        if previous is not None:
            base.set_attn_implementation(previous)


def _merge_size(model: Any, processor: Any) -> int:
    vision = getattr(_base_model(model).config, "vision_config", None)
    size = getattr(vision, "spatial_merge_size", None) or getattr(processor.image_processor, "merge_size", None)
    if not isinstance(size, int) or size < 1:
        raise ValueError("cannot find the spatial merge size (config.vision_config.spatial_merge_size or "
                         "processor.image_processor.merge_size); attention maps need a Qwen-VL model")
    return size


def attention_maps(model: Any, processor: Any, observation: Mapping[str, Any]) -> AttentionMaps:
    """Per-layer attention from the last prompt token to the image tokens, averaged over heads.

    The observation is chat-templated as the agent sees it and run once (no padding,
    ``torch.no_grad()``, eager attention via :func:`eager_attention`) with
    ``output_attentions=True``. For each decoder layer, the row of the last query
    position is taken over the ``<|image_pad|>`` key positions, averaged over the heads,
    and reshaped to ``(grid_h, grid_w) = image_grid_thw[1:] // spatial_merge_size``
    (8 x 8 for ``tiny``'s 256 px images).

    Args:
        model: a Qwen-VL ``...ForConditionalGeneration`` or a ``peft.PeftModel`` wrapping one
            (the active adapter is used).
        processor: its processor.
        observation: ``{"image": (H, W, 3) uint8, "prompt": str}``.

    Returns:
        :class:`AttentionMaps` with ``maps`` of shape ``(num_hidden_layers, grid_h, grid_w)``, float32.

    Raises:
        ValueError: a video or multi-frame image (``t != 1``), an image-token count that does
            not match the grid, or a model that returns no attention weights.
    """
    import torch

    from agents.backends.hf import processor_inputs, to_pil
    from agents.chat import chat_prompt

    image = np.asarray(to_pil(observation["image"]))
    device = next(model.parameters()).device
    inputs = processor_inputs(processor, [chat_prompt(processor, observation["prompt"])], [image], device)
    t, h, w = (int(v) for v in inputs["image_grid_thw"][0])
    merge = _merge_size(model, processor)
    if t != 1:
        raise ValueError(f"attention maps need a single still image (t=1), got image_grid_thw t={t}")
    grid = (h // merge, w // merge)
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    positions = (inputs["input_ids"][0] == image_id).nonzero().squeeze(-1)
    if positions.numel() != grid[0] * grid[1]:
        raise ValueError(f"{positions.numel()} image tokens, but the grid {h}x{w} / merge {merge} gives "
                         f"{grid[0]}x{grid[1]}; is the processor the model's own?")
    was_training = model.training
    model.eval()
    try:
        with eager_attention(model), torch.no_grad():
            attentions = model(**inputs, use_cache=False, output_attentions=True).attentions
    finally:
        model.train(was_training)
    if not attentions:
        raise ValueError(f"{type(model).__name__} returned no attention weights; it needs eager attention")
    # each: (batch=1, heads, query, key); last query row, image keys, mean over heads
    rows = torch.stack([a[0, :, -1, positions].float().mean(0) for a in attentions])
    maps = rows.reshape(len(attentions), *grid).cpu().numpy().astype(np.float32)
    return AttentionMaps(maps=maps, image=image, grid=grid)


def upsample_map(grid_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a ``(gh, gw)`` map to ``size = (H, W)`` pixels (PIL), float32 ``(H, W)``."""
    from PIL import Image

    grid_map = np.asarray(grid_map, dtype=np.float32)
    if grid_map.ndim != 2:
        raise ValueError(f"grid_map must be 2-D (gh, gw), got shape {grid_map.shape}")
    resized = Image.fromarray(grid_map, mode="F").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def default_layers(n_layers: int, max_columns: int = 8) -> list[int]:
    """Decoder layers ``1..n_layers`` when there are at most ``max_columns``, else ``max_columns``
    evenly spaced ones (first and last included)."""
    if n_layers <= max_columns:
        return list(range(1, n_layers + 1))
    return sorted({int(round(x)) for x in np.linspace(1, n_layers, max_columns)})


def plot_attention_grid(rows: Mapping[str, AttentionMaps], path: str | os.PathLike | None = None,
                        layers: Sequence[int] | None = None, alpha: float = 0.55, scale: str = "shared",
                        title: str | None = None):
    """A grid of attention overlays: rows are models, the first column the image, then one column per layer.

    Each map is divided by its sum (the share of the layer's image attention that each
    image token gets; a uniform map is ``1 / n_tokens`` everywhere) and upsampled to the
    image (:func:`upsample_map`). With ``scale="shared"`` every panel uses one colour
    scale (0 to the largest share shown), so panels compare; with ``scale="panel"`` each
    panel runs from 0 to its own maximum, which shows the pattern of flat maps too. The
    panel title gives the layer and its total attention on the image tokens
    (:attr:`AttentionMaps.image_mass`). Uses matplotlib's Agg backend.

    Args:
        rows: ``label -> AttentionMaps`` (same scene for a comparison).
        path: PNG to write (120 dpi); parent folders are created.
        layers: decoder layers to show, numbered 1..L; default :func:`default_layers`.
        alpha: opacity of the heat map over the image.
        scale: ``"shared"`` or ``"panel"`` colour scale (see above).

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: no rows, a layer out of range for some row, or an unknown ``scale``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no attention maps to plot")
    if scale not in ("shared", "panel"):
        raise ValueError(f"scale must be 'shared' or 'panel', got {scale!r}")
    n_min = min(m.maps.shape[0] for m in rows.values())
    layers = list(layers) if layers is not None else default_layers(n_min)
    bad = [layer for layer in layers if not 1 <= layer <= n_min]
    if bad:
        raise ValueError(f"layers {bad} out of range: the models have {n_min} decoder layers, numbered 1..{n_min}")
    shares = {label: m.maps / np.maximum(m.image_mass[:, None, None], 1e-12) for label, m in rows.items()}
    vmax = max(float(shares[label][layer - 1].max()) for label in rows for layer in layers)
    n_cols = len(layers) + 1
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.9 * n_cols, 2.0 * len(rows) + 0.3),
                             squeeze=False, constrained_layout=True)
    for r, (label, maps) in enumerate(rows.items()):
        height, width = maps.image.shape[:2]
        axes[r, 0].imshow(maps.image)
        axes[r, 0].set_ylabel(label, fontsize=9)
        axes[r, 0].set_title("image", fontsize=8)
        mass = maps.image_mass
        for c, layer in enumerate(layers, start=1):
            heat = upsample_map(shares[label][layer - 1], (height, width))
            ax = axes[r, c]
            ax.imshow(maps.image)
            top = vmax if scale == "shared" else max(float(heat.max()), 1e-12)
            shown = ax.imshow(heat, cmap="inferno", alpha=alpha, vmin=0, vmax=top)
            ax.set_title(f"layer {layer} (image {mass[layer - 1]:.2f})", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    if scale == "shared":
        bar = fig.colorbar(shown, ax=axes[:, 1:], shrink=0.8, pad=0.01)
        bar.set_label("share of the image attention", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    if path is not None:
        save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return fig

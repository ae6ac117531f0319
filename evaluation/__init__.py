"""Evaluation: run agents on the environments and measure what they learned."""

from .attention import AttentionMaps, attention_maps, plot_attention_grid
from .evaluate import EpisodeRecord, EvaluationResult, bootstrap_ci, evaluate
from .probes import ProbeData, ProbeResult, extract_features, fit_probes, plot_probe_curves, probe_scenes

__all__ = ["evaluate", "EvaluationResult", "EpisodeRecord", "bootstrap_ci",
           "probe_scenes", "extract_features", "fit_probes", "ProbeData", "ProbeResult", "plot_probe_curves",
           "attention_maps", "plot_attention_grid", "AttentionMaps"]

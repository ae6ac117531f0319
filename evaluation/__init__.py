"""Evaluation: run agents on the environments and measure what they learned."""

from .attention import AttentionMaps, attention_maps, plot_attention_grid
from .evaluate import EpisodeRecord, EvaluationResult, bootstrap_ci, evaluate
from .probes import ProbeData, ProbeResult, extract_features, fit_probes, plot_probe_curves, probe_scenes
from .real import BiasReport, PhotoAnswer, RealEvaluationResult, bias_scores, evaluate_real

__all__ = ["evaluate", "EvaluationResult", "EpisodeRecord", "bootstrap_ci",
           "probe_scenes", "extract_features", "fit_probes", "ProbeData", "ProbeResult", "plot_probe_curves",
           "attention_maps", "plot_attention_grid", "AttentionMaps",
           "evaluate_real", "RealEvaluationResult", "PhotoAnswer", "bias_scores", "BiasReport"]

"""Evaluation: run agents on the environments and measure what they learned."""

from .attention import AttentionMaps, attention_maps, plot_attention_grid
from .best_constant import ConstantBaseline, best_constant_answer, constant_candidates
from .episodes import auccess, episode_metrics, success_at_k
from .evaluate import EpisodeRecord, EvaluationResult, bootstrap_ci, evaluate
from .judgements import JudgementComparison, compare_judgements
from .landscape import Landscape, landscape_figure, plot_landscapes, reward_landscape
from .loo import LeaveOneOutResult, leave_one_out_accuracy, leave_one_out_choices
from .matrix import EnvBaselines, MatrixResult, evaluate_matrix
from .matrix_plot import plot_matrix
from .probes import ProbeData, ProbeResult, extract_features, fit_probes, plot_probe_curves, probe_scenes
from .real import BiasReport, PhotoAnswer, RealEvaluationResult, bias_scores, evaluate_real
from .strips import record_episode, trajectory_strip

__all__ = ["evaluate", "EvaluationResult", "EpisodeRecord", "bootstrap_ci",
           "probe_scenes", "extract_features", "fit_probes", "ProbeData", "ProbeResult", "plot_probe_curves",
           "attention_maps", "plot_attention_grid", "AttentionMaps",
           "evaluate_real", "RealEvaluationResult", "PhotoAnswer", "bias_scores", "BiasReport"]
__all__ += ["evaluate_matrix", "MatrixResult", "EnvBaselines", "plot_matrix",
            "best_constant_answer", "constant_candidates", "ConstantBaseline",
            "reward_landscape", "plot_landscapes", "landscape_figure", "Landscape",
            "compare_judgements", "JudgementComparison"]
__all__ += ["leave_one_out_accuracy", "leave_one_out_choices", "LeaveOneOutResult"]
__all__ += ["success_at_k", "auccess", "episode_metrics", "trajectory_strip", "record_episode"]

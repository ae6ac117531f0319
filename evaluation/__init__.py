"""Evaluation: run agents on the environments and measure what they learned."""

from .evaluate import EpisodeRecord, EvaluationResult, bootstrap_ci, evaluate

__all__ = ["evaluate", "EvaluationResult", "EpisodeRecord", "bootstrap_ci"]

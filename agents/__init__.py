"""Agents: anything with ``act(observations) -> list[str]`` (see :mod:`agents.base`).

Names are imported lazily so that ``from agents import OracleAgent`` does not
load torch; the VLM agent loads it when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Agent, task_of

__all__ = [
    "Agent", "task_of", "RandomAgent", "ConstantAgent", "OracleAgent", "PerceiveSimulateAgent",
    "VLMAgent", "SB3Agent", "load_agent", "LogProbJudge", "VoteAgent",
]

_LAZY = {
    "RandomAgent": "agents.baselines",
    "ConstantAgent": "agents.baselines",
    "OracleAgent": "agents.baselines",
    "PerceiveSimulateAgent": "agents.perceive",
    "VLMAgent": "agents.vlm",
    "SB3Agent": "agents.sb3",
    "load_agent": "agents.factory",
    "LogProbJudge": "agents.logprob",
    "VoteAgent": "agents.ensemble",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agents' has no attribute {name!r}")

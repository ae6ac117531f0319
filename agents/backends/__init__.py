"""Generation backends behind one interface (:mod:`agents.backends.base`).

``hf`` (:class:`agents.backends.hf.HFBackend`) is the default; ``vllm`` lives in
``agents.backends.vllm`` and needs the ``cubeworld[vllm]`` extra; ``vllm-server``
(``agents.backends.vllm_server``) samples on vLLM servers over HTTP (``cubeworld
serve-rollouts`` starts one). Backends are imported lazily, so ``import agents.backends``
needs neither torch nor vLLM.
"""

from __future__ import annotations

from .base import AdapterRequest, Completion, GenerationBackend, SamplingParams

__all__ = ["AdapterRequest", "Completion", "GenerationBackend", "SamplingParams", "HFBackend"]


def __getattr__(name: str):
    if name == "HFBackend":
        from .hf import HFBackend

        return HFBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
